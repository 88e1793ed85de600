"""cnntool.engine.inference: BatchNorm folding and channels_last never change a registered model's outputs beyond
float rounding; the folding pass leaves alone what it cannot prove safe; bf16 and torch.compile plumbing.

Every registered model is built with random weights (BatchNorm statistics randomised too, so folding is
not the identity it is on a fresh model) at its InputSpec size and run with and without the optimizations.
"""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from cnntool.models import catalog
from cnntool.engine.inference import InferenceModel, InferenceOptions, compile_cache_dir, fold_batchnorm, prepare

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# ResNet-50-FPN detectors upscale their input to 800 px inside: about 10^11 FLOPs a forward.
SLOW = {"fasterrcnn-resnet50", "retinanet-resnet50", "fcos-resnet50", "vgg16", "vgg11"}
TORCHVISION_DETECTORS = {n for n in catalog.names("detect") if catalog.get(n).builder.startswith("cnntool.models.tv_")}
# dlib's networks live outside the module tree (cached by cnntool.faces.api) and run on numpy copies of
# the input: nothing here may touch them.
DLIB = {n for n in catalog.names() if catalog.get(n).weights == "external:dlib"}


def _params(names):
    return [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in names]


def randomise_batchnorm(model: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) * 2 + 0.1)
            with torch.no_grad():
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.2)


def build(name: str) -> nn.Module:
    torch.manual_seed(0)
    spec = catalog.get(name)
    if spec.parts:  # built around other models (sliding windows): as the loader assembles it
        from cnntool.loader import load_model

        model = load_model(name, None, task=spec.task).module.eval()
    else:
        model = spec.build().eval()
    randomise_batchnorm(model)
    return model


def sample_input(name: str) -> torch.Tensor:
    spec = catalog.get(name).input
    if spec.resize == "none":  # dlib's models take whole photos as 0..255 RGB
        from skimage import data

        return torch.from_numpy(np.ascontiguousarray(data.astronaut())).permute(2, 0, 1)[None].float()
    torch.manual_seed(1)
    return torch.randn(2, spec.channels, *spec.size)


def assert_close(actual, expected, path="output"):
    """Same structure; float tensors equal within float32 rounding relative to the tensor's own scale."""
    if isinstance(expected, torch.Tensor):
        assert isinstance(actual, torch.Tensor) and actual.shape == expected.shape and actual.dtype == expected.dtype, path
        if expected.is_floating_point():
            scale = float(expected.abs().max()) if expected.numel() else 0.0
            torch.testing.assert_close(actual, expected, rtol=1e-4, atol=1e-4 * max(scale, 1.0), msg=path)
        else:
            assert torch.equal(actual, expected), path
    elif isinstance(expected, dict):
        assert isinstance(actual, dict) and actual.keys() == expected.keys(), path
        for key in expected:
            assert_close(actual[key], expected[key], f"{path}[{key!r}]")
    elif isinstance(expected, (list, tuple)):
        assert type(actual) is type(expected) and len(actual) == len(expected), path
        for i, (a, e) in enumerate(zip(actual, expected)):
            assert_close(a, e, f"{path}[{i}]")
    else:
        assert actual == expected, path


def dense_outputs(model: nn.Module, x: torch.Tensor):
    """A torchvision detector's backbone features and head outputs: everything before the top-k and NMS
    steps, which with random weights choose among near-ties that float rounding may reorder."""
    features = model.backbone(x)
    maps = list(features.values())
    head = model.rpn.head if hasattr(model, "rpn") else model.head
    return features, head(maps)


@pytest.mark.parametrize("name", _params(catalog.names()))
def test_optimizations_keep_every_registered_models_outputs(name):
    reference = build(name)
    model = copy.deepcopy(reference)
    prepared = prepare(model, "cpu", InferenceOptions(fold_bn=True, channels_last=True))
    x = sample_input(name)
    batchnorms = sum(type(m) is nn.BatchNorm2d for m in reference.modules())
    assert prepared.folded == batchnorms  # every registered architecture's BatchNorms follow a conv
    if name in DLIB:
        assert not prepared.channels_last and prepared.folded == 0
    with torch.inference_mode():
        if name in TORCHVISION_DETECTORS:
            expected = dense_outputs(reference, x)
            actual = dense_outputs(prepared.module, x.contiguous(memory_format=torch.channels_last))
            # The full forward still runs and keeps the detections' structure.
            detections = prepared(x)
            assert [sorted(d) for d in detections] == [["boxes", "labels", "scores"]] * len(x)
        else:
            expected, actual = reference(x), prepared(x)
    assert_close(actual, expected)


def test_channels_last_reaches_the_convolutions():
    prepared = prepare(build("fashion-resnet-small"), "cpu")
    assert prepared.module.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert not any(type(m) is nn.BatchNorm2d for m in prepared.module.modules())


def test_options_off_leave_the_model_as_it_was():
    model = build("fashion-resnet-small")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    prepared = prepare(model, "cpu", InferenceOptions(fold_bn=False, channels_last=False))
    assert prepared.folded == 0 and not prepared.channels_last
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


# --- the folding pass: only what it can prove --------------------------------------------------------------

