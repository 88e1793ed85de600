"""Batched image augmentation on tensors (one call per batch, no per-sample Python).

Geometry (shift, rotation, scale, horizontal flip) is one affine warp of the whole batch in pixel space
(0..255 floats) with the spec's fill colour outside the image; random erasing works on the normalized
batch. Random numbers come from torch's global generator, which the engine seeds per step, so a run is
repeatable and can resume mid-epoch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cnntool.options import option

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation of whole images (classify, verify-face)."""

    crop_pad: int = option(0, "--crop-pad", min=0, help="Random crop with this much padding (pixels).")
    shift: float = option(0.0, "--shift", min=0.0, help="Random shift, fraction of the size.")
    rotate: float = option(0.0, "--rotate", min=0.0, help="Random rotation, ± degrees.")
    scale: float = option(0.0, "--scale", min=0.0, help="Random scale, ± fraction.")
    hflip: bool = option(False, "--hflip", help="Random horizontal flips.")
    # elastic distortion (Simard et al. 2003)
    elastic: float = option(0.0, "--elastic", min=0.0, help="Elastic distortion, largest displacement in pixels.")
    erase: float = option(0.0, "--erase", min=0.0, max=1.0, help="Random-erasing probability.")
    low_res: float = option(0.0, "--low-res", min=0.0, max=1.0, help="Share of images shrunk to 6–16 px and enlarged "
                            "back: coarse, blurred versions (as scikit-learn's 8×8 digits).")
    stroke: float = option(0.0, "--stroke", min=0.0, max=1.0, help="Share of images whose light strokes are "
                           "thickened or thinned (a 3×3 max or min filter): other pens and print weights.")

    @property
    def geometric(self) -> bool:
        return bool(self.crop_pad or self.shift or self.rotate or self.scale or self.hflip or self.elastic)

    @property
    def degrading(self) -> bool:
        return bool(self.low_res or self.stroke)

    @property
    def enabled(self) -> bool:
        return self.geometric or self.degrading or self.erase > 0

    def describe(self) -> str:
        parts = [f"{k}={v}" for k, v in self.__dict__.items() if v]
        return ", ".join(parts) or "none"


@dataclass(frozen=True)
class FrameAugment:
    """Augmentation that moves targets with the image (localize's box, landmarks' points): shift, scale and
    (landmarks) rotation in frame units, then brightness/contrast jitter. No flips: a mirrored digit is another
    shape, and mirrored points swap left and right."""

    augment: bool = option(True, "--augment/--no-augment", help="Box/point-aware affine augmentation and "
                           "brightness/contrast jitter.")
    rotate: float = option(8.0, "--rotate", min=0.0, max=45.0, help="Random rotation, ± degrees.")
    shift: float = option(0.08, "--shift", min=0.0, max=0.5, help="Random shift, ± share of the frame.")
    scale: float = option(0.12, "--scale", min=0.0, max=0.5, help="Random scale, ± share.")
    jitter: float = option(0.3, "--jitter", min=0.0, max=1.0, help="Brightness/contrast factors within 1 ± jitter.")


def degrade(pixels: "torch.Tensor", cfg: AugmentConfig) -> "torch.Tensor":
    """--stroke and --low-res on a float batch (N, C, H, W) in 0..255: each picks its share of the images; the
    low resolution (one per batch) is drawn from 6..16 px."""
    import torch
    import torch.nn.functional as F

    n, _, h, w = pixels.shape
    dev = pixels.device
    if cfg.stroke:
        chosen = (torch.rand(n, device=dev) < cfg.stroke).view(n, 1, 1, 1)
        thicker = (torch.rand(n, device=dev) < 0.5).view(n, 1, 1, 1)
        dilated = F.max_pool2d(pixels, 3, 1, 1)
        eroded = -F.max_pool2d(-pixels, 3, 1, 1)
        pixels = torch.where(chosen, torch.where(thicker, dilated, eroded), pixels)
    if cfg.low_res:
        side = int(torch.randint(6, 17, ()).item())
        chosen = (torch.rand(n, device=dev) < cfg.low_res).view(n, 1, 1, 1)
        coarse = F.interpolate(F.interpolate(pixels, size=(side, side), mode="area"), size=(h, w), mode="bilinear",
                               align_corners=False)
        pixels = torch.where(chosen, coarse, pixels)
    return pixels


def jitter(pixels: "torch.Tensor", amount: float) -> "torch.Tensor":
    """Per-image brightness and contrast in one batched op (0..255 floats): torchvision's per-image
    ColorJitter costs more than the training step on a CPU."""
    import torch

    n = len(pixels)
    brightness = 1 + (torch.rand(n, 1, 1, 1, device=pixels.device) * 2 - 1) * amount
    contrast = 1 + (torch.rand(n, 1, 1, 1, device=pixels.device) * 2 - 1) * amount
    mean = pixels.mean(dim=(1, 2, 3), keepdim=True)
    return ((pixels - mean) * contrast + mean * brightness).clamp(0, 255)


