"""LeNet-5 (LeCun et al. 1998) in the lecture's simplified form: full C3 connections, a linear output
layer instead of the RBF units.

32×32×1 → conv5-6 → pool2 → conv5-16 → pool2 → fc120 → fc84 → fc(num_classes); 61,706 parameters for 10
classes. `activation="tanh", pool="avg"` is the paper's choice, `"relu"/"max"` the modern one.
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from cnntool.models._stem import check_common

_ACTIVATIONS = {"tanh": nn.Tanh, "relu": nn.ReLU}
_POOLS = {"avg": nn.AvgPool2d, "max": nn.MaxPool2d}


def _feature_side(side: int) -> int:
    """Spatial side after conv5 → pool2 → conv5 → pool2 (valid convs, floor pooling)."""
    for _ in range(2):
        side = (side - 4) // 2
    if side < 1:
        raise ValueError("LeNet-5 needs inputs of at least 16×16 pixels")
    return side


def lenet5(
    *,
    num_classes: int = 10,
    in_channels: int = 1,
    activation: str = "tanh",
    pool: str = "avg",
    input_size: tuple[int, int] | int = (32, 32),
    dropout: float = 0.0,
) -> nn.Sequential:
    """LeNet-5 for `input_size` (H, W) images; the first fc layer is sized from it (16·5·5 = 400 at 32×32).
    `dropout` > 0 adds dropout after each hidden fc layer (as AlexNet does); at 0 the module
    list, and so the state-dict keys, are the plain LeNet-5's."""
    check_common(num_classes=num_classes, in_channels=in_channels)
    if activation not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(_ACTIVATIONS)}, not {activation!r}")
    if pool not in _POOLS:
        raise ValueError(f"pool must be one of {', '.join(_POOLS)}, not {pool!r}")
    h, w = (input_size, input_size) if isinstance(input_size, int) else input_size
    act, pooling = _ACTIVATIONS[activation], _POOLS[pool]
    features = nn.Sequential(
        nn.Conv2d(in_channels, 6, kernel_size=5), act(), pooling(2),
        nn.Conv2d(6, 16, kernel_size=5), act(), pooling(2),
    )
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), not {dropout}")
    drop = [nn.Dropout(dropout)] if dropout else []
    classifier = nn.Sequential(
        nn.Flatten(),
        nn.Linear(16 * _feature_side(h) * _feature_side(w), 120), act(), *drop,
        nn.Linear(120, 84), act(), *drop,
        nn.Linear(84, num_classes),
    )
    # Named like torchvision's AlexNet/VGG (features, classifier) so hooks and state dicts read alike.
    return nn.Sequential(OrderedDict(features=features, classifier=classifier))