class ConvOutputUsedTwice(nn.Module):
    """bn(conv(x)) + conv(x): folding would change the second use."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.conv(x)
        return self.bn(y) + y


class ConvCalledTwice(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4)

    def forward(self, x):
        return self.bn(self.conv(x)) + self.conv(x)


class Untraceable(nn.Module):
    """Data-dependent control flow stops fx; the plain Sequential inside still folds."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
        self.conv, self.bn = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)

    def forward(self, x):
        y = self.body(x)
        if y.sum() > 0:  # fx cannot trace this: conv → bn below stays unfolded
            y = self.bn(self.conv(y))
        return y


class SharedBatchNorm(nn.Module):
    """One BatchNorm after two convs, and a block registered under two names."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.bn = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)
        self.block = nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3))
        self.alias = self.block

    def forward(self, x):
        return self.bn(self.a(x)) + self.bn(self.b(self.alias(x)))


@pytest.mark.parametrize("cls, folds", [(ConvOutputUsedTwice, 0), (ConvCalledTwice, 0), (Untraceable, 1),
                                        (SharedBatchNorm, 0)])
def test_folding_touches_only_pairs_it_can_prove(cls, folds):
    torch.manual_seed(0)
    model = cls().eval()
    randomise_batchnorm(model)
    reference = copy.deepcopy(model)
    assert fold_batchnorm(model) == folds
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=1e-5, atol=1e-5)


def test_folding_refuses_a_training_model():
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(nn.Sequential(nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1)))


# --- bf16 and torch.compile --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["lenet5-digits", "yolo-digits"])
def test_bf16_outputs_come_back_as_float32_and_close(name):
    reference = build(name)
    prepared = prepare(copy.deepcopy(reference), "cpu", InferenceOptions(bf16=True))
    x = sample_input(name)
    with torch.inference_mode():
        expected, actual = reference(x), prepared(x)
    if isinstance(expected, list):  # detector: one dict per image, every cell's candidate
        expected, actual = [d["scores"] for d in expected], [d["scores"] for d in actual]
    for a, e in zip(actual if isinstance(actual, list) else [actual], expected if isinstance(expected, list) else [expected]):
        assert a.dtype == torch.float32
        torch.testing.assert_close(a, e, rtol=0.05, atol=0.05 * float(e.abs().max()))


def test_a_failing_compile_falls_back_to_eager_with_one_warning(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    def broken_compile(module, **kwargs):
        def run(x):
            raise RuntimeError("InductorError: no C++ compiler\ndetails")
        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    model = build("lenet5-digits")
    reference = copy.deepcopy(model)
    prepared = InferenceModel(model, "cpu", InferenceOptions(compile=True))
    x = sample_input("lenet5-digits")
    with torch.inference_mode():
        torch.testing.assert_close(prepared(x), reference(x))
        prepared(x)
    err = capsys.readouterr().err
    assert err.count("torch.compile failed (InductorError: no C++ compiler); running uncompiled") == 1


def test_an_input_error_under_compile_is_the_inputs_not_compiles(monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(torch, "compile", lambda module, **kwargs: module)
    prepared = InferenceModel(build("lenet5-digits"), "cpu", InferenceOptions(compile=True))
    with pytest.raises(RuntimeError), torch.inference_mode():
        prepared(torch.randn(1, 1, 8, 8))  # too small for LeNet-5's convolutions
    assert "torch.compile failed" not in capsys.readouterr().err


def test_compile_cache_dir_respects_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "inductor"))
    assert compile_cache_dir() == tmp_path / "inductor"
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    monkeypatch.delenv("CNNTOOL_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert compile_cache_dir() == tmp_path / "cnntool" / "inductor"


@pytest.mark.slow
def test_compiled_model_matches_eager(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    reference = build("fashion-resnet-small")
    prepared = prepare(copy.deepcopy(reference), "cpu", InferenceOptions(compile=True))
    x = sample_input("fashion-resnet-small")
    with torch.inference_mode():
        assert_close(prepared(x), reference(x))
    assert prepared._compiled is not None  # it compiled, not fell back


# --- through the prediction pipeline -----------------------------------------------------------------------

def _records(inputs, model, **options):
    from cnntool.engine.predict import RunOptions, predict

    from cnntool import tasks

    task = tasks.get(catalog.get(model).task)
    return [r.to_dict() for r in predict(task, inputs, RunOptions(model=model, device="cpu", **options))]


@pytest.mark.parametrize("model", ["fashion-resnet-small", "lenet5-digits"])
def test_the_pipeline_gives_the_same_records_with_and_without_folding_and_channels_last(model, digit_png):
    optimized = _records([digit_png], model)
    plain = _records([digit_png], model, fold_bn=False, channels_last=False)
    assert [p["label"] for p in optimized[0]["predictions"]] == [p["label"] for p in plain[0]["predictions"]]
    for a, b in zip(optimized[0]["predictions"], plain[0]["predictions"]):
        assert a["score"] == pytest.approx(b["score"], abs=1e-5)


def test_the_cache_directory_is_cnntool_cache_when_set(monkeypatch, tmp_path):
    from cnntool.cache import cache_dir

    monkeypatch.setenv("CNNTOOL_CACHE", str(tmp_path / "mine"))
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    assert cache_dir() == tmp_path / "mine" and compile_cache_dir() == tmp_path / "mine" / "inductor"
