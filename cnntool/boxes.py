"""Box geometry shared by every task: boxes are [x1, y1, x2, y2] (torchvision's convention) unless a name
says otherwise. Plain sequences for the data generators; tensors (torch imported when called) for metrics."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import torch


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Intersection over union of two boxes (0 when either is empty)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def iou_pairs(a: "torch.Tensor", b: "torch.Tensor") -> "torch.Tensor":
    """IoU of a[i] with b[i], row by row, for (N, 4) boxes."""
    wh = (a[:, 2:].minimum(b[:, 2:]) - a[:, :2].maximum(b[:, :2])).clamp_min(0)
    inter = wh[:, 0] * wh[:, 1]
    union = area(a) + area(b) - inter
    return inter / union.clamp_min(1e-12)


def area(boxes: "torch.Tensor") -> "torch.Tensor":
    return (boxes[:, 2] - boxes[:, 0]).clamp_min(0) * (boxes[:, 3] - boxes[:, 1]).clamp_min(0)


def cxcyhw_to_xyxy(b: "torch.Tensor") -> "torch.Tensor":
    """[b_x, b_y, b_h, b_w] (the lecture's centre, height, width) → [x1, y1, x2, y2], same units."""
    import torch

    bx, by, bh, bw = b.unbind(-1)
    return torch.stack([bx - bw / 2, by - bh / 2, bx + bw / 2, by + bh / 2], dim=-1)


def class_nms(boxes: "torch.Tensor", scores: "torch.Tensor", labels: "torch.Tensor", threshold: float) -> "torch.Tensor":
    """Greedy non-maximum suppression within each class (torchvision's batched_nms, without importing
    torchvision: the face detector's path needs nothing else of it). Indices kept, best score first. Each
    kept box is compared with the boxes after it only, in numpy: thousands of candidates at evaluation's conf
    cost milliseconds."""
    import numpy as np
    import torch

    order = scores.argsort(descending=True)
    b = boxes[order].numpy().astype(np.float32)
    lab = labels[order].numpy()
    areas = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    suppressed = np.zeros(len(b), dtype=bool)
    keep = []
    for i in range(len(b)):
        if suppressed[i]:
            continue
        keep.append(i)
        rest = b[i + 1:]
        w = np.clip(np.minimum(b[i, 2], rest[:, 2]) - np.maximum(b[i, 0], rest[:, 0]), 0, None)
        h = np.clip(np.minimum(b[i, 3], rest[:, 3]) - np.maximum(b[i, 1], rest[:, 1]), 0, None)
        inter = w * h
        suppressed[i + 1:] |= (inter / (areas[i] + areas[i + 1:] - inter) > threshold) & (lab[i + 1:] == lab[i])
    return order[torch.tensor(keep, dtype=torch.long)]
