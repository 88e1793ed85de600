"""Torch counterparts of the dlib layers in the face models, built from the reader's Layer records."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from cnntool.dlib import Layer


class ChannelAffine(nn.Module):
    """dlib's affine_ (and a folded bn_con2): y = x·scale[c] + shift[c]."""

    def __init__(self, scale: np.ndarray, shift: np.ndarray):
        super().__init__()
        self.register_buffer("scale", torch.from_numpy(np.asarray(scale, np.float32)).view(1, -1, 1, 1))
        self.register_buffer("shift", torch.from_numpy(np.asarray(shift, np.float32)).view(1, -1, 1, 1))

    def forward(self, x):
        return x * self.scale + self.shift


class GlobalAvgPool(nn.Module):
    """dlib's avg_pool_everything: one mean per channel."""

    def forward(self, x):
        return x.mean(dim=(2, 3))


def pad_to(x: torch.Tensor, c: int, h: int, w: int) -> torch.Tensor:
    """Zero-pad channels and space at the end (bottom/right), as dlib's add_prev does for the smaller input."""
    return F.pad(x, (0, w - x.shape[3], 0, h - x.shape[2], 0, c - x.shape[1]))


def residual_add(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    c, h, w = (max(a.shape[i], b.shape[i]) for i in (1, 2, 3))
    return pad_to(a, c, h, w) + pad_to(b, c, h, w)


def fold_affines(modules: list[nn.Module]) -> list[nn.Module]:
    """Each conv followed by a ChannelAffine becomes one conv (scores move by ~1e-7), ReLUs run in place:
    a third less time and memory for the detector's large canvases."""
    out: list[nn.Module] = []
    for m in modules:
        if isinstance(m, ChannelAffine) and out and isinstance(out[-1], nn.Conv2d):
            conv, scale, shift = out[-1], m.scale.view(-1), m.shift.view(-1)
            with torch.no_grad():
                conv.weight.mul_(scale.view(-1, 1, 1, 1))
                if conv.bias is None:
                    conv.bias = nn.Parameter(shift.clone())
                else:
                    conv.bias.mul_(scale).add_(shift)
            continue
        out.append(nn.ReLU(inplace=True) if isinstance(m, nn.ReLU) else m)
    return out


def to_module(layer: Layer) -> nn.Module:
    a, kind = layer.attrs, layer.kind
    if kind == "con":
        w = torch.from_numpy(np.asarray(layer.arrays["weight"], np.float32))
        conv = nn.Conv2d(w.shape[1], w.shape[0], tuple(a["kernel"]), tuple(a["stride"]), tuple(a["padding"]),
                         bias="bias" in layer.arrays)
        with torch.no_grad():
            conv.weight.copy_(w)
            if conv.bias is not None:
                conv.bias.copy_(torch.from_numpy(np.asarray(layer.arrays["bias"], np.float32)))
        return conv
    if kind == "affine":
        return nn.Identity() if a.get("disabled") else ChannelAffine(layer.arrays["weight"], layer.arrays["bias"])
    if kind == "bn_con":
        # Inference-time batch norm is an affine map; fold it once at load.
        arr = {k: np.asarray(v, np.float64) for k, v in layer.arrays.items()}
        scale = arr["weight"] / np.sqrt(arr["running_var"] + a["eps"])
        return ChannelAffine(scale, arr["bias"] - arr["running_mean"] * scale)
    if kind == "relu":
        return nn.Identity() if a.get("disabled") else nn.ReLU()
    if kind == "max_pool":
        return nn.MaxPool2d(tuple(a["kernel"]), tuple(a["stride"]), tuple(a["padding"]))
    if kind == "avg_pool":
        if tuple(a["kernel"]) == (0, 0):
            return GlobalAvgPool()
        return nn.AvgPool2d(tuple(a["kernel"]), tuple(a["stride"]), tuple(a["padding"]))
    if kind == "fc":
        w = torch.from_numpy(np.asarray(layer.arrays["weight"], np.float32))
        fc = nn.Linear(w.shape[1], w.shape[0], bias="bias" in layer.arrays)
        with torch.no_grad():
            fc.weight.copy_(w)
            if fc.bias is not None:
                fc.bias.copy_(torch.from_numpy(np.asarray(layer.arrays["bias"], np.float32)))
        return fc
    raise ValueError(f"no torch module for dlib layer kind {kind!r}")
