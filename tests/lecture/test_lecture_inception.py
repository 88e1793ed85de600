"""The lecture's 1×1 convolutions and Inception: a 1×1 conv shrinks the channels; the cost of a 5×5 "same" conv
28×28×192 → 28×28×32 is 28·28·32·5·5·192 = 120,422,400 multiplications, and 28·28·16·192 + 28·28·32·5·5·16 =
2,408,448 + 10,035,200 = 12,443,648 behind a 1×1 bottleneck to 16 channels; an Inception module concatenates its
branches along the channels. Counted by shape-calc's MACs (its --cost view and its chain evaluator) and shaped
by torch's layers."""

import pytest
import torch
from torch import nn

from cnntool.shapecalc.cost import conv_cost
from cnntool.shapecalc.layers import describe

DIRECT = 28 * 28 * 32 * 5 * 5 * 192
SHRINK, SPREAD = 28 * 28 * 16 * 192, 28 * 28 * 32 * 5 * 5 * 16


def test_lecture_inception_cost_numbers():
    assert (DIRECT, SHRINK, SPREAD, SHRINK + SPREAD) == (120_422_400, 2_408_448, 10_035_200, 12_443_648)


def test_lecture_inception_cost_through_shape_calc_cost_view(shape_calc):
    answer = shape_calc("--cost", "--n", "28", "--c-in", "192", "--f", "5", "--c-out", "32", "--bottleneck", "16")
    assert answer["macs"] == DIRECT
    assert [step["macs"] for step in answer["bottleneck_layers"]] == [SHRINK, SPREAD]
    assert answer["bottleneck_macs"] == SHRINK + SPREAD
    assert answer["ratio"] == pytest.approx(DIRECT / (SHRINK + SPREAD), abs=1e-6)
    assert [step["output"] for step in answer["bottleneck_layers"]] == [[16, 28, 28], [32, 28, 28]]


def test_lecture_inception_cost_text(shape_calc):
    text = shape_calc("--cost", "--n", "28", "--c-in", "192", "--f", "5", "--c-out", "32", "--bottleneck", "16",
                      text=True)
    assert "28·28·32 · 5·5·192 = 120,422,400" in text
    assert "28·28·16 · 1·1·192 = 2,408,448" in text and "28·28·32 · 5·5·16 = 10,035,200" in text
    assert "total 12,443,648 multiplications: 9.7× fewer" in text


def test_lecture_inception_cost_is_the_chain_evaluators_mac_count():
    assert describe("conv5psame:32", (192, 28, 28)).total_macs == DIRECT
    assert describe("conv1:16 conv5psame:32", (192, 28, 28)).total_macs == SHRINK + SPREAD
    cost = conv_cost((192, 28, 28), (5, 5), 32, stride=(1, 1), padding="same", dilation=(1, 1), bottleneck=16)
    assert (cost.direct.macs, cost.bottleneck_macs) == (DIRECT, SHRINK + SPREAD)


def test_lecture_inception_cost_counts_what_torch_computes():
    """Each output value of a conv is one f·f·c_in dot product: out elements × f·f·c_in multiplications."""
    x = torch.zeros(1, 192, 28, 28)
    direct = nn.Conv2d(192, 32, 5, padding="same")(x)
    shrunk = nn.Conv2d(192, 16, 1)(x)
    spread = nn.Conv2d(16, 32, 5, padding="same")(shrunk)
    assert direct.numel() * 5 * 5 * 192 == DIRECT
    assert shrunk.numel() * 192 + spread.numel() * 5 * 5 * 16 == SHRINK + SPREAD


def test_lecture_one_by_one_conv_shrinks_the_channels():
    """28×28×192 → 1×1 conv, 32 filters → 28×28×32 (and 6×6×32 → 6×6×#filters)."""
    assert describe("conv1:32", (192, 28, 28)).output_shape == (32, 28, 28)
    assert nn.Conv2d(192, 32, 1)(torch.zeros(1, 192, 28, 28)).shape == (1, 32, 28, 28)
    assert describe("conv1:5", (32, 6, 6)).output_shape == (5, 6, 6)


def test_lecture_inception_module_concatenates_to_256_channels():
    """1×1 64 | 3×3 same 128 | 5×5 same 32 | max-pool same + 1×1 32 on 28×28×192 → 28×28×256."""
    module = "cat( conv1:64 | conv1:96 conv3psame:128 | conv1:16 conv5psame:32 | max3s1p1 conv1:32 )"
    assert describe(module, (192, 28, 28)).output_shape == (256, 28, 28)
    x = torch.zeros(1, 192, 28, 28)
    branches = [nn.Conv2d(192, 64, 1)(x), nn.Conv2d(192, 128, 3, padding=1)(x), nn.Conv2d(192, 32, 5, padding=2)(x),
                nn.Conv2d(192, 32, 1)(nn.MaxPool2d(3, 1, 1)(x))]
    assert torch.cat(branches, 1).shape == (1, 256, 28, 28)
