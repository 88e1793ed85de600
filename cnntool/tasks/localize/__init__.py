"""localize: classification with localization, the lecture's y = [p_c, b_x, b_y, b_h, b_w, c_1 … c_K]."""

from __future__ import annotations

from cnntool.engine.task import Task


class Localize(Task):
    name = "localize"
    package = __name__
    summary = "Classification with localization: is there an object (p_c), which class, and its box."
    docs = {
        "predict": "Classification with localization: is there an object (p_c), which class, and its box.\n\n"
                   "Example: cnntool localize photo.jpg --format jsonl --save annotated/",
        "train": "Train classification with localization (the y-vector); held-out presence/class accuracy and IoU go "
                 "into the metadata.\n\nExample: cnntool train localize --data runs/data/scenes "
                 "--out weights/localizer-digits.safetensors --threads 1",
        "evaluate": "Presence accuracy, class accuracy, mean IoU and IoU≥0.5 accuracy of a localizer (the metric "
                    "training records as metrics.heldout).\n\nExample: cnntool evaluate localize --data "
                    "runs/data/scenes --model localizer-digits --format json",
    }
    predict_defaults = {"batch_size": 64}
    reads_boxes = True
    train_defaults = {"epochs": 12, "batch_size": 64, "lr": 0.003, "optimizer": "adamw"}


TASK = Localize()
