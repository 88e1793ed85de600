"""detect: every object's labelled box, by sliding windows, convolutional sliding windows, a YOLO-style grid,
torchvision's detectors, or dlib's face detector."""

from __future__ import annotations

from typing import Any

from cnntool.engine.task import Task
from cnntool.tasks.detect import predict


class Detect(Task):
    name = "detect"
    summary = "Detect objects: labelled boxes with scores, in original-image pixels."
    docs = {
        "predict": "Detect objects: labelled boxes with scores, in original-image pixels.\n\n"
                   "Example: cnntool detect photos/ --model yolo-digits --conf 0.5 --save annotated/",
        "train": "Train an object detector; held-out mAP50 and mAP50-95 go into the weights' metadata.\n\n"
                 "Example: cnntool train detect --data scenes/ --model yolo-digits --epochs 30 "
                 "--out weights/yolo-digits.safetensors",
        "evaluate": "mAP50-95, mAP50, mAP75, recall and per-class AP of a detector (COCO protocol via torchmetrics)."
                    "\n\nExample: cnntool evaluate detect --data scenes/ --model yolo-digits --format json",
    }
    options = predict.DetectOptions
    predict_defaults = {"batch_size": 16}
    csv_columns = predict.CSV_COLUMNS
    train_defaults = {"epochs": 30, "batch_size": 32, "lr": 0.003, "optimizer": "adamw", "warmup": 0.05}
    evaluate_defaults = {"batch_size": 64}

    decode = staticmethod(predict.decode)
    draw = staticmethod(predict.draw)

    def runner(self, model, module, options):
        return predict.runner(model, module, options)

    @property
    def train_config(self) -> type:
        from cnntool.tasks.detect.train import DetectConfig

        return DetectConfig

    @property
    def evaluate_config(self) -> type:
        from cnntool.tasks.detect.evaluate import DetectEvaluation

        return DetectEvaluation

    def trainer(self, config: Any):
        from cnntool.tasks.detect.train import DetectTask

        return DetectTask(config)

    def evaluate(self, config: Any) -> dict[str, Any]:
        from cnntool.tasks.detect.evaluate import evaluate

        return evaluate(config)

    def report_lines(self, report: dict[str, Any]) -> list[Any]:
        from cnntool.tasks.detect.evaluate import report_lines

        return report_lines(report)


TASK = Detect()
