"""VGG-11 and VGG-16 (Simonyan & Zisserman 2014): stacks of conv 3×3 s1 "same" + max-pool 2×2 s2, as
torchvision builds them."""

from __future__ import annotations

import torchvision
from torch import nn

from cnntool.models._stem import check_common, replace_conv


def _adapt(model: nn.Module, *, in_channels: int, small_input: bool) -> nn.Module:
    if in_channels != 3:
        model.features[0] = replace_conv(model.features[0], in_channels=in_channels)
    if small_input:
        # Five halvings leave nothing of a 28×28 image; dropping the first pool keeps 1×1 at the end.
        # Identity (not deletion) keeps torchvision's module indices, so its state dicts still load.
        first_pool = next(i for i, m in enumerate(model.features) if isinstance(m, nn.MaxPool2d))
        model.features[first_pool] = nn.Identity()
    return model


def vgg11(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
          batch_norm: bool = False, dropout: float = 0.5) -> nn.Module:
    """torchvision's VGG-11 (or VGG-11-BN). `small_input=True` drops the first max-pool so 28×28 inputs
    still reach the classifier; `in_channels` replaces the first conv."""
    check_common(num_classes=num_classes, in_channels=in_channels)
    build = torchvision.models.vgg11_bn if batch_norm else torchvision.models.vgg11
    return _adapt(build(weights=None, num_classes=num_classes, dropout=dropout), in_channels=in_channels, small_input=small_input)


def vgg16(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False,
          batch_norm: bool = False, dropout: float = 0.5) -> nn.Module:
    """torchvision's VGG-16 (or VGG-16-BN); options as for vgg11."""
    check_common(num_classes=num_classes, in_channels=in_channels)
    build = torchvision.models.vgg16_bn if batch_norm else torchvision.models.vgg16
    return _adapt(build(weights=None, num_classes=num_classes, dropout=dropout), in_channels=in_channels, small_input=small_input)
