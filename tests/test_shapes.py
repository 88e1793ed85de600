"""cnntool.shapecalc.arithmetic against real torch layers and the lecture's worked examples.

Each property test draws random layers (1D/2D/3D, rectangular, padding, stride, dilation, ceil mode) and
checks that arithmetic.py gives torch's output size, and refuses exactly the layers torch refuses; the value
calculator (values.py) gives torch's outputs and autograd's gradients.
"""

import math

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from cnntool.errors import ConfigError
from cnntool.shapecalc import values
from cnntool.shapecalc.arithmetic import Window, output_size, solve

torch.set_num_threads(1)

# Small tensors keep thousands of torch calls within a few seconds on two cores.
MAX_SIZE = {1: 60, 2: 24, 3: 8}
EXAMPLES = settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
TCONV = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d, 3: nn.ConvTranspose3d}
POOL = {
    "max": {1: nn.MaxPool1d, 2: nn.MaxPool2d, 3: nn.MaxPool3d},
    "avg": {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d},
    "l2": {1: nn.LPPool1d, 2: nn.LPPool2d, 3: nn.LPPool3d},
}


@st.composite
def layer_dims(draw, max_kernel=6, max_stride=4, max_pad=4, max_dilation=3):
    """One random layer's per-dimension numbers: sizes, kernel, stride, padding, dilation."""
    dims = draw(st.integers(1, 3))

    def each(low, high):
        return tuple(draw(st.lists(st.integers(low, high), min_size=dims, max_size=dims)))

    return {
        "dims": dims,
        "n": each(1, MAX_SIZE[dims]),
        "f": each(1, max_kernel),
        "s": each(1, max_stride),
        "p": each(0, max_pad),
        "d": each(1, max_dilation),
    }


def torch_out(layer: nn.Module, channels: int, sizes: tuple[int, ...]) -> tuple[int, ...] | None:
    """The layer's output sizes on a real tensor, or None where torch refuses the layer. A transposed conv
    can return an empty tensor instead of refusing; an output size of 0 counts as a refusal."""
    try:
        with torch.no_grad():
            out = tuple(layer(torch.zeros(1, channels, *sizes)).shape[2:])
    except RuntimeError:
        return None
    return out if min(out) > 0 else None


def ours(windows: list[Window], sizes: tuple[int, ...]) -> tuple[int, ...] | None:
    try:
        return tuple(output_size(w, n).out for w, n in zip(windows, sizes))
    except ConfigError:
        return None


@EXAMPLES
@given(layer_dims())
def test_conv_matches_torch(c):
    layer = CONV[c["dims"]](1, 1, c["f"], stride=c["s"], padding=c["p"], dilation=c["d"])
    windows = [Window("conv", *args) for args in zip(c["f"], c["s"], c["p"], c["d"])]
    assert ours(windows, c["n"]) == torch_out(layer, 1, c["n"])


@EXAMPLES
@given(layer_dims(), st.sampled_from(["same", "valid"]))
def test_conv_padding_words_match_torch_at_stride_1(c, padding):
    layer = CONV[c["dims"]](1, 1, c["f"], padding=padding, dilation=c["d"])
    windows = [Window("conv", f, 1, padding, d) for f, d in zip(c["f"], c["d"])]
    assert ours(windows, c["n"]) == torch_out(layer, 1, c["n"])


@settings(max_examples=200, deadline=None)
@given(layer_dims())
def test_same_padding_at_larger_strides_is_tensorflows_ceil_n_over_s(c):
    # torch refuses padding="same" with a stride; TensorFlow defines it as output ⌈n/s⌉
    for n, f, s, d in zip(c["n"], c["f"], c["s"], c["d"]):
        for kind in ("conv", "max", "avg"):
            window = Window(kind, f, s, "same", 1 if kind == "avg" else d)
            assert output_size(window, n).out == math.ceil(n / s)


@EXAMPLES
@given(layer_dims(max_pad=3), st.sampled_from(["max", "avg", "l2"]), st.booleans())
def test_pooling_matches_torch(c, kind, ceil):
    dims = c["dims"]
    if kind == "max":
        layer = POOL[kind][dims](c["f"], stride=c["s"], padding=c["p"], dilation=c["d"], ceil_mode=ceil)
        numbers = zip(c["f"], c["s"], c["p"], c["d"])
    elif kind == "avg":
        layer = POOL[kind][dims](c["f"], stride=c["s"], padding=c["p"], ceil_mode=ceil)
        numbers = zip(c["f"], c["s"], c["p"], [1] * dims)
    else:  # torch's LPPool has no padding or dilation, and its 1D form wants plain ints
        unpack = (lambda v: v[0]) if dims == 1 else (lambda v: v)
        layer = POOL[kind][dims](2, unpack(c["f"]), stride=unpack(c["s"]), ceil_mode=ceil)
        numbers = zip(c["f"], c["s"], [0] * dims, [1] * dims)
    windows = [Window(kind, f, s, p, d, ceil, 0, dims) for f, s, p, d in numbers]
    assert ours(windows, c["n"]) == torch_out(layer, 1, c["n"])


