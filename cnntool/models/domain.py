"""The domain check a narrow model carries: is this input like the images the model was trained on?

DomainGate is a small CNN on the model's own input (the normalized tensor at its input size), one logit out:
high for images like the training data, low for anything else. It is trained apart from the model it guards
(cnntool.engine.domain: the model's training images against crops of real photos) and kept in the same
weights file under domain.*, with the logit threshold in the metadata's decode defaults. The model's own
outputs are untouched; an input below the threshold keeps its raw scores but gets no answer.
"""

from __future__ import annotations

import math

from torch import Tensor, nn

PREFIX = "domain."


def verdicts(logits: Tensor, threshold: float) -> list[tuple[bool, float]]:
    """Per image: (in the domain, the check's probability that it is), from the gate's logits."""
    return [(value >= threshold, 1 / (1 + math.exp(-value))) for value in logits.float().tolist()]


class DomainGate(nn.Module):
    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(in_channels, 16, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 1),
        )

    def forward(self, x: Tensor) -> Tensor:
        """(N,) logits: how much each input looks like the training images."""
        return self.net(x)[:, 0]
