"""Decode a long run of dlib variable-length integers with numpy instead of a Python loop.

A shape predictor file is nothing but dlib integers (its floats are mantissa/exponent integer pairs), and
each integer's length is given by its first byte. Finding where every integer starts is a walk along a
linked list (next = here + 1 + (byte & 0x0F)); we take long strides with a doubled jump table, then fill in
all the starts between the strides in parallel. The values then come from one gather of 8-byte windows.
"""

from __future__ import annotations

import numpy as np

from .stream import DlibFormatError

_STRIDE_LOG2 = 6  # 64 integers per stride: few Python steps, few table doublings
_MASKS = np.array([(1 << (8 * k)) - 1 for k in range(9)], dtype=np.uint64)


def token_starts(buf: np.ndarray, start: int = 0) -> np.ndarray:
    """Byte offsets of every integer from `start` to the end of `buf` (uint8)."""
    n = len(buf)
    step = np.arange(1, n + 2, dtype=np.int32)  # position n is a terminal that maps to itself
    step[:n] += buf & 0x0F
    np.minimum(step, n, out=step)
    jump = step
    for _ in range(_STRIDE_LOG2):
        jump = jump[jump]
    anchors = []
    p = start
    while p < n:
        anchors.append(p)
        p = int(jump[p])
    del jump
    stride = 1 << _STRIDE_LOG2
    starts = np.empty((len(anchors), stride), dtype=np.int64)
    cur = np.asarray(anchors, dtype=np.int32)
    for j in range(stride):
        starts[:, j] = cur
        cur = step[cur]
    starts = starts.reshape(-1)
    return starts[starts < n]


def decode_ints(buf: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """The signed values of the dlib integers beginning at `starts`."""
    ctrl = buf[starts]
    size = ctrl & 0x0F
    if np.any(ctrl & 0x70) or np.any(size > 8):
        raise DlibFormatError("bad integer control byte in a token run")
    if len(starts) and starts[-1] + 1 + int(size[-1]) > len(buf):
        raise DlibFormatError("the last integer runs past the end of the data")
    padded = np.concatenate([buf, np.zeros(8, np.uint8)])
    windows = np.lib.stride_tricks.as_strided(padded, shape=(len(buf) + 1, 8), strides=(1, 1), writeable=False)
    value = np.ascontiguousarray(windows[starts + 1]).view("<u8").reshape(-1) & _MASKS[size]
    signed = value.astype(np.int64)
    return np.where(ctrl & 0x80, -signed, signed)


def ints_to_floats(mantissa: np.ndarray, exponent: np.ndarray) -> np.ndarray:
    """dlib floats from their (mantissa, exponent) pairs, as float32."""
    out = np.ldexp(mantissa.astype(np.float64), np.clip(exponent, -1100, 1100).astype(np.int32))
    out[exponent == 32000] = np.inf
    out[exponent == 32001] = -np.inf
    out[exponent == 32002] = np.nan
    return out.astype(np.float32)
