"""Classification metrics from one accumulated confusion matrix: accuracy, top-5, per-class precision and
recall. The state is a few summable tensors, so distributed ranks add theirs together (all_reduce) and a
resumed run carries them as plain lists."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    import torch


class ClassifyMetrics:
    primary = "accuracy"  # the number the engine selects checkpoints on (higher is better)

    def __init__(self, classes: Sequence[str]) -> None:
        import torch

        self.classes = list(classes)
        k = len(self.classes)
        self.confusion = torch.zeros(k, k, dtype=torch.int64)  # rows: true class, columns: predicted
        self.top5 = torch.zeros(1, dtype=torch.int64)

    def update(self, logits: "torch.Tensor", targets) -> None:
        import torch

        if isinstance(targets, tuple):  # (labels, teacher probabilities) while distilling
            targets = targets[0]
        logits, targets = logits.detach().float().cpu(), targets.cpu()
        k = len(self.classes)
        pred = logits.argmax(1)
        self.confusion += torch.bincount(targets * k + pred, minlength=k * k).view(k, k)
        top = logits.topk(min(5, k), dim=1).indices
        self.top5 += (top == targets[:, None]).any(1).sum()

    def tensors(self) -> list["torch.Tensor"]:
        return [self.confusion, self.top5]

    def load_tensors(self, values: Sequence[Any]) -> None:
        import torch

        for own, value in zip(self.tensors(), values):
            own.copy_(torch.as_tensor(value, dtype=own.dtype).view_as(own))

    def summary(self) -> dict[str, float]:
        """The scalars shown in progress and drawn in the training curve."""
        n = int(self.confusion.sum())
        return {"accuracy": float(self.confusion.trace()) / n if n else 0.0}

    def compute(self) -> dict[str, Any]:
        c = self.confusion
        n = int(c.sum())
        per_class = {}
        for i, name in enumerate(self.classes):
            tp, predicted, support = int(c[i, i]), int(c[:, i].sum()), int(c[i].sum())
            per_class[name] = {"precision": tp / predicted if predicted else 0.0,
                               "recall": tp / support if support else 0.0, "support": support}
        return {"images": n, "accuracy": float(c.trace()) / n if n else 0.0,
                "top5": int(self.top5) / n if n else 0.0, "per_class": per_class, "confusion": c.tolist()}
