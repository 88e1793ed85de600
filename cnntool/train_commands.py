"""`cnntool train <task>` bodies: command-line values → task and engine configs → the engine.
One function per task; the CLI functions stay thin."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from cnntool.errors import ConfigError


def parse_kwargs(items: Sequence[str]) -> dict[str, Any]:
    """`key=value` builder overrides; values are JSON when they parse (numbers, lists), else strings."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--kwarg wants key=value, not {item!r}")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def parse_size(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    parts = text.lower().split("x")
    try:
        h, w = (int(parts[0]), int(parts[0])) if len(parts) == 1 else (int(parts[0]), int(parts[1]))
    except ValueError:
        raise ConfigError(f"--input-size wants N or HxW, not {text!r}") from None
    return h, w


def parse_floats(text: str | None, name: str) -> tuple[float, ...] | None:
    if text is None:
        return None
    try:
        return tuple(float(v) for v in text.split(","))
    except ValueError:
        raise ConfigError(f"{name} wants comma-separated numbers, not {text!r}") from None


def classify(*, data: str, model: str, out: Path, kwargs: Sequence[str], input_size: str | None,
             channels: int | None, mean: str | None, std: str | None, val_split: float, crop_pad: int,
             shift: float, rotate: float, scale: float, hflip: bool, elastic: float, erase: float, label_smoothing: float,
             tta_flip: bool, cross_source: str | None, teacher: str | None, distill: float,
             temperature: float, ensemble: int = 1, extra_train: str | None = None, **engine: Any) -> int:
    """Train a classifier (`ensemble` > 1: that many, averaged); returns the exit code (128 + signal when
    interrupted)."""
    from cnntool.augment import AugmentConfig
    from cnntool.tasks.classify.train import ClassifyConfig, ClassifyTask
    from cnntool.engine.train import TrainConfig

    task = ClassifyTask(ClassifyConfig(
        data=data, model=model, kwargs=parse_kwargs(kwargs), input_size=parse_size(input_size), channels=channels,
        mean=parse_floats(mean, "--mean"), std=parse_floats(std, "--std"), val_split=val_split,
        augment=AugmentConfig(crop_pad=crop_pad, shift=shift, rotate=rotate, scale=scale, hflip=hflip,
                              elastic=elastic, erase=erase),
        label_smoothing=label_smoothing, tta_flip=tta_flip, cross_source=cross_source, extra_train=extra_train,
        teacher=teacher, distill=distill, temperature=temperature,
    ))
    return _run(task, TrainConfig(out=out, **engine), ensemble=ensemble)


def _run(task, cfg, *, ensemble: int = 1) -> int:
    from cnntool.engine.train import TrainingInterrupted, train

    try:
        if ensemble == 1:
            train(task, cfg)
        else:
            from cnntool.engine.ensemble import train_ensemble

            train_ensemble(task, cfg, ensemble)
    except TrainingInterrupted as exc:
        if not cfg.quiet:
            import sys

            sys.stderr.write(f"cnntool: {exc}\n")
        return exc.exit_code
    return 0


def detect(*, data: str, model: str, out: Path, kwargs: Sequence[str], input_size: str | None, val_split: float,
           shift: float, tta: bool, **engine: Any) -> int:
    """Train a detector (our grid detector or a torchvision one) on scene JSON, COCO JSON or YOLO txt data."""
    from cnntool.tasks.detect.train import DetectConfig, DetectTask
    from cnntool.engine.train import TrainConfig

    task = DetectTask(DetectConfig(data=data, model=model, kwargs=parse_kwargs(kwargs),
                                   input_size=parse_size(input_size), val_split=val_split, shift=shift, tta=tta))
    return _run(task, TrainConfig(out=out, **engine))


# --- verify-face (issue: Siamese nets, triplet loss and a learned similarity) ------------------------------

def verify_face(*, data: str, model: str, out: Path, kwargs: Sequence[str], objective: str, mining: str,
                margin: float | None, dim: int, k_per_identity: int, unseen: str | None, init: str | None,
                input_size: str | None, channels: int | None, cross_source: str | None, val_split: float,
                shift: float, rotate: float, scale: float, hflip: bool, **engine: Any) -> int:
    """Train an embedding, then calibrate its thresholds on the validation images (into its metadata)."""
    import os

    from cnntool.augment import AugmentConfig
    from cnntool.tasks.verify.train import VerifyConfig, VerifyTask, calibrate_trained
    from cnntool.engine.train import TrainConfig

    task = VerifyTask(VerifyConfig(
        data=data, backbone=model, backbone_kwargs=parse_kwargs(kwargs), dim=dim, objective=objective, mining=mining,
        margin=margin, k_per_identity=k_per_identity, unseen=unseen, init=init, input_size=parse_size(input_size),
        channels=channels, val_split=val_split, cross_source=cross_source,
        augment=AugmentConfig(shift=shift, rotate=rotate, scale=scale, hflip=hflip),
    ))
    cfg = TrainConfig(out=out, **engine)
    code = _run(task, cfg)
    if code == 0 and int(os.environ.get("RANK", "0")) == 0:  # one process writes under torchrun
        calibrate_trained(task, cfg.out, device="cpu" if cfg.device == "auto" else cfg.device)
    return code


def localize(*, data: str, model: str, out: Path, kwargs: Sequence[str], input_size: str | None, loss: str,
             augment: bool, shift: float, scale: float, jitter: float, tta: bool, **engine: Any) -> int:
    """Train classification with localization (the lecture's y-vector) on box annotations."""
    from cnntool.tasks.localize.train import LocalizeConfig, LocalizeTask
    from cnntool.engine.train import TrainConfig

    task = LocalizeTask(LocalizeConfig(data=data, model=model, kwargs=parse_kwargs(kwargs),
                                       input_size=parse_size(input_size), loss=loss, augment=augment, shift=shift,
                                       scale=scale, jitter=jitter, tta=tta))
    return _run(task, TrainConfig(out=out, **engine))


def landmarks(*, data: str, model: str, out: Path, kwargs: Sequence[str], loss: str, augment: bool, rotate: float,
              shift: float, scale: float, jitter: float, tolerance: float, **engine: Any) -> int:
    """Train N-point landmark regression (the lecture's l-vector) on point annotations."""
    from cnntool.tasks.landmarks.train import LandmarksConfig, LandmarksTask
    from cnntool.engine.train import TrainConfig

    task = LandmarksTask(LandmarksConfig(data=data, model=model, kwargs=parse_kwargs(kwargs), loss=loss,
                                         augment=augment, rotate=rotate, shift=shift, scale=scale, jitter=jitter,
                                         tolerance=tolerance))
    return _run(task, TrainConfig(out=out, **engine))
