"""Landmarks as a training task for the engine (cnntool.engine.train; interface: cnntool.engine.task.Trainable).

Data: a directory with train/val/test annotation files holding "points" (cnntool.data.annotations),
e.g. the output of `cnntool data documents`. test is the held-out split. Augmentation is point-aware:
torchvision.transforms.v2 moves the image and its tv_tensors.KeyPoints together (rotation, shift,
scale; no flips, which would swap left and right points), plus batched brightness/contrast jitter.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnntool.augment import FrameAugment, jitter
from cnntool.data import annotations as ann
from cnntool.data.batches import ImageTensors
from cnntool.data.splits import carve, val_split_option
from cnntool.engine.task import TaskData, held_out
from cnntool.errors import ConfigError
from cnntool.meta import as_json
from cnntool.models import catalog
from cnntool.options import kwargs_option, option
from cnntool.tasks.landmarks import metrics as landmarks

if TYPE_CHECKING:
    import torch

    from cnntool.preprocess import Geometry


def tolerance_option(default: float | None, help: str) -> Any:
    return option(default, "--tolerance", min=0.0, help=help)


@dataclass
class LandmarksConfig:
    data: str = ann.data_option()
    model: str = option("landmarker-corners", "--model", "-m", help="Registry name (see `cnntool models --task "
                        "landmarks`).")
    kwargs: dict[str, Any] = kwargs_option("Builder override key=value (JSON values), repeatable.")
    loss: str = option("l1", "--loss", help="l1 or mse (the lecture's squared error) on the l-vector.")
    augment: FrameAugment = field(default_factory=lambda: FrameAugment(shift=0.05, scale=0.08))
    tolerance: float = tolerance_option(landmarks.DEFAULT_TOLERANCE, "A point within this share of the image "
                                        "diagonal counts as found.")
    val_split: float = val_split_option()

    def __post_init__(self) -> None:
        if self.loss not in landmarks.LOSSES:
            raise ConfigError(f"--loss must be one of {', '.join(landmarks.LOSSES)}, not {self.loss!r}")


def point_target(a: ann.Annotation, geometry: "Geometry", size: tuple[int, int], count: int) -> list[float]:
    """[l_1x, l_1y, …] relative to the input frame."""
    if not a.points or len(a.points) != count:
        raise ConfigError(f"{a.image}: expected {count} points, found {len(a.points or [])}")
    ann.check_inside(a.image, a.points, geometry)
    h, w = size
    out: list[float] = []
    for x, y in a.points:
        ix, iy = geometry.point_to_input(float(x), float(y))
        out += [ix / w, iy / h]
    return out


class LandmarksTask:
    name = "landmarks"

    def __init__(self, cfg: LandmarksConfig) -> None:
        self.cfg = cfg
        self.spec = catalog.get(cfg.model, task="landmarks")
        self.input = self.spec.input
        self.point_names: tuple[str, ...] = self.spec.classes
        self.data_description = ""
        self._augment = None
        self.tta_key = None

    @classmethod
    def for_loaded(cls, loaded, cfg: LandmarksConfig) -> "LandmarksTask":
        """The task around an already loaded model (cnntool evaluate): its input and point names."""
        task = cls(replace(cfg, model=loaded.spec.name))
        task.spec, task.input = loaded.spec, loaded.input
        task.point_names = tuple(loaded.metadata.get("point_names") or loaded.classes)
        return task

    def cache(self, annotations: list[ann.Annotation], count: int | None = None) -> ImageTensors:
        """Images at the input size and their l-vector targets (training and `cnntool evaluate`); every
        annotation must hold `count` points (default: the model's)."""
        count = len(self.point_names) if count is None else count
        size = self.input.size
        return ann.cache(annotations, self.input, lambda a, g: point_target(a, g, size, count))

    def prepare(self, seed: int) -> TaskData:
        root = Path(self.cfg.data)
        loaded = ann.read_splits(root)
        first = loaded["train"][0]
        count = len(first.points or [])
        if first.point_names:
            self.point_names = tuple(first.point_names)
        data = {s: self.cache(a, count) for s, a in loaded.items()}
        train = data["train"]
        val = data["val"] if "val" in data else None
        if val is None:
            train, val = carve(train, self.cfg.val_split, seed)
        self.data_description = f"{root.name}: {len(train)} train, {len(val)} validation images, {count} points each"
        return held_out(train, val, data.get("test"), where=str(root.name))

    def extra_evaluations(self) -> list:
        return []

    def kwargs(self) -> dict[str, Any]:
        return {**self.spec.kwargs, **self.cfg.kwargs, "num_points": len(self.point_names),
                "in_channels": self.input.channels}

    def build_model(self) -> "torch.nn.Module":
        return self.spec.build(**self.kwargs())

    def _normalize(self, pixels: "torch.Tensor") -> "torch.Tensor":
        from cnntool.preprocess import Preprocessor

        return Preprocessor(self.input).normalize(pixels)

    def augment_one(self, image: "torch.Tensor", target: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
        """One uint8 image and its points, moved together; a draw that pushes a point out of the frame keeps
        the original."""
        import torch
        from torchvision import tv_tensors
        from torchvision.transforms import v2

        if self._augment is None:
            c = self.cfg.augment
            self._augment = v2.RandomAffine(degrees=c.rotate, translate=(c.shift, c.shift),
                                            scale=(1 - c.scale, 1 + c.scale), fill=self.input.fill)
        h, w = image.shape[-2:]
        scale = torch.tensor([w, h], dtype=torch.float32)
        points = tv_tensors.KeyPoints(target.view(-1, 2) * scale, canvas_size=(h, w))
        out_image, out_points = self._augment(tv_tensors.Image(image), points)
        moved = out_points.as_subclass(torch.Tensor).float() / scale
        if bool(((moved < 0) | (moved > 1)).any()):
            return image, target
        return out_image.as_subclass(torch.Tensor), moved.flatten()

    def train_batch(self, images: "torch.Tensor", targets: "torch.Tensor"):
        import torch

        if not self.cfg.augment.augment:
            return self._normalize(images), targets
        pairs = [self.augment_one(i, t) for i, t in zip(images.cpu(), targets.cpu())]
        images = torch.stack([p[0] for p in pairs]).to(targets.device)
        targets = torch.stack([p[1] for p in pairs]).to(targets.device)
        return self._normalize(jitter(images.float(), self.cfg.augment.jitter)), targets

    def eval_batch(self, images: "torch.Tensor") -> "torch.Tensor":
        return self._normalize(images)

    def forward_eval(self, model, inputs: "torch.Tensor", *, tta: bool = False) -> "torch.Tensor":
        return model(inputs)

    def loss(self, outputs: "torch.Tensor", targets: "torch.Tensor") -> "torch.Tensor":
        return landmarks.loss(outputs, targets, self.cfg.loss)

    def new_metrics(self) -> landmarks.LandmarkMetrics:
        return landmarks.LandmarkMetrics(self.input.size, self.cfg.tolerance)

    def metadata(self) -> dict[str, Any]:
        c = self.cfg.augment
        augment = (f"v2.RandomAffine rotate={c.rotate}, shift={c.shift}, scale={c.scale}; brightness/contrast "
                   f"jitter={c.jitter}") if c.augment else "none"
        return {"task": "landmarks", "model": self.spec.name, "kwargs": as_json(self.kwargs()), "classes": list(self.point_names),
                "point_names": list(self.point_names), "input": self.input.document(), "data": self.data_description,
                "augment": augment, "loss": self.cfg.loss, "nme_normalized_by": "image diagonal"}


CONFIG, TRAINABLE = LandmarksConfig, LandmarksTask
