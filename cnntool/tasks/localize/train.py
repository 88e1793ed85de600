"""Localization as a training task for the engine (cnntool.engine.train; interface: cnntool.engine.task.Trainable).

Data: a directory with train/val/test annotation files (cnntool.data.annotations), e.g. the output of
`cnntool data scenes`. test is the held-out split; without val, a tenth of train is set aside.
Augmentation is box-aware and batched on the training device: one affine grid per image (shift and zoom
about the centre, no flips: a mirrored digit is another shape) moves the image and its box together, plus
brightness and contrast jitter. (torchvision.transforms.v2 per image cost 3 ms per 128×128 scene on a CPU
core, more than a GPU's training step.)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cnntool.augment import FrameAugment, jitter, zoom_and_shift
from cnntool.data import annotations as ann
from cnntool.data.batches import ImageTensors
from cnntool.data.splits import carve, val_split_option
from cnntool.engine.task import TaskData, held_out
from cnntool.errors import ConfigError
from cnntool.meta import as_json
from cnntool.models import catalog
from cnntool.options import input_size_option, kwargs_option, option
from cnntool.tasks.localize import loss as losses
from cnntool.tasks.localize.metrics import DEFAULT_THRESHOLD, LocalizeMetrics
from cnntool.tasks.localize.predict import shifted_mean

if TYPE_CHECKING:
    import torch

    from cnntool.preprocess import Geometry


def tta_report_option() -> Any:
    return option(False, "--tta", help="Also report held-out figures with test-time augmentation (as the predict "
                  "command's --tta).")


@dataclass
class LocalizeConfig:
    data: str = ann.data_option()
    model: str = option("localizer-digits", "--model", "-m", help="Registry name (see `cnntool models --task localize`).")
    kwargs: dict[str, Any] = kwargs_option("Builder override key=value (JSON values), repeatable.")
    input_size: tuple[int, int] | None = input_size_option()  # (height, width), square; None: the model's
    loss: str = option("modern", "--loss", help="lecture (squared error on every y term when p_c = 1, on p_c alone "
                       "when 0) or modern (BCE p_c, cross-entropy class, L1 + GIoU box).")
    augment: FrameAugment = field(default_factory=FrameAugment)
    tta: bool = tta_report_option()  # held-out evaluation also averaged over shifts
    val_split: float = val_split_option()

    def __post_init__(self) -> None:
        if self.input_size is not None and (self.input_size[0] != self.input_size[1] or self.input_size[0] < 8):
            raise ConfigError(f"--input-size must be one square side of at least 8 pixels, not {self.input_size}")
        if self.loss not in losses.LOSSES:
            raise ConfigError(f"--loss must be one of {', '.join(losses.LOSSES)}, not {self.loss!r}")


def box_target(a: ann.Annotation, geometry: "Geometry", classes: tuple[str, ...], size: tuple[int, int]) -> list[float]:
    """[p_c, b_x, b_y, b_h, b_w, class index] relative to the input frame."""
    if a.box is None:
        return [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    if a.label not in classes:
        raise ConfigError(f"{a.image}: label {a.label!r} is not one of the classes {', '.join(classes)}")
    ann.check_inside(a.image, [a.box[:2], a.box[2:]], geometry)
    h, w = size
    x1, y1 = geometry.point_to_input(a.box[0], a.box[1])
    x2, y2 = geometry.point_to_input(a.box[2], a.box[3])
    return [1.0, (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (y2 - y1) / h, (x2 - x1) / w, float(classes.index(a.label))]


def shift_and_zoom(pixels: "torch.Tensor", targets: "torch.Tensor", *, shift: float, scale: float,
                   fill: float) -> tuple["torch.Tensor", "torch.Tensor"]:
    """Each image (float, N×C×H×W) zoomed about its centre by 1 ± scale and shifted by ± shift of the frame;
    the y-vector targets' boxes move with it. A draw that would push the object partly out of the frame
    leaves that image as it was: a cut digit may read as another."""
    import torch

    n = len(pixels)
    dev = pixels.device
    zoom = 1 + (torch.rand(n, device=dev) * 2 - 1) * scale
    tx = (torch.rand(n, device=dev) * 2 - 1) * shift  # in frame units
    ty = (torch.rand(n, device=dev) * 2 - 1) * shift
    present, bx, by, bh, bw = targets[:, :5].T
    cx, cy, h, w = 0.5 + zoom * (bx - 0.5) + tx, 0.5 + zoom * (by - 0.5) + ty, zoom * bh, zoom * bw
    inside = (cx - w / 2 >= 0) & (cx + w / 2 <= 1) & (cy - h / 2 >= 0) & (cy + h / 2 <= 1)
    move = (present < 0.5) | inside
    zoom, tx, ty = torch.where(move, zoom, 1.0), torch.where(move, tx, 0.0), torch.where(move, ty, 0.0)
    out = zoom_and_shift(pixels, zoom, tx, ty, fill=fill)
    moved = targets.clone()
    boxed = move & (present >= 0.5)
    moved[:, 1:5] = torch.where(boxed[:, None], torch.stack([cx, cy, h, w], 1), targets[:, 1:5])
    return out, moved


class LocalizeTask:
    name = "localize"

    def __init__(self, cfg: LocalizeConfig) -> None:
        self.cfg = cfg
        self.spec = catalog.get(cfg.model, task="localize")
        self.threshold = DEFAULT_THRESHOLD  # training scores presence at the default
        self.input = replace(self.spec.input, size=tuple(cfg.input_size)) if cfg.input_size else self.spec.input
        self.classes: tuple[str, ...] = self.spec.classes
        self.data_description = ""
        self.tta_key = "heldout_tta" if cfg.tta else None

    @classmethod
    def for_loaded(cls, loaded, cfg: LocalizeConfig) -> "LocalizeTask":
        """The task around an already loaded model (cnntool evaluate): its input and classes."""
        task = cls(replace(cfg, model=loaded.spec.name))
        task.spec, task.input, task.classes = loaded.spec, loaded.input, loaded.classes
        task.threshold = float(loaded.spec.decode.get("threshold", DEFAULT_THRESHOLD))
        return task

    # --- data ---------------------------------------------------------------------------------------

    def cache(self, annotations: list[ann.Annotation]) -> ImageTensors:
        """Images at the input size and their y-vector targets (training and `cnntool evaluate`)."""
        size = self.input.size
        return ann.cache(annotations, self.input, lambda a, g: box_target(a, g, self.classes, size))

    def prepare(self, seed: int) -> TaskData:
        root = Path(self.cfg.data)
        loaded = ann.read_splits(root)
        self.classes = ann.read_classes(root, loaded["train"])
        data = {split: self.cache(annotations) for split, annotations in loaded.items()}
        train = data["train"]
        if "val" in data:
            val = data["val"]
        else:
            labels = np.array([int(t[5]) if t[0] else -1 for t in train.targets.tolist()])
            train, val = carve(train, self.cfg.val_split, seed, labels)
        self.data_description = (f"{root.name}: {len(train)} train, {len(val)} validation images ("
                                 + ("its val split)" if "val" in data else f"{self.cfg.val_split:g} of train)"))
        return held_out(train, val, data.get("test"), where=str(root.name))

    def extra_evaluations(self) -> list:
        return []

    # --- model and batches --------------------------------------------------------------------------

    def kwargs(self) -> dict[str, Any]:
        out = {**self.spec.kwargs, **self.cfg.kwargs, "num_classes": len(self.classes),
               "in_channels": self.input.channels}
        if self.cfg.input_size:  # the localizer's box head is sized by it
            out["input_size"] = self.cfg.input_size[0]
        return out

    def build_model(self) -> "torch.nn.Module":
        return self.spec.build(**self.kwargs())

    def _normalize(self, pixels: "torch.Tensor") -> "torch.Tensor":
        from cnntool.preprocess import Preprocessor

        return Preprocessor(self.input).normalize(pixels)

    def train_batch(self, images: "torch.Tensor", targets: "torch.Tensor"):
        aug = self.cfg.augment
        if aug.augment:
            pixels, targets = shift_and_zoom(images.float(), targets, shift=aug.shift, scale=aug.scale,
                                             fill=float(self.input.fill))
            return self._normalize(jitter(pixels, aug.jitter)), targets
        return self._normalize(images), targets

    def eval_batch(self, images: "torch.Tensor") -> "torch.Tensor":
        return self._normalize(images)

    def forward_eval(self, model, inputs: "torch.Tensor", *, tta: bool = False) -> "torch.Tensor":
        return shifted_mean(model, inputs) if tta and self.cfg.tta else model(inputs)

    def loss(self, outputs: "torch.Tensor", targets: "torch.Tensor") -> "torch.Tensor":
        return losses.loss(outputs, targets, self.cfg.loss)

    def new_metrics(self) -> LocalizeMetrics:
        return LocalizeMetrics(self.classes, threshold=self.threshold)

    def metadata(self) -> dict[str, Any]:
        aug = self.cfg.augment
        augment = (f"shift={aug.shift}, scale={aug.scale}; brightness/contrast jitter={aug.jitter}"
                   if aug.augment else "none")
        return {"task": "localize", "model": self.spec.name, "kwargs": as_json(self.kwargs()), "classes": list(self.classes),
                "input": self.input.document(), "data": self.data_description, "augment": augment, "loss": self.cfg.loss}


CONFIG, TRAINABLE = LocalizeConfig, LocalizeTask
