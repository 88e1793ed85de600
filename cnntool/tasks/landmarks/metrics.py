"""Landmark figures and loss on the lecture's l-vector: N points (l_1x, l_1y, … l_Nx, l_Ny), relative to the
model's input frame (0..1). Targets are (N, 2P) float tensors in the same layout.

NME (normalized mean error) here is the mean point-to-point distance divided by the image diagonal,
measured in the model's input frame (for stretched square scenes that is the same as in the original
image). "within tolerance" is the share of points closer than `tolerance` × diagonal (default 2%).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

if TYPE_CHECKING:
    import torch

LOSSES = ("l1", "mse")
DEFAULT_TOLERANCE = 0.02


def loss(outputs: "torch.Tensor", targets: "torch.Tensor", kind: str = "l1") -> "torch.Tensor":
    """L1 (robust, the usual choice for coordinates) or the lecture's squared error, averaged over all
    coordinates."""
    import torch.nn.functional as F

    if kind == "l1":
        return F.l1_loss(outputs.float(), targets.float())
    if kind == "mse":
        return F.mse_loss(outputs.float(), targets.float())
    raise ValueError(f"loss must be one of {', '.join(LOSSES)}, not {kind!r}")


def point_errors(outputs: "torch.Tensor", targets: "torch.Tensor", size: tuple[int, int]) -> "torch.Tensor":
    """(N, P) distances in units of the frame's diagonal, for relative coordinates in a (height, width)
    frame."""
    import torch

    h, w = size
    scale = torch.tensor([w, h], dtype=torch.float64)
    diff = (outputs.detach().double().cpu() - targets.detach().double().cpu()).view(len(outputs), -1, 2) * scale
    return diff.norm(dim=2) / float((w * w + h * h) ** 0.5)


class LandmarkMetrics:
    """NME (lower is better) and the share of points within tolerance. `primary` is `score` = 1 − NME so
    that the engine's "higher is better" selection applies."""

    primary = "score"

    def __init__(self, size: tuple[int, int], tolerance: float = DEFAULT_TOLERANCE) -> None:
        import torch

        self.size, self.tolerance = size, tolerance
        self.sums = torch.zeros(4, dtype=torch.float64)  # images, points, error sum, points within tolerance

    def update(self, outputs: "torch.Tensor", targets: "torch.Tensor") -> None:
        import torch

        errors = point_errors(outputs, targets, self.size)
        self.sums += torch.tensor([len(errors), errors.numel(), float(errors.sum()),
                                   float((errors <= self.tolerance).sum())], dtype=torch.float64)

    def tensors(self) -> list["torch.Tensor"]:
        return [self.sums]

    def load_tensors(self, values: Sequence[Any]) -> None:
        import torch

        self.sums.copy_(torch.as_tensor(values[0], dtype=torch.float64))

    def summary(self) -> dict[str, float]:
        points = max(float(self.sums[1]), 1.0)
        nme = float(self.sums[2]) / points
        return {"nme": nme, "within_tolerance": float(self.sums[3]) / points, "score": 1.0 - nme}

    def compute(self) -> dict[str, Any]:
        return {"images": int(self.sums[0]), "points": int(self.sums[1]), **self.summary(),
                "nme_normalized_by": "image diagonal", "tolerance": self.tolerance}
