"""detect: every object's labelled box, by sliding windows, convolutional sliding windows, a YOLO-style grid,
torchvision's detectors, or dlib's face detector."""

from __future__ import annotations

from cnntool.engine.task import Task


class Detect(Task):
    name = "detect"
    package = __name__
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
    predict_defaults = {"batch_size": 16}
    train_defaults = {"epochs": 30, "batch_size": 32, "lr": 0.003, "optimizer": "adamw", "warmup": 0.05}
    evaluate_defaults = {"batch_size": 64}

    def train(self, config, engine):
        """Sliding-window detectors train their window classifier (cnntool.tasks.detect.windows)."""
        from cnntool.tasks.detect import windows

        if windows.is_windows(config.model):
            return windows.train(config, engine)
        return super().train(config, engine)


TASK = Detect()
