"""Residual networks (He et al. 2015): a[l+2] = g(z[l+2] + a[l]).

resnet18/34/50 are torchvision's; `resnet_small` is a width/depth-parametric variant built from
torchvision's BasicBlock for small grey images (Fashion-MNIST on a CPU).
"""

from __future__ import annotations

from collections.abc import Sequence

import torchvision
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock

from cnntool.models._stem import check_common, replace_conv
from cnntool.models.blocks import LocalContrastNorm


def _adapt(model: torchvision.models.ResNet, *, in_channels: int, small_input: bool) -> nn.Module:
    if small_input:
        # The CIFAR-style stem: 3×3 stride 1 and no max-pool, so a 28×28 image is 4×4 before pooling.
        model.conv1 = replace_conv(model.conv1, in_channels=in_channels, kernel_size=3, stride=1, padding=1)
        model.maxpool = nn.Identity()
    elif in_channels != 3:
        model.conv1 = replace_conv(model.conv1, in_channels=in_channels)
    return model


def resnet18(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False) -> nn.Module:
    check_common(num_classes=num_classes, in_channels=in_channels)
    return _adapt(torchvision.models.resnet18(weights=None, num_classes=num_classes), in_channels=in_channels, small_input=small_input)


def resnet34(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False) -> nn.Module:
    check_common(num_classes=num_classes, in_channels=in_channels)
    return _adapt(torchvision.models.resnet34(weights=None, num_classes=num_classes), in_channels=in_channels, small_input=small_input)


def resnet50(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False) -> nn.Module:
    check_common(num_classes=num_classes, in_channels=in_channels)
    return _adapt(torchvision.models.resnet50(weights=None, num_classes=num_classes), in_channels=in_channels, small_input=small_input)


class SmallResNet(nn.Module):
    """conv3-bn-relu stem → stages of BasicBlocks (each stage after the first halves the size and changes
    width through a 1×1 conv shortcut) → global average pool → dropout → fc. Module names follow
    torchvision's ResNet (conv1, bn1, layer1…, fc). With `lcn`, local contrast normalisation comes first, so
    a faint object and a strong one reach the stem alike; it has no parameters, so the state dict is unchanged."""

    def __init__(self, *, widths: Sequence[int], blocks: Sequence[int], num_classes: int, in_channels: int, dropout: float,
                 lcn: bool = False) -> None:
        super().__init__()
        if not widths or len(widths) != len(blocks):
            raise ValueError("widths and blocks need one entry per stage")
        if min(widths) < 1 or min(blocks) < 1:
            raise ValueError("every stage needs a positive width and at least one block")
        self.lcn = LocalContrastNorm() if lcn else None
        self.conv1 = nn.Conv2d(in_channels, widths[0], kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.stages = len(widths)
        planes_in = widths[0]
        for i, (width, depth) in enumerate(zip(widths, blocks)):
            stride = 1 if i == 0 else 2
            downsample = None
            if stride != 1 or planes_in != width:
                downsample = nn.Sequential(
                    nn.Conv2d(planes_in, width, kernel_size=1, stride=stride, bias=False), nn.BatchNorm2d(width)
                )
            layer = [BasicBlock(planes_in, width, stride, downsample)]
            layer += [BasicBlock(width, width) for _ in range(depth - 1)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
            planes_in = width
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc = nn.Linear(planes_in, num_classes)
        for m in self.modules():  # torchvision's ResNet initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        if self.lcn is not None:
            x = self.lcn(x)
        x = self.relu(self.bn1(self.conv1(x)))
        for i in range(self.stages):
            x = getattr(self, f"layer{i + 1}")(x)
        x = self.avgpool(x).flatten(1)
        return self.fc(self.dropout(x))


def resnet_small(
    *,
    widths: Sequence[int] = (32, 64, 128),
    blocks: Sequence[int] = (2, 2, 2),
    num_classes: int = 10,
    in_channels: int = 1,
    dropout: float = 0.0,
    lcn: bool = False,
) -> nn.Module:
    check_common(num_classes=num_classes, in_channels=in_channels)
    return SmallResNet(widths=tuple(widths), blocks=tuple(blocks), num_classes=num_classes, in_channels=in_channels,
                       dropout=dropout, lcn=lcn)
