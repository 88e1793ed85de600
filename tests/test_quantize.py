"""--int8 (cnntool.engine.quantize): the int8 model against the float model it came from, on real images; the
calibration is taken once, from the first batch; what cannot be quantized is one line."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from cnntool.engine import quantize
from cnntool.errors import ConfigError
from cnntool.engine.inference import InferenceModel, InferenceOptions
from cnntool.loader import load_model
from cnntool.preprocess import Preprocessor

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def fashion():
    """The embedded Fashion-MNIST ResNet and the first 512 images of the official test set, normalized."""
    from cnntool.data.builtin import load_fashion_mnist

    loaded = load_model("fashion-resnet-small", None, task="classify")
    images, labels = load_fashion_mnist("test")
    x = Preprocessor(loaded.input).normalize(torch.from_numpy(images[:512]).unsqueeze(1))
    return loaded.module.eval(), x, torch.from_numpy(labels[:512])


def test_the_int8_model_reads_fashion_mnist_as_the_float_model_does(fashion):
    model, x, labels = fashion
    quantized = quantize.quantize_int8(model, x[:quantize.CALIBRATION_IMAGES])
    with torch.inference_mode():
        expected, actual = model(x).softmax(1), quantized(x).softmax(1)
    agree = (actual.argmax(1) == expected.argmax(1)).float().mean().item()
    assert agree >= 0.98, agree  # measured 0.996 on the whole test set
    accuracy = lambda p: (p.argmax(1) == labels).float().mean().item()  # noqa: E731
    assert accuracy(actual) >= accuracy(expected) - 0.01
    assert (actual - expected).abs().mean().item() < 0.01


def test_the_int8_model_runs_int8_kernels(fashion):
    model, x, _ = fashion
    quantized = quantize.quantize_int8(model, x[:4])
    kinds = {type(m).__module__ for m in quantized.modules()}
    assert any(k.startswith("torch.ao.nn.intrinsic.quantized") or k.startswith("torch.ao.nn.quantized") for k in kinds)
    convs = [m for m in quantized.modules() if "Conv" in type(m).__name__]
    assert convs and all(m.weight().dtype == torch.qint8 for m in convs)
    assert not any(isinstance(m, nn.Conv2d) for m in quantized.modules())  # no conv left in float


def test_calibration_is_the_first_images_of_the_first_batch_only(fashion, monkeypatch):
    model, x, _ = fashion
    seen = []
    real = quantize.quantize_int8
    monkeypatch.setattr(quantize, "quantize_int8", lambda module, calibration: seen.append(calibration) or real(module, calibration))
    prepared = InferenceModel(model, "cpu", InferenceOptions(int8=True))
    with torch.inference_mode():
        first = prepared(x[:64])
        prepared(x[64:128])
        again = prepared(x[:64])
    assert len(seen) == 1 and torch.equal(seen[0], x[:quantize.CALIBRATION_IMAGES])
    torch.testing.assert_close(first, again)  # the later batches did not move the ranges


@pytest.mark.parametrize("options, device, message", [
    (InferenceOptions(int8=True), "cuda", "--int8 runs on the CPU's int8 kernels; use --device cpu"),
    (InferenceOptions(int8=True, bf16=True), "cpu", "--int8 cannot be combined with --bf16 or --compile"),
    (InferenceOptions(int8=True, compile=True), "cpu", "--int8 cannot be combined with --bf16 or --compile"),
])
def test_int8_refuses_what_it_cannot_run(options, device, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        InferenceModel(nn.Sequential(nn.Conv2d(1, 1, 3)), device, options)


def test_a_model_fx_cannot_trace_is_one_line():
    class DataDependent(nn.Module):
        def forward(self, x):
            return x if x.sum() > 0 else -x  # control flow on a value: no graph for every input

    with pytest.raises(ConfigError, match=r"^--int8: this model cannot be quantized \(torch.fx cannot trace it: ") as error:
        quantize.quantize_int8(DataDependent(), torch.ones(2, 1, 4, 4))
    assert "\n" not in str(error.value)


def test_a_torch_without_fx_quantization_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.ao.quantization.quantize_fx", None)  # import raises ImportError
    with pytest.raises(ConfigError, match=r"^--int8 needs torch.ao.quantization's FX mode, which torch \S+ does not have$"):
        quantize.quantize_int8(nn.Sequential(nn.Conv2d(1, 1, 3)), torch.ones(1, 1, 4, 4))


def test_classify_int8_on_the_command_line_gives_the_float_labels(tmp_path):
    from PIL import Image

    from cnntool.data.builtin import load_fashion_mnist

    images, _ = load_fashion_mnist("test")
    paths = []
    for i in range(24):
        paths.append(str(tmp_path / f"{i:02d}.png"))
        Image.fromarray(images[i]).save(paths[-1])

    def labels(*extra):
        proc = subprocess.run([sys.executable, "-m", "cnntool", "classify", "-m", "fashion-resnet-small", *paths,
                               "--topk", "1", "--format", "jsonl", "--device", "cpu", "--threads", "1", *extra],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr  # torch.ao's deprecation notes stay quiet
        return [json.loads(line)["predictions"][0] for line in proc.stdout.splitlines()]

    fp32, int8 = labels(), labels("--int8")
    assert np.mean([a["label"] == b["label"] for a, b in zip(fp32, int8)]) >= 23 / 24
    assert all(abs(a["score"] - b["score"]) < 0.1 for a, b in zip(fp32, int8) if a["label"] == b["label"])


def test_evaluate_int8_refuses_bf16_before_reading_data():
    from cnntool.engine.evaluate import EvalOptions
    from cnntool.tasks.classify.evaluate import ClassifyEvaluation, evaluate

    with pytest.raises(ConfigError, match="--int8 cannot be combined with --bf16 or --compile"):
        evaluate(ClassifyEvaluation(data="no-such-data", int8=True, bf16=True, common=EvalOptions(model="lenet5-digits", weights=None)))


def test_evaluate_int8_reports_it_and_scores_near_float():
    from cnntool.engine.evaluate import EvalOptions
    from cnntool.tasks.classify.evaluate import ClassifyEvaluation, evaluate

    fp32 = evaluate(ClassifyEvaluation(data="digits", split="val", common=EvalOptions(model="lenet5-digits", weights=None, threads=1)))
    int8 = evaluate(ClassifyEvaluation(data="digits", split="val", int8=True, common=EvalOptions(model="lenet5-digits", weights=None, threads=1)))
    assert int8["int8"] is True and fp32["int8"] is False
    assert abs(int8["accuracy"] - fp32["accuracy"]) <= 0.005  # measured: 0.993 both
