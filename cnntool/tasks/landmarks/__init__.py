"""landmarks: N points per image, the lecture's l-vector (a document's corners, a face's 5 or 68 points)."""

from __future__ import annotations

from typing import Any

from cnntool.engine.task import Task
from cnntool.tasks.landmarks import predict


class Landmarks(Task):
    name = "landmarks"
    package = __name__
    summary = "Landmarks: N points per image (default model: the 4 corners of a document or photo print)."
    docs = {
        "predict": "Landmarks: N points per image (default model: the 4 corners of a document or photo print).\n\n"
                   "Example: cnntool landmarks scan.jpg --rectify flat/ --save annotated/",
        "train": "Train N-point landmark regression (the l-vector); held-out NME (by the image diagonal) goes into the "
                 "metadata.\n\nExample: cnntool train landmarks --data runs/data/documents "
                 "--out weights/landmarker-corners.safetensors --threads 1",
        "evaluate": "NME (by the image diagonal) and the share of points within tolerance of a landmark model (the "
                    "metric training records as metrics.heldout).\n\nExample: cnntool evaluate landmarks --data "
                    "runs/data/documents --model landmarker-corners --format json",
    }
    predict_defaults = {"batch_size": 64}
    train_defaults = {"epochs": 12, "batch_size": 64, "lr": 0.003, "optimizer": "adamw"}

    def after_each(self, options: Any, *, quiet: bool):
        return predict.Rectifier(options.rectify, quiet=quiet) if options.rectify else None


TASK = Landmarks()
