"""AlexNet (Krizhevsky et al. 2012) as torchvision builds it (the single-GPU "one weird trick" variant)."""

from __future__ import annotations

import torchvision
from torch import nn

from cnntool.models._stem import check_common, replace_conv


def alexnet(*, num_classes: int = 1000, in_channels: int = 3, small_input: bool = False, dropout: float = 0.5) -> nn.Module:
    """torchvision's AlexNet. `small_input=True` swaps the 11×11 stride-4 stem for a 3×3 stride-1 one so
    32×32 or 28×28 images survive the three max-pools; the adaptive pool then feeds the usual 6×6 to the
    classifier. With the stem unchanged, torchvision state dicts load."""
    check_common(num_classes=num_classes, in_channels=in_channels)
    model = torchvision.models.alexnet(weights=None, num_classes=num_classes, dropout=dropout)
    if small_input:
        model.features[0] = replace_conv(model.features[0], in_channels=in_channels, kernel_size=3, stride=1, padding=1)
    elif in_channels != 3:
        model.features[0] = replace_conv(model.features[0], in_channels=in_channels)
    return model
