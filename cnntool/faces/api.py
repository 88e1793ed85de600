"""Torch-free entry points for the CLI: detect faces, place landmarks, align chips, embed (torch loads lazily).

Models are dlib's, from the PyPI package face-recognition-models (CC0), read without dlib and cached as
safetensors. Boxes are [x1, y1, x2, y2] pixel edges in the given image (dlib's inclusive rectangle
left..right is x1..x2-1). Landmarks are whole pixels, like dlib's.

Licence note: the 68-point landmark model ("68") was trained on iBUG 300-W, whose terms exclude commercial
use. The 5-point model, the detector and the embedding have no such restriction.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from cnntool.dlib import load_dnn, load_shape_predictor, model_path

SAME_PERSON_DISTANCE = 0.6  # dlib's Euclidean threshold for its embedding
# Automatic upsampling: once for images up to this size (faces down to ~40 px found), never above it. An
# upsampled pass costs four times the image; at 2 MP that is what an 8 MP photo costs without, and on a
# larger photo a face under 80 px is a speck in a crowd.
AUTO_UPSAMPLE_MAX_PIXELS = 2_000_000
# dlib's detection window is 80 px, 40 px after one 2x upsampling: a smaller image holds no face.
SMALLEST_FACE_SIDE = 40

POINT_NAMES_5 = ["right_eye_outer", "right_eye_inner", "left_eye_outer", "left_eye_inner", "nose_base"]


@dataclass
class Detection:
    box: list[float]  # [x1, y1, x2, y2]
    score: float
    label: str = "face"


def as_rgb_array(img) -> np.ndarray:
    """PIL image (any mode) or (H, W, 3) uint8 array → contiguous (H, W, 3) uint8 RGB array."""
    if isinstance(img, Image.Image):
        img = img.convert("RGB")
    arr = np.asarray(img)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.dtype != np.uint8:
        raise ValueError(f"expected an RGB image, got an array of shape {arr.shape} and dtype {arr.dtype}")
    return np.ascontiguousarray(arr)


def box_to_rect(box) -> tuple[int, int, int, int]:
    x1, y1, x2, y2 = (int(round(v)) for v in box)
    return x1, y1, x2 - 1, y2 - 1


@lru_cache(maxsize=None)
def _detector_net():
    from .mmod import MMODNet
    return MMODNet(load_dnn(model_path("detector"))).eval()


@lru_cache(maxsize=None)
def _embedding_net():
    from .resnet import FaceResNet
    return FaceResNet(load_dnn(model_path("embedding"))).eval()


@lru_cache(maxsize=None)
def _shape_model(kind: str):
    from .shape import ShapeModel
    return ShapeModel(load_shape_predictor(model_path("face" + kind)))


def auto_upsample(height: int, width: int) -> int:
    return 1 if height * width <= AUTO_UPSAMPLE_MAX_PIXELS else 0


class FaceDetector:
    """dlib's MMOD CNN face detector. upsample=1 finds faces down to ~40 px (dlib's usual setting) at ~4× cost;
    None chooses per image (auto_upsample)."""

    def __init__(self, upsample: int | None = None, threshold: float = 0.0):
        self.upsample, self.threshold = upsample, threshold

    def upsample_for(self, height: int, width: int) -> int:
        return auto_upsample(height, width) if self.upsample is None else self.upsample

    def detect(self, img) -> list[Detection]:
        from .mmod import detect
        rgb = as_rgb_array(img)
        upsample = self.upsample_for(*rgb.shape[:2])
        if min(rgb.shape[:2]) * 2 ** upsample < SMALLEST_FACE_SIDE:
            return []  # no face fits, as dlib finds; our convolutions would refuse the tiny canvas
        found = detect(_detector_net(), rgb, upsample, self.threshold)
        return [Detection([float(r.left), float(r.top), float(r.right + 1), float(r.bottom + 1)], s) for s, r in found]


class ShapePredictor:
    """dlib's regression-tree landmarks: kind "5" (eye corners + nose) or "68" (iBUG 300-W layout;
    non-commercial use only, see the module docstring)."""

    def __init__(self, kind: str = "5"):
        if kind not in ("5", "68"):
            raise ValueError(f"landmark kind must be '5' or '68', not {kind!r}")
        self.kind = kind
        self.point_names = POINT_NAMES_5 if kind == "5" else None

    def predict(self, img, box) -> list[list[float]]:
        pts = _shape_model(self.kind).predict(as_rgb_array(img), box_to_rect(box))
        return [[float(x), float(y)] for x, y in pts]


def align_chip(img, points5, size: int = 150, padding: float = 0.25) -> Image.Image:
    """dlib's aligned face chip (size × size) from 5 landmarks; 150 / 0.25 is what the embedding expects."""
    from .chips import extract_chip
    return Image.fromarray(extract_chip(as_rgb_array(img), points5, size, padding))


class FaceEmbedder:
    """dlib's ResNet face descriptor: 150×150 chips → (N, 128) torch tensor; same person when distance < 0.6."""

    threshold = SAME_PERSON_DISTANCE

    def embed(self, chips):
        import torch
        arrays = [as_rgb_array(c) for c in chips]
        if any(a.shape[:2] != (150, 150) for a in arrays):
            raise ValueError("face chips must be 150×150 (use align_chip)")
        batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float()
        with torch.no_grad():
            return _embedding_net()(batch)

    @staticmethod
    def distance(a, b) -> float:
        return float(((a - b) ** 2).sum() ** 0.5)
