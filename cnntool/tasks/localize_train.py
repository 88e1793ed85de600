"""Localization as a training task for the engine (cnntool.train; interface in tasks/classify_train.py).

Data: a directory with train/val/test annotation files (cnntool.data.annotations), e.g. the output of
`cnntool data scenes`. test is the held-out split; without val, a tenth of train is set aside.
Augmentation is box-aware: torchvision.transforms.v2 moves the image and its tv_tensors.BoundingBoxes
together (shift and scale, no flips: a mirrored digit is another shape), plus batched brightness and
contrast jitter.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnntool import registry
from cnntool.data import annotations as ann
from cnntool.data.splits import stratified_split
from cnntool.errors import ConfigError
from cnntool.tasks import localize
from cnntool.tasks.classify_train import TaskData

if TYPE_CHECKING:
    import torch

    from cnntool.preprocess import Geometry


@dataclass
class LocalizeConfig:
    data: str
    model: str = "localizer-digits"
    kwargs: dict[str, Any] = field(default_factory=dict)
    loss: str = "modern"
    augment: bool = True
    shift: float = 0.08  # ± share of the frame
    scale: float = 0.12  # ± share
    jitter: float = 0.3  # brightness and contrast factors within 1 ± jitter
    val_split: float = 0.1  # used only when the data has no val split
    input_size: tuple[int, int] | None = None  # (height, width), square; None: the model's

    def __post_init__(self) -> None:
        if self.input_size is not None and (self.input_size[0] != self.input_size[1] or self.input_size[0] < 8):
            raise ConfigError(f"--input-size must be one square side of at least 8 pixels, not {self.input_size}")
        if self.loss not in localize.LOSSES:
            raise ConfigError(f"--loss must be one of {', '.join(localize.LOSSES)}, not {self.loss!r}")


def box_target(a: ann.Annotation, geometry: "Geometry", classes: tuple[str, ...], size: tuple[int, int]) -> list[float]:
    """[p_c, b_x, b_y, b_h, b_w, class index] relative to the input frame."""
    if a.box is None:
        return [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
    if a.label not in classes:
        raise ConfigError(f"{a.image}: label {a.label!r} is not one of the classes {', '.join(classes)}")
    h, w = size
    x1, y1 = geometry.point_to_input(a.box[0], a.box[1])
    x2, y2 = geometry.point_to_input(a.box[2], a.box[3])
    return [1.0, (x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (y2 - y1) / h, (x2 - x1) / w, float(classes.index(a.label))]


def jitter(pixels: "torch.Tensor", amount: float) -> "torch.Tensor":
    """Per-image brightness and contrast in one batched op (0..255 floats): torchvision's per-image
    ColorJitter costs more than the training step on a CPU."""
    import torch

    n = len(pixels)
    brightness = 1 + (torch.rand(n, 1, 1, 1, device=pixels.device) * 2 - 1) * amount
    contrast = 1 + (torch.rand(n, 1, 1, 1, device=pixels.device) * 2 - 1) * amount
    mean = pixels.mean(dim=(1, 2, 3), keepdim=True)
    return ((pixels - mean) * contrast + mean * brightness).clamp(0, 255)


class LocalizeTask:
    name = "localize"

    def __init__(self, cfg: LocalizeConfig) -> None:
        self.cfg = cfg
        self.spec = registry.get(cfg.model, task="localize")
        self.input = replace(self.spec.input, size=tuple(cfg.input_size)) if cfg.input_size else self.spec.input
        self.classes: tuple[str, ...] = self.spec.classes
        self.data_description = ""
        self._augment = None

    @classmethod
    def for_loaded(cls, loaded, cfg: LocalizeConfig) -> "LocalizeTask":
        """The task around an already loaded model (cnntool evaluate): its input and classes."""
        task = cls(replace(cfg, model=loaded.spec.name))
        task.spec, task.input, task.classes = loaded.spec, loaded.input, loaded.classes
        return task

    # --- data ---------------------------------------------------------------------------------------

    def cache(self, annotations: list[ann.Annotation]) -> ann.CachedImages:
        """Images at the input size and their y-vector targets (training and `cnntool evaluate`)."""
        size = self.input.size
        return ann.cache(annotations, self.input, lambda a, g: box_target(a, g, self.classes, size))

    def prepare(self, seed: int) -> TaskData:
        root = Path(self.cfg.data)
        files = {s: ann.find_split(root, s) for s in ann.SPLIT_NAMES}
        if files["train"] is None or files["test"] is None:
            raise ConfigError(f"{root}: needs train.json (or .csv) and test.json (the held-out split)")
        loaded = {s: ann.read_annotations(p) for s, p in files.items() if p is not None}
        self.classes = ann.read_classes(root, loaded["train"])

        def load(split: str) -> ann.CachedImages:
            return self.cache(loaded[split])

        train, test = load("train"), load("test")
        if "val" in loaded:
            val = load("val")
        else:
            labels = [int(t[5]) if t[0] else -1 for t in train.targets.tolist()]
            train_idx, val_idx = stratified_split(labels, self.cfg.val_split, seed)
            train, val = train.subset(train_idx), train.subset(val_idx)
        self.data_description = (f"{root.name}: {len(train)} train, {len(val)} validation (checkpoint selection) "
                                 f"images from {files['train'].name}" + (f" / {files['val'].name}" if "val" in loaded else ""))
        return TaskData(train, val, test, f"{root.name}/{files['test'].name}: {len(test)} held-out images", True)

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

    def _transform(self):
        if self._augment is None:
            from torchvision.transforms import v2

            c = self.cfg
            self._augment = v2.RandomAffine(degrees=0, translate=(c.shift, c.shift), scale=(1 - c.scale, 1 + c.scale),
                                            fill=self.input.fill)
        return self._augment

    def augment_one(self, image: "torch.Tensor", target: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
        """One uint8 image (C, H, W) and its target row, moved together. An object pushed partly out of
        the frame would be mislabelled, so such a draw keeps the geometry unchanged."""
        import torch
        from torchvision import tv_tensors

        h, w = image.shape[-2:]
        if target[0] < 0.5:
            empty = tv_tensors.BoundingBoxes(torch.zeros(0, 4), format="XYXY", canvas_size=(h, w))
            return self._transform()(tv_tensors.Image(image), empty)[0].as_subclass(torch.Tensor), target
        scale = torch.tensor([w, h, w, h], dtype=torch.float32)
        xyxy = localize.cxcyhw_to_xyxy(target[1:5]) * scale
        boxes = tv_tensors.BoundingBoxes(xyxy[None], format="XYXY", canvas_size=(h, w))
        out_image, out_boxes = self._transform()(tv_tensors.Image(image), boxes)
        new = out_boxes[0].as_subclass(torch.Tensor).float()
        inside = (new[0] >= 0) & (new[1] >= 0) & (new[2] <= w) & (new[3] <= h)
        old_area = (xyxy[2] - xyxy[0]) * (xyxy[3] - xyxy[1])
        new_area = (new[2] - new[0]) * (new[3] - new[1])
        if not inside or new_area < 0.9 * old_area * (1 - self.cfg.scale) ** 2:
            return image, target
        x1, y1, x2, y2 = (new / scale).tolist()
        moved = torch.tensor([1.0, (x1 + x2) / 2, (y1 + y2) / 2, y2 - y1, x2 - x1, float(target[5])])
        return out_image.as_subclass(torch.Tensor), moved

    def train_batch(self, images: "torch.Tensor", targets: "torch.Tensor"):
        import torch

        if self.cfg.augment:
            pairs = [self.augment_one(i, t) for i, t in zip(images.cpu(), targets.cpu())]
            images = torch.stack([p[0] for p in pairs]).to(targets.device)
            targets = torch.stack([p[1] for p in pairs]).to(targets.device)
            return self._normalize(jitter(images.float(), self.cfg.jitter)), targets
        return self._normalize(images), targets

    def eval_batch(self, images: "torch.Tensor") -> "torch.Tensor":
        return self._normalize(images)

    def forward_eval(self, model, inputs: "torch.Tensor", *, tta: bool = False) -> "torch.Tensor":
        return model(inputs)

    def loss(self, outputs: "torch.Tensor", targets: "torch.Tensor") -> "torch.Tensor":
        return localize.loss(outputs, targets, self.cfg.loss)

    def new_metrics(self) -> localize.LocalizeMetrics:
        return localize.LocalizeMetrics(self.classes)

    def metadata(self) -> dict[str, Any]:
        spec_input = asdict(self.input)
        spec_input["size"] = list(spec_input["size"])
        kwargs = {k: list(v) if isinstance(v, tuple) else v for k, v in self.kwargs().items()}
        augment = (f"v2.RandomAffine shift={self.cfg.shift}, scale={self.cfg.scale}; brightness/contrast "
                   f"jitter={self.cfg.jitter}") if self.cfg.augment else "none"
        return {"task": "localize", "model": self.spec.name, "kwargs": kwargs, "classes": list(self.classes),
                "input": spec_input, "data": self.data_description, "augment": augment, "loss": self.cfg.loss}
