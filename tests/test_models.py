"""The classic architectures: every registered classify model builds and runs; parameter counts match
torchvision's published numbers and the lecture's LeNet-5; builders adapt to other sizes, channels and
classes; and each catalog `layers` string agrees with its torch model (shapes and parameters)."""

import subprocess
import sys

import pytest
import torch
import torchvision
from torch import nn

from cnntool.models import catalog

pytestmark = pytest.mark.usefixtures("one_torch_thread")

# torchvision's documented parameter counts (GoogLeNet without the auxiliary heads) and the lecture's
# LeNet-5 with full C3 connections: 156 + 2,416 + 48,120 + 10,164 + 850.
REFERENCE_PARAMS = {
    "lenet5": 61_706,
    "lenet5-relu": 61_706,
    "alexnet": 61_100_840,
    "vgg11": 132_863_336,
    "vgg16": 138_357_544,
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "googlenet": 6_624_904,
}
# The lecture's classic architectures (this file's models; other tasks' files test their own entries).
CLASSIC = sorted([*REFERENCE_PARAMS, "resnet-small"])
TORCHVISION = [n for n in CLASSIC if (catalog.get(n).weights or "").startswith("torchvision:")]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_on_meta(spec, **overrides) -> nn.Module:
    """The builder run on the meta device: the same code, no memory and no weight initialisation, which is
    all shapes and parameter counts need (a real VGG-16 takes seconds just to initialise)."""
    with torch.device("meta"):
        return spec.build(**overrides)


def materialise(model: nn.Module) -> nn.Module:
    """A meta-built model on the CPU with every layer freshly initialised by its own reset_parameters."""
    model.to_empty(device="cpu")
    for module in model.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
    return model


def traced_modules(model: nn.Module) -> list[nn.Module]:
    """Top-level children, and the children of top-level Sequentials (VGG's features, ResNet's stages)."""
    modules = []
    for child in model.children():
        modules += list(child.children()) if isinstance(child, nn.Sequential) else [child]
    return modules


def forward_with_trace(model: nn.Module, input_shape: tuple) -> tuple[tuple, list[tuple]]:
    """An eval-mode forward of a batch of 2 on the model's device; returns the per-sample output shape
    and, in execution order, that of every traced module."""
    shapes = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape[1:])))
             for m in traced_modules(model)]
    device = next(model.parameters()).device
    try:
        with torch.no_grad():
            out = model.eval()(torch.randn(2, *input_shape, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    return tuple(out.shape[1:]), shapes


def input_shape(spec) -> tuple:
    return (spec.input.channels, *spec.input.size)


@pytest.fixture(scope="module")
def on_meta():
    """name → (meta-built model, output shape, traced shapes) at the spec's input size, once per module."""
    cache = {}

    def get(name):
        if name not in cache:
            spec = catalog.get(name)
            model = build_on_meta(spec)
            cache[name] = (model, *forward_with_trace(model, input_shape(spec)))
        return cache[name]

    return get


def test_catalog_does_not_import_torch():
    code = "import sys; from cnntool.models import catalog; catalog.names(); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def test_the_lecture_architectures_are_registered():
    assert set(CLASSIC) <= set(catalog.names("classify"))


@pytest.mark.parametrize("name", CLASSIC)
def test_forward_gives_one_score_per_class(on_meta, name):
    spec = catalog.get(name)
    _, out_shape, _ = on_meta(name)
    assert out_shape == (spec.kwargs["num_classes"],)


# Over 3 GMACs at 224 px: on 2 shared cores their real forward runs at 64 px (224 px is covered on meta).
HEAVY = {"vgg11": 64, "vgg16": 64, "resnet34": 64, "resnet50": 64}


@pytest.mark.parametrize("name", CLASSIC)
def test_real_forward_is_finite(name):
    spec = catalog.get(name)
    side = HEAVY.get(name)
    shape = (spec.input.channels, side, side) if side else input_shape(spec)
    model = materialise(build_on_meta(spec))
    with torch.no_grad():
        out = model.eval()(torch.randn(1, *shape))
    assert out.shape == (1, spec.kwargs["num_classes"])
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("name", ["lenet5", "lenet5-relu", "resnet-small"])
def test_small_models_build_for_real(name):
    spec = catalog.get(name)
    model = spec.build()
    with torch.no_grad():
        out = model.eval()(torch.randn(3, *input_shape(spec)))
    assert out.shape == (3, 10) and torch.isfinite(out).all()


def test_lenet_dropout_is_only_in_training_and_keeps_the_plain_layout_at_zero():
    from cnntool.models.lenet import lenet5

    torch.manual_seed(0)
    plain, dropped = lenet5(activation="relu", pool="max"), lenet5(activation="relu", pool="max", dropout=0.5)
    assert not any(isinstance(m, nn.Dropout) for m in plain.modules())
    assert n_params(plain) == n_params(dropped) == REFERENCE_PARAMS["lenet5"]
    # Same parameters by position, so the same function in eval mode; random masks in training mode.
    with torch.no_grad():
        for a, b in zip(plain.parameters(), dropped.parameters()):
            b.copy_(a)
    x = torch.randn(4, 1, 32, 32)
    with torch.no_grad():
        assert torch.equal(plain.eval()(x), dropped.eval()(x))
        assert not torch.equal(dropped.train()(x), dropped.train()(x))
    with pytest.raises(ValueError, match="dropout"):
        lenet5(dropout=1.0)


@pytest.mark.parametrize("name", sorted(REFERENCE_PARAMS))
def test_parameter_counts_match_the_references(on_meta, name):
    assert n_params(on_meta(name)[0]) == REFERENCE_PARAMS[name]


def torchvision_meta(name: str) -> dict:
    """The published metadata of the model's torchvision weights (nothing is downloaded)."""
    return torchvision.models.get_weight(catalog.get(name).weights.split(":", 1)[1]).meta


@pytest.mark.parametrize("name", TORCHVISION)
def test_parameter_counts_match_torchvision_weights_meta(on_meta, name):
    assert n_params(on_meta(name)[0]) == torchvision_meta(name)["num_params"]


@pytest.mark.parametrize("name", TORCHVISION)
def test_layer_string_macs_match_torchvision_published_ops(name):
    """torchvision's "_ops" are GMACs at 224 px, rounded to 3 decimals: an independent check of the strings."""
    layerspec = pytest.importorskip("cnntool.shapecalc.layers")
    spec = catalog.get(name)
    macs = layerspec.describe(spec.layers, input_shape(spec)).total_macs
    assert round(macs / 1e9, 3) == torchvision_meta(name)["_ops"]


def test_imagenet_models_take_their_categories_from_the_weights():
    for name in TORCHVISION:
        spec = catalog.get(name)
        assert spec.classes == () and spec.input.size == (224, 224) and spec.input.resize == "center-crop"


def state_shapes(model: nn.Module) -> dict:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name, overrides", [
    ("alexnet", {}), ("vgg16", {}), ("resnet50", {}), ("vgg11", {"small_input": True}),
])
def test_torchvision_state_dicts_fit_while_the_stem_is_unchanged(name, overrides):
    """Same keys and shapes is what a strict load_state_dict checks."""
    ours = build_on_meta(catalog.get(name), **overrides)
    with torch.device("meta"):
        reference = getattr(torchvision.models, name)(weights=None)
    assert state_shapes(ours) == state_shapes(reference)