@EXAMPLES
@given(layer_dims(), st.data())
def test_transposed_conv_matches_torch(c, data):
    dims = c["dims"]
    op = tuple(data.draw(st.integers(0, 3)) for _ in range(dims))
    layer = TCONV[dims](1, 1, c["f"], stride=c["s"], padding=c["p"], output_padding=op, dilation=c["d"])
    windows = [Window("tconv", f, s, p, d, False, o) for f, s, p, d, o in zip(c["f"], c["s"], c["p"], c["d"], op)]
    assert ours(windows, c["n"]) == torch_out(layer, 1, c["n"])


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 30), st.integers(1, 6), st.integers(1, 4), st.integers(1, 3))
def test_transposed_same_gives_n_times_s(n, f, s, d):
    try:
        result = output_size(Window("tconv", f, s, "same", d), n)
    except ConfigError:
        # only an even span at stride 1 cannot be reached with symmetric padding
        assert s == 1 and d == 1 and f % 2 == 0
        return
    assert result.out == n * s
    # and torch agrees with the padding that was chosen
    layer = nn.ConvTranspose1d(1, 1, f, stride=s, padding=result.pad[0], output_padding=result.output_padding,
                               dilation=d)
    assert torch_out(layer, 1, (n,)) == (n * s,)


# --- the lecture's examples ----------------------------------------------------------------------

def test_6x6_image_with_3x3_filter_gives_4x4():
    assert output_size(Window("conv", 3), 6).out == 4


def test_8x8_image_with_3x3_filter_gives_6x6():
    assert output_size(Window("conv", 3), 8).out == 6


@given(st.integers(1, 300), st.integers(1, 11), st.integers(0, 5))
def test_stride_1_is_n_plus_2p_minus_f_plus_1(n, f, p):
    if n + 2 * p >= f:
        assert output_size(Window("conv", f, 1, p), n).out == n + 2 * p - f + 1


@given(st.integers(1, 300), st.integers(0, 5))
def test_same_padding_of_an_odd_filter_is_f_minus_1_over_2(n, half):
    f = 2 * half + 1
    result = output_size(Window("conv", f, 1, "same"), n)
    assert result.pad == ((f - 1) // 2, (f - 1) // 2)
    assert result.out == n


def test_the_formula_is_filled_in():
    result = output_size(Window("conv", 3, 2), 64)
    assert result.formula == "⌊(64 + 2·0 − 3)/2⌋ + 1 = 31"
    assert result.dropped == 1  # (64 − 3) is odd: the last pixel is never reached


def test_divisible_layers_drop_nothing():
    assert output_size(Window("conv", 3, 2, 1), 63).dropped == 0


@pytest.mark.parametrize("window, n", [
    (Window("conv", 7), 4),  # kernel larger than the padded input
    (Window("max", 3, 1, 2), 10),  # pooling padding above half the kernel
])
def test_nonsense_is_refused(window, n):
    with pytest.raises(ConfigError):
        output_size(window, n)


@pytest.mark.parametrize("kwargs", [
    {"kind": "conv", "f": 0}, {"kind": "conv", "f": 3, "s": 0}, {"kind": "conv", "f": 3, "p": -1},
    {"kind": "conv", "f": 3, "p": "half"}, {"kind": "avg", "f": 3, "d": 2}, {"kind": "conv", "f": 3, "ceil": True},
    {"kind": "conv", "f": 3, "output_padding": 1}, {"kind": "deconv", "f": 3},
])
def test_impossible_windows_are_refused(kwargs):
    with pytest.raises(ConfigError):
        Window(**kwargs)


def test_negative_size_is_refused():
    with pytest.raises(ConfigError):
        output_size(Window("conv", 3), -5)


# --- solving ---------------------------------------------------------------------------------------

def test_solve_padding_that_keeps_64_with_f5():
    assert solve("p", 64, kind="conv", n=64, f=5, s=1).values == (2,)


def test_solve_reports_none_when_no_symmetric_padding_works():
    assert not solve("p", 64, kind="conv", n=64, f=4, s=1).exists


def test_solve_stride_has_an_open_tail_when_the_output_is_1():
    sol = solve("s", 1, kind="conv", n=64, f=3, p=0)
    assert sol.values == () and sol.and_above == 62


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["n", "f", "s", "p"]), st.sampled_from(["conv", "max", "avg", "tconv"]),
       st.integers(1, 40), st.integers(1, 5), st.integers(1, 4), st.integers(0, 2), st.booleans())
