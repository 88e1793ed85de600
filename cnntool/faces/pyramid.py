"""dlib's tiled image pyramid (pyramid_down<6>: each level 5/6 of the last) for the MMOD detector.

All levels are packed into one padded canvas: the full image on the left, smaller levels below it while
they fit, the rest stacked up the right-hand side. A detection is mapped back through the level whose tile
is nearest to it.

The canvas of a 36 MP photo is 130 MP of float32 (1.6 GB), so it is never held whole: Canvas.strip() makes
any band of its rows on demand. Small levels are kept; each large level is streamed from the image through
its own chain of resizes, a few rows at a time, and made again rather than stored.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from .rects import Rect
from .resize import Sampling, resize_rows

RATE_NUM, RATE_DEN = 5, 6  # pyramid_down<6>
MIN_HEIGHT = 5


def level_sizes(nr: int, nc: int) -> list[tuple[int, int]]:
    sizes = [(nr, nc)]
    while True:
        nr, nc = math.floor(RATE_NUM / RATE_DEN * nr), math.floor(RATE_NUM / RATE_DEN * nc)
        if nr * nc == 0 or nr < MIN_HEIGHT:
            return sizes
        sizes.append((nr, nc))


def tile_layout(nr: int, nc: int, padding: int, outer: int) -> tuple[list[Rect], int, int]:
    """Rects of the levels on the canvas and the canvas size (rows, cols)."""
    sizes = level_sizes(nr, nc)
    total = sum(h + padding for h, _ in sizes) - 2 * padding
    height, prev_w = 0, 0
    for h, w in sizes:  # grow the left column until the rest fits beside it
        if w <= nc - prev_w - padding and (height - nr) * 2 >= total - nr:
            break
        height += h + padding
        prev_w = w
    height -= padding
    canvas = (height + 2 * outer, nc + 2 * outer)
    rects: list[Rect] = []
    y = outer
    i = 0
    while y < height + outer and i < len(sizes):
        h, w = sizes[i]
        rects.append(Rect(outer, y, outer + w - 1, y + h - 1))
        y += h + padding
        i += 1
    y -= padding
    while i < len(sizes):
        h, w = sizes[i]
        x1, y1 = outer + nc - 1, y - 1
        rect = Rect(x1 - (w - 1), y1 - (h - 1), x1, y1)
        if rects[0].intersect(rect).area() > 0:
            break
        rects.append(rect)
        y -= h + padding
        i += 1
    return rects, canvas[0], canvas[1]


def nearest_level(rects: list[Rect], x: int, y: int) -> int:
    best, best_d = 0, math.inf
    for i, r in enumerate(rects):
        if r.contains(x, y):
            return i
        nx, ny = min(max(x, r.left), r.right), min(max(y, r.top), r.bottom)
        d = math.hypot(nx - x, ny - y)
        if d < best_d:
            best, best_d = i, d
    return best


def canvas_to_image(rects: list[Rect], l: float, t: float, r: float, b: float) -> tuple[float, float, float, float]:
    """A canvas-space box → original-image box (floats), through the nearest level's tile."""
    cx, cy = math.floor((l + r) / 2 + 0.5), math.floor((t + b) / 2 + 0.5)
    k = nearest_level(rects, cx, cy)
    ox, oy = rects[k].left, rects[k].top
    pts = [[l - ox, t - oy], [r - ox, b - oy]]
    for _ in range(k):  # pyramid_down<6>::point_up, once per level
        pts = [[x * (RATE_DEN / RATE_NUM) + 0.3, y * (RATE_DEN / RATE_NUM) + 0.3] for x, y in pts]
    return pts[0][0], pts[0][1], pts[1][0], pts[1][1]


# Levels up to this many pixels are kept whole once made (all of them together hold at most ~3.3× this).
KEEP_LEVEL_PIXELS = 6_000_000
CHUNK_ROWS = 64


class ImageLevel:
    """Level 0: rows of the image, normalized as dlib's input layer does ((v − mean) / 256)."""

    def __init__(self, rgb: np.ndarray, mean: torch.Tensor):
        self.rgb, self.mean = rgb, mean
        self.height, self.width = rgb.shape[:2]

    def rows(self, a: int, b: int) -> torch.Tensor:
        return (torch.tensor(self.rgb[a:b]).permute(2, 0, 1).float() - self.mean) / 256.0


class KeptLevel:
    def __init__(self, planes: torch.Tensor):
        self.planes = planes
        self.height, self.width = planes.shape[1:]

    def rows(self, a: int, b: int) -> torch.Tensor:
        return self.planes[:, a:b]


class StreamedLevel:
    """The next level down from `parent`, made a few rows at a time. Rows must be asked for in order (a
    never decreasing); only the rows of the last request are held."""

    def __init__(self, parent, height: int, width: int):
        self.parent, self.height, self.width = parent, height, width
        self.sampling = Sampling.plan(parent.height, parent.width, height, width)
        self.start, self.held = 0, torch.empty(3, 0, width)

    def rows(self, a: int, b: int) -> torch.Tensor:
        if a < self.start:
            raise ValueError("a streamed pyramid level is read top to bottom")
        end = self.start + self.held.shape[1]
        pieces = [self.held[:, a - self.start:]] if a < end else []
        for r in range(max(a, end), b, CHUNK_ROWS):
            e = min(b, r + CHUNK_ROWS)
            first, last = self.sampling.needed_rows(r, e)
            pieces.append(resize_rows(self.sampling, self.parent.rows(first, last), first, r, e))
        self.held = torch.cat(pieces, 1) if len(pieces) > 1 else pieces[0]
        self.start = a
        return self.held[:, :b - a]


class Canvas:
    """dlib's tiled pyramid of one image, handed out as bands of canvas rows (top to bottom)."""

    def __init__(self, rgb: np.ndarray, mean: torch.Tensor, padding: int, outer: int):
        self.rgb, self.mean = rgb, mean
        h, w = rgb.shape[:2]
        self.rects, self.height, self.width = tile_layout(h, w, padding, outer)
        self.sizes = level_sizes(h, w)[:len(self.rects)]
        self.levels: dict[int, object] = {}
        first_kept = next((i for i, (lh, lw) in enumerate(self.sizes) if lh * lw <= KEEP_LEVEL_PIXELS and i),
                          len(self.sizes))
        if first_kept < len(self.sizes):
            level = self._chain(first_kept)
            for i in range(first_kept, len(self.sizes)):
                if i > first_kept:
                    level = StreamedLevel(level, *self.sizes[i])
                level = KeptLevel(level.rows(0, self.sizes[i][0]))
                self.levels[i] = level

    def _chain(self, k: int):
        level = ImageLevel(self.rgb, self.mean)
        for size in self.sizes[1:k + 1]:
            level = StreamedLevel(level, *size)
        return level

    def strip(self, a: int, b: int) -> torch.Tensor:
        """Canvas rows [a, b) as a (1, 3, b − a, width) tensor; bands must come in order of a."""
        out = torch.zeros(1, 3, b - a, self.width)
        for i, r in enumerate(self.rects):
            top, bottom = max(a, r.top), min(b, r.bottom + 1)
            if top >= bottom:
                if a > r.bottom and isinstance(self.levels.get(i), StreamedLevel):
                    del self.levels[i]  # passed: its chain will not be read again
                continue
            if i not in self.levels:
                self.levels[i] = self._chain(i)
            out[0, :, top - a:bottom - a, r.left:r.right + 1] = self.levels[i].rows(top - r.top, bottom - r.top)
        return out
