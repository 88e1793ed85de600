"""dlib's MMOD CNN face detector (mmod_human_face_detector) in torch, with dlib's inference around it.

detect(): optional 2× upsampling (dlib's pyramid_up), the tiled 5/6 pyramid, the network over the canvas,
every output cell scoring above the threshold becomes an 80×80 window mapped back to the image through the
network's receptive-field geometry and its pyramid level, then dlib's non-max suppression.

The network runs over the canvas in bands of rows, so memory follows the band, not the photo: its strided
convolutions (no padding) over a band of canvas rows give exactly the feature rows of the whole canvas,
and its padded stride-1 convolutions need only `margin` more feature rows above and below each band.
"""

from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from torch import nn

from cnntool.dlib import DnnFile

from .layers import fold_affines, to_module
from .pyramid import Canvas, canvas_to_image
from .rects import Rect, nms
from .resize import resize_rgb

# Canvas pixels per band of the strided convolutions (~45 bytes each at their peak) and feature rows per
# band of the padded ones: ~200 MB on a 36 MP photo.
STRIDED_BAND_PIXELS = 4_000_000
PADDED_BAND_ROWS = 256


class MMODNet(nn.Module):
    def __init__(self, net: DnnFile):
        super().__init__()
        if net.loss["name"] != "loss_mmod_" or not net.input["name"].startswith("input_rgb_image_pyramid"):
            raise ValueError("not a dlib MMOD detector network")
        self.loss, self.input = net.loss, net.input
        layers = net.layers
        # Strided convolutions without padding first, then "same" stride-1 ones; nothing else moves pixels.
        split = next(i for i, l in enumerate(layers) if l.kind == "con" and any(l.attrs["padding"]))
        strided = [l.attrs for l in layers[:split] if l.kind == "con"]
        padded = [l.attrs for l in layers[split:] if l.kind == "con"]
        if (any(l.kind not in ("con", "affine", "bn_con", "relu") for l in layers)
                or any(any(a["padding"]) for a in strided)
                or any(tuple(a["stride"]) != (1, 1) or tuple(a["padding"]) != tuple(k // 2 for k in a["kernel"])
                       for a in padded)):
            raise ValueError("not a dlib MMOD detector network of the usual shape")
        self.strided = nn.Sequential(*fold_affines([to_module(l) for l in layers[:split]]))
        self.padded = nn.Sequential(*fold_affines([to_module(l) for l in layers[split:]]))
        # Canvas rows [o·stride, o·stride + extent) make feature row o; output row r reads feature rows r ± margin.
        self.stride, self.extent = 1, 1
        for a in strided:
            self.extent += (a["kernel"][0] - 1) * self.stride
            self.stride *= a["stride"][0]
        self.margin = sum(a["padding"][0] for a in padded)
        # Output cell → canvas point: undo each conv from the last to the first (x·stride − pad + kernel//2).
        self.geometry = [(l.attrs["stride"], l.attrs["padding"], l.attrs["kernel"]) for l in net.layers if l.kind == "con"]
        self.register_buffer("mean", torch.tensor([net.input["avg_red"], net.input["avg_green"],
                                                   net.input["avg_blue"]]).view(3, 1, 1))

    def forward(self, canvas: torch.Tensor) -> torch.Tensor:
        return self.padded(self.strided(canvas))

    def score_bands(self, canvas: Canvas) -> Iterator[tuple[int, torch.Tensor]]:
        """(first output row, score rows) over the whole canvas, one band at a time."""
        rows = (canvas.height - self.extent) // self.stride + 1
        if rows <= 0 or canvas.width < self.extent:
            return
        chunk = max(1, STRIDED_BAND_PIXELS // (canvas.width * self.stride))
        features, first = None, 0  # feature rows [first, first + len) of the whole canvas
        for r0 in range(0, rows, PADDED_BAND_ROWS):
            r1 = min(rows, r0 + PADDED_BAND_ROWS)
            lo, hi = max(0, r0 - self.margin), min(rows, r1 + self.margin)
            made = first + (0 if features is None else features.shape[2])
            kept = [] if features is None else [features[:, :, lo - first:]]
            new = [self.strided(canvas.strip(f0 * self.stride, (min(hi, f0 + chunk) - 1) * self.stride + self.extent))
                   for f0 in range(made, hi, chunk)]
            features, first = torch.cat(kept + new, 2), lo
            yield r0, self.padded(features)[0, 0, r0 - lo:r1 - lo]

    def output_to_canvas(self, x: float, y: float) -> tuple[float, float]:
        for stride, pad, kernel in reversed(self.geometry):
            x = x * stride[1] - pad[1] + kernel[1] // 2
            y = y * stride[0] - pad[0] + kernel[0] // 2
        return x, y


def upsample2(rgb: np.ndarray) -> np.ndarray:
    """dlib's pyramid_up with pyramid_down<2>: its bilinear resize to (2·rows+1, 2·cols+2)."""
    return resize_rgb(rgb, 2 * rgb.shape[0] + 1, 2 * rgb.shape[1] + 2)


@torch.no_grad()
def detect(model: MMODNet, rgb: np.ndarray, upsample: int = 0, threshold: float = 0.0) -> list[tuple[float, Rect]]:
    """(score, dlib Rect) for each face in an (H, W, 3) uint8 RGB image, best first."""
    for _ in range(upsample):
        rgb = upsample2(rgb)
    canvas = Canvas(rgb, model.mean, model.input["pyramid_padding"], model.input["pyramid_outer_padding"])
    window = model.loss["detector_windows"][0]
    half_w, half_h = (window["width"] - 1) / 2, (window["height"] - 1) / 2
    candidates = []
    for r0, scores in model.score_bands(canvas):
        for r, c in torch.nonzero(scores > threshold).tolist():
            x, y = model.output_to_canvas(c, r0 + r)
            box = canvas_to_image(canvas.rects, x - half_w, y - half_h, x + half_w, y + half_h)
            candidates.append((float(scores[r, c]), Rect.from_floats(*box)))
    opts = model.loss["overlaps_nms"]
    kept = nms(candidates, opts["iou_thresh"], opts["percent_covered_thresh"])
    for _ in range(upsample):  # pyramid_down<2>::rect_down of the integer rectangle
        kept = [(s, Rect.from_floats(r.left / 2 - 1.25, r.top / 2 - 0.75, r.right / 2 - 1.25, r.bottom / 2 - 0.75))
                for s, r in kept]
    return kept
