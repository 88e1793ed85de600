"""The lecture's sections on convolution: edge detection, padding, strided convolutions, convolutions over
volumes, one layer of a CNN, a simple CNN, and pooling. Each worked example's numbers come out of cnntool's
shape-calc (its value calculator, its layer arithmetic and its chain evaluator) and out of torch's own layers."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnntool.shapecalc.layers import describe

VERTICAL_EDGE = [[10, 10, 10, 0, 0, 0]] * 6  # bright left half, dark right half
VERTICAL_FILTER = [[1, 0, -1]] * 3
HORIZONTAL_EDGE = [[10, 10, 10, 0, 0, 0]] * 3 + [[0, 0, 0, 10, 10, 10]] * 3  # a checkerboard of 3×3 blocks
HORIZONTAL_FILTER = [[1, 1, 1], [0, 0, 0], [-1, -1, -1]]


def matrix_text(rows) -> str:
    return "; ".join(" ".join(str(v) for v in row) for row in rows)


def torch_conv(image, kernel, **options) -> list[list[float]]:
    """torch's conv2d (a cross-correlation, as the lecture's "convolution") of one channel."""
    x = torch.tensor(image, dtype=torch.float64)[None, None]
    w = torch.tensor(kernel, dtype=torch.float64)[None, None]
    return F.conv2d(x, w, **options)[0, 0].tolist()


# --- edge detection --------------------------------------------------------------------------------

def test_lecture_edge_detection_vertical_edge_gives_a_band_of_30s(shape_calc):
    lecture = [[0, 30, 30, 0]] * 4
    answer = shape_calc("--input", matrix_text(VERTICAL_EDGE), "--kernel", matrix_text(VERTICAL_FILTER))
    assert answer["output"] == lecture
    assert torch_conv(VERTICAL_EDGE, VERTICAL_FILTER) == lecture


def test_lecture_edge_detection_dark_to_light_edge_gives_minus_30(shape_calc):
    flipped = [row[::-1] for row in VERTICAL_EDGE]
    answer = shape_calc("--input", matrix_text(flipped), "--kernel", matrix_text(VERTICAL_FILTER))
    assert answer["output"] == [[0, -30, -30, 0]] * 4


def test_lecture_edge_detection_horizontal_filter(shape_calc):
    lecture = [[0, 0, 0, 0], [30, 10, -10, -30], [30, 10, -10, -30], [0, 0, 0, 0]]
    answer = shape_calc("--input", matrix_text(HORIZONTAL_EDGE), "--kernel", matrix_text(HORIZONTAL_FILTER))
    assert answer["output"] == lecture
    assert torch_conv(HORIZONTAL_EDGE, HORIZONTAL_FILTER) == lecture


def test_lecture_edge_detection_6x6_with_3x3_gives_4x4(shape_calc):
    text = shape_calc("--n", "6", "--f", "3", text=True)
    assert text.splitlines()[0] == "6 + 2·0 − 3 + 1 = 4"


# --- padding -----------------------------------------------------------------------------------------

def test_lecture_padding_1_keeps_6x6(shape_calc):
    text = shape_calc("--n", "6", "--f", "3", "--p", "1", text=True)
    assert text.splitlines()[0] == "6 + 2·1 − 3 + 1 = 6"
    assert torch.tensor(torch_conv([[1] * 6] * 6, [[1] * 3] * 3, padding=1)).shape == (6, 6)


@pytest.mark.parametrize("f", [1, 3, 5, 7])
def test_lecture_padding_same_is_f_minus_1_over_2(shape_calc, f):
    answer = shape_calc("--n", "6", "--f", str(f), "--p", "same")
    assert answer["dims"][0]["padding"] == [(f - 1) // 2] * 2
    assert answer["output"] == [6, 6]
    assert shape_calc("--n", "6", "--f", str(f), "--out", "6", "--solve", "p")["solutions"] == [(f - 1) // 2]


# --- strided convolutions ----------------------------------------------------------------------------

def test_lecture_strided_7x7_with_3x3_stride_2_gives_3x3(shape_calc):
    text = shape_calc("--n", "7", "--f", "3", "--s", "2", text=True)
    assert text.splitlines()[0] == "⌊(7 + 2·0 − 3)/2⌋ + 1 = 3"


def test_lecture_strided_convolution_values_match_torch(shape_calc):
    torch.manual_seed(0)
    image = torch.randint(0, 10, (7, 7)).tolist()
    kernel = torch.randint(-1, 5, (3, 3)).tolist()
    answer = shape_calc("--input", matrix_text(image), "--kernel", matrix_text(kernel), "--s", "2")
    assert answer["output"] == torch_conv(image, kernel, stride=2)


@pytest.mark.parametrize("n, f, p, s, out", [
    (6, 3, 0, 1, 4), (6, 3, 1, 1, 6), (7, 3, 0, 2, 3), (37, 5, 0, 2, 17), (17, 5, 0, 2, 7),
])
def test_lecture_output_size_is_floor_of_n_plus_2p_minus_f_over_s_plus_1(shape_calc, n, f, p, s, out):
    assert shape_calc("--n", str(n), "--f", str(f), "--p", str(p), "--s", str(s))["output"] == [out, out]
    assert nn.Conv2d(1, 1, f, s, p)(torch.zeros(1, 1, n, n)).shape[-2:] == (out, out)


# --- convolutions over volumes, one layer of a CNN ------------------------------------------------------

@pytest.mark.parametrize("filters", [1, 2])
def test_lecture_volumes_6x6x3_with_3x3x3_filters_gives_4x4_per_filter(filters):
    chain = describe(f"conv3:{filters}", (3, 6, 6))
    assert chain.output_shape == (filters, 4, 4)
    assert nn.Conv2d(3, filters, 3)(torch.zeros(1, 3, 6, 6)).shape == (1, filters, 4, 4)


def test_lecture_one_layer_ten_3x3x3_filters_have_280_parameters(shape_calc):
    answer = shape_calc("--n", "6", "--f", "3", "--c-in", "3", "--c-out", "10")
    assert answer["params"] == 280  # (3·3·3 weights + 1 bias) · 10 filters
    assert sum(p.numel() for p in nn.Conv2d(3, 10, 3).parameters()) == 280


def test_lecture_simple_cnn_39x39x3_to_1960_features(shape_calc):
    answer = shape_calc("--n", "39", "--c-in", "3", "-l", "conv3:10 conv5s2:20 conv5s2:40 flatten")
    lecture = [[10, 37, 37], [20, 17, 17], [40, 7, 7], [1960]]
    assert [row["output"] for row in answer["layers"]] == lecture


# --- pooling -------------------------------------------------------------------------------------------

MAX_POOL_4X4 = [[1, 3, 2, 1], [2, 9, 1, 1], [1, 3, 2, 3], [5, 6, 1, 2]]
MAX_POOL_5X5 = [[1, 3, 2, 1, 3], [2, 9, 1, 1, 5], [1, 3, 2, 3, 2], [8, 3, 5, 1, 0], [5, 6, 1, 2, 9]]
AVG_POOL_4X4 = [[1, 3, 2, 1], [2, 9, 1, 1], [1, 4, 2, 3], [5, 6, 1, 2]]


def torch_pool(pool, image, *args) -> list[list[float]]:
    return pool(torch.tensor(image, dtype=torch.float64)[None, None], *args)[0, 0].tolist()


def test_lecture_max_pooling_2x2_stride_2(shape_calc):
    lecture = [[9, 2], [6, 3]]
    assert shape_calc("--input", matrix_text(MAX_POOL_4X4), "--pool", "max", "--f", "2")["output"] == lecture
    assert torch_pool(F.max_pool2d, MAX_POOL_4X4, 2) == lecture


def test_lecture_max_pooling_3x3_stride_1(shape_calc):
    lecture = [[9, 9, 5], [9, 9, 5], [8, 6, 9]]
    answer = shape_calc("--input", matrix_text(MAX_POOL_5X5), "--pool", "max", "--f", "3", "--s", "1")
    assert answer["output"] == lecture
    assert torch_pool(F.max_pool2d, MAX_POOL_5X5, 3, 1) == lecture


def test_lecture_average_pooling_2x2_stride_2(shape_calc):
    lecture = [[3.75, 1.25], [4, 2]]
    assert shape_calc("--input", matrix_text(AVG_POOL_4X4), "--pool", "avg", "--f", "2")["output"] == lecture
    assert torch_pool(F.avg_pool2d, AVG_POOL_4X4, 2) == lecture


def test_lecture_pooling_keeps_the_channels_and_has_no_parameters():
    chain = describe("max2", (2, 4, 4))
    assert chain.output_shape == (2, 2, 2) and chain.total_params == 0
    assert not list(nn.MaxPool2d(2).parameters())