def warp(pixels: "torch.Tensor", cfg: AugmentConfig, fill: float = 0.0) -> "torch.Tensor":
    """Random affine warp of a float batch (N, C, H, W) in 0..255."""
    import torch
    import torch.nn.functional as F

    n, _, h, w = pixels.shape
    dev = pixels.device
    angle = (torch.rand(n, device=dev) * 2 - 1) * math.radians(cfg.rotate)
    zoom = 1 + (torch.rand(n, device=dev) * 2 - 1) * cfg.scale
    flip = torch.where(torch.rand(n, device=dev) < 0.5, -1.0, 1.0) if cfg.hflip else torch.ones(n, device=dev)
    # Translation in normalized [-1, 1] units: one pixel is 2/size.
    tx = (torch.rand(n, device=dev) * 2 - 1) * cfg.shift * 2
    ty = (torch.rand(n, device=dev) * 2 - 1) * cfg.shift * 2
    if cfg.crop_pad:
        tx = tx + torch.randint(-cfg.crop_pad, cfg.crop_pad + 1, (n,), device=dev) * (2.0 / w)
        ty = ty + torch.randint(-cfg.crop_pad, cfg.crop_pad + 1, (n,), device=dev) * (2.0 / h)
    cos, sin = torch.cos(angle) / zoom, torch.sin(angle) / zoom
    theta = torch.stack([torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(pixels.shape), align_corners=False)
    if cfg.elastic:
        grid = grid + _elastic_field(n, h, w, cfg.elastic, dev)
    # Pure integer shifts and flips land on pixel centres: nearest keeps them exact and is cheaper.
    mode = "bilinear" if (cfg.rotate or cfg.scale or cfg.shift or cfg.elastic) else "nearest"
    out = F.grid_sample(pixels - fill, grid, mode=mode, padding_mode="zeros", align_corners=False)
    return out + fill


def zoom_and_shift(pixels: "torch.Tensor", zoom: "torch.Tensor", tx: "torch.Tensor", ty: "torch.Tensor", *,
                   fill: float, mode: str = "bilinear") -> "torch.Tensor":
    """Each image of a float batch (N, C, H, W) zoomed about its centre by zoom[i] and shifted by (tx[i], ty[i])
    in frame units; uncovered pixels take `fill`. The box- and point-aware tasks move their targets by the
    same numbers."""
    import torch
    import torch.nn.functional as F

    zeros = torch.zeros_like(zoom)
    # grid_sample reads the input at q = (p - 2t) / zoom for each output point p, both in [-1, 1] units
    theta = torch.stack([torch.stack([1 / zoom, zeros, -2 * tx / zoom], 1),
                         torch.stack([zeros, 1 / zoom, -2 * ty / zoom], 1)], 1)
    grid = F.affine_grid(theta, list(pixels.shape), align_corners=False)
    return F.grid_sample(pixels - fill, grid, mode=mode, padding_mode="zeros", align_corners=False) + fill


def _elastic_field(n: int, h: int, w: int, pixels: float, device) -> "torch.Tensor":
    """Uniform noise smoothed by a Gaussian (sigma 1/7 of the image side, Simard's 4 px at 28 px), scaled so
    each image's largest displacement is `pixels`; returned in grid units (N, H, W, 2)."""
    import torch
    import torch.nn.functional as F

    sigma = max(h, w) / 7
    radius = int(2 * sigma)
    x = torch.arange(-radius, radius + 1, dtype=torch.float32, device=device)
    g = torch.exp(-x**2 / (2 * sigma**2))
    g = g / g.sum()
    field = (torch.rand(n * 2, 1, h, w, device=device) * 2 - 1)
    field = F.conv2d(F.pad(field, (radius, radius, 0, 0), mode="reflect"), g.view(1, 1, 1, -1))
    field = F.conv2d(F.pad(field, (0, 0, radius, radius), mode="reflect"), g.view(1, 1, -1, 1))
    field = field.view(n, 2, h, w)
    field = field / field.abs().amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-8) * pixels
    scale = torch.tensor([2.0 / w, 2.0 / h], device=device)  # pixels → grid units
    return field.permute(0, 2, 3, 1) * scale


def erase(batch: "torch.Tensor", probability: float) -> "torch.Tensor":
    """Random erasing (Zhong et al.): a rectangle of 2–33 % of the area, aspect 0.3–3.3, set to 0
    (the mean, as the batch is normalized), on each image with the given probability."""
    import torch

    n, _, h, w = batch.shape
    dev = batch.device
    area = (torch.rand(n, device=dev) * 0.31 + 0.02) * h * w
    aspect = torch.exp(torch.empty(n, device=dev).uniform_(math.log(0.3), math.log(3.3)))
    eh = torch.sqrt(area * aspect).clamp(1, h).long()
    ew = torch.sqrt(area / aspect).clamp(1, w).long()
    y0 = (torch.rand(n, device=dev) * (h - eh + 1)).long()
    x0 = (torch.rand(n, device=dev) * (w - ew + 1)).long()
    apply = torch.rand(n, device=dev) < probability
    ys = torch.arange(h, device=dev).view(1, h, 1)
    xs = torch.arange(w, device=dev).view(1, 1, w)
    inside = ((ys >= y0.view(-1, 1, 1)) & (ys < (y0 + eh).view(-1, 1, 1)) & (xs >= x0.view(-1, 1, 1))
              & (xs < (x0 + ew).view(-1, 1, 1)) & apply.view(-1, 1, 1))
    return batch.masked_fill(inside.unsqueeze(1), 0.0)
