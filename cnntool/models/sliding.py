"""Sliding-window detection, the lecture's two ways, with ONE trained window classifier.

WindowClassifier: a small CNN on 32×32 windows (closely cropped objects + background, K + 1 classes).
Its convolutions and pools are unpadded ("valid"), so a window's features depend on its pixels only;
that is what lets the same weights score every window of a whole image at once:

  windowed       crop every 32×32 window at stride 4 (the network's total pooling stride) and classify
                 each crop separately;
  convolutional  the fc layers become convolutions — fc1 (64·4·4 → 128) a 4×4 conv, fc2 a 1×1 conv, their
                 weights reshaped, not retrained — and one forward pass over the image gives a map whose
                 (i, j) is exactly window (4i, 4j)'s logits.

SlidingWindows runs either over an image pyramid (so objects of other sizes fit the window) and returns,
like every detector of the registry, one {"boxes", "scores", "labels"} dict per image in input pixels:
the window (less the crop margin the classifier was trained with), the best non-background class and
its probability.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

WINDOW = 32
STRIDE = 4  # two 2×2 max-pools: windows at multiples of 4 share their pooling grid with the whole image
_FEATURES = 64 * 4 * 4  # the last feature map of a 32×32 window


class WindowClassifier(nn.Module):
    def __init__(self, *, num_classes: int = 11, in_channels: int = 3) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, 16, 5), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # 32 → 28 → 14
            nn.Conv2d(16, 32, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2),  # → 12 → 6
            nn.Conv2d(32, 64, 3), nn.ReLU(inplace=True),  # → 4
        )
        self.fc1 = nn.Linear(_FEATURES, 128)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(F.relu(self.fc1(self.features(x).flatten(1))))


class ConvWindowScorer(nn.Module):
    """The classifier with fc1/fc2 as a 4×4 and a 1×1 convolution: logits for every window at once."""

    def __init__(self, classifier: WindowClassifier) -> None:
        super().__init__()
        self.features = classifier.features
        hidden, classes = classifier.fc1.out_features, classifier.fc2.out_features
        self.fc1 = nn.Conv2d(64, hidden, 4)
        self.fc2 = nn.Conv2d(hidden, classes, 1)
        with torch.no_grad():
            # flatten(1) ordered the features (channel, row, column): the same order as a conv kernel's.
            self.fc1.weight.copy_(classifier.fc1.weight.view(hidden, 64, 4, 4))
            self.fc1.bias.copy_(classifier.fc1.bias)
            self.fc2.weight.copy_(classifier.fc2.weight.view(classes, hidden, 1, 1))
            self.fc2.bias.copy_(classifier.fc2.bias)

    def forward(self, x: Tensor) -> Tensor:
        """(N, C, H, W) → (N, K, (H − 32) // 4 + 1, (W − 32) // 4 + 1)."""
        return self.fc2(F.relu(self.fc1(self.features(x))))


def windowed_logits(classifier: WindowClassifier, x: Tensor, *, chunk: int = 1024) -> Tensor:
    """The same map as ConvWindowScorer, one crop at a time (in chunks of crops per forward)."""
    n, c, _, _ = x.shape
    patches = x.unfold(2, WINDOW, STRIDE).unfold(3, WINDOW, STRIDE)  # (N, C, h, w, 32, 32)
    h, w = patches.shape[2:4]
    crops = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c, WINDOW, WINDOW)
    logits = torch.cat([classifier(part) for part in crops.split(chunk)])
    return logits.view(n, h, w, -1).permute(0, 3, 1, 2)


class SlidingWindows(nn.Module):
    def __init__(self, classifier: WindowClassifier, *, background: int, convolutional: bool,
                 scales: Sequence[float] = (1.15, 0.95, 0.8, 0.67, 0.56), margin: float = 0.1) -> None:
        super().__init__()
        self.classifier = classifier
        self.scorer = ConvWindowScorer(classifier) if convolutional else None
        self.background = background
        self.scales = tuple(scales)
        # Crops were the object's longer side plus `margin` on each side: the object fills the middle.
        self.inset = WINDOW * margin / (1 + 2 * margin)

    def level_logits(self, level: Tensor) -> Tensor:
        return self.scorer(level) if self.scorer is not None else windowed_logits(self.classifier, level)

    def forward(self, x: Tensor) -> list[dict[str, Tensor]]:
        per_level = []
        for scale in self.scales:
            size = (round(x.shape[2] * scale), round(x.shape[3] * scale))
            if min(size) < WINDOW:
                continue
            level = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=scale < 1)
            probs = self.level_logits(level).softmax(1)
            probs[:, self.background] = 0
            scores, labels = probs.max(1)  # (N, h, w)
            h, w = scores.shape[1:]
            ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
            x1, y1 = (xs * STRIDE + self.inset).flatten(), (ys * STRIDE + self.inset).flatten()
            side = WINDOW - 2 * self.inset
            boxes = torch.stack([x1, y1, x1 + side, y1 + side], 1).float() / scale
            per_level.append((boxes, scores.flatten(1), labels.flatten(1)))
        return [{"boxes": torch.cat([b for b, _, _ in per_level]),
                 "scores": torch.cat([s[k] for _, s, _ in per_level]),
                 "labels": torch.cat([l[k] for _, _, l in per_level])} for k in range(len(x))]


def window_classifier(*, num_classes: int = 11, in_channels: int = 3) -> WindowClassifier:
    return WindowClassifier(num_classes=num_classes, in_channels=in_channels)


def sliding_windows(*, classifier: tuple[nn.Module, Sequence[str]], convolutional: bool,
                    scales: Sequence[float] = (1.15, 0.95, 0.8, 0.67, 0.56)) -> SlidingWindows:
    """A detector from a trained window classifier, given as (module, class names) by the loader; its
    "background" class is the one never reported."""
    module, classes = classifier
    if "background" not in classes:
        raise ValueError("a window classifier needs a 'background' class")
    return SlidingWindows(module, background=list(classes).index("background"), convolutional=convolutional,
                          scales=scales)
