"""The lecture's back-propagation through pooling and convolution layers, checked against torch autograd and
worked out by cnntool's shape-calc value calculator (`--input … --error …`).

- Pooling, a 4×4 input in 2×2 regions (stride 2), upstream error [[1, 3], [2, 4]]: average pooling gives each
  input of a region a quarter of its error (blocks of 0.25, 0.75, 0.5, 1); max pooling routes 1, 2, 3, 4 to each
  region's maximum and 0 elsewhere.
- Convolution, a 3×3 input P and a 2×2 kernel W (valid, stride 1), Q = conv(P, W): the input error is
  P_err = conv(Q_err, rot180(W), "full") and the kernel gradient dW = conv(P, Q_err).
- Two kernels on one input: the input error is the sum of each output channel's error sent back through its
  kernel, here [[−0.5, 0.4, 0.7], [0.3, 1.9, 1.9], [0.5, 1.5, 1.0]].
"""

import torch
import torch.nn.functional as F

UPSTREAM = [[1.0, 3.0], [2.0, 4.0]]
# Unique maxima, one in each 2×2 region, at a different place in each.
POOLED_INPUT = [[1.0, 5.0, 2.0, 0.0],
                [3.0, 2.0, 1.0, 7.0],
                [8.0, 1.0, 2.0, 1.0],
                [0.0, 4.0, 6.0, 3.0]]


def tensor(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)[None, None]


def matrix_text(rows) -> str:
    return "; ".join(" ".join(f"{v:g}" for v in row) for row in rows)


def input_gradient(layer, x_rows, upstream) -> torch.Tensor:
    x = tensor(x_rows).requires_grad_(True)
    layer(x).backward(tensor(upstream))
    return x.grad[0, 0]


# --- pooling ---------------------------------------------------------------------------------------------

def test_lecture_backprop_average_pooling_spreads_a_quarter_of_each_error():
    lecture = torch.tensor([[0.25, 0.25, 0.75, 0.75],
                            [0.25, 0.25, 0.75, 0.75],
                            [0.5, 0.5, 1.0, 1.0],
                            [0.5, 0.5, 1.0, 1.0]], dtype=torch.float64)
    torch.testing.assert_close(input_gradient(lambda x: F.avg_pool2d(x, 2), POOLED_INPUT, UPSTREAM), lecture,
                               rtol=0, atol=1e-6)


