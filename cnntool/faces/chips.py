"""dlib's face-chip alignment (get_face_chip_details + extract_image_chip) for 5-point landmarks.

A similarity transform takes five template points (dlib's mean face, padded by `padding` on each side) onto
the detected landmarks; the chip is the rotated square it implies. When that square is much larger than the
chip, the image is first halved (dlib's 5-tap Gaussian pyramid_down<2>) until one more halving would make it
smaller than the chip; the chip is then sampled bilinearly, truncating to 8 bits as dlib does. The pixel
loops run in the compiled module _native where it was built, in numpy otherwise; both give dlib's bytes.
"""

from __future__ import annotations

import math

import numpy as np

from .rects import lround
from .shape import _native

CHIP_SIZE = 150
CHIP_PADDING = 0.25

# dlib's 5-point mean face, normalized (x, y): right eye outer/inner, left eye outer/inner, nose base.
TEMPLATE5 = (
    (0.8595674595992, 0.2134981538014),
    (0.6460604764104, 0.2289674387677),
    (0.1205750620789, 0.2137274526848),
    (0.3340850613712, 0.2290642403242),
    (0.4901123135679, 0.6277975316475),
)

_KERNEL = (1, 4, 6, 4, 1)


def _rect_down(r):
    """pyramid_down<2>::rect_down of a float rectangle (l, t, r, b)."""
    return (r[0] / 2 - 1.25, r[1] / 2 - 0.75, r[2] / 2 - 1.25, r[3] / 2 - 0.75)


def _area(r) -> float:
    w, h = r[2] - r[0] + 1, r[3] - r[1] + 1
    return w * h if w > 0 and h > 0 else 0.0


def _rotate(center, p, angle):
    c, s = math.cos(angle), math.sin(angle)
    dx, dy = p[0] - center[0], p[1] - center[1]
    return (center[0] + c * dx - s * dy, center[1] + s * dx + c * dy)


def pyramid_down2(rgb: np.ndarray) -> np.ndarray:
    """dlib's pyramid_down<2> on RGB: separable [1 4 6 4 1]² filter, every other pixel, floor(sum / 256).
    The sums stay below 2¹⁶ (255 · 16 · 16), so uint16 holds them: a quarter of int64's memory traffic."""
    h, w = rgb.shape[:2]
    oh, ow = (h - 3) // 2, (w - 3) // 2
    img = rgb.astype(np.uint16)
    rows = sum(k * img[:, b:b + 2 * ow:2] for b, k in enumerate(_KERNEL))
    both = sum(k * rows[a:a + 2 * oh:2] for a, k in enumerate(_KERNEL))
    return (both >> 8).astype(np.uint8)


def chip_details(points5, size: int = CHIP_SIZE, padding: float = CHIP_PADDING):
    """(rect (l, t, r, b) floats, angle) of the chip in image coordinates: the least-squares similarity
    (Umeyama's, closed form in 2-D) from the padded template onto the landmarks. Five points: plain floats are
    several times quicker here than numpy's per-call cost."""
    src = [((padding + x) / (2 * padding + 1) * size, (padding + y) / (2 * padding + 1) * size) for x, y in TEMPLATE5]
    dst = [(float(x), float(y)) for x, y in points5]
    sx, sy = sum(p[0] for p in src) / len(src), sum(p[1] for p in src) / len(src)
    dx, dy = sum(p[0] for p in dst) / len(dst), sum(p[1] for p in dst) / len(dst)
    norm = dot = cross = 0.0
    for (ax, ay), (bx, by) in zip(src, dst):
        ax, ay, bx, by = ax - sx, ay - sy, bx - dx, by - dy
        norm += ax * ax + ay * ay
        dot += ax * bx + ay * by
        cross += ax * by - ay * bx
    p, q = (dot / norm, cross / norm) if norm else (1.0, 0.0)  # m = [[p, −q], [q, p]]
    tx, ty = dx - (p * sx - q * sy), dy - (q * sx + p * sy)
    angle, scale = math.atan2(q, p), math.hypot(p, q)
    cx, cy = p * size / 2 - q * size / 2 + tx, q * size / 2 + p * size / 2 + ty
    half = (size * scale - 1) / 2
    return (cx - half, cy - half, cx + half, cy + half), angle


