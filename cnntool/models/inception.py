"""GoogLeNet / Inception-v1 (Szegedy et al. 2014) as torchvision builds it.

`Inception` is torchvision's module: 1×1 | 1×1→3×3 | 1×1→"5×5" | max3×3→1×1, concatenated on channels.
Note that torchvision's "5×5" branch is really a 3×3 conv (kept for its pretrained weights); the catalog's
layer description follows the code, not the paper.
"""

from __future__ import annotations

import torchvision
from torch import nn
from torchvision.models.googlenet import GoogLeNet, Inception

from cnntool.models._stem import check_common, replace_conv

__all__ = ["GoogLeNet", "Inception", "googlenet"]


def googlenet(
    *,
    num_classes: int = 1000,
    in_channels: int = 3,
    small_input: bool = False,
    aux_logits: bool = False,
    transform_input: bool = False,
    dropout: float = 0.2,
) -> nn.Module:
    """torchvision's GoogLeNet without the auxiliary classifiers by default. `transform_input=True` is
    what torchvision's ImageNet weights expect (it maps ImageNet-normalised input to their [-1, 1]
    normalisation); it needs 3 channels. `small_input=True`: 3×3 stride-1 stem, no first max-pool."""
    check_common(num_classes=num_classes, in_channels=in_channels)
    if transform_input and in_channels != 3:
        raise ValueError("transform_input re-normalises 3-channel ImageNet input; pass transform_input=False")
    model = torchvision.models.googlenet(
        weights=None, num_classes=num_classes, aux_logits=aux_logits, transform_input=transform_input,
        init_weights=True, dropout=dropout,
    )
    if small_input:
        model.conv1.conv = replace_conv(model.conv1.conv, in_channels=in_channels, kernel_size=3, stride=1, padding=1)
        model.maxpool1 = nn.Identity()
    elif in_channels != 3:
        model.conv1.conv = replace_conv(model.conv1.conv, in_channels=in_channels)
    return model
