"""AlexNet as the lecture draws it (Krizhevsky et al. 2012, both GPU halves as one), on 227×227×3:

  conv 96 11×11/4 → 55×55×96 → max 3/2 → 27×27×96 → conv 256 5×5 same → max 3/2 → 13×13×256
  → conv 384 3×3 same → conv 384 3×3 same → conv 256 3×3 same → max 3/2 → 6×6×256 = 9216
  → fc 4096 → fc 4096 → fc 1000 (softmax in the loss): 62,378,344 parameters for 1000 classes.

ReLU after every conv and hidden fc, dropout before the two hidden fc layers as in the paper. The paper's
local response normalisation is left out, as the lecture does (it did not turn out to matter).
torchvision's AlexNet (the registry's "alexnet") is the later single-GPU variant with other widths.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from cnntool.models._stem import check_common


def alexnet_lecture(*, num_classes: int = 1000, in_channels: int = 3, dropout: float = 0.5) -> nn.Sequential:
    check_common(num_classes=num_classes, in_channels=in_channels)
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), not {dropout}")
    features = nn.Sequential(
        nn.Conv2d(in_channels, 96, kernel_size=11, stride=4), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(96, 256, kernel_size=5, padding="same"), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(256, 384, kernel_size=3, padding="same"), nn.ReLU(inplace=True),
        nn.Conv2d(384, 384, kernel_size=3, padding="same"), nn.ReLU(inplace=True),
        nn.Conv2d(384, 256, kernel_size=3, padding="same"), nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )
    classifier = nn.Sequential(
        nn.Flatten(),
        nn.Dropout(dropout), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
        nn.Dropout(dropout), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
        nn.Linear(4096, num_classes),
    )
    # Named like torchvision's AlexNet (features, classifier) so hooks and state dicts read alike.
    return nn.Sequential(OrderedDict(features=features, classifier=classifier))
