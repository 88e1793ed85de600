"""classify: an image's top-k labels with probabilities."""

from __future__ import annotations

from typing import Any

from cnntool.engine.task import Task
from cnntool.tasks.classify import predict


class Classify(Task):
    name = "classify"
    summary = "Classify images: the top-k labels of each, with probabilities."
    docs = {
        "predict": "Classify images: the top-k labels of each, with probabilities.\n\n"
                   "Example: find photos -name '*.png' | cnntool classify - --format jsonl --topk 3",
        "train": "Train an image classifier.\n\n"
                 "Example: cnntool train classify --data fashion-mnist --model resnet-small --epochs 20 --crop-pad 2 "
                 "--hflip --out weights/fashion.safetensors",
        "evaluate": "Accuracy, top-5, per-class precision/recall and the confusion matrix of a classifier.\n\n"
                    "Example: cnntool evaluate classify --data digits --model lenet5-digits --format json",
    }
    options = predict.ClassifyOptions
    predict_defaults = {"batch_size": 64}
    predict_skip = ()
    csv_columns = predict.CSV_COLUMNS
    tta_report_key = "heldout_tta_flip"

    decode = staticmethod(predict.decode)
    draw = staticmethod(predict.draw)

    def runner(self, model, module, options):
        return predict.runner(model, module, options)

    @property
    def train_config(self) -> type:
        from cnntool.tasks.classify.train import ClassifyConfig

        return ClassifyConfig

    @property
    def evaluate_config(self) -> type:
        from cnntool.tasks.classify.evaluate import ClassifyEvaluation

        return ClassifyEvaluation

    def trainer(self, config: Any):
        from cnntool.tasks.classify.train import ClassifyTask

        return ClassifyTask(config)

    def train(self, config: Any, engine: Any) -> dict[str, Any]:
        """One network, or with --ensemble K that many on one split, their probabilities averaged."""
        if config.ensemble == 1:
            return super().train(config, engine)
        from cnntool.engine.ensemble import train_ensemble

        return train_ensemble(self.trainer(config), engine, config.ensemble)

    def evaluate(self, config: Any) -> dict[str, Any]:
        from cnntool.tasks.classify.evaluate import evaluate

        return evaluate(config)

    def score(self, weights: str, data: str, *, tta: bool, device: str, threads: int | None) -> dict[str, Any]:
        from cnntool.engine.evaluate import EvalOptions
        from cnntool.tasks.classify.evaluate import ClassifyEvaluation, evaluate

        return evaluate(ClassifyEvaluation(data=data, tta_flip=tta,
                                           common=EvalOptions(weights=weights, device=device, threads=threads)))

    def report_title(self, report: dict[str, Any]) -> str:
        return f"{report['model']} on {report['data']}: {report['images']} images"

    def report_lines(self, report: dict[str, Any]) -> list[Any]:
        from cnntool.tasks.classify.evaluate import report_lines

        return report_lines(report)


TASK = Classify()
