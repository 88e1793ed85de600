"""dlib's bilinear resize_image, to the bit: the detector's scores depend on the exact pixels of its pyramid.

dlib samples output column c at x = c·(in−1)/(out−1) and row r likewise (corner-aligned), but computes the
column positions four at a time in float32 SSE lanes that accumulate their step, and the last columns (those
whose right neighbour would leave the image) one by one in double; row positions accumulate in double. The
float32 rounding of those positions moves samples by up to ~0.05 px on a wide image, which is why a generic
bilinear resize differs from dlib's by up to ~2e-3 in detector score. Two pixel types are used:
- uint8 RGB (pyramid_up before detection): results truncated toward zero;
- float32 planes (the pyramid levels, built inside dlib's input layer on the normalized tensor).
Work is done in row chunks, so a level can be produced a band of rows at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

SSE_LANES = 4


@dataclass
class Sampling:
    """Where each output row and column of one resize samples its input."""

    top: np.ndarray  # (out_h,) int64 input row above the sample
    bottom: np.ndarray  # (out_h,) input row below (clamped)
    row_frac: np.ndarray  # (out_h,) float64 distance below `top`
    lane_x: np.ndarray  # (n_lane,) float32 positions of the SSE columns
    tail_x: np.ndarray  # (out_w - n_lane,) float64 positions of the remaining columns
    in_w: int

    @classmethod
    def plan(cls, in_h: int, in_w: int, out_h: int, out_w: int) -> "Sampling":
        y_scale = (in_h - 1) / max(out_h - 1, 1)
        ys = np.add.accumulate(np.r_[-y_scale, np.full(out_h, y_scale)])[1:]  # y += y_scale, row by row
        top = np.floor(ys).astype(np.int64)
        x_scale = (in_w - 1) / max(out_w - 1, 1)
        # Lane j starts at (j − 4)·x_scale (double, then float32) and adds float32(4·x_scale) per block.
        blocks = out_w // SSE_LANES + 2
        steps = np.full((blocks + 1, SSE_LANES), np.float32(SSE_LANES * x_scale), np.float32)
        steps[0] = [(j - SSE_LANES) * x_scale for j in range(SSE_LANES)]
        lanes = np.add.accumulate(steps, axis=0, dtype=np.float32)[1:]
        # A block runs only while its last lane's right neighbour is inside the image.
        stop = int(np.nonzero(lanes[:, -1].astype(np.int64) + 1 >= in_w)[0][0])
        n_lane = min(stop * SSE_LANES, out_w)
        tail = np.add.accumulate(np.r_[-x_scale + n_lane * x_scale, np.full(out_w - n_lane, x_scale)])[1:]
        return cls(top, np.minimum(top + 1, in_h - 1), ys - top, lanes.reshape(-1)[:n_lane], tail, in_w)

    @property
    def out_w(self) -> int:
        return len(self.lane_x) + len(self.tail_x)

    def needed_rows(self, a: int, b: int) -> tuple[int, int]:
        """Input rows [first, last) that output rows [a, b) read."""
        return int(self.top[a]), int(self.bottom[b - 1]) + 1


def _columns(src: torch.Tensor, left: np.ndarray, right: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    flat = src.reshape(-1, src.shape[-1])  # a 2-D gather is several times faster than a 3-D one
    return tuple(flat.index_select(1, torch.from_numpy(i)).view(*src.shape[:-1], len(i)) for i in (left, right))


def resize_rows(s: Sampling, src: torch.Tensor, first: int, a: int, b: int) -> torch.Tensor:
    """Output rows [a, b) of a float32 resize; src (C, n, in_w) holds input rows from `first`."""
    ti = torch.from_numpy(s.top[a:b] - first)
    bi = torch.from_numpy(s.bottom[a:b] - first)
    out = torch.empty(src.shape[0], b - a, s.out_w)
    n = len(s.lane_x)
    if n:
        left = s.lane_x.astype(np.int64)  # truncation, as SSE's cvttps
        lr = torch.from_numpy(s.lane_x - left.astype(np.float32))
        tb = torch.from_numpy(s.row_frac[a:b].astype(np.float32))[:, None]
        itb = torch.from_numpy((1 - s.row_frac[a:b]).astype(np.float32))[:, None]
        lft, rgt = _columns(src, left, left + 1)
        lanes = out[..., :n]
        torch.mul(itb * (1 - lr), lft.index_select(1, ti), out=lanes)  # ((tl + tr) + bl) + br, in float32
        lanes += itb * lr * rgt.index_select(1, ti)
        lanes += tb * (1 - lr) * lft.index_select(1, bi)
        lanes += tb * lr * rgt.index_select(1, bi)
    if len(s.tail_x):
        left = np.floor(s.tail_x).astype(np.int64)
        lr = torch.from_numpy((s.tail_x - left).astype(np.float32))  # float lr_frac, double tb_frac
        lft, rgt = _columns(src, left, np.minimum(left + 1, s.in_w - 1))
        upper = ((1 - lr) * lft.index_select(1, ti) + lr * rgt.index_select(1, ti)).double()
        lower = ((1 - lr) * lft.index_select(1, bi) + lr * rgt.index_select(1, bi)).double()
        tb = torch.from_numpy(s.row_frac[a:b])[:, None]
        out[..., n:] = ((1 - tb) * upper + tb * lower).float()
    return out


def resize_rgb(rgb: np.ndarray, out_h: int, out_w: int, chunk_pixels: int = 1 << 20) -> np.ndarray:
    """dlib's resize_image for uint8 RGB (H, W, 3): float32 lanes then a double tail, truncated to uint8."""
    in_h, in_w = rgb.shape[:2]
    s = Sampling.plan(in_h, in_w, out_h, out_w)
    out = np.empty((out_h, out_w, 3), np.uint8)
    n = len(s.lane_x)
    left = s.lane_x.astype(np.int64)
    lr = torch.from_numpy(s.lane_x - left.astype(np.float32))
    t_left = np.floor(s.tail_x).astype(np.int64)
    t_lr = torch.from_numpy(s.tail_x - t_left)
    step = max(1, chunk_pixels // out_w)
    for a in range(0, out_h, step):
        b = min(out_h, a + step)
        first, last = s.needed_rows(a, b)
        rows = torch.tensor(rgb[first:last]).permute(2, 0, 1)  # (3, n, W) uint8
        ti, bi = torch.from_numpy(s.top[a:b] - first), torch.from_numpy(s.bottom[a:b] - first)
        target = torch.from_numpy(out[a:b]).permute(2, 0, 1)
        if n:
            lft, rgt = (c.float() for c in _columns(rows, left, left + 1))
            tb = torch.from_numpy(s.row_frac[a:b].astype(np.float32))[:, None]
            itb = torch.from_numpy((1 - s.row_frac[a:b]).astype(np.float32))[:, None]
            v = itb * (1 - lr) * lft.index_select(1, ti)
            v += itb * lr * rgt.index_select(1, ti)
            v += tb * (1 - lr) * lft.index_select(1, bi)
            v += tb * lr * rgt.index_select(1, bi)
            target[..., :n] = v.to(torch.int32).to(torch.uint8)  # toward zero, as cvttps
        if len(s.tail_x):
            lft, rgt = (c.double() for c in _columns(rows, t_left, np.minimum(t_left + 1, in_w - 1)))
            tb = torch.from_numpy(s.row_frac[a:b])[:, None]
            v = (1 - tb) * ((1 - t_lr) * lft.index_select(1, ti) + t_lr * rgt.index_select(1, ti)) \
                + tb * ((1 - t_lr) * lft.index_select(1, bi) + t_lr * rgt.index_select(1, bi))
            target[..., n:] = v.to(torch.int32).to(torch.uint8)
    return out
