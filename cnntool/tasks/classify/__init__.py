"""classify: an image's top-k labels with probabilities."""

from __future__ import annotations

from typing import Any

from cnntool.engine.task import Task


class Classify(Task):
    name = "classify"
    package = __name__
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
    predict_defaults = {"batch_size": 64}
    predict_skip = ()
    tta_report_key = "heldout_tta_flip"

    def train(self, config: Any, engine: Any) -> dict[str, Any]:
        """One network, or with --ensemble K that many on one split, their probabilities averaged."""
        if config.ensemble == 1:
            return super().train(config, engine)
        from cnntool.engine.ensemble import train_ensemble

        return train_ensemble(self.trainer(config), engine, config.ensemble)

    def report_title(self, report: dict[str, Any]) -> str:
        return f"{report['model']} on {report['data']}: {report['images']} images"


TASK = Classify()
