"""The lecture's other building blocks as torch layers: L2 pooling and local contrast normalisation.
Dropout and ReLU are torch's own and re-exported so every block comes from one place."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn import Dropout, ReLU

__all__ = ["Dropout", "L2Pool2d", "LocalContrastNorm", "ReLU"]

# Keeps sqrt differentiable where a window (or a neighbourhood) is all zeros: its gradient is infinite at 0.
_EPS = 1e-12
# LCN's smallest divisor (torch7's and pylearn2's choice): in a flat region v is float rounding noise, which
# dividing by σ ≈ 0 would blow up to order one.
_MIN_DIVISOR = 1e-4


class L2Pool2d(nn.Module):
    """L2 pooling: y = √( 1/s² · Σ x² ) over each s×s window (the root mean square).

    torch's LPPool2d(2, s) computes √(Σ x²) without the 1/s², i.e. s times this. Zero padding counts
    towards the window, like average pooling with count_include_pad.
    """

    def __init__(self, kernel_size: int, stride: int | None = None, padding: int = 0, ceil_mode: bool = False) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding
        self.ceil_mode = ceil_mode

    def forward(self, x: Tensor) -> Tensor:
        mean_square = F.avg_pool2d(x * x, self.kernel_size, self.stride, self.padding, self.ceil_mode)
        return mean_square.clamp_min(_EPS).sqrt()

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, ceil_mode={self.ceil_mode}"


def gaussian_window(size: int, sigma: float) -> Tensor:
    """A size×size Gaussian, normalised to sum 1."""
    r = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(r * r) / (2 * sigma * sigma))
    w = torch.outer(g, g)
    return w / w.sum()


class LocalContrastNorm(nn.Module):
    """Local contrast normalisation (Jarrett et al. 2009), for input x of shape (N, C, H, W).

    With w a Gaussian window over channels and space, Σ_{c,p,q} w_pq = 1 (w_pq = g_pq / C):

      subtractive   v_{c,j,k} = x_{c,j,k} − Σ_{c',p,q} w_pq · x_{c', j+p, k+q}
      divisive      σ_{j,k}   = √( Σ_{c',p,q} w_pq · v²_{c', j+p, k+q} )
                    y_{c,j,k} = v_{c,j,k} / max(m, σ_{j,k}, 10⁻⁴),   m = mean over (j, k) of σ, per image

    At the borders the window is cut to the image and renormalised to sum 1 (a weighted mean of the
    pixels that exist, rather than of zeros). The 10⁻⁴ floor keeps flat regions near zero instead of
    amplifying rounding noise (or dividing by zero).
    """

    def __init__(self, size: int = 9, sigma: float = 2.0) -> None:
        super().__init__()
        if size < 1 or size % 2 == 0:
            raise ValueError(f"size must be a positive odd number, not {size}")
        if sigma <= 0:
            raise ValueError(f"sigma must be positive, not {sigma}")
        self.size = size
        self.sigma = sigma
        # A buffer, not a parameter: it follows .to(device) but is neither trained nor saved.
        self.register_buffer("window", gaussian_window(size, sigma).float()[None, None], persistent=False)

    def _local_mean(self, x: Tensor) -> Tensor:
        """Σ_{c,p,q} w_pq · x over the window, renormalised where it is cut by the border: (N, 1, H, W)."""
        w = self.window.to(x.dtype)
        pad = self.size // 2
        total = F.conv2d(x.mean(dim=1, keepdim=True), w, padding=pad)
        coverage = F.conv2d(torch.ones_like(x[:1, :1]), w, padding=pad)
        return total / coverage

    def forward(self, x: Tensor) -> Tensor:
        v = x - self._local_mean(x)
        sigma = self._local_mean(v * v).clamp_min(_EPS).sqrt()
        m = sigma.mean(dim=(2, 3), keepdim=True)
        return v / torch.maximum(sigma, m).clamp_min(_MIN_DIVISOR)

    def extra_repr(self) -> str:
        return f"size={self.size}, sigma={self.sigma}"
