"""verify-face: same person or not (1:1), who is it (1:N against a gallery), faces grouped by person (cluster),
calibration; training an embedding with triplet loss, Siamese contrastive pairs or a learned similarity."""

from __future__ import annotations

from typing import Any

from cnntool.engine.task import Task


class Verify(Task):
    name = "verify-face"
    package = __name__
    summary = ("Same person or not (A B), who is it (--gallery DIR), group faces by person (cluster DIR), "
               "calibrate the threshold.")
    docs = {
        "train": "Train an embedding for one-shot verification: triplet loss with online mining, Siamese contrastive "
                 "pairs, or a learned similarity head, on a folder of identities (or a built-in set whose classes "
                 "stand in for identities). Thresholds are calibrated on held-out images afterwards.\n\nExample: "
                 "cnntool train verify-face --data fashion-mnist --unseen 7-9 --model lenet5-relu --input-size 28 "
                 "--objective triplet --out weights/oneshot.safetensors",
        "evaluate": "ROC AUC, EER and TAR@FAR of an embedding model on pairs or identities.\n\n"
                    "Example: cnntool evaluate verify-face --model oneshot-fashion --data digits",
    }
    # `evaluate verify-face` embeds as verify-face does, but names no gallery, face or threshold of its own
    evaluate_skip = ("gallery", "gallery_cache", "threshold", "calibration", "verify.format", "face", "upsample",
                     "recursive", "max_pixels", "quiet")

    def train(self, config: Any, engine: Any) -> dict[str, Any]:
        """Train the embedding, then calibrate its thresholds on the validation images (into its metadata)."""
        import os

        from cnntool.engine.train import train
        from cnntool.tasks.verify.train import calibrate_trained

        trainable = self.trainer(config)
        meta = train(trainable, engine)
        if int(os.environ.get("RANK", "0")) == 0:  # one process writes under torchrun
            device = "cpu" if engine.device == "auto" else engine.device
            meta = {**meta, "verification": calibrate_trained(trainable, engine.out, device=device)}
        return meta


TASK = Verify()
