"""`cnntool evaluate detect`: COCO mAP50-95, mAP50, mAP75, recall and per-class AP of a detector on one split of
a detection dataset (scene JSON, COCO JSON or YOLO txt), through the loading and metric code training uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cnntool.data import detect_formats
from cnntool.engine.evaluate import EvalOptions, Evaluation, load_for_eval, report, run_eval
from cnntool.errors import ConfigError
from cnntool.options import option
from cnntool.tasks.detect.predict import TTA_SCALES, tta_option


@dataclass
class DetectEvaluation(Evaluation):
    data: str = detect_formats.data_option()
    split: str = option("test", "--split", help="Which split of the data: test, val or train.")
    conf: float = option(0.001, "--conf", min=0.0, max=1.0, help="Least score kept (low: AP integrates over the "
                         "whole ranking).")
    iou: float = option(0.6, "--iou", min=0.0, max=1.0, help="Class-wise NMS IoU.")
    tta: bool = tta_option()
    common: EvalOptions = field(default_factory=EvalOptions)


def evaluate(config: DetectEvaluation) -> dict[str, Any]:
    from cnntool.tasks.detect.train import DetectConfig, DetectTask

    loaded, device = load_for_eval("detect", config.common)
    splits, classes = detect_formats.read_dataset(config.data)
    if config.split not in splits:
        raise ConfigError(f"data {config.data!r} has no {config.split!r} split (has: {', '.join(splits)})")
    task = DetectTask.for_loaded(loaded, DetectConfig(data=config.data, conf=config.conf, iou=config.iou,
                                                      tta=config.tta))
    if tuple(classes) != task.classes:
        raise ConfigError(f"data {config.data!r} has classes {', '.join(classes)}; the model {', '.join(task.classes)}")
    samples = splits[config.split]
    dataset = task.cache(samples, max(1, max(len(s.objects) for s in samples)))
    result = run_eval(loaded.module, dataset, task, device=device, batch_size=config.common.batch_size, tta=config.tta)
    objects = sum(len(s.objects) for s in samples)
    described = f"{config.data}: {config.split} split, {len(samples)} images, {objects} objects"
    if config.tta:
        described += f", test-time augmentation at scales {', '.join(map(str, TTA_SCALES))}"
    return report("detect", loaded, described, result)


def report_lines(report: dict[str, Any]) -> list[Any]:
    from rich.markup import escape
    from rich.table import Table

    one = report["one_label_per_box"]
    per_class = Table("class", "AP50-95", "recall@100")
    for name, row in report["per_class"].items():
        per_class.add_row(escape(name), f"{row['ap50_95']:.4f}", f"{row['recall100']:.4f}")
    return [f"mAP50-95 {report['map50_95']:.4f}   mAP50 {report['map50']:.4f}   mAP75 {report['map75']:.4f}   "
            f"recall@100 {report['mar100']:.4f}   {report['images_per_second']} img/s   (every class per box that "
            f"clears the threshold)\n"
            f"mAP50-95 {one['map50_95']:.4f}   mAP50 {one['map50']:.4f}   mAP75 {one['map75']:.4f}   "
            f"recall@100 {one['mar100']:.4f}   (only each box's best class)", per_class]


CONFIG = DetectEvaluation
