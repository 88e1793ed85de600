"""The localizer's losses on the lecture's y-vector. Targets are (N, 6) float tensors [p_c, b_x, b_y, b_h, b_w,
class index] (box and class ignored when p_c = 0)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cnntool.boxes import cxcyhw_to_xyxy
from cnntool.models.yvector import interpret

if TYPE_CHECKING:
    import torch

LOSSES = ("lecture", "modern")


def target_vector(target: "torch.Tensor", num_classes: int) -> "torch.Tensor":
    """(N, 6) targets → the lecture's y (N, 5 + K): one-hot classes, zeros after p_c when absent."""
    import torch

    present = target[:, :1]
    onehot = torch.nn.functional.one_hot(target[:, 5].long().clamp_min(0), num_classes).float()
    return torch.cat([present, target[:, 1:5] * present, onehot * present], dim=1)


def lecture_loss(y_hat: "torch.Tensor", y: "torch.Tensor") -> "torch.Tensor":
    """The lecture's loss, averaged over the batch: Σ_i (ŷ_i − y_i)² over every term when y_1 = p_c = 1,
    only (ŷ_1 − y_1)² when p_c = 0 (the other terms are "don't care")."""
    squared = (y_hat - y) ** 2
    per_image = squared[:, 0] + y[:, 0] * squared[:, 1:].sum(dim=1)
    return per_image.mean()


def modern_loss(z: "torch.Tensor", target: "torch.Tensor", *, l1_weight: float = 5.0,
                giou_weight: float = 2.0) -> "torch.Tensor":
    """Binary cross-entropy for p_c on every image; on images with an object also cross-entropy for the
    class and L1 + generalized-IoU for the box (weights as in DETR). Box and class terms are averaged
    over the images that have an object."""
    import torch.nn.functional as F
    from torchvision.ops import generalized_box_iou_loss

    z = z.float()
    present = target[:, 0]
    loss = F.binary_cross_entropy_with_logits(z[:, 0], present)
    mask = present > 0.5
    if mask.any():
        box = z[mask, 1:5].sigmoid()
        true_box = target[mask, 1:5]
        loss = loss + F.cross_entropy(z[mask, 5:], target[mask, 5].long())
        loss = loss + l1_weight * F.l1_loss(box, true_box)
        giou = generalized_box_iou_loss(cxcyhw_to_xyxy(box), cxcyhw_to_xyxy(true_box), reduction="mean")
        loss = loss + giou_weight * giou
    return loss


def loss(z: "torch.Tensor", target: "torch.Tensor", kind: str = "modern") -> "torch.Tensor":
    if kind == "lecture":
        return lecture_loss(interpret(z), target_vector(target.float(), z.shape[1] - 5))
    if kind == "modern":
        return modern_loss(z, target.float())
    raise ValueError(f"loss must be one of {', '.join(LOSSES)}, not {kind!r}")
