"""Training a sliding-window detector (sliding-windows-digits, conv-sliding-windows-digits): what learns is its
window classifier, on crops cut from the detection data's boxes plus background windows away from every object
(R-CNN's second stage trained apart); the detector around it is then scored on the held-out scenes.

The weights file written is the window classifier's (a classify file whose extra class is "background") and
names the detector it was trained for, so `cnntool detect --weights FILE` runs that detector.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnntool import weights
from cnntool.models import catalog

if TYPE_CHECKING:
    from cnntool.engine.train import TrainConfig
    from cnntool.tasks.detect.train import DetectConfig

BACKGROUND_PER_IMAGE = 2.0  # background windows cut per image, on average: most windows of a scene are background


def is_windows(model: str) -> bool:
    return bool(catalog.get(model, task="detect").parts)


def train(config: "DetectConfig", engine: "TrainConfig") -> dict[str, Any]:
    from cnntool.data.crops import CropConfig, write_crops
    from cnntool.engine.evaluate import EvalOptions
    from cnntool.tasks import get
    from cnntool.tasks.classify.train import ClassifyConfig
    from cnntool.tasks.detect.evaluate import DetectEvaluation, evaluate

    (part,) = catalog.get(config.model, task="detect").parts.values()
    crops = engine.checkpoint_dir / "window-crops"
    if not (engine.resume and (crops / "crops.json").is_file()):
        size = catalog.get(part).input.size[0]
        write_crops([Path(config.data)], crops, CropConfig(size=size, frame=0, background=BACKGROUND_PER_IMAGE,
                                                           seed=engine.seed))
    get("classify").train(ClassifyConfig(data=str(crops), model=part, val_split=config.val_split), engine)
    options = EvalOptions(model=config.model, weights=str(engine.out), device=engine.device,
                          batch_size=engine.eval_batch_size, threads=engine.threads)
    report = evaluate(DetectEvaluation(data=config.data, common=options))
    state, meta = weights.load(engine.out)
    meta.pop("format_version", None)
    meta["detector"] = config.model
    meta.setdefault("metrics", {})["detector_heldout"] = {
        k: report[k] for k in ("map50_95", "map50", "map75", "mar100", "data") if k in report}
    weights.save(engine.out, state, meta)
    if not engine.quiet:
        print(f"{config.model} with this classifier: held-out mAP50 {report['map50']:.4f}, mAP50-95 "
              f"{report['map50_95']:.4f} ({report.get('data', config.data)})")
    return meta
