"""The localizer's figures: presence, class and box, and the presence threshold chosen on validation data."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

from cnntool.boxes import cxcyhw_to_xyxy, iou_pairs
from cnntool.models.yvector import interpret

if TYPE_CHECKING:
    import torch

# p_c at or above this reports an object, unless the weights carry a threshold calibrated on validation
# (`cnntool ensemble --calibrate`, metadata "decode") or --threshold says otherwise.
DEFAULT_THRESHOLD = 0.5


def calibrate_threshold(p_c: "torch.Tensor", present: "torch.Tensor") -> float:
    """The presence threshold on a 0.05 grid (0.05 … 0.95) with the most images right; among equals the one
    nearest DEFAULT_THRESHOLD, so a flat curve leaves the default."""
    grid = [round(0.05 * i, 2) for i in range(1, 20)]
    right = {t: int(((p_c >= t) == present.bool()).sum()) for t in grid}
    return max(grid, key=lambda t: (right[t], -abs(t - DEFAULT_THRESHOLD)))


class LocalizeMetrics:
    """Presence accuracy (p_c ≥ threshold vs the truth, all images); on images with an object: class accuracy,
    mean IoU and the share with IoU ≥ 0.5. `score` = presence × class accuracy × mean IoU, one number
    that needs all three, is what checkpoints are selected on. State: one summable float64 vector."""

    primary = "score"
    _FIELDS = ("images", "presence_correct", "objects", "class_correct", "iou_sum", "iou50")

    def __init__(self, classes: Sequence[str] = (), *, threshold: float = DEFAULT_THRESHOLD) -> None:
        import torch

        self.classes, self.threshold = list(classes), threshold
        self.sums = torch.zeros(len(self._FIELDS), dtype=torch.float64)

    def update(self, z: "torch.Tensor", target: "torch.Tensor") -> None:
        import torch

        y_hat, target = interpret(z.detach()).cpu(), target.detach().float().cpu()
        present = target[:, 0] > 0.5
        predicted = y_hat[:, 0] >= self.threshold
        iou = iou_pairs(cxcyhw_to_xyxy(y_hat[present, 1:5]), cxcyhw_to_xyxy(target[present, 1:5]))
        correct_class = y_hat[present, 5:].argmax(1) == target[present, 5].long()
        self.sums += torch.tensor([len(target), float((predicted == present).sum()), float(present.sum()),
                                   float(correct_class.sum()), float(iou.sum()), float((iou >= 0.5).sum())],
                                  dtype=torch.float64)

    def tensors(self) -> list["torch.Tensor"]:
        return [self.sums]

    def load_tensors(self, values: Sequence[Any]) -> None:
        import torch

        self.sums.copy_(torch.as_tensor(values[0], dtype=torch.float64))

    def summary(self) -> dict[str, float]:
        s = dict(zip(self._FIELDS, self.sums.tolist()))
        n, k = max(s["images"], 1.0), max(s["objects"], 1.0)
        out = {"presence_accuracy": s["presence_correct"] / n, "class_accuracy": s["class_correct"] / k,
               "mean_iou": s["iou_sum"] / k}
        out["score"] = out["presence_accuracy"] * out["class_accuracy"] * out["mean_iou"]
        return out

    def compute(self) -> dict[str, Any]:
        s = dict(zip(self._FIELDS, self.sums.tolist()))
        return {"images": int(s["images"]), "objects": int(s["objects"]), **self.summary(),
                "iou50_accuracy": s["iou50"] / max(s["objects"], 1.0)}
