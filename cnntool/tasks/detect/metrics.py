"""Detection metrics with a kept library: torchmetrics' MeanAveragePrecision (COCO's protocol through
pycocotools): mAP50-95, mAP50, mAP75, recall, and AP per class."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Sequence

from cnntool.tasks.detect.predict import PostProcess, postprocess

if TYPE_CHECKING:
    import torch


@dataclass
class DetectOutputs:
    """What the detect task's forward_eval returns: the raw head output when the model has one (for the
    validation loss) and every image's candidates (torchvision's dict format, input pixels)."""

    raw: "torch.Tensor | None"
    detections: list[dict[str, "torch.Tensor"]]


class DetectMetrics:
    """Accumulates candidates (after the task's post-processing) against ground truth; `compute` runs
    COCO's evaluation once over everything seen. Training steps are not scored (their outputs are raw
    heads or loss dicts, and mAP is not an average of per-batch values).

    Scored twice, in one pass: with every class whose score clears the threshold kept per box (the main
    figures, and what selects checkpoints: Ultralytics' validation scores its detectors this way, and
    torchvision's return a box per class anyway) and with only each box's best class (`one_label_per_box`,
    what `cnntool detect` reports unless given --multi-label). For a detector without per-class scores
    the two agree, and COCO's evaluation runs once."""

    primary = "map50_95"

    def __init__(self, classes: Sequence[str], post: PostProcess) -> None:
        from torchmetrics.detection import MeanAveragePrecision

        self.classes = list(classes)
        self.posts = {"every_label": replace(post, multi_label=True), "best_label": replace(post, multi_label=False)}
        self.metrics = {name: MeanAveragePrecision(box_format="xyxy", iou_type="bbox", class_metrics=True,
                                                   extended_summary=name == "every_label", backend="pycocotools")
                        for name in self.posts}
        self.images = 0
        self._per_class_scores = False  # seen any detections with every class's score
        self._summary: dict[str, float] = {}

    def update(self, outputs: Any, targets: "torch.Tensor") -> None:
        if not isinstance(outputs, DetectOutputs):
            return
        truth = [{"boxes": t[t[:, 0] >= 0, 1:].float().cpu(), "labels": t[t[:, 0] >= 0, 0].long().cpu()}
                 for t in targets.view(len(targets), -1, 5)]
        for name, post in self.posts.items():
            self.metrics[name].update([postprocess(d, post) for d in outputs.detections], truth)
        self._per_class_scores |= any("class_scores" in d for d in outputs.detections)
        self.images += len(truth)

    def tensors(self) -> list["torch.Tensor"]:
        return []  # not summable across processes: under torchrun each rank reports its own share

    def load_tensors(self, values: Sequence[Any]) -> None:
        pass

    def summary(self) -> dict[str, float]:
        return dict(self._summary)

    def compute(self) -> dict[str, Any]:
        result = self.metrics["every_label"].compute()
        figures = _headline(result)
        self._summary = {k: figures[k] for k in ("map50_95", "map50")}
        per_class = {}
        present = result["classes"].reshape(-1).tolist()
        for index, ap, recall in zip(present, result["map_per_class"].reshape(-1).tolist(),
                                     result["mar_100_per_class"].reshape(-1).tolist()):
            name = self.classes[index] if index < len(self.classes) else str(index)
            per_class[name] = {"ap50_95": ap, "recall100": recall}
        one_label = _headline(self.metrics["best_label"].compute()) if self._per_class_scores else dict(figures)
        return {"images": self.images, **figures, "per_class": per_class, "one_label_per_box": one_label,
                "pr50": _pr_curve(result["precision"])}


def _pr_curve(precision: "torch.Tensor") -> dict[str, list[float]]:
    """COCO's precision at IoU 0.5 over its 101 recall points (all areas, 100 detections), averaged over the
    classes that have objects; -1 (undefined) counts as no precision."""
    import torch

    at50 = precision[0, :, :, 0, -1]  # (recall points, classes)
    present = (at50 >= 0).any(0)
    curve = at50[:, present].clamp(min=0).mean(1) if bool(present.any()) else torch.zeros(len(at50))
    return {"recall": [round(i / 100, 2) for i in range(len(at50))], "precision": [round(float(v), 4) for v in curve]}


# Our names for torchmetrics' headline figures.
_HEADLINE = {"map50_95": "map", "map50": "map_50", "map75": "map_75", "mar100": "mar_100"}


def _headline(result: dict[str, "torch.Tensor"]) -> dict[str, float]:
    return {ours: float(result[theirs]) for ours, theirs in _HEADLINE.items()}
