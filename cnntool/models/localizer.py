"""Classification with localization (the lecture's y-vector): a VGG-style conv stack, then two heads
whose outputs are concatenated to y = [p_c, b_x, b_y, b_h, b_w, c_1 … c_K] as raw scores
(cnntool.models.yvector turns them into probabilities and a box).

What and whether (p_c, classes) come from globally max-pooled features, so a digit is recognised the same
wherever it sits; where (the box) comes from the flattened feature map through fully connected layers,
which keeps the position. One flattened head for everything had to learn each class at every position
and learned the classes far more slowly on a CPU budget.

With `refine` > 0 the net takes a second look, as R-CNN does: `CropRefiner` cuts the first stage's box out
of the input and scores the crop again (see there)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torchvision.ops import roi_align

from cnntool.models._stem import check_common


def conv_bn_relu(cin: int, cout: int, *, kernel: int = 3, stride: int = 1, dilation: int = 1) -> list[nn.Module]:
    padding = dilation * (kernel // 2)
    return [nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, dilation=dilation, bias=False),
            nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


def downsampling_stack(in_channels: int, widths: Sequence[int]) -> list[nn.Module]:
    """A 5×5 stride-2 stem, then per width a stride-2 3×3 conv and a 3×3 conv: the input shrinks by
    2^len(widths). Striding instead of pooling keeps it cheap enough to train on a CPU."""
    layers = conv_bn_relu(in_channels, widths[0], kernel=5, stride=2)
    for cin, cout in zip(widths[:-1], widths[1:]):
        layers += conv_bn_relu(cin, cout, stride=2) + conv_bn_relu(cout, cout)
    return layers


class CropRefiner(nn.Module):
    """The second stage. The first stage's box, widened by `context` on each side, is resampled out of the
    input with RoIAlign to crop×crop pixels, so the object fills the crop whatever its size in the scene,
    and a small conv net (widths width, 2·width, 4·width) reads it again. It emits corrections: added to
    the first stage's p_c and class scores, and a Fast R-CNN-style box delta (centre shift in units of the
    crop, log-scale of height and width). The last layer starts at zero, so an untrained refiner changes
    nothing. The crop is cut at the detached box (RoIAlign has no gradient for box coordinates); the first
    stage's box still learns through the refined box, which is built from it."""

    def __init__(self, *, in_channels: int, num_classes: int, width: int, crop: int, context: float) -> None:
        super().__init__()
        self.crop, self.context = crop, context
        w = width
        self.net = nn.Sequential(
            *conv_bn_relu(in_channels, w), *conv_bn_relu(w, 2 * w, stride=2), *conv_bn_relu(2 * w, 2 * w),
            *conv_bn_relu(2 * w, 4 * w, stride=2), *conv_bn_relu(4 * w, 4 * w),
            nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(4 * w, 5 + num_classes),
        )
        nn.init.zeros_(self.net[-1].weight)
        nn.init.zeros_(self.net[-1].bias)

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        height, width = x.shape[-2:]
        box = z[:, 1:5].sigmoid()  # centre x, centre y, height, width; relative to the frame
        bx, by, bh, bw = box.unbind(1)
        cut = box.detach()
        half_w, half_h = cut[:, 3] * self.context * width / 2, cut[:, 2] * self.context * height / 2
        cx, cy = cut[:, 0] * width, cut[:, 1] * height
        rois = torch.stack([torch.arange(len(x), dtype=x.dtype, device=x.device),
                            cx - half_w, cy - half_h, cx + half_w, cy + half_h], dim=1)
        d = self.net(roi_align(x, rois.to(x.dtype), self.crop, sampling_ratio=2, aligned=True)).float()
        refined = torch.stack([bx + d[:, 1] * bw * self.context, by + d[:, 2] * bh * self.context,
                               bh * d[:, 3].exp(), bw * d[:, 4].exp()], dim=1)
        box_logit = torch.logit(refined.clamp(1e-4, 1 - 1e-4))
        return torch.cat([z[:, :1] + d[:, :1], box_logit, z[:, 5:] + d[:, 5:]], dim=1)


class Localizer(nn.Module):
    def __init__(self, *, num_classes: int, in_channels: int, widths: Sequence[int], input_size: int,
                 hidden: int, dropout: float, refine: int = 0, crop: int = 32, context: float = 1.25,
                 downsample: int = 1) -> None:
        super().__init__()
        self.downsample = downsample
        first_size = input_size // downsample
        cell = first_size // 2 ** len(widths)
        if cell < 1 or first_size % 2 ** len(widths) or input_size % downsample:
            raise ValueError(f"input_size {input_size} must be a multiple of {downsample * 2 ** len(widths)}")
        self.features = nn.Sequential(*downsampling_stack(in_channels, widths))
        self.what = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(widths[-1], 1 + num_classes))
        self.where = nn.Sequential(
            nn.Flatten(), nn.Linear(widths[-1] * cell * cell, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, 4),
        )
        self.refiner = (CropRefiner(in_channels=in_channels, num_classes=num_classes, width=refine, crop=crop,
                                    context=context) if refine else None)

    def forward(self, x: Tensor) -> Tensor:
        f = self.features(nn.functional.avg_pool2d(x, self.downsample) if self.downsample > 1 else x)
        what = self.what(f)
        z = torch.cat([what[:, :1], self.where(f), what[:, 1:]], dim=1)
        return z if self.refiner is None else self.refiner(x, z)


def localizer(*, num_classes: int = 10, in_channels: int = 3, widths: Sequence[int] = (16, 32, 64, 128),
              input_size: int = 64, hidden: int = 256, dropout: float = 0.1, refine: int = 0, crop: int = 32,
              context: float = 1.25, downsample: int = 1) -> nn.Module:
    """`refine`: width of the second-look stage (0: none); `crop`: its input side in pixels; `context`: how
    much wider than the first stage's box it cuts; `downsample`: the first stage reads the input shrunk
    by this factor (area average) while the refiner cuts its crop from the full-resolution input."""
    check_common(num_classes=num_classes, in_channels=in_channels)
    if refine < 0 or crop < 4 or context < 1 or downsample < 1:
        raise ValueError("refine must be ≥ 0, crop ≥ 4, context ≥ 1 and downsample ≥ 1")
    return Localizer(num_classes=num_classes, in_channels=in_channels, widths=tuple(widths), input_size=input_size,
                     hidden=hidden, dropout=dropout, refine=refine, crop=crop, context=context, downsample=downsample)
