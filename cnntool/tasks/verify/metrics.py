"""Verification figures from pair distances: ROC AUC, EER and TAR at chosen FARs (scikit-learn's
roc_curve / roc_auc_score), the threshold behind each, and the accumulator the training engine and
`cnntool evaluate verify-face` use.

Convention: a pair is called "same" when its distance ≤ threshold. TAR (true accept rate) is the fraction
of same pairs accepted, FAR the fraction of different pairs accepted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

if TYPE_CHECKING:
    import torch

FARS = (1e-3, 1e-2, 1e-1)
# Every pair of at most this many embeddings (strided subsample beyond): 2000 → ~2M pairs.
MAX_PAIR_IMAGES = 2000


def roc_report(distances: Sequence[float], same: Sequence[bool], fars: Sequence[float] = FARS) -> dict[str, Any]:
    """AUC, EER (+ its threshold) and TAR@FAR (+ thresholds) of pair distances with same/different labels."""
    from sklearn.metrics import roc_auc_score, roc_curve

    d = np.asarray(distances, dtype=np.float64)
    y = np.asarray(same, dtype=bool)
    if y.all() or not y.any():
        raise ValueError("ROC figures need both same and different pairs")
    # roc_curve wants "higher = more positive": score = −distance, accept when −d ≥ t, i.e. d ≤ −t.
    fpr, tpr, thresholds = roc_curve(y, -d, drop_intermediate=False)
    thresholds = np.where(np.isfinite(thresholds), -thresholds, -np.inf)  # back to distance thresholds
    fnr = 1.0 - tpr
    i = int(np.argmin(np.abs(fpr - fnr)))
    report: dict[str, Any] = {
        "pairs": int(len(y)), "same_pairs": int(y.sum()), "different_pairs": int((~y).sum()),
        "auc": float(roc_auc_score(y, -d)),
        "eer": float((fpr[i] + fnr[i]) / 2), "eer_threshold": _finite(thresholds[i]),
        "tar_at_far": {},
    }
    for far in fars:
        ok = np.nonzero(fpr <= far)[0]
        j = int(ok[np.argmax(tpr[ok])])  # fpr[0] = 0 always exists
        report["tar_at_far"][f"{far:g}"] = {"tar": float(tpr[j]), "far": float(fpr[j]), "threshold": _finite(thresholds[j])}
    grid = np.linspace(0, 1, 51)  # the ROC curve at fixed false accept rates, for its figure
    best = np.maximum.accumulate(tpr)  # roc_curve's fpr only grows: the best TAR reached by each point
    report["roc"] = {"far": grid.round(2).tolist(),
                     "tar": [round(float(best[np.searchsorted(fpr, f, side="right") - 1]), 4) for f in grid]}
    return report


def fit_same_probability(distances: Sequence[float], same: Sequence[bool]) -> dict[str, Any]:
    """Platt scaling of pair distances: p_same(d) = 1 / (1 + exp(slope·d + offset)), a logistic regression
    with same and different pairs weighted equally, so that p_same is the probability for a pair that was as
    likely the same person as not beforehand (a 1:1 prior), whatever mix of pairs it was fitted on. With
    another prior π, multiply the odds p/(1−p) by π/(1−π)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import log_loss

    d = np.asarray(distances, dtype=np.float64).reshape(-1, 1)
    y = np.asarray(same, dtype=bool)
    if y.all() or not y.any():
        raise ValueError("a probability fit needs both same and different pairs")
    fit = LogisticRegression(class_weight="balanced", C=1e6).fit(d, y)  # C large: no shrinkage of the slope
    slope, offset = -float(fit.coef_[0, 0]), -float(fit.intercept_[0])
    weights = np.where(y, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
    p = same_probability({"slope": slope, "offset": offset}, d[:, 0])
    return {"slope": slope, "offset": offset, "prior": "1:1", "pairs": int(len(y)),
            "distance_at_half": -offset / slope if slope else None,
            "log_loss": float(log_loss(y, p, sample_weight=weights, labels=[False, True]))}


def same_probability(fit: dict[str, Any], distance):
    """p_same of a distance (or an array of them) under a fit_same_probability result."""
    z = np.clip(fit["slope"] * np.asarray(distance, dtype=np.float64) + fit["offset"], -700, 700)
    return 1.0 / (1.0 + np.exp(z))


def _finite(value: float) -> float:
    """The "accept nothing" point has threshold −inf; report it as just below the smallest distance."""
    return float(value) if np.isfinite(value) else -1.0


def every_pair(emb: "torch.Tensor", labels: "torch.Tensor", distance: Callable[["torch.Tensor"], "torch.Tensor"],
               max_images: int = MAX_PAIR_IMAGES) -> tuple[np.ndarray, np.ndarray]:
    """Distances and same-labels of every pair i < j (of an evenly strided subsample of max_images)."""
    import torch

    if len(emb) > max_images:
        keep = torch.linspace(0, len(emb) - 1, max_images).round().long()
        emb, labels = emb[keep], labels[keep]
    with torch.no_grad():
        d = distance(emb)
    i, j = torch.triu_indices(len(emb), len(emb), 1)
    return d[i, j].cpu().numpy(), (labels[i] == labels[j]).cpu().numpy()


class VerifyMetrics:
    """Per batch: ROC AUC over the batch's pairs (cheap; summed so ranks and resumed runs can add them).
    compute(): the full report over every pair of the embeddings seen (rank-local under torchrun)."""

    primary = "auc"

    def __init__(self, distance: Callable[["torch.Tensor"], "torch.Tensor"]) -> None:
        import torch

        self.distance = distance
        self.batch_auc = torch.zeros(2, dtype=torch.float64)  # sum of batch AUCs, batches counted
        self.embeddings: list["torch.Tensor"] = []
        self.labels: list["torch.Tensor"] = []

    def update(self, emb: "torch.Tensor", labels: "torch.Tensor") -> None:
        emb, labels = emb.detach().float().cpu(), labels.cpu()
        self.embeddings.append(emb)
        self.labels.append(labels)
        d, same = every_pair(emb, labels, self.distance)
        if same.any() and not same.all():
            from sklearn.metrics import roc_auc_score

            self.batch_auc[0] += float(roc_auc_score(same, -d))
            self.batch_auc[1] += 1

    def tensors(self) -> list["torch.Tensor"]:
        return [self.batch_auc]

    def load_tensors(self, values: Sequence[Any]) -> None:
        import torch

        self.batch_auc.copy_(torch.as_tensor(values[0], dtype=torch.float64))

    def summary(self) -> dict[str, float]:
        n = float(self.batch_auc[1])
        return {"auc": float(self.batch_auc[0]) / n if n else 0.0}

    def compute(self) -> dict[str, Any]:
        import torch

        if not self.embeddings:
            return {"images": 0}
        emb, labels = torch.cat(self.embeddings), torch.cat(self.labels)
        d, same = every_pair(emb, labels, self.distance)
        report = {"images": int(len(labels)), "identities": int(labels.unique().numel()),
                  "batch_auc": self.summary()["auc"]}
        try:
            report.update(roc_report(d, same))
        except ValueError:  # one identity only: no different pairs
            pass
        return report
