"""The lecture's y-vector y = [p_c, b_x, b_y, b_h, b_w, c_1 … c_K] as a localizer's raw output encodes it: sigmoid
for p_c and the box (so the box stays in the frame), softmax for the classes. Imports torch only when called."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import torch

# A box reader (cnntool.models.reader) cuts a square of this side / the box's longer side around the box, and
# may have R-CNN's background class for "no object in this crop".
CONTEXT = 1.2  # crop side / the box's longer side
BACKGROUND = "background"  # the class for "no object in this crop" (R-CNN's background)


def background_index(reader_classes: Sequence[str], classes: Sequence[str]) -> int | None:
    """Where the reader's BACKGROUND class is (None: it has none) if its other classes are `classes` in order;
    ValueError otherwise."""
    reader_classes = list(reader_classes)
    index = reader_classes.index(BACKGROUND) if BACKGROUND in reader_classes else None
    if [c for c in reader_classes if c != BACKGROUND] != list(classes) or reader_classes.count(BACKGROUND) > 1:
        raise ValueError(f"the reader's classes {reader_classes} are not the localizer's {list(classes)} "
                         f"(and at most one {BACKGROUND})")
    return index


def interpret(z: "torch.Tensor") -> "torch.Tensor":
    """Raw network output (N, 5 + K) → ŷ = [p_c, b_x, b_y, b_h, b_w, class probabilities]."""
    import torch

    z = z.float()
    return torch.cat([z[:, :5].sigmoid(), z[:, 5:].softmax(dim=1)], dim=1)


def encode(y_hat: "torch.Tensor") -> "torch.Tensor":
    """ŷ → raw scores that `interpret` reads back as ŷ: how averaged predictions (test-time shifts, an
    ensemble's members) pass through decode and the metrics as one forward pass's output."""
    import torch

    eps = 1e-6
    return torch.cat([torch.logit(y_hat[:, :5].clamp(eps, 1 - eps)), y_hat[:, 5:].clamp_min(eps).log()], dim=1)
