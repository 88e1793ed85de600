"""localize: classification with localization, the lecture's y = [p_c, b_x, b_y, b_h, b_w, c_1 … c_K]."""

from __future__ import annotations

from typing import Any

from cnntool.engine.task import Task
from cnntool.tasks.localize import predict


class Localize(Task):
    name = "localize"
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
    options = predict.LocalizeOptions
    predict_defaults = {"batch_size": 64}
    csv_columns = predict.CSV_COLUMNS
    reads_boxes = True
    train_defaults = {"epochs": 12, "batch_size": 64, "lr": 0.003, "optimizer": "adamw"}

    decode = staticmethod(predict.decode)
    draw = staticmethod(predict.draw)

    def runner(self, model, module, options):
        return predict.runner(model, module, options)

    @property
    def train_config(self) -> type:
        from cnntool.tasks.localize.train import LocalizeConfig

        return LocalizeConfig

    @property
    def evaluate_config(self) -> type:
        from cnntool.tasks.localize.evaluate import LocalizeEvaluation

        return LocalizeEvaluation

    def trainer(self, config: Any):
        from cnntool.tasks.localize.train import LocalizeTask

        return LocalizeTask(config)

    def evaluate(self, config: Any) -> dict[str, Any]:
        from cnntool.tasks.localize import evaluate

        return evaluate.evaluate(config)

    def score(self, weights: str, data: str, *, tta: bool, device: str, threads: int | None) -> dict[str, Any]:
        from cnntool.engine.evaluate import EvalOptions
        from cnntool.tasks.localize.evaluate import LocalizeEvaluation, evaluate

        return evaluate(LocalizeEvaluation(data=data, tta=tta, common=EvalOptions(weights=weights, device=device,
                                                                                  threads=threads)))

    def calibrate(self, weights: str, data: str, *, device: str, threads: int | None) -> dict[str, Any]:
        """The presence threshold with the most validation images right (tasks/localize/metrics.py)."""
        from cnntool.engine.evaluate import EvalOptions
        from cnntool.tasks.localize.evaluate import LocalizeEvaluation, presence
        from cnntool.tasks.localize.metrics import DEFAULT_THRESHOLD, calibrate_threshold

        p_c, present = presence(LocalizeEvaluation(data=data, split="val", common=EvalOptions(
            weights=weights, device=device, threads=threads)))
        threshold = calibrate_threshold(p_c, present)
        right = {t: float(((p_c >= t) == present).float().mean()) for t in (DEFAULT_THRESHOLD, threshold)}
        return {"decode": {"threshold": threshold},
                "threshold_from": f"{data}: val split, {len(p_c)} images: presence accuracy {right[threshold]:.4f} at "
                                  f"p_c ≥ {threshold:g} ({right[DEFAULT_THRESHOLD]:.4f} at {DEFAULT_THRESHOLD:g}), the "
                                  "best on a 0.05 grid"}

    def report_lines(self, report: dict[str, Any]) -> list[Any]:
        from cnntool.tasks.localize.evaluate import report_lines

        return report_lines(report)


TASK = Localize()