def _bilinear(src: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dlib's interpolate_bilinear in double, truncated to 8 bits; 0 where a neighbour leaves the image. Only
    the four neighbours of each sample are converted to float, gathered from the flattened pixels."""
    h, w = src.shape[:2]
    if h < 2 or w < 2:  # no sample has its four neighbours inside
        return np.zeros((*x.shape, 3), np.uint8)
    left, top = np.floor(x).astype(np.int64), np.floor(y).astype(np.int64)
    ok = (left >= 0) & (top >= 0) & (left + 1 < w) & (top + 1 < h)
    i = np.where(ok, top * w + left, 0)
    flat = np.ascontiguousarray(src).reshape(-1, 3)
    tl, tr, bl, br = (flat[i + offset].astype(np.float64) for offset in (0, 1, w, w + 1))
    fx, fy = (x - left)[..., None], (y - top)[..., None]
    # (1 − fy)·((1 − fx)·tl + fx·tr) + fy·((1 − fx)·bl + fx·br), in place: the same roundings, fewer passes.
    tl *= 1 - fx
    tr *= fx
    tl += tr
    bl *= 1 - fx
    br *= fx
    bl += br
    tl *= 1 - fy
    bl *= fy
    tl += bl
    np.floor(tl, out=tl)
    tl *= ok[..., None]
    return tl.astype(np.uint8)


def extract_chip(rgb: np.ndarray, points5, size: int = CHIP_SIZE, padding: float = CHIP_PADDING) -> np.ndarray:
    """The aligned (size, size, 3) uint8 face chip for 5 landmarks [[x, y], …] in an (H, W, 3) uint8 image."""
    rect, angle = chip_details(points5, size, padding)
    chip_area = size * size
    depth, grow, r = 0, 2.0, _rect_down(rect)
    while _area(r) > chip_area:
        r = _rect_down(r)
        depth += 1
        grow = grow * 2 + 2
    center = ((rect[0] + rect[2]) / 2, (rect[1] + rect[3]) / 2)
    corners = [_rotate(center, p, angle) for p in
               [(rect[0], rect[1]), (rect[2], rect[1]), (rect[0], rect[3]), (rect[2], rect[3])]]
    xs, ys = [p[0] for p in corners], [p[1] for p in corners]
    h, w = rgb.shape[:2]
    box = [lround(v) for v in (max(min(xs) - grow, 0), max(min(ys) - grow, 0),
                                min(max(xs) + grow, w - 1), min(max(ys) + grow, h - 1))]
    top, left, h, w = box[1], box[0], box[3] + 1 - box[1], box[2] + 1 - box[0]
    if h <= 0 or w <= 0:  # the chip lies wholly outside the image: nothing to sample, every pixel is 0
        top = left = h = w = 0
    r = (rect[0] - left, rect[1] - top, rect[2] - left, rect[3] - top)
    levels = 0
    while _area(_rect_down(r)) > chip_area:
        levels += 1
        r = _rect_down(r)
    # The chip's corners map onto the rotated (and possibly pyramid-scaled) rectangle: an affine map.
    c = ((r[0] + r[2]) / 2, (r[1] + r[3]) / 2)
    tl, tr, bl = (_rotate(c, p, angle) for p in [(r[0], r[1]), (r[2], r[1]), (r[0], r[3])])
    ax = ((tr[0] - tl[0]) / (size - 1), (tr[1] - tl[1]) / (size - 1))
    ay = ((bl[0] - tl[0]) / (size - 1), (bl[1] - tl[1]) / (size - 1))
    if _native is None:
        src = rgb[top:top + h, left:left + w]
        for _ in range(levels):
            src = pyramid_down2(src)
        cc, rr = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64))
        return _bilinear(src, tl[0] + cc * ax[0] + rr * ay[0], tl[1] + cc * ax[1] + rr * ay[1])
    # The same in C, reading the region in place (rgb is C-contiguous, as as_rgb_array makes it).
    src, full = rgb, rgb.shape[:2]
    for _ in range(levels):
        oh, ow = (h - 3) // 2, (w - 3) // 2
        if oh <= 0 or ow <= 0:  # nothing left to sample: every chip pixel is 0, as in numpy
            h = w = 0
            break
        out = np.empty((oh, ow, 3), np.uint8)
        _native.pyramid_down2(src, *full, top, left, h, w, out)
        src, full, top, left, h, w = out, (oh, ow), 0, 0, oh, ow
    chip = np.empty((size, size, 3), np.uint8)
    _native.sample_chip(src, *full, top, left, h, w, tl[0], tl[1], ax[0], ax[1], ay[0], ay[1], size, chip)
    return chip
