"""N-point landmark regression: the output is the lecture's l-vector (l_1x, l_1y, … l_Nx, l_Ny), relative
to the input frame (0..1).

A conv stack down to 1/4 resolution, dilated convs that widen the view to the whole image without
shrinking it further, then one heatmap per point whose soft-argmax (the softmax-weighted mean position)
is the point. The soft-argmax keeps the coordinates differentiable and sub-pixel, and spares a large
fully connected layer.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from cnntool.models._stem import check_common
from cnntool.models.localizer import conv_bn_relu, downsampling_stack


def soft_argmax(heatmaps: Tensor) -> Tensor:
    """(N, P, H, W) scores → (N, 2P) expected (x, y) per map, relative to the frame: pixel j's centre is
    (j + 0.5) / W."""
    n, p, h, w = heatmaps.shape
    weights = heatmaps.flatten(2).float().softmax(dim=2).view(n, p, h, w)
    xs = (torch.arange(w, device=heatmaps.device, dtype=weights.dtype) + 0.5) / w
    ys = (torch.arange(h, device=heatmaps.device, dtype=weights.dtype) + 0.5) / h
    x = (weights.sum(dim=2) * xs).sum(dim=2)
    y = (weights.sum(dim=3) * ys).sum(dim=2)
    return torch.stack([x, y], dim=2).flatten(1)


class Landmarker(nn.Module):
    def __init__(self, *, num_points: int, in_channels: int, widths: Sequence[int], dilations: Sequence[int]) -> None:
        super().__init__()
        layers = downsampling_stack(in_channels, widths)
        for d in dilations:
            layers += conv_bn_relu(widths[-1], widths[-1], dilation=d)
        self.features = nn.Sequential(*layers)
        self.heatmaps = nn.Conv2d(widths[-1], num_points, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        return soft_argmax(self.heatmaps(self.features(x)))


def landmarker(*, num_points: int = 4, in_channels: int = 3, widths: Sequence[int] = (16, 32),
               dilations: Sequence[int] = (2, 4, 8, 1)) -> nn.Module:
    if num_points < 1:
        raise ValueError(f"num_points must be at least 1, not {num_points}")
    check_common(num_classes=num_points, in_channels=in_channels)
    return Landmarker(num_points=num_points, in_channels=in_channels, widths=tuple(widths), dilations=tuple(dilations))
