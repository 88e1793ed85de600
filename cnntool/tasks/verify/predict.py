"""verify-face's records: one pair compared (1:1), or one face named against a gallery (1:N)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

CSV_COLUMNS = ("a", "b", "identity", "nearest", "metric", "distance", "threshold", "same", "p_same")


def probability_note(p_same: float | None) -> str:
    return "" if p_same is None else f", p_same {p_same:.3f}"


@dataclass
class Verification:
    """Is b the same person as a: distance ≤ threshold under the metric. p_same: the calibrated probability that
    they are (for a 1:1 prior), where the model's calibration holds a fit; None where it does not."""

    a: str
    b: str
    metric: str
    distance: float
    threshold: float
    same: bool
    p_same: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return (f"{'same' if self.same else 'different'} (distance {self.distance:.3f}, threshold "
                f"{self.threshold:.3f}{probability_note(self.p_same)})")

    def csv_rows(self) -> list[dict[str, Any]]:
        return [asdict(self)]


@dataclass
class Identification:
    """Who it is: the nearest gallery identity, or "unknown" beyond the threshold; the three nearest. p_same: the
    calibrated probability that the nearest is the same person (as in Verification)."""

    identity: str
    nearest: str
    distance: float
    threshold: float
    metric: str
    matches: list[dict[str, Any]] = field(default_factory=list)
    p_same: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return f"{self.identity} (distance {self.distance:.3f}{probability_note(self.p_same)})"

    def csv_rows(self) -> list[dict[str, Any]]:
        return [{k: v for k, v in asdict(self).items() if k != "matches"}]