def test_solve_finds_exactly_the_values_torch_agrees_with(unknown, kind, n, f, s, p, ceil):
    ceil = ceil and kind in ("max", "avg")
    values = {"n": n, "f": f, "s": s, "p": p}
    try:
        out = output_size(Window(kind, f, s, p, 1, ceil), n).out
    except ConfigError:
        return
    sol = solve(unknown, out, kind=kind, ceil=ceil, **{k: v for k, v in values.items() if k != unknown})
    assert values[unknown] in sol.values or (sol.and_above is not None and values[unknown] >= sol.and_above)
    limit = (sol.and_above or max(sol.values) + 1) + 3
    for candidate in range(0 if unknown == "p" else 1, limit):
        trial = {**values, unknown: candidate}
        expected = torch_out(_torch_layer(kind, trial, ceil), 1, (trial["n"],)) == (out,)
        found = candidate in sol.values or (sol.and_above is not None and candidate >= sol.and_above)
        assert found == expected, (unknown, candidate)


def _torch_layer(kind: str, v: dict, ceil: bool) -> nn.Module:
    if kind == "conv":
        return nn.Conv1d(1, 1, v["f"], stride=v["s"], padding=v["p"])
    if kind == "tconv":
        return nn.ConvTranspose1d(1, 1, v["f"], stride=v["s"], padding=v["p"])
    return POOL[kind][1](v["f"], stride=v["s"], padding=v["p"], ceil_mode=ceil)


# --- values by hand (cnntool.shapecalc.values) against torch's layers and autograd --------------------------

@st.composite
def value_layers(draw):
    """A random conv, max or average pooling of a small whole-number matrix, with an upstream error."""
    kind = draw(st.sampled_from(["conv", "max", "avg"]))
    size = (draw(st.integers(1, 7)), draw(st.integers(1, 7)))
    f = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    s = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    p = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    d = 1 if kind == "avg" else draw(st.integers(1, 2))
    ceil = kind != "conv" and draw(st.booleans())
    numbers = st.integers(-5, 5).map(float)
    image = draw(st.lists(st.lists(numbers, min_size=size[1], max_size=size[1]), min_size=size[0], max_size=size[0]))
    kernel = draw(st.lists(st.lists(numbers, min_size=f[1], max_size=f[1]), min_size=f[0], max_size=f[0]))
    return kind, image, kernel, f, s, p, d, ceil, draw(st.randoms(use_true_random=False))


def torch_forward(kind, x, w, f, s, p, d, ceil):
    if kind == "conv":
        return torch.nn.functional.conv2d(x, w, stride=s, padding=p, dilation=d)
    if kind == "max":
        return torch.nn.functional.max_pool2d(x, f, s, p, d, ceil)
    return torch.nn.functional.avg_pool2d(x, f, s, p, ceil)


@EXAMPLES
@given(value_layers())
def test_values_forward_and_backward_match_torch(layer):
    kind, image, kernel, f, s, p, d, ceil, rng = layer
    try:
        geo = values.geometry(tuple(Window(kind, f[i], s[i], p[i], d, ceil) for i in range(2)),
                              (len(image), len(image[0])))
    except ConfigError:
        return  # a layer torch refuses too (test_pooling_matches_torch / test_conv_matches_torch)
    x = torch.tensor(image, dtype=torch.float64)[None, None].requires_grad_(True)
    w = torch.tensor(kernel, dtype=torch.float64)[None, None].requires_grad_(True)
    z = torch_forward(kind, x, w, f, s, p, d, ceil)
    if torch.isinf(z).any():
        return  # a dilated max window wholly in the padding: torch's backward has no position to route to
    error = [[float(rng.randint(-3, 3)) for _ in range(z.shape[3])] for _ in range(z.shape[2])]
    z.backward(torch.tensor(error, dtype=torch.float64)[None, None])
    a = tuple(map(tuple, image))
    if kind == "conv":
        k = tuple(map(tuple, kernel))
        output = values.conv(a, k, geo)
        input_error, kernel_gradient, bias_gradient = values.conv_backward(a, k, tuple(map(tuple, error)), geo)
        torch.testing.assert_close(torch.tensor(kernel_gradient, dtype=torch.float64), w.grad[0, 0])
        assert bias_gradient == sum(map(sum, error))
    else:
        output = values.pool(a, geo)
        input_error = values.pool_backward(a, tuple(map(tuple, error)), geo)
    torch.testing.assert_close(torch.tensor(output, dtype=torch.float64), z[0, 0].detach())
    torch.testing.assert_close(torch.tensor(input_error, dtype=torch.float64), x.grad[0, 0])


def test_values_padding_is_zero_for_conv_and_average_and_never_the_maximum():
    a = ((-1.0, -2.0), (-3.0, -4.0))
    conv = values.geometry((Window("conv", 3, 1, 1), Window("conv", 3, 1, 1)), (2, 2))
    assert values.conv(a, ((1.0,) * 3,) * 3, conv) == ((-10.0,) * 2,) * 2
    pool = values.geometry((Window("max", 2, 1, 1), Window("max", 2, 1, 1)), (2, 2))
    assert values.pool(a, pool)[0][0] == -1.0  # the window holds three padding zeros and −1