def test_lecture_backprop_max_pooling_routes_each_error_to_the_maximum():
    lecture = torch.tensor([[0.0, 1.0, 0.0, 0.0],
                            [0.0, 0.0, 0.0, 3.0],
                            [2.0, 0.0, 0.0, 0.0],
                            [0.0, 0.0, 4.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(input_gradient(lambda x: F.max_pool2d(x, 2), POOLED_INPUT, UPSTREAM), lecture,
                               rtol=0, atol=0)


def test_lecture_backprop_pooling_through_shape_calc(shape_calc):
    for pool in ("avg", "max"):
        answer = shape_calc("--input", matrix_text(POOLED_INPUT), "--pool", pool, "--f", "2",
                            "--error", matrix_text(UPSTREAM))
        layer = (lambda x: F.avg_pool2d(x, 2)) if pool == "avg" else (lambda x: F.max_pool2d(x, 2))
        expected = input_gradient(layer, POOLED_INPUT, UPSTREAM)
        torch.testing.assert_close(torch.tensor(answer["input_error"], dtype=torch.float64), expected,
                                   rtol=0, atol=1e-6)


# --- convolution -------------------------------------------------------------------------------------------

P = [[1.0, 2.0, 0.0], [-1.0, 3.0, 2.0], [4.0, 0.0, 1.0]]
W = [[1.0, -2.0], [0.5, 3.0]]
Q_ERR = [[0.5, -1.0], [2.0, 1.5]]


def autograd_conv(p_rows, kernels, errors) -> tuple[torch.Tensor, torch.Tensor]:
    """∂L/∂P and ∂L/∂W of Q = conv(P, W) (one input channel, one output channel per kernel) for Q's error."""
    p = tensor(p_rows).requires_grad_(True)
    w = torch.tensor(kernels, dtype=torch.float64)[:, None].requires_grad_(True)
    F.conv2d(p, w).backward(torch.tensor(errors, dtype=torch.float64)[None])
    return p.grad[0, 0], w.grad[:, 0]


def test_lecture_backprop_conv_input_error_is_full_conv_with_rot180_kernel():
    p_err, _ = autograd_conv(P, [W], [Q_ERR])
    rot180 = torch.flip(tensor(W), dims=(2, 3))
    full = F.conv2d(F.pad(tensor(Q_ERR), (1, 1, 1, 1)), rot180)[0, 0]  # "full": every overlap of the two
    torch.testing.assert_close(full, p_err, rtol=0, atol=1e-6)


def test_lecture_backprop_conv_kernel_gradient_is_conv_of_input_with_error():
    _, w_grad = autograd_conv(P, [W], [Q_ERR])
    torch.testing.assert_close(F.conv2d(tensor(P), tensor(Q_ERR))[0, 0], w_grad[0], rtol=0, atol=1e-6)


def test_lecture_backprop_conv_through_shape_calc(shape_calc):
    answer = shape_calc("--input", matrix_text(P), "--kernel", matrix_text(W), "--error", matrix_text(Q_ERR))
    p_err, w_grad = autograd_conv(P, [W], [Q_ERR])
    torch.testing.assert_close(torch.tensor(answer["input_error"], dtype=torch.float64), p_err, rtol=0, atol=1e-6)
    torch.testing.assert_close(torch.tensor(answer["kernel_gradient"], dtype=torch.float64), w_grad[0],
                               rtol=0, atol=1e-6)
    assert answer["bias_gradient"] == sum(map(sum, Q_ERR))


def test_lecture_backprop_conv_rule_is_named_in_the_text(shape_calc):
    text = shape_calc("--input", matrix_text(P), "--kernel", matrix_text(W), "--error", matrix_text(Q_ERR), text=True)
    assert 'input error ∂L/∂A = conv(∂L/∂Z, rot180(W), full):' in text


# --- two kernels -------------------------------------------------------------------------------------------

LECTURE_SUM = [[-0.5, 0.4, 0.7], [0.3, 1.9, 1.9], [0.5, 1.5, 1.0]]
# Reconstructed operands: the lecture states the summed input error but its kernels and errors are not given
# here. A 2×2 error sent back through a 2×2 kernel is the product of two polynomials in x (columns) and y (rows),
# so kernel 2 and its error were solved for the sum's x², y², x²y, xy², x²y² terms (0.7, 0.5, 1.9, 1.5, 1.0) and
# kernel 1 (a single tap at the top left) carries the rest of the top-left 2×2 block as its error.
KERNEL_1, ERROR_1 = [[1.0, 0.0], [0.0, 0.0]], [[-0.5, 0.4], [0.3, 0.25]]
KERNEL_2, ERROR_2 = [[0.0, 0.5], [1.0, 1.0]], [[0.0, 1.4], [0.5, 1.0]]


def test_lecture_backprop_two_kernels_sum_their_input_errors():
    """The operands were reconstructed to give the lecture's stated sum (see KERNEL_1 … ERROR_2)."""
    p_err, _ = autograd_conv(P, [KERNEL_1, KERNEL_2], [ERROR_1, ERROR_2])
    torch.testing.assert_close(p_err, torch.tensor(LECTURE_SUM, dtype=torch.float64), rtol=0, atol=1e-6)


def test_lecture_backprop_two_kernels_through_shape_calc(shape_calc):
    """The same reconstructed operands, one kernel at a time through shape-calc, the two input errors added."""
    total = torch.zeros(3, 3, dtype=torch.float64)
    for kernel, error in ((KERNEL_1, ERROR_1), (KERNEL_2, ERROR_2)):
        answer = shape_calc("--input", matrix_text(P), "--kernel", matrix_text(kernel), "--error", matrix_text(error))
        total += torch.tensor(answer["input_error"], dtype=torch.float64)
    torch.testing.assert_close(total, torch.tensor(LECTURE_SUM, dtype=torch.float64), rtol=0, atol=1e-6)