def test_googlenet_fits_torchvision_weights_but_for_the_aux_heads():
    ours = build_on_meta(catalog.get("googlenet"))
    with torch.device("meta"):
        reference = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False)
    aux_free = {k: v for k, v in state_shapes(reference).items() if not k.startswith(("aux1.", "aux2."))}
    assert state_shapes(ours) == aux_free
    assert ours.aux1 is None and ours.aux2 is None


# Builders at other input sizes, channel counts and class counts (shapes on the meta device).
OTHER_SHAPES = [
    ("lenet5", {"num_classes": 5, "in_channels": 3, "input_size": (28, 28)}, (3, 28, 28)),
    ("lenet5-relu", {"input_size": (48, 40)}, (1, 48, 40)),
    ("alexnet", {"num_classes": 10, "in_channels": 1, "small_input": True}, (1, 32, 32)),
    ("alexnet", {"num_classes": 7, "in_channels": 1}, (1, 96, 96)),
    ("vgg11", {"num_classes": 10, "in_channels": 1, "small_input": True}, (1, 28, 28)),
    ("vgg16", {"num_classes": 2, "batch_norm": True}, (3, 32, 32)),
    ("resnet18", {"num_classes": 10, "in_channels": 1, "small_input": True}, (1, 28, 28)),
    ("resnet34", {"num_classes": 3, "in_channels": 1}, (1, 64, 64)),
    ("resnet50", {"num_classes": 10, "small_input": True}, (3, 32, 32)),
    ("googlenet", {"num_classes": 10, "in_channels": 1, "small_input": True, "transform_input": False}, (1, 28, 28)),
    ("googlenet", {"num_classes": 4}, (3, 96, 96)),
    ("resnet-small", {"widths": (8, 16), "blocks": (1, 3), "num_classes": 3, "dropout": 0.3}, (1, 28, 28)),
    ("resnet-small", {"in_channels": 3}, (3, 32, 32)),
]


@pytest.mark.parametrize("name, overrides, shape", OTHER_SHAPES)
def test_builders_adapt_to_other_inputs_and_classes(name, overrides, shape):
    spec = catalog.get(name)
    out_shape, _ = forward_with_trace(build_on_meta(spec, **overrides), shape)
    assert out_shape == (overrides.get("num_classes", spec.kwargs["num_classes"]),)


