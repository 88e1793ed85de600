"""The lecture's blocks against hand-computed and directly computed references."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from cnntool.models.blocks import Dropout, L2Pool2d, LocalContrastNorm, ReLU


def test_l2_pool_on_a_hand_computed_example():
    x = torch.tensor([[1.0, 1, 2, 2],
                      [1.0, 1, 2, 2],
                      [3.0, 4, 1, 1],
                      [0.0, 0, 3, 5]])[None, None]
    # √(¼·(1+1+1+1)) = 1, √(¼·4·4) = 2, √(¼·(9+16)) = 2.5, √(¼·(1+1+9+25)) = 3
    expected = torch.tensor([[1.0, 2.0], [2.5, 3.0]])
    torch.testing.assert_close(L2Pool2d(2)(x)[0, 0], expected)


@pytest.mark.parametrize("kernel, stride, ceil_mode", [(2, None, False), (3, 2, False), (3, 2, True)])
def test_l2_pool_is_lp_pool_divided_by_the_window_side(kernel, stride, ceil_mode):
    torch.manual_seed(0)
    x = torch.randn(2, 3, 11, 9)  # negative values too: only their squares count
    ours = L2Pool2d(kernel, stride, ceil_mode=ceil_mode)(x)
    reference = nn.LPPool2d(2, kernel, stride, ceil_mode=ceil_mode)(x) / kernel
    torch.testing.assert_close(ours, reference)


def test_l2_pool_gradient_is_finite_on_zeros():
    x = torch.zeros(1, 1, 4, 4, requires_grad=True)
    L2Pool2d(2)(x).sum().backward()
    assert torch.isfinite(x.grad).all()


def test_l2_pool_shape_agrees_with_layerspec():
    layerspec = pytest.importorskip("cnntool.shapecalc.layers")
    out = L2Pool2d(3, 2, padding=1, ceil_mode=True)(torch.zeros(1, 4, 10, 7))
    assert layerspec.describe("l2pool3s2p1c", (4, 10, 7)).output_shape == tuple(out.shape[1:])


def lcn_reference(x: np.ndarray, size: int, sigma: float) -> np.ndarray:
    """The docstring's formulas, pixel by pixel, for one image (C, H, W); the window is cut at the
    borders and renormalised."""
    c, h, w = x.shape
    r = size // 2
    offsets = np.arange(-r, r + 1)
    g = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sigma**2))
    g /= g.sum()

    def local_mean(a):
        out = np.zeros((h, w))
        for j in range(h):
            for k in range(w):
                total = weight = 0.0
                for p in offsets:
                    for q in offsets:
                        if 0 <= j + p < h and 0 <= k + q < w:
                            total += sum(g[p + r, q + r] / c * a[ch, j + p, k + q] for ch in range(c))
                            weight += g[p + r, q + r]
                out[j, k] = total / weight
        return out

    v = x - local_mean(x)
    sigma_map = np.sqrt(local_mean(v**2))
    return v / np.maximum(np.maximum(sigma_map, sigma_map.mean()), 1e-4)


def test_local_contrast_norm_matches_the_formulas():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 7, 8)) * rng.uniform(0.5, 3, size=(2, 1, 1, 1)) + 4
    ours = LocalContrastNorm(size=5, sigma=1.5)(torch.tensor(x, dtype=torch.float32)).numpy()
    for i in range(len(x)):
        np.testing.assert_allclose(ours[i], lcn_reference(x[i], 5, 1.5), rtol=1e-4, atol=1e-5)


def test_local_contrast_norm_keeps_a_flat_image_flat():
    x = torch.full((1, 1, 12, 12), 3.0, requires_grad=True)
    out = LocalContrastNorm()(x)
    assert out.abs().max() < 1e-2  # float rounding of the local mean, not amplified
    out.sum().backward()
    assert torch.isfinite(x.grad).all()


def test_local_contrast_norm_is_shape_preserving_and_follows_the_device_dtype():
    out = LocalContrastNorm(size=3, sigma=1.0).double()(torch.randn(2, 4, 5, 6, dtype=torch.float64))
    assert out.shape == (2, 4, 5, 6) and out.dtype == torch.float64


@pytest.mark.parametrize("size, sigma", [(4, 1.0), (0, 1.0), (5, 0.0)])
def test_local_contrast_norm_rejects_bad_windows(size, sigma):
    with pytest.raises(ValueError):
        LocalContrastNorm(size=size, sigma=sigma)


def test_gaussian_window_sums_to_one_and_is_symmetric():
    from cnntool.models.blocks import gaussian_window

    w = gaussian_window(7, 2.0)
    assert math.isclose(w.sum().item(), 1.0) and torch.equal(w, w.T) and torch.equal(w, w.flip(0))


def test_dropout_and_relu_are_torchs_own():
    assert Dropout is nn.Dropout and ReLU is nn.ReLU
