"""`cnntool evaluate landmarks`: NME and the share of points within tolerance of a point regressor on one split of
an annotation directory, through the task code and metric training uses for its held-out figures."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cnntool.data import annotations as ann
from cnntool.engine.evaluate import EvalOptions, Evaluation, domain_pass, load_for_eval, report, run_eval
from cnntool.errors import ConfigError
from cnntool.tasks.landmarks.metrics import DEFAULT_TOLERANCE
from cnntool.tasks.landmarks.train import LandmarksConfig, LandmarksTask, tolerance_option


@dataclass
class LandmarksEvaluation(Evaluation):
    data: str = ann.data_option()
    split: str = ann.split_option()
    tolerance: float | None = tolerance_option(None, "A point within this share of the image diagonal counts as "
                                               "found. Default: the one recorded in the weights, else 0.02.")
    common: EvalOptions = field(default_factory=EvalOptions)


def evaluate(config: LandmarksEvaluation) -> dict[str, Any]:
    path, annotations = ann.read_split(config.data, config.split)
    loaded, device = load_for_eval("landmarks", config.common)
    if loaded.input.resize == "none":
        raise ConfigError(f"{loaded.name} finds faces in full-resolution images first; evaluate landmarks scores "
                          "fixed-input point regressors such as landmarker-corners")
    meta = loaded.metadata
    tolerance = config.tolerance
    if tolerance is None:
        tolerance = meta.get("metrics", {}).get("heldout", {}).get("tolerance", DEFAULT_TOLERANCE)
    task = LandmarksTask.for_loaded(loaded, LandmarksConfig(data=config.data, loss=meta.get("loss", "l1"),
                                                            tolerance=tolerance))
    named = next((tuple(a.point_names) for a in annotations if a.point_names), None)
    if named is not None and named != task.point_names:
        raise ConfigError(f"data {config.data!r} has points {', '.join(named)}; the model {', '.join(task.point_names)}")
    dataset = task.cache(annotations)
    result = run_eval(loaded.module, dataset, task, device=device, batch_size=config.common.batch_size)
    extra = {} if loaded.domain is None else {"out_of_domain": out_of_domain(loaded, task, dataset, device)}
    return report("landmarks", loaded, f"{config.data}: {config.split} split ({path.name}), {len(dataset)} images, "
                  f"{len(task.point_names)} points each", result, **extra)


def out_of_domain(loaded, task: LandmarksTask, dataset, device: str) -> float:
    """The share of the images the domain check says show nothing like the training images (no document)."""
    inside, _, _ = domain_pass(loaded, dataset, task, device=device)
    return 1 - float(inside.float().mean())


def domain_splits(loaded, data: str, extra_train) -> tuple[Any, Any, Any, str]:
    """`cnntool train domain`: the landmark model's training, validation and held-out images, split as its
    training split them (the recorded --val-split and seed where the folder has no val part)."""
    if extra_train:
        raise ConfigError("--extra-train: a landmarks model's domain check learns its one folder")
    meta = loaded.metadata
    task = LandmarksTask.for_loaded(loaded, LandmarksConfig(data=data, val_split=meta.get("val_split", 0.1)))
    prepared = task.prepare(meta.get("seed", 0))
    return prepared.train, prepared.val, prepared.heldout, task.data_description


def report_lines(report: dict[str, Any]) -> list[str]:
    domain = (f"   out of domain {report['out_of_domain']:.4f} (no document)" if "out_of_domain" in report else "")
    return [f"NME {report['nme']:.4f} (by the {report['nme_normalized_by']})   within {report['tolerance']:g} "
            f"{report['within_tolerance']:.4f} of {report['points']} points   loss {report['loss']:.4f}   "
            f"{report['images_per_second']} img/s{domain}"]


CONFIG = LandmarksEvaluation
