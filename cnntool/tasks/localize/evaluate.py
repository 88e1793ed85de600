"""`cnntool evaluate localize`: presence, class and box figures of a localizer on one split of an annotation
directory, through the task code and metric training uses for its held-out figures."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnntool.data import annotations as ann
from cnntool.engine.evaluate import EvalOptions, Evaluation, load_for_eval, report, run_eval
from cnntool.errors import ConfigError
from cnntool.options import option
from cnntool.tasks.localize.predict import TTA_SHIFT, tta_option

if TYPE_CHECKING:
    import torch


@dataclass
class LocalizeEvaluation(Evaluation):
    data: str = ann.data_option()
    split: str = ann.split_option()
    tta: bool = tta_option()
    threshold: float | None = option(None, "--threshold", min=0.0, max=1.0, help="Score presence at this p_c "
                                     "(default: the model's own, else 0.5).")
    common: EvalOptions = field(default_factory=EvalOptions)


def _split(config: LocalizeEvaluation):
    """(loaded model, its task, the split's cached images, the annotation file, device), the data's classes
    checked against the model's."""
    from cnntool.tasks.localize.train import LocalizeConfig, LocalizeTask

    path, annotations = ann.read_split(config.data, config.split)
    loaded, device = load_for_eval("localize", config.common)
    task = LocalizeTask.for_loaded(loaded, LocalizeConfig(data=config.data, loss=loaded.metadata.get("loss", "modern"),
                                                          tta=config.tta))
    if (Path(config.data) / "classes.txt").is_file():
        listed = ann.read_classes(Path(config.data), annotations)
        if listed != task.classes:
            raise ConfigError(f"data {config.data!r} has classes {', '.join(listed)}; the model {', '.join(task.classes)}")
    return loaded, task, task.cache(annotations), path, device


def evaluate(config: LocalizeEvaluation) -> dict[str, Any]:
    """Presence accuracy, class accuracy, mean IoU and IoU ≥ 0.5 accuracy; `tta`: averaged over TTA_SHIFT
    shifts; presence at `threshold`, else the weights' own, else 0.5."""
    loaded, task, dataset, path, device = _split(config)
    if config.threshold is not None:
        task.threshold = config.threshold
    result = run_eval(loaded.module, dataset, task, device=device, batch_size=config.common.batch_size, tta=config.tta)
    described = (f"{config.data}: {config.split} split ({path.name}), {len(dataset)} images, "
                 f"{result.metrics['objects']} objects, presence threshold {task.threshold:g}")
    if config.tta:
        described += f", test-time augmentation: mean of the image and four copies shifted diagonally by {TTA_SHIFT:.0%}"
    return report("localize", loaded, described, result)


def presence(config: LocalizeEvaluation) -> tuple["torch.Tensor", "torch.Tensor"]:
    """(each image's p_c, whether it holds an object) on one split: what a presence threshold is chosen from
    (the metric keeps sums, not per-image scores)."""
    import torch

    from cnntool.data import batches
    from cnntool.models.yvector import interpret

    loaded, task, dataset, _, device = _split(config)
    scores, present = [], []
    with torch.inference_mode():
        order = batches.index_batches(torch.arange(len(dataset)), config.common.batch_size)
        for images, targets in batches.iterate(dataset, order):
            scores.append(interpret(loaded.module(task.eval_batch(images.to(device))))[:, 0].cpu())
            present.append(targets[:, 0] > 0.5)
    return torch.cat(scores), torch.cat(present)


def report_lines(report: dict[str, Any]) -> list[str]:
    return [f"presence accuracy {report['presence_accuracy']:.4f}   class accuracy {report['class_accuracy']:.4f}   "
            f"mean IoU {report['mean_iou']:.4f}   IoU≥0.5 {report['iou50_accuracy']:.4f}   loss {report['loss']:.4f}   "
            f"{report['images_per_second']} img/s"]


def score(weights: str, data: str, *, tta: bool, device: str, threads: int | None) -> dict[str, Any]:
    return evaluate(LocalizeEvaluation(data=data, tta=tta, common=EvalOptions(weights=weights, device=device,
                                                                              threads=threads)))


def calibrate(weights: str, data: str, *, device: str, threads: int | None) -> dict[str, Any]:
    """The presence threshold with the most validation images right (tasks/localize/metrics.py), as metadata."""
    from cnntool.tasks.localize.metrics import DEFAULT_THRESHOLD, calibrate_threshold

    p_c, present = presence(LocalizeEvaluation(data=data, split="val", common=EvalOptions(
        weights=weights, device=device, threads=threads)))
    threshold = calibrate_threshold(p_c, present)
    right = {t: float(((p_c >= t) == present).float().mean()) for t in (DEFAULT_THRESHOLD, threshold)}
    return {"decode": {"threshold": threshold},
            "threshold_from": f"{data}: val split, {len(p_c)} images: presence accuracy {right[threshold]:.4f} at "
                              f"p_c ≥ {threshold:g} ({right[DEFAULT_THRESHOLD]:.4f} at {DEFAULT_THRESHOLD:g}), the "
                              "best on a 0.05 grid"}


CONFIG = LocalizeEvaluation
