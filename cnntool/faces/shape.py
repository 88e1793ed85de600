"""dlib's regression-tree shape predictor (Kazemi & Sullivan cascade).

Per cascade: place the feature pixels relative to the current shape (a similarity transform from the mean
shape), read their grayscale intensities, run all trees at once (depth-first descent vectorized over the
trees), add the chosen leaves. Coordinates live in the face box's normalized frame until the end, and are
rounded to whole pixels wherever dlib rounds (feature pixel positions and the returned landmarks). The
compiled module _native runs the same cascade as one loop (a face in a fraction of a millisecond); the numpy
version below is used where it could not be built.
"""

from __future__ import annotations

import numpy as np

from cnntool.dlib import ShapePredictorData

try:
    from . import _native
except ImportError:  # built at install where a C compiler is found
    _native = None


def gray_at(rgb: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """dlib's rgb → 8-bit grayscale (the integer mean of the three channels) at the given pixels, 0 outside the
    image. Only those pixels are read: the trees read a few hundred, and a photo's whole grey copy would cost
    more than the prediction. rgb must be C-contiguous (as_rgb_array's), so that one flat gather reads them."""
    h, w = rgb.shape[:2]
    inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
    picked = rgb.reshape(-1, 3)[np.where(inside, y * w + x, 0)].astype(np.int32)
    return ((picked[:, 0] + picked[:, 1] + picked[:, 2]) // 3 * inside).astype(np.float32)


def round_half_up(x: np.ndarray) -> np.ndarray:
    return np.floor(x + 0.5).astype(np.int64)


def similarity_matrix(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The 2×2 part (scale · rotation) of the least-squares similarity mapping src points onto dst: Umeyama's
    solution (dlib's find_similarity_transform), which in 2-D is [[p, −q], [q, p]] with p and q the summed dot
    and cross products of the centred points over the source's summed squares; no SVD needed."""
    a = src.astype(np.float64) - src.mean(axis=0, dtype=np.float64)
    b = dst.astype(np.float64) - dst.mean(axis=0, dtype=np.float64)
    norm = (a * a).sum()
    if norm == 0:  # all source points alike: no scale or rotation to speak of
        return np.eye(2)
    p = (a * b).sum() / norm
    q = (a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]).sum() / norm
    return np.array([[p, -q], [q, p]])


class ShapeModel:
    def __init__(self, data: ShapePredictorData):
        self.d = data
        self.n_splits = data.splits.shape[2]
        self.depth = int(np.log2(self.n_splits + 1))
        if 2 ** self.depth - 1 != self.n_splits or data.leaves.shape[2] != self.n_splits + 1:
            raise ValueError("shape predictor trees are not complete binary trees")
        # Indices come from a file: checked once here, so that no read can leave its array.
        if not (0 <= data.splits.min() and data.splits.max() < data.deltas.shape[1]
                and 0 <= data.anchors.min() and data.anchors.max() < data.initial_shape.shape[0]):
            raise ValueError("shape predictor: a feature or anchor index is out of range")
        self.left_pixel = np.ascontiguousarray(data.splits[..., 0])  # (C, T, S)
        self.right_pixel = np.ascontiguousarray(data.splits[..., 1])

    def predict(self, rgb: np.ndarray, rect: tuple[int, int, int, int]) -> np.ndarray:
        """rgb: (H, W, 3) uint8, C-contiguous; rect: dlib (left, top, right, bottom), inclusive.
        Returns (P, 2) int64 landmark pixel coordinates."""
        if _native is None:
            return self.predict_numpy(rgb, rect)
        d = self.d
        out = np.empty_like(d.initial_shape, dtype=np.int64)
        _native.shape_predict(rgb, rgb.shape[0], rgb.shape[1], tuple(int(v) for v in rect), d.initial_shape,
                              d.deltas, d.anchors, d.splits, d.thresholds, d.leaves, d.splits.shape[0],
                              d.splits.shape[1], self.depth, d.deltas.shape[1], d.initial_shape.shape[0], out)
        return out

    def predict_numpy(self, rgb: np.ndarray, rect: tuple[int, int, int, int]) -> np.ndarray:
        d = self.d
        left, top, right, bottom = rect
        origin = np.array([left, top], np.float64)
        span = np.array([right - left, bottom - top], np.float64)
        shape = d.initial_shape.astype(np.float32).copy()
        trees = np.arange(d.splits.shape[1])
        for c in range(d.splits.shape[0]):
            m = similarity_matrix(d.initial_shape, shape).astype(np.float32)
            dx, dy = d.deltas[c, :, 0], d.deltas[c, :, 1]  # products summed as dlib does: no BLAS kernel (FMA)
            pts = np.stack([m[0, 0] * dx + m[0, 1] * dy, m[1, 0] * dx + m[1, 1] * dy], axis=1) + shape[d.anchors[c]]
            pix = round_half_up(pts.astype(np.float64) * span + origin)
            values = gray_at(rgb, pix[:, 0], pix[:, 1])
            # Every split of every tree at once (one gather instead of one per level), then the descent.
            go_left = values[self.left_pixel[c]] - values[self.right_pixel[c]] > d.thresholds[c]
            node = np.zeros(len(trees), np.int64)
            for _ in range(self.depth):
                node = 2 * node + 2 - go_left[trees, node]
            # dlib adds the trees' leaves to the shape one after another in float32. Summing the leading axis of
            # a C-contiguous array adds its rows in that order (numpy sums pairwise only along the contiguous
            # axis), so one reduction gives dlib's rounding exactly, without a Python loop over the trees.
            shape = np.add.reduce(np.concatenate([shape[None], d.leaves[c, trees, node - self.n_splits]]), axis=0)
        return round_half_up(shape.astype(np.float64) * span + origin)
