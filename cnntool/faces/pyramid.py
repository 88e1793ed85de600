"""dlib's tiled image pyramid (pyramid_down<6>: each level 5/6 of the last) for the MMOD detector.

All levels are packed into one padded canvas: the full image on the left, smaller levels below it while
they fit, the rest stacked up the right-hand side. The network runs once over the canvas; a detection is
mapped back through the level whose tile is nearest to it.
"""

from __future__ import annotations

import math

from .rects import Rect

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
