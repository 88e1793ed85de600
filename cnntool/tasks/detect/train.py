"""Detection as a training task for the engine (cnntool.engine.train; interface: cnntool.engine.task.Trainable).

Data: a directory in any layout cnntool.data.detect_formats reads (scene JSON, COCO JSON, YOLO txt) with
train and test splits (test is held out) and optionally val (else a tenth of train is set aside).
Images are cached at the model's input size; each target is (M, 5) rows [class, x1, y1, x2, y2] in
input pixels, padded with class −1 to the most objects any image has.

Two model families train here: our grid detector (cnntool.models.yolo: raw head → its own loss) and
torchvision's detectors (cnntool.models.tv_detection: they take targets in training mode and return
their loss dict; class 0 is their background, so our classes shift by one).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnntool.augment import zoom_and_shift
from cnntool.data import annotations as ann
from cnntool.data.batches import ImageTensors
from cnntool.data import detect_formats as formats
from cnntool.data.splits import carve, val_split_option
from cnntool.engine.task import TaskData, held_out
from cnntool.errors import ConfigError
from cnntool.meta import as_json
from cnntool.models import catalog
from cnntool.options import input_size_option, kwargs_option, option
from cnntool.tasks.detect import predict as detect
from cnntool.tasks.detect.metrics import DetectMetrics, DetectOutputs

if TYPE_CHECKING:
    import torch

    from cnntool.preprocess import Geometry

BACKGROUND = "__background__"


@dataclass
class DetectConfig:
    data: str = formats.data_option("A detection dataset directory: scene JSON, COCO JSON (train.json …) or YOLO txt "
                                    "(images/ + labels/), with train and test splits.")
    model: str = option("yolo-digits", "--model", "-m", help="Registry name of the detector (see `cnntool models "
                        "--task detect`).")
    kwargs: dict[str, Any] = kwargs_option()
    input_size: tuple[int, int] | None = input_size_option()
    val_split: float = val_split_option()
    shift: float = option(0.1, "--shift", min=0.0, max=0.5, help="Random translation, ± share of the frame (objects "
                          "stay inside).")
    tta: bool = option(False, "--tta", help="Also report held-out figures with test-time augmentation (as the "
                       "predict command's --tta).")
    conf: float = 0.001  # evaluation keeps low-score detections: AP integrates over the whole ranking
    iou: float = 0.6
    max_det: int = 100


def _is_torchvision(spec) -> bool:
    return spec.builder.startswith("cnntool.models.tv_detection:")


class DetectTask:
    name = "detect"

    def __init__(self, cfg: DetectConfig) -> None:
        self.cfg = cfg
        self.spec = catalog.get(cfg.model, task="detect")
        self.torchvision = _is_torchvision(self.spec)
        self.input = replace(self.spec.input, size=tuple(cfg.input_size)) if cfg.input_size else self.spec.input
        self.classes: tuple[str, ...] = ()  # the data's classes (the model's, less torchvision's background)
        self.data_description = ""
        self.post = detect.PostProcess(conf=cfg.conf, iou=cfg.iou, max_det=cfg.max_det)
        self._grid: tuple | None = None  # the grid detector's (anchors, stride), once a model is built
        self.tta_key = "heldout_tta" if cfg.tta else None

    @classmethod
    def for_loaded(cls, loaded, cfg: DetectConfig) -> "DetectTask":
        """The task around an already loaded model (cnntool evaluate): its input, classes and grid."""
        task = cls(replace(cfg, model=loaded.spec.name))
        task.spec, task.input = loaded.spec, loaded.input
        task.torchvision = _is_torchvision(loaded.spec)
        task.classes = tuple(c for c in loaded.classes if c != BACKGROUND) if task.torchvision else loaded.classes
        task._grid = _grid_of(loaded.module)
        return task

    # --- data ---------------------------------------------------------------------------------------

    def prepare(self, seed: int) -> TaskData:
        root = Path(self.cfg.data)
        splits, self.classes = formats.read_dataset(root)
        if "train" not in splits:
            raise ConfigError(f"{root}: no train split (see `cnntool data example detect`)")
        most = max(1, max(len(s.objects) for samples in splits.values() for s in samples))
        loaded = {name: self.cache(samples, most) for name, samples in splits.items()}
        train, val = loaded["train"], loaded.get("val")
        if val is None:
            train, val = carve(train, self.cfg.val_split, seed)
        self.data_description = (f"{root.name} ({formats.detect_format(root)} layout): {len(train)} train, "
                                 f"{len(val)} validation images")
        return held_out(train, val, loaded.get("test"), where=str(root.name))

    def cache(self, samples: list[formats.Sample], most: int) -> ImageTensors:
        """Images at the input size and their padded (class, box) rows in input pixels."""
        for s in samples:
            for o in s.objects:
                if o["label"] not in self.classes:
                    raise ConfigError(f"{s.image}: label {o['label']!r} is not one of {', '.join(self.classes)}")
        return ann.cache(samples, self.input, partial(self._target, most=most))

    def _target(self, sample: formats.Sample, geometry: "Geometry", *, most: int) -> list[float]:
        rows = []
        for o in sample.objects:
            ann.check_inside(sample.image, [o["box"][:2], o["box"][2:]], geometry)
            x1, y1 = geometry.point_to_input(*o["box"][:2])
            x2, y2 = geometry.point_to_input(*o["box"][2:])
            rows += [float(self.classes.index(o["label"])), x1, y1, x2, y2]
        return rows + [-1.0, 0.0, 0.0, 0.0, 0.0] * (most - len(sample.objects))

    def extra_evaluations(self) -> list:
        return []

    def figures(self, metrics: dict[str, Any]) -> dict[str, Any]:
        from cnntool.engine.report import draw_curve

        pr = metrics["pr50"]
        return {"pr_curve": draw_curve(pr["recall"], pr["precision"], x_label="recall", y_label="precision",
                                       title=f"precision-recall at IoU 0.5, mAP50 {metrics['map50']:.3f}")}

    # --- model and batches --------------------------------------------------------------------------

    @property
    def model_classes(self) -> tuple[str, ...]:
        return (BACKGROUND, *self.classes) if self.torchvision else self.classes

    def kwargs(self) -> dict[str, Any]:
        return {**self.spec.kwargs, **self.cfg.kwargs, "num_classes": len(self.model_classes)}

    def build_model(self) -> "torch.nn.Module":
        model = self.spec.build(**self.kwargs())
        self._grid = _grid_of(model)
        return model

    def _normalize(self, pixels: "torch.Tensor") -> "torch.Tensor":
        from cnntool.preprocess import Preprocessor

        return Preprocessor(self.input).normalize(pixels)

    def _shift(self, images: "torch.Tensor", targets: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
        """Each image moved by a random whole-pixel offset within ±shift of the frame and within what
        keeps every object fully inside; the gap is the letterbox fill. Batched on the images' device."""
        import torch

        n, _, h, w = images.shape
        dev = images.device
        valid = targets[..., 0] >= 0
        x1, y1, x2, y2 = targets[..., 1:].unbind(-1)
        far = float(max(h, w))  # an image without objects is bounded by the shift alone

        def offsets(reach: int, low_edge: "torch.Tensor", high_edge: "torch.Tensor", side: int) -> "torch.Tensor":
            lo = (-torch.where(valid, low_edge, far).amin(1).floor()).clamp(min=-reach)
            hi = (side - torch.where(valid, high_edge, side - far).amax(1)).floor().clamp(max=reach)
            return torch.minimum(lo + (torch.rand(n, device=dev) * (hi - lo + 1)).floor(), hi)  # uniform on lo..hi

        dx = offsets(int(self.cfg.shift * w), x1, x2, w)
        dy = offsets(int(self.cfg.shift * h), y1, y2, h)
        # whole-pixel moves land on pixel centres: nearest is exact
        out = zoom_and_shift(images.float(), torch.ones(n, device=dev), dx / w, dy / h, fill=float(self.input.fill),
                             mode="nearest")
        moved = targets.clone()
        moved[..., 1:] += torch.where(valid[..., None], torch.stack([dx, dy, dx, dy], 1)[:, None, :].to(targets.dtype), 0)
        return out, moved

    def train_batch(self, images: "torch.Tensor", targets: "torch.Tensor"):
        targets = targets.view(len(targets), -1, 5)
        if self.cfg.shift:
            images, targets = self._shift(images, targets)
        inputs = self._normalize(images)
        if self.torchvision:
            # torchvision's detectors compute their loss inside: they get (images, targets) as their input.
            return (inputs, self._torchvision_targets(targets)), targets
        return inputs, targets

    @staticmethod
    def _torchvision_targets(targets: "torch.Tensor") -> list[dict[str, "torch.Tensor"]]:
        out = []
        for t in targets:
            t = t[t[:, 0] >= 0]
            out.append({"boxes": t[:, 1:].float(), "labels": t[:, 0].long() + 1})
        return out

    def eval_batch(self, images: "torch.Tensor") -> "torch.Tensor":
        return self._normalize(images)

    def forward_eval(self, model, inputs: "torch.Tensor", *, tta: bool = False) -> DetectOutputs:
        if self._grid is None:  # torchvision's detectors, sliding windows: candidates only
            raw, out = None, model(inputs)
        else:
            from cnntool.models import yolo

            raw = model.raw(inputs)
            out = yolo.decode(raw, model.anchors, model.stride)
        if tta and self.cfg.tta:  # the other scales' candidates join the input size's (raw stays its, for the loss)
            more = detect.multi_scale(model, inputs, stride=detect.stride_of(model), scales=detect.TTA_SCALES[1:])
            out = detect.pool(out, more)
        return DetectOutputs(raw, _shift_labels(out, -1) if self.torchvision else out)

    def loss(self, outputs: Any, targets: "torch.Tensor") -> "torch.Tensor | None":
        if isinstance(outputs, dict):  # torchvision's training losses
            return sum(outputs.values())
        if isinstance(outputs, DetectOutputs):
            if outputs.raw is None:  # torchvision's detectors give no loss in eval mode: none is reported
                return None
            outputs = outputs.raw
        from cnntool.models import yolo

        anchors, stride = self._grid
        return yolo.loss(outputs, targets.view(len(targets), -1, 5), anchors, stride)

    def new_metrics(self) -> DetectMetrics:
        return DetectMetrics(self.classes, self.post)

    def metadata(self) -> dict[str, Any]:
        return {"task": "detect", "model": self.spec.name, "kwargs": as_json(self.kwargs()), "classes": list(self.model_classes),
                "input": self.input.document(), "data": self.data_description,
                "augment": f"shift ±{self.cfg.shift} of the frame, objects kept inside" if self.cfg.shift else "none",
                "evaluation": f"COCO mAP (torchmetrics MeanAveragePrecision, pycocotools) on detections with "
                              f"score ≥ {self.cfg.conf}, every class per box that clears it (one_label_per_box: "
                              f"only each box's best), class-wise NMS IoU {self.cfg.iou}, at most {self.cfg.max_det}"}


def _grid_of(model) -> tuple | None:
    """The grid detector's (anchors, stride), which its loss needs; None for other detectors."""
    from cnntool.models.yolo import GridDetector

    return (model.anchors, model.stride) if isinstance(model, GridDetector) else None


def _shift_labels(detections: list[dict[str, "torch.Tensor"]], by: int) -> list[dict[str, "torch.Tensor"]]:
    return [{**d, "labels": d["labels"] + by} for d in detections]


CONFIG, TRAINABLE = DetectConfig, DetectTask
