"""Classification with localization (the lecture's y-vector): a VGG-style conv stack, then two heads
whose outputs are concatenated to y = [p_c, b_x, b_y, b_h, b_w, c_1 … c_K] as raw scores
(cnntool.tasks.localize turns them into probabilities and a box).

What and whether (p_c, classes) come from globally max-pooled features, so a digit is recognised the same
wherever it sits; where (the box) comes from the flattened feature map through fully connected layers,
which keeps the position. One flattened head for everything had to learn each class at every position
and learned the classes far more slowly on a CPU budget."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

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


class Localizer(nn.Module):
    def __init__(self, *, num_classes: int, in_channels: int, widths: Sequence[int], input_size: int,
                 hidden: int, dropout: float) -> None:
        super().__init__()
        cell = input_size // 2 ** len(widths)
        if cell < 1 or input_size % 2 ** len(widths):
            raise ValueError(f"input_size {input_size} must be a multiple of {2 ** len(widths)}")
        self.features = nn.Sequential(*downsampling_stack(in_channels, widths))
        self.what = nn.Sequential(nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Dropout(dropout),
                                  nn.Linear(widths[-1], 1 + num_classes))
        self.where = nn.Sequential(
            nn.Flatten(), nn.Linear(widths[-1] * cell * cell, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, 4),
        )

    def forward(self, x: Tensor) -> Tensor:
        f = self.features(x)
        what = self.what(f)
        return torch.cat([what[:, :1], self.where(f), what[:, 1:]], dim=1)


def localizer(*, num_classes: int = 10, in_channels: int = 3, widths: Sequence[int] = (16, 32, 64, 128),
              input_size: int = 64, hidden: int = 256, dropout: float = 0.1) -> nn.Module:
    check_common(num_classes=num_classes, in_channels=in_channels)
    return Localizer(num_classes=num_classes, in_channels=in_channels, widths=tuple(widths), input_size=input_size,
                     hidden=hidden, dropout=dropout)