def test_resnet18_on_grey_28px_digits_for_real():
    from cnntool.models.resnet import resnet18

    model = resnet18(num_classes=10, in_channels=1, small_input=True)
    assert isinstance(model.maxpool, nn.Identity)
    assert (model.conv1.in_channels, model.conv1.kernel_size, model.conv1.stride) == (1, (3, 3), (1, 1))
    with torch.no_grad():
        out = model.eval()(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_lenet_paper_and_modern_variants():
    paper = catalog.get("lenet5").build()
    modern = catalog.get("lenet5-relu").build()
    assert {nn.Tanh, nn.AvgPool2d} <= {type(m) for m in paper.modules()}
    assert {nn.ReLU, nn.MaxPool2d} <= {type(m) for m in modern.modules()}
    assert [m.in_features for m in paper.modules() if isinstance(m, nn.Linear)] == [400, 120, 84]


@pytest.mark.parametrize("name, overrides", [
    ("lenet5", {"activation": "sigmoid"}),
    ("lenet5", {"pool": "l2"}),
    ("lenet5", {"input_size": 8}),
    ("resnet18", {"num_classes": 0}),
    ("resnet-small", {"widths": (16, 32), "blocks": (2,)}),
    ("googlenet", {"in_channels": 1}),  # the catalog asks for transform_input, which needs RGB
])
def test_bad_builder_arguments_are_errors(name, overrides):
    with pytest.raises(ValueError):
        build_on_meta(catalog.get(name), **overrides)


# --- layer strings against the torch models ------------------------------------------------------

def assert_agrees(layers: str, shape: tuple, model: nn.Module, out_shape: tuple, traced: list[tuple]) -> None:
    layerspec = pytest.importorskip("cnntool.shapecalc.layers")
    chain = layerspec.describe(layers, shape)
    assert chain.output_shape == out_shape
    assert chain.total_params == n_params(model)
    # Every traced module's output shape appears, in order, among the top-level rows (a res/cat block is
    # one row there, like a torch block module).
    rows = iter(row.output_shape for row in chain.rows if row.depth == 0)
    for i, traced_shape in enumerate(traced):
        assert any(row == traced_shape for row in rows), f"module {i} gives {traced_shape}: no such row in order"


@pytest.mark.parametrize("name", CLASSIC)
def test_layer_string_agrees_with_the_torch_model(on_meta, name):
    spec = catalog.get(name)
    assert_agrees(spec.layers, input_shape(spec), *on_meta(name))


# The same strings at other input sizes: catches floor/ceil and padding slips that 224 px can hide.
@pytest.mark.parametrize("name, shape, overrides", [
    ("lenet5", (1, 28, 28), {"input_size": (28, 28)}),
    ("alexnet", (3, 127, 131), {}),
    ("vgg11", (3, 97, 64), {}),
    ("resnet18", (3, 65, 64), {}),
    ("resnet50", (3, 33, 47), {}),
    ("googlenet", (3, 97, 101), {}),
    ("resnet-small", (1, 29, 30), {}),
])
def test_layer_string_agrees_at_other_sizes(name, shape, overrides):
    spec = catalog.get(name)
    model = build_on_meta(spec, **overrides)
    assert_agrees(spec.layers, shape, model, *forward_with_trace(model, shape))


def test_resnet_small_layers_follow_the_kwargs():
    from cnntool.models.catalog import resnet_small_layers

    for lcn in (False, True):
        kwargs = {"widths": (8, 16, 24, 32), "blocks": (1, 3, 1, 2), "num_classes": 3, "dropout": 0.3, "lcn": lcn}
        model = build_on_meta(catalog.get("resnet-small"), **kwargs)
        assert_agrees(resnet_small_layers(**kwargs), (1, 28, 28), model, *forward_with_trace(model, (1, 28, 28)))


def test_resnet_small_with_lcn_reads_an_image_alike_at_any_contrast():
    from cnntool.models.resnet import resnet_small

    torch.manual_seed(0)
    x = torch.rand(4, 3, 32, 32)
    faint = 0.5 + 0.1 * (x - 0.5)  # a tenth of the contrast around mid grey
    with_lcn = resnet_small(widths=(8, 16), blocks=(1, 1), in_channels=3, lcn=True).eval()
    plain = resnet_small(widths=(8, 16), blocks=(1, 1), in_channels=3).eval()
    with torch.no_grad():
        torch.testing.assert_close(with_lcn(faint), with_lcn(x), atol=1e-4, rtol=1e-4)
        assert not torch.allclose(plain(faint), plain(x), atol=1e-2)
    assert with_lcn.state_dict().keys() == plain.state_dict().keys()  # LCN has no parameters


def test_class_names_match_the_datasets():
    from cnntool.data.builtin import DIGIT_CLASSES, FASHION_CLASSES

    assert catalog.get("lenet5").classes == DIGIT_CLASSES
    assert catalog.get("resnet-small").classes == FASHION_CLASSES
