"""cnntool.shapecalc.layers: the grammar, and chains checked against the equivalent torch nn.Sequential."""

import pytest
import torch
from torch import nn

from cnntool.models import catalog
from cnntool.errors import ConfigError
from cnntool.shapecalc.layers import describe, format_shape, parse

torch.set_num_threads(1)


class Res(nn.Module):
    def __init__(self, body: nn.Module, shortcut: nn.Module | None = None) -> None:
        super().__init__()
        self.body, self.shortcut = body, shortcut

    def forward(self, x):
        return self.body(x) + (x if self.shortcut is None else self.shortcut(x))


class Cat(nn.Module):
    def __init__(self, *branches: nn.Module) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)

    def forward(self, x):
        return torch.cat([branch(x) for branch in self.branches], dim=1)


S = nn.Sequential

# (spec, input (C, *spatial), the same network written in torch: one module per top-level layer or block)
CHAINS = [
    ("conv5:6 tanh avg2 conv5:16 tanh avg2 flatten fc:120 tanh fc:84 tanh fc:10", (1, 32, 32), lambda: [
        nn.Conv2d(1, 6, 5), nn.Tanh(), nn.AvgPool2d(2), nn.Conv2d(6, 16, 5), nn.Tanh(), nn.AvgPool2d(2),
        nn.Flatten(), nn.Linear(400, 120), nn.Tanh(), nn.Linear(120, 84), nn.Tanh(), nn.Linear(84, 10)]),
    ("2*(conv3p1:8 relu) max2, 2*(conv3psame:16 bn relu) max3s2c lrn conv4psame:8 aap3x3 fc:10:b0", (3, 21, 21),
     lambda: [
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 16, 3, padding="same"), nn.BatchNorm2d(16), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding="same"), nn.BatchNorm2d(16), nn.ReLU(),
        nn.MaxPool2d(3, 2, ceil_mode=True), nn.LocalResponseNorm(5), nn.Conv2d(16, 8, 4, padding="same"),
        nn.AdaptiveAvgPool2d((3, 3)), S(nn.Flatten(), nn.Linear(72, 10, bias=False))]),
    ("conv7s2p3b0:16 bn relu max3s2p1 res(conv3p1b0:16 bn relu conv3p1b0:16 bn) relu "
     "res(conv3s2p1b0:32 bn relu conv3p1b0:32 bn | conv1s2b0:32 bn) relu gap fc:10", (3, 33, 31), lambda: [
        nn.Conv2d(3, 16, 7, 2, 3, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(3, 2, 1),
        Res(S(nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(),
              nn.Conv2d(16, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16))),
        nn.ReLU(),
        Res(S(nn.Conv2d(16, 32, 3, 2, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU(),
              nn.Conv2d(32, 32, 3, padding=1, bias=False), nn.BatchNorm2d(32)),
            S(nn.Conv2d(16, 32, 1, 2, bias=False), nn.BatchNorm2d(32))),
        nn.ReLU(), nn.AdaptiveAvgPool2d(1), S(nn.Flatten(), nn.Linear(32, 10))]),
    ("cat(conv1:4 | conv1:3 conv3p1:6 | conv1:2 conv5p2:3 | max3s1p1 conv1:2) conv1:8 relu "
     "cat(res(conv3p1:8) | avg3s1p1)", (8, 12, 12), lambda: [
        Cat(nn.Conv2d(8, 4, 1), S(nn.Conv2d(8, 3, 1), nn.Conv2d(3, 6, 3, padding=1)),
            S(nn.Conv2d(8, 2, 1), nn.Conv2d(2, 3, 5, padding=2)), S(nn.MaxPool2d(3, 1, 1), nn.Conv2d(8, 2, 1))),
        nn.Conv2d(15, 8, 1), nn.ReLU(),
        Cat(Res(nn.Conv2d(8, 8, 3, padding=1)), nn.AvgPool2d(3, 1, 1))]),
    ("conv5s2:4 relu max2c tconv4s2p1:3 avg3s1p1 l2pool2 dropout flatten fc:5", (2, 50), lambda: [
        nn.Conv1d(2, 4, 5, 2), nn.ReLU(), nn.MaxPool1d(2, ceil_mode=True), nn.ConvTranspose1d(4, 3, 4, 2, 1),
        nn.AvgPool1d(3, 1, 1), nn.LPPool1d(2, 2), nn.Dropout(), nn.Flatten(), nn.Linear(36, 5)]),
    ("conv3p1:4 max2 conv3x3x3p0x1x1:6 tconv2s2b0:2 gap fc:2", (1, 8, 10, 10), lambda: [
        nn.Conv3d(1, 4, 3, padding=1), nn.MaxPool3d(2), nn.Conv3d(4, 6, 3, padding=(0, 1, 1)),
        nn.ConvTranspose3d(6, 2, 2, 2, bias=False), nn.AdaptiveAvgPool3d(1), S(nn.Flatten(), nn.Linear(2, 2))]),
    ("CONV3x5d2p2:4, ReLU max2x3 tconv3s2p1op1:2 aap4x5 dropout0.2 lcn9 sigmoid softmax", (3, 20, 30), lambda: [
        nn.Conv2d(3, 4, (3, 5), padding=2, dilation=2), nn.ReLU(), nn.MaxPool2d((2, 3)),
        nn.ConvTranspose2d(4, 2, 3, 2, 1, output_padding=1), nn.AdaptiveAvgPool2d((4, 5)), nn.Dropout(0.2),
        nn.Identity(), nn.Sigmoid(), nn.Softmax(dim=1)]),
]


@pytest.mark.parametrize("spec, shape, build", CHAINS, ids=[c[0][:30] for c in CHAINS])
def test_chain_matches_torch(spec, shape, build):
    modules = build()
    chain = describe(spec, shape)
    top_level = [row for row in chain.rows if row.depth == 0]
    assert len(top_level) == len(modules)
    x = torch.zeros(1, *shape)
    with torch.no_grad():
        for row, module in zip(top_level, modules):
            x = module.eval()(x)
            assert row.output_shape == tuple(x.shape[1:]), row.name
    assert chain.output_shape == tuple(x.shape[1:])
    assert chain.total_params == sum(p.numel() for m in modules for p in m.parameters())


def test_conv_macs_are_out_elements_times_kernel_times_c_in():
    chain = describe("conv3:8 fc:10", (4, 10, 10))
    assert [row.macs for row in chain.rows] == [8 * 8 * 8 * 3 * 3 * 4, 8 * 8 * 8 * 10]


def test_lecture_params_count():
    # 10 filters of 3×3×3: (27 + 1)·10 = 280 parameters
    assert describe("conv3:10", (3, 6, 6)).total_params == 280


# --- receptive field and jump against torch's gradients ---------------------------------------------

def _torch_rf_and_jump(modules: list[nn.Module], n: int) -> tuple[int, int]:
    """How many input pixels feed the middle output, and how far apart two neighbouring outputs look."""
    net = S(*modules)
    for m in net.modules():
        if isinstance(m, nn.Conv1d):
            nn.init.ones_(m.weight)
    extents = []
    x = torch.zeros(1, 1, n, requires_grad=True)
    out = net(x)
    middle = out.shape[-1] // 2
    for i in (middle, middle + 1):
        (grad,) = torch.autograd.grad(out[0, 0, i], x, retain_graph=True)
        seen = grad[0, 0].nonzero().flatten()
        extents.append((seen.min().item(), seen.max().item()))
    (first, last), (next_first, _) = extents
    return last - first + 1, next_first - first


@pytest.mark.parametrize("spec, modules", [
    ("conv3:1 conv3:1", lambda: [nn.Conv1d(1, 1, 3, bias=False), nn.Conv1d(1, 1, 3, bias=False)]),
    ("conv3s2:1 conv3:1 avg2 conv3d2:1", lambda: [nn.Conv1d(1, 1, 3, 2, bias=False), nn.Conv1d(1, 1, 3, bias=False),
                                                 nn.AvgPool1d(2), nn.Conv1d(1, 1, 3, dilation=2, bias=False)]),
    ("conv5s3:1 avg3s2 conv2s2:1", lambda: [nn.Conv1d(1, 1, 5, 3, bias=False), nn.AvgPool1d(3, 2),
                                            nn.Conv1d(1, 1, 2, 2, bias=False)]),
])
def test_receptive_field_and_jump_match_torch_gradients(spec, modules):
    n = 200
    row = describe(spec, (1, n)).rows[-1]
    assert (row.rf[0], row.jump[0]) == _torch_rf_and_jump(modules(), n)


def test_receptive_field_through_res_and_cat_is_the_largest_branch():
    chain = describe("res(conv3p1:4 conv3p1:4) cat(conv5p2:2 | conv1:2)", (4, 9, 9))
    assert chain.rows[2].rf == (5, 5)  # the residual's body
    assert chain.rows[-1].rf == (9, 9)


def test_transposed_conv_divides_the_jump():
    assert describe("conv2s2:1 tconv2s2:1", (1, 8)).rows[-1].jump == (1,)


# --- the grammar ---------------------------------------------------------------------------------

def test_grammar_is_case_insensitive_and_takes_commas():
    assert describe("CONV3P1:8,ReLU, MAX2", (3, 8, 8)).output_shape == (8, 4, 4)


def test_repeat_expands_the_group():
    assert [layer.text for layer in parse("2*( conv3:4 relu ) fc:2")] == ["conv3:4", "relu", "conv3:4", "relu", "fc:2"]


@pytest.mark.parametrize("spec", [
    "", "conv3", "conv3:", "conv:5", "max", "conv3q:4", "conv3s2s2:4", "max2b0", "avg2d2", "l22",
    "dropout1.5", "relu)", "(relu)", "foo", "res(conv3:4", "cat()", "cat(relu|)", "2*(relu", "0*(relu)",
    "2*(relu | tanh)", "res(relu | relu | relu)", "conv3:4 $", "conv3:0", "fc:0", "aap0",
])
def test_bad_spec_strings_are_config_errors(spec):
    with pytest.raises(ConfigError):
        describe(spec, (3, 16, 16))


@pytest.mark.parametrize("spec, shape", [
    ("conv3x3:4", (3, 16)),  # a 2D kernel on a 1D input
    ("fc:3 conv3:4", (3, 8, 8)),  # conv after flattening
    ("conv3:4 res(conv3:4)", (3, 8, 8)),  # the identity shortcut does not match the body
    ("cat(conv3:4 | conv1:4)", (3, 8, 8)),  # branches disagree spatially
    ("conv9:4", (3, 8, 8)),  # kernel larger than the input
    ("max3p2", (3, 8, 8)),  # pooling padding over half the kernel
    ("conv3:4", (3, 0, 8)),  # an empty input
])
def test_impossible_chains_are_config_errors(spec, shape):
    with pytest.raises(ConfigError):
        describe(spec, shape)


def test_layer_errors_name_the_layer():
    with pytest.raises(ConfigError, match="layer 2 'conv9:4'"):
        describe("relu conv9:4", (3, 8, 8))


def test_dropped_pixels_are_warned_about():
    (row,) = describe("conv3s2:4", (3, 64, 64)).rows
    assert row.warnings and "not divisible" in row.warnings[0]


def test_format_shape_is_lecture_order():
    assert format_shape((64, 112, 100)) == "112×100×64"
    assert format_shape((10,)) == "10"


def test_every_registered_layer_description_is_valid():
    for spec in catalog.specs():
        if spec.layers is not None:
            chain = describe(spec.layers, (spec.input.channels, *spec.input.size))
            assert chain.total_params > 0, spec.name
