"""dlib's rectangle arithmetic: inclusive integer corners, lround conversion, its overlap test and NMS."""

from __future__ import annotations

import math
from dataclasses import dataclass


def lround(x: float) -> int:
    """C's lround: halves go away from zero."""
    return int(math.copysign(math.floor(abs(x) + 0.5), x))


@dataclass(frozen=True)
class Rect:
    """dlib rectangle: left, top, right, bottom, all inclusive pixel indices."""

    left: int
    top: int
    right: int
    bottom: int

    @classmethod
    def from_floats(cls, l: float, t: float, r: float, b: float) -> "Rect":
        return cls(lround(l), lround(t), lround(r), lround(b))

    def area(self) -> int:
        return max(0, self.right - self.left + 1) * max(0, self.bottom - self.top + 1)

    def intersect(self, o: "Rect") -> "Rect":
        return Rect(max(self.left, o.left), max(self.top, o.top), min(self.right, o.right), min(self.bottom, o.bottom))

    def hull(self, o: "Rect") -> "Rect":
        return Rect(min(self.left, o.left), min(self.top, o.top), max(self.right, o.right), max(self.bottom, o.bottom))

    def contains(self, x: int, y: int) -> bool:
        return self.left <= x <= self.right and self.top <= y <= self.bottom


def overlaps(a: Rect, b: Rect, iou_thresh: float, covered_thresh: float) -> bool:
    """dlib's test_box_overlap. Its "IoU" divides by the area of the box bounding both, not the union."""
    inner = a.intersect(b).area()
    if inner == 0:
        return False
    return inner / a.hull(b).area() > iou_thresh or inner / a.area() > covered_thresh or inner / b.area() > covered_thresh


def nms(candidates: list[tuple[float, Rect]], iou_thresh: float, covered_thresh: float) -> list[tuple[float, Rect]]:
    """Greedy suppression in descending score order, as dlib's loss_mmod does."""
    kept: list[tuple[float, Rect]] = []
    for score, rect in sorted(candidates, key=lambda sr: -sr[0]):
        if not any(overlaps(k, rect, iou_thresh, covered_thresh) for _, k in kept):
            kept.append((score, rect))
    return kept
