"""Read a dlib shape_predictor (cascade of regression-tree forests) into dense numpy arrays.

File layout: version 1; the mean shape (a float column of x0, y0, x1, y1, …); per cascade a forest of trees,
each tree = its splits (feature-pixel index pair + threshold, in breadth-first node order) and its leaves (a
shape-delta column each); per cascade the anchor landmark of each feature pixel; per cascade each feature
pixel's offset from its anchor in mean-shape coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .stream import DlibFormatError
from .tokens import decode_ints, ints_to_floats, token_starts


@dataclass
class ShapePredictorData:
    initial_shape: np.ndarray  # (P, 2) float32, normalized face-box coordinates
    splits: np.ndarray  # (C, T, S, 2) int32 feature-pixel indices compared at each split node
    thresholds: np.ndarray  # (C, T, S) float32
    leaves: np.ndarray  # (C, T, L, P, 2) float32 shape increments
    anchors: np.ndarray  # (C, F) int32 landmark each feature pixel hangs off
    deltas: np.ndarray  # (C, F, 2) float32 offset of each feature pixel from its anchor

    def arrays(self) -> dict[str, np.ndarray]:
        return dict(vars(self))


class _Cursor:
    def __init__(self, values: np.ndarray):
        self.v, self.i = values, 0

    def take(self, n: int) -> np.ndarray:
        if self.i + n > len(self.v):
            raise DlibFormatError("shape predictor data ends early")
        out = self.v[self.i:self.i + n]
        self.i += n
        return out

    def one(self) -> int:
        return int(self.take(1)[0])

    def expect(self, value: int, what: str) -> None:
        got = self.one()
        if got != value:
            raise DlibFormatError(f"expected {what} = {value}, found {got}")

    def column(self) -> np.ndarray:
        """A dlib float column matrix: -rows, -1, then rows floats."""
        rows = -self.one()
        self.expect(-1, "matrix columns (negated)")
        pairs = self.take(2 * rows).reshape(rows, 2)
        return ints_to_floats(pairs[:, 0], pairs[:, 1])


def _read_forest(cur: _Cursor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One cascade's forest. All trees share one shape, so each is a row of a (trees, tokens) table."""
    n_trees = cur.one()
    n_splits = int(cur.v[cur.i])
    n_leaves = int(cur.v[cur.i + 1 + 4 * n_splits])
    n_vals = -int(cur.v[cur.i + 2 + 4 * n_splits])
    leaf_len = 2 + 2 * n_vals
    tree_len = 1 + 4 * n_splits + 1 + n_leaves * leaf_len
    table = cur.take(n_trees * tree_len).reshape(n_trees, tree_len)
    split_part = table[:, 1:1 + 4 * n_splits].reshape(n_trees, n_splits, 4)
    leaf_part = table[:, 2 + 4 * n_splits:].reshape(n_trees, n_leaves, leaf_len)
    if (np.any(table[:, 0] != n_splits) or np.any(table[:, 1 + 4 * n_splits] != n_leaves)
            or np.any(leaf_part[:, :, 0] != -n_vals) or np.any(leaf_part[:, :, 1] != -1)):
        raise DlibFormatError("trees of one cascade differ in shape")
    splits = split_part[:, :, :2].astype(np.int32)
    thresholds = ints_to_floats(split_part[:, :, 2], split_part[:, :, 3])
    vals = leaf_part[:, :, 2:].reshape(n_trees, n_leaves, n_vals, 2)
    leaves = ints_to_floats(vals[..., 0], vals[..., 1]).reshape(n_trees, n_leaves, n_vals // 2, 2)
    return splits, thresholds, leaves


def read_shape_predictor(path) -> ShapePredictorData:
    buf = np.fromfile(path, dtype=np.uint8)
    cur = _Cursor(decode_ints(buf, token_starts(buf)))
    cur.expect(1, "shape_predictor version")
    initial = cur.column().reshape(-1, 2)
    forests = [_read_forest(cur) for _ in range(cur.one())]
    n_cascades = len(forests)
    cur.expect(n_cascades, "anchor list count")
    anchors = [cur.take(cur.one()).astype(np.int32) for _ in range(n_cascades)]
    cur.expect(n_cascades, "delta list count")
    deltas = []
    for _ in range(n_cascades):
        pairs = cur.take(4 * cur.one()).reshape(-1, 2, 2)
        deltas.append(ints_to_floats(pairs[..., 0], pairs[..., 1]))
    if cur.i != len(cur.v):
        raise DlibFormatError(f"{len(cur.v) - cur.i} integers left after the shape predictor")
    return ShapePredictorData(
        initial_shape=initial,
        splits=np.stack([f[0] for f in forests]),
        thresholds=np.stack([f[1] for f in forests]),
        leaves=np.stack([f[2] for f in forests]),
        anchors=np.stack(anchors),
        deltas=np.stack(deltas),
    )
