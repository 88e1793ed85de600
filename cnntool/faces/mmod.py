"""dlib's MMOD CNN face detector (mmod_human_face_detector) in torch, with dlib's inference around it.

detect(): optional 2× upsampling (dlib's pyramid_up), the tiled 5/6 pyramid, one pass of the network over the
canvas, every output cell scoring above the threshold becomes an 80×80 window mapped back to the image
through the network's receptive-field geometry and its pyramid level, then dlib's non-max suppression.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from cnntool.dlib import DnnFile

from .layers import to_module
from .pyramid import canvas_to_image, tile_layout
from .rects import Rect, nms


class MMODNet(nn.Module):
    def __init__(self, net: DnnFile):
        super().__init__()
        if net.loss["name"] != "loss_mmod_" or not net.input["name"].startswith("input_rgb_image_pyramid"):
            raise ValueError("not a dlib MMOD detector network")
        self.loss, self.input = net.loss, net.input
        self.body = nn.Sequential(*(to_module(l) for l in net.layers))
        # Output cell → canvas point: undo each conv from the last to the first (x·stride − pad + kernel//2).
        self.geometry = [(l.attrs["stride"], l.attrs["padding"], l.attrs["kernel"]) for l in net.layers if l.kind == "con"]
        self.register_buffer("mean", torch.tensor([net.input["avg_red"], net.input["avg_green"],
                                                   net.input["avg_blue"]]).view(3, 1, 1))

    def forward(self, canvas: torch.Tensor) -> torch.Tensor:
        return self.body(canvas)

    def output_to_canvas(self, x: float, y: float) -> tuple[float, float]:
        for stride, pad, kernel in reversed(self.geometry):
            x = x * stride[1] - pad[1] + kernel[1] // 2
            y = y * stride[0] - pad[0] + kernel[0] // 2
        return x, y


def upsample2(rgb: np.ndarray) -> np.ndarray:
    """dlib's pyramid_up with pyramid_down<2>: bilinear (corner-aligned) to (2·rows+1, 2·cols+2), truncated."""
    h, w = rgb.shape[:2]
    t = torch.from_numpy(rgb.astype(np.float32)).permute(2, 0, 1)[None]
    up = F.interpolate(t, size=(2 * h + 1, 2 * w + 2), mode="bilinear", align_corners=True)
    return up[0].permute(1, 2, 0).clamp(0, 255).floor().to(torch.uint8).numpy()


def build_canvas(model: MMODNet, rgb: np.ndarray) -> tuple[torch.Tensor, list[Rect]]:
    h, w = rgb.shape[:2]
    rects, nr, nc = tile_layout(h, w, model.input["pyramid_padding"], model.input["pyramid_outer_padding"])
    canvas = torch.zeros(1, 3, nr, nc)
    img = (torch.from_numpy(np.array(rgb, np.uint8)).permute(2, 0, 1).float() - model.mean) / 256.0
    r0 = rects[0]
    canvas[0, :, r0.top:r0.bottom + 1, r0.left:r0.right + 1] = img
    for prev, cur in zip(rects, rects[1:]):
        src = canvas[:, :, prev.top:prev.bottom + 1, prev.left:prev.right + 1]
        size = (cur.bottom - cur.top + 1, cur.right - cur.left + 1)
        canvas[:, :, cur.top:cur.bottom + 1, cur.left:cur.right + 1] = F.interpolate(
            src, size=size, mode="bilinear", align_corners=True)
    return canvas, rects


@torch.no_grad()
def detect(model: MMODNet, rgb: np.ndarray, upsample: int = 0, threshold: float = 0.0) -> list[tuple[float, Rect]]:
    """(score, dlib Rect) for each face in an (H, W, 3) uint8 RGB image, best first."""
    for _ in range(upsample):
        rgb = upsample2(rgb)
    canvas, rects = build_canvas(model, rgb)
    scores = model(canvas)[0, 0]
    window = model.loss["detector_windows"][0]
    half_w, half_h = (window["width"] - 1) / 2, (window["height"] - 1) / 2
    candidates = []
    for r, c in torch.nonzero(scores > threshold).tolist():
        x, y = model.output_to_canvas(c, r)
        box = canvas_to_image(rects, x - half_w, y - half_h, x + half_w, y + half_h)
        candidates.append((float(scores[r, c]), Rect.from_floats(*box)))
    opts = model.loss["overlaps_nms"]
    kept = nms(candidates, opts["iou_thresh"], opts["percent_covered_thresh"])
    for _ in range(upsample):  # pyramid_down<2>::rect_down of the integer rectangle
        kept = [(s, Rect.from_floats(r.left / 2 - 1.25, r.top / 2 - 0.75, r.right / 2 - 1.25, r.bottom / 2 - 0.75))
                for s, r in kept]
    return kept
