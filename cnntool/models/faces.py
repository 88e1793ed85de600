"""dlib's face detector and landmark predictors (cnntool.faces) behind the prediction pipeline's task
contracts, so `detect` and `landmarks` run them like any other registered model.

Input: (N, 3, H, W) RGB at the image's own size in 0..255 (the catalog's InputSpec has resize "none",
mean 0, std 1/255), since dlib's detector runs its own image pyramid over the full-resolution photo. Each
image's output also says the upsampling used ("upsample"); its boxes are dlib's, which may reach past the
image.
"""

from __future__ import annotations

import torch
from torch import nn

from cnntool.errors import ConfigError
from cnntool.faces.api import FaceDetector, ShapePredictor


def _as_rgb_array(image: torch.Tensor):
    if image.dtype != torch.uint8:
        image = image.clamp(0, 255).round().to(torch.uint8)
    return image.permute(1, 2, 0).contiguous().cpu().numpy()  # (H, W, 3), made once per image


def set_upsample(module: nn.Module, upsample: int) -> None:
    """`detect`/`landmarks --upsample N`: the face detector's upsampling; other models have none."""
    detector = getattr(module, "detector", None)
    if not isinstance(detector, FaceDetector):
        raise ConfigError("--upsample applies to dlib's face models only (faces, face5, face68)")
    detector.upsample = upsample


class FaceDetectorNet(nn.Module):
    """One {"boxes", "scores", "labels"} dict per image (the detect task's contract), boxes in input pixels."""

    takes_uint8 = True  # the pipeline hands over the decoded pixels: no float copy of a large photo

    def __init__(self, *, upsample: int | None = None) -> None:
        super().__init__()
        self.detector = FaceDetector(upsample=upsample)

    def forward(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        out = []
        for image in images:
            rgb = _as_rgb_array(image)
            found = self.detector.detect(rgb)
            out.append({
                "boxes": torch.tensor([d.box for d in found], dtype=torch.float32).view(-1, 4),
                "scores": torch.tensor([d.score for d in found], dtype=torch.float32),
                "labels": torch.zeros(len(found), dtype=torch.int64),
                "upsample": self.detector.upsample_for(*rgb.shape[:2]),
            })
        return out


class FaceLandmarksNet(nn.Module):
    """Faces found by the detector, each with its landmarks: one {"boxes", "scores", "points" (F, P, 2)}
    dict per image, in input pixels."""

    takes_uint8 = True

    def __init__(self, *, kind: str = "5", upsample: int | None = None) -> None:
        super().__init__()
        self.detector = FaceDetector(upsample=upsample)
        self.predictor = ShapePredictor(kind)
        self.num_points = 5 if kind == "5" else 68

    def forward(self, images: torch.Tensor) -> list[dict[str, torch.Tensor]]:
        out = []
        for image in images:
            rgb = _as_rgb_array(image)
            found = self.detector.detect(rgb)
            points = [self.predictor.predict(rgb, d.box) for d in found]
            out.append({
                "boxes": torch.tensor([d.box for d in found], dtype=torch.float32).view(-1, 4),
                "scores": torch.tensor([d.score for d in found], dtype=torch.float32),
                "points": torch.tensor(points, dtype=torch.float32).view(-1, self.num_points, 2),
                "upsample": self.detector.upsample_for(*rgb.shape[:2]),
            })
        return out


def face_detector(*, upsample: int | None = None) -> FaceDetectorNet:
    return FaceDetectorNet(upsample=upsample)


def face_landmarks(*, kind: str = "5", upsample: int | None = None) -> FaceLandmarksNet:
    return FaceLandmarksNet(kind=kind, upsample=upsample)
