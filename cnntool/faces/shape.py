"""dlib's regression-tree shape predictor (Kazemi & Sullivan cascade), numpy only.

Per cascade: place the feature pixels relative to the current shape (a similarity transform from the mean
shape), read their grayscale intensities, run all trees at once (depth-first descent vectorized over the
trees), add the chosen leaves. Coordinates live in the face box's normalized frame until the end, and are
rounded to whole pixels wherever dlib rounds (feature pixel positions and the returned landmarks).
"""

from __future__ import annotations

import numpy as np

from cnntool.dlib import ShapePredictorData


def gray_at(rgb: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dlib's rgb → 8-bit grayscale (the integer mean of the three channels), at the given pixels only: the
    trees read a few hundred pixels, and a photo's whole grey copy would cost more than the prediction."""
    return (rgb[y, x].astype(np.int32).sum(axis=-1) // 3).astype(np.float32)


def round_half_up(x: np.ndarray) -> np.ndarray:
    return np.floor(x + 0.5).astype(np.int64)


def similarity_matrix(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2×2 part (scale · rotation) of the least-squares similarity mapping src points onto dst (Umeyama)."""
    src, dst = src.astype(np.float64), dst.astype(np.float64)
    ms, md = src.mean(axis=0), dst.mean(axis=0)
    a, b = src - ms, dst - md
    var_src = (a * a).sum(axis=1).mean()
    cov = b.T @ a / len(src)
    u, d, vt = np.linalg.svd(cov)
    s = np.eye(2)
    det = np.linalg.det(cov)
    if det < 0 or (det == 0 and np.linalg.det(u) * np.linalg.det(vt) < 0):
        s[1, 1] = -1
    r = u @ s @ vt
    c = (d * np.diag(s)).sum() / var_src if var_src != 0 else 1.0
    return c * r


class ShapeModel:
    def __init__(self, data: ShapePredictorData):
        self.d = data
        self.n_splits = data.splits.shape[2]

    def predict(self, rgb: np.ndarray, rect: tuple[int, int, int, int]) -> np.ndarray:
        """rgb: (H, W, 3) uint8; rect: dlib (left, top, right, bottom), inclusive.
        Returns (P, 2) int64 landmark pixel coordinates."""
        d = self.d
        left, top, right, bottom = rect
        origin = np.array([left, top], np.float64)
        span = np.array([right - left, bottom - top], np.float64)
        h, w = rgb.shape[:2]
        shape = d.initial_shape.astype(np.float32).copy()
        trees = np.arange(d.splits.shape[1])
        for c in range(d.splits.shape[0]):
            m = similarity_matrix(d.initial_shape, shape).astype(np.float32)
            pts = d.deltas[c] @ m.T + shape[d.anchors[c]]
            pix = round_half_up(pts.astype(np.float64) * span + origin)
            inside = (pix[:, 0] >= 0) & (pix[:, 0] < w) & (pix[:, 1] >= 0) & (pix[:, 1] < h)
            values = np.zeros(len(pix), np.float32)
            values[inside] = gray_at(rgb, pix[inside, 0], pix[inside, 1])
            node = np.zeros(len(trees), np.int64)
            while True:
                live = node < self.n_splits
                if not live.any():
                    break
                idx = d.splits[c, trees, np.minimum(node, self.n_splits - 1)]
                go_left = values[idx[:, 0]] - values[idx[:, 1]] > d.thresholds[c, trees, np.minimum(node, self.n_splits - 1)]
                node = np.where(live, np.where(go_left, 2 * node + 1, 2 * node + 2), node)
            for t, leaf in enumerate(node - self.n_splits):  # dlib adds the trees one after another in float32
                shape += d.leaves[c, t, leaf]
        return round_half_up(shape.astype(np.float64) * span + origin)
