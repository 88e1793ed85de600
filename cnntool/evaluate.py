"""`cnntool evaluate <task>`: a trained model's metrics on labelled data, with the same model loading as
prediction (cnntool.loader) and the same metric code as training (the task's accumulator)."""

from __future__ import annotations

import json
import sys
from typing import Any, TextIO

from cnntool.errors import ConfigError

SPLITS = ("auto", "test", "heldout", "all")


def _load(task: str, model: str | None, weights: str | None, device: str, threads: int | None):
    """(the loaded model, the resolved device): every evaluation starts here."""
    import torch

    from cnntool.loader import load_model
    from cnntool.engine.predict import resolve_device

    if threads:
        torch.set_num_threads(threads)
    device = resolve_device(device)
    return load_model(model, weights, task=task, device=device), device


def _report(task: str, loaded, data: str, result, **extra: Any) -> dict[str, Any]:
    """One evaluation's report: what was scored, on what, and its metrics (as training records them)."""
    return {"task": task, "model": loaded.name, "data": data, "loss": result.loss, **extra,
            "images_per_second": round(result.images_per_second, 1), **result.metrics}


def classify(*, data: str, model: str | None, weights: str | None, split: str = "auto", batch_size: int = 500,
             workers: int = 0, device: str = "cpu", threads: int | None = None, tta_flip: bool = False,
             bf16: bool = False, int8: bool = False) -> dict[str, Any]:
    """Accuracy, top-5, per-class precision/recall and the confusion matrix of a classifier on `data`.

    split: test = the source's official test part; heldout = the held-out split recorded in the weights'
    metadata (same --val-split and --seed as training); all = every image; auto = test when there is one,
    else heldout when the weights record a split, else all.
    """
    from cnntool.data.classify import open_classify_data
    from cnntool.data.splits import stratified_split
    from cnntool.engine.evaluate import run_eval
    from cnntool.tasks.classify.train import ClassifyConfig, ClassifyTask

    if split not in SPLITS:
        raise ConfigError(f"--split must be one of {', '.join(SPLITS)}, not {split!r}")
    loaded, device = _load("classify", model, weights, device, threads)
    module = loaded.module
    if int8:  # as `cnntool classify --int8` runs it (refusing --bf16 and CUDA): calibrated on the first batch
        from cnntool.engine.inference import InferenceOptions, prepare

        module = prepare(module, device, InferenceOptions(int8=True, bf16=bf16, channels_last=False)).module
    source = open_classify_data(data, loaded.input)
    if len(source.classes) != len(loaded.classes):
        raise ConfigError(f"data {data!r} has {len(source.classes)} classes, the model {len(loaded.classes)}")
    recorded = loaded.metadata
    if split == "auto":
        split = "test" if source.test is not None else ("heldout" if "val_split" in recorded else "all")
    if split == "test":
        if source.test is None:
            raise ConfigError(f"data {data!r} has no test split; use --split heldout or all")
        dataset, described = source.test, f"{source.description}: official test split"
    elif split == "heldout":
        if "val_split" not in recorded:
            raise ConfigError("these weights record no training split; use --split test or all")
        _, held = stratified_split(source.train.labels(), recorded["val_split"], loaded.metadata.get("seed", 0))
        dataset = source.train.subset(held)
        described = f"{source.description}: held-out split (val_split {recorded['val_split']}, seed {loaded.metadata.get('seed', 0)})"
    else:
        dataset, described = source.train, f"{source.description}: all images"
    task = ClassifyTask(ClassifyConfig(data=data, model=loaded.spec.name, tta_flip=tta_flip))
    task.input, task.classes = loaded.input, loaded.classes
    result = run_eval(module, dataset, task, device=device, batch_size=batch_size, workers=workers, tta=tta_flip,
                      bf16=bf16)
    return _report("classify", loaded, described, result, bf16=bf16, int8=int8)


def _report_console(report: dict[str, Any], fmt: str, stream: TextIO | None, title: str):
    """JSON → written, returns None; table → a rich Console on the stream with the title line printed.
    The stream is looked up at call time: tests and callers may have replaced sys.stdout."""
    stream = stream or sys.stdout
    if fmt == "json":
        stream.write(json.dumps(report, indent=2) + "\n")
        return None
    from rich.markup import escape

    from cnntool.records import rich_console

    console = rich_console(stream)
    console.print(escape(title))  # paths may hold [brackets], which rich would read as markup
    return console


def write_report(report: dict[str, Any], fmt: str, stream: TextIO | None = None) -> None:
    console = _report_console(report, fmt, stream, f"{report['model']} on {report['data']}: {report['images']} images")
    if console is None:
        return
    from rich.markup import escape
    from rich.table import Table

    console.print(f"accuracy {report['accuracy']:.4f}   top-5 {report['top5']:.4f}   loss {report['loss']:.4f}")
    per_class = Table("class", "precision", "recall", "support")
    for name, row in report["per_class"].items():  # class names are folder names: [brackets] are not markup
        per_class.add_row(escape(name), f"{row['precision']:.4f}", f"{row['recall']:.4f}", str(row["support"]))
    console.print(per_class)
    names = list(report["per_class"])
    confusion = Table("true \\ predicted", *[escape(n[:8]) for n in names], title="confusion matrix")
    for name, row in zip(names, report["confusion"]):
        confusion.add_row(escape(name), *[str(v) for v in row])
    console.print(confusion)


# --- verify-face (issue: Siamese nets, triplet loss and a learned similarity) ------------------------------

def verify_face(*, data: str | None, pairs, identities: str | None, model: str | None, weights: str | None,
                metric: str | None, detect: bool = True, device: str = "cpu", threads: int | None = None) -> dict[str, Any]:
    """ROC AUC, EER and TAR@FAR of an embedding model: labelled pairs (--pairs), a folder of identities
    (images through verify-face's own path, face detection included), or a built-in set whose classes
    stand in for identities (every pair of up to 2,000 images; by default
    the identities the weights never trained on, when the set is the one they were trained on)."""
    from pathlib import Path

    import numpy as np

    from cnntool.tasks.verify import run as verify
    from cnntool.data.classify import BUILTIN, open_classify_data
    from cnntool.preprocess import Preprocessor
    from cnntool.tasks.verify.losses import all_pair_distances
    from cnntool.tasks.verify.metrics import every_pair, roc_report
    from cnntool.tasks.verify.train import _materialize, embed_dataset, parse_identities

    if (data is None) == (pairs is None):
        raise ConfigError("give exactly one of --data or --pairs")
    opts = verify.VerifyOptions(model=model, weights=weights, metric=metric, detect=detect, device=device, threads=threads)
    loaded = verify.load(opts)
    embedder = verify.Embedder(loaded, opts)
    metrics = [metric] if metric else verify.usable_metrics(loaded)
    if pairs is not None or data not in BUILTIN:
        scores = (verify.score_pairs(verify.read_pairs(pairs), embedder, metrics) if pairs is not None
                  else verify.score_identity_folder(Path(data), embedder, metrics))
        reports = {m: roc_report(scores.distances[m], scores.same) for m in metrics}
        return {"task": "face-embed", "model": loaded.name, "data": scores.description,
                "failed_inputs": scores.failed, "metrics": reports}
    source = open_classify_data(data, loaded.input)
    dataset = _materialize(source.test if source.test is not None else source.train)
    meta = loaded.metadata
    chosen = parse_identities(identities, source.classes)
    if chosen is None and meta.get("data_source") == data:
        chosen = tuple(meta.get("unseen_identities", ())) or None
    described = f"{source.description}: {'official test split' if source.test is not None else 'all images'}"
    if chosen is not None:
        keep = [i for i, t in enumerate(dataset.targets.tolist()) if source.classes[t] in set(chosen)]
        dataset = dataset.subset(keep)
        described += f", identities {', '.join(chosen)}"
    order = np.random.default_rng(0).permutation(len(dataset))  # the 2,000-image cap then spans all identities
    emb, labels = embed_dataset(loaded.module, Preprocessor(loaded.input).normalize, dataset.subset(order), device=embedder.device)
    head = getattr(loaded.module, "head", None)
    reports = {}
    for m in metrics:
        d, same = every_pair(emb, labels, lambda e: all_pair_distances(e.to(embedder.device), m, head).cpu())
        reports[m] = roc_report(d, same)
    return {"task": "face-embed", "model": loaded.name, "data": f"{described}; every pair of up to 2,000 of its {len(dataset)} images",
            "failed_inputs": [], "metrics": reports}


def detect(*, data: str, model: str | None, weights: str | None, split: str = "test", batch_size: int = 64,
           device: str = "cpu", threads: int | None = None, conf: float = 0.001, iou: float = 0.6,
           tta: bool = False) -> dict[str, Any]:
    """COCO mAP50-95, mAP50, mAP75, recall and per-class AP of a detector on one split of a detection
    dataset (scene JSON, COCO JSON or YOLO txt), through the same loading and metric code as training;
    `tta`: at detect.TTA_SCALES."""
    from cnntool.data import detect_formats
    from cnntool.engine.evaluate import run_eval
    from cnntool.tasks.detect.train import DetectConfig, DetectTask

    loaded, device = _load("detect", model, weights, device, threads)
    splits, classes = detect_formats.read_dataset(data)
    if split not in splits:
        raise ConfigError(f"data {data!r} has no {split!r} split (has: {', '.join(splits)})")
    task = DetectTask.for_loaded(loaded, DetectConfig(data=data, conf=conf, iou=iou, tta=tta))
    if tuple(classes) != task.classes:
        raise ConfigError(f"data {data!r} has classes {', '.join(classes)}; the model {', '.join(task.classes)}")
    samples = splits[split]
    dataset = task.cache(samples, max(1, max(len(s.objects) for s in samples)))
    result = run_eval(loaded.module, dataset, task, device=device, batch_size=batch_size, tta=tta)
    objects = sum(len(s.objects) for s in samples)
    described = f"{data}: {split} split, {len(samples)} images, {objects} objects"
    if tta:
        from cnntool.tasks.detect.predict import TTA_SCALES

        described += f", test-time augmentation at scales {', '.join(map(str, TTA_SCALES))}"
    return _report("detect", loaded, described, result)


def write_detect_report(report: dict[str, Any], fmt: str, stream: TextIO | None = None) -> None:
    console = _report_console(report, fmt, stream, f"{report['model']} on {report['data']}")
    if console is None:
        return
    from rich.markup import escape
    from rich.table import Table

    one = report["one_label_per_box"]
    console.print(f"mAP50-95 {report['map50_95']:.4f}   mAP50 {report['map50']:.4f}   mAP75 {report['map75']:.4f}   "
                  f"recall@100 {report['mar100']:.4f}   {report['images_per_second']} img/s   (every class per box "
                  f"that clears the threshold)\n"
                  f"mAP50-95 {one['map50_95']:.4f}   mAP50 {one['map50']:.4f}   mAP75 {one['map75']:.4f}   "
                  f"recall@100 {one['mar100']:.4f}   (only each box's best class)")
    per_class = Table("class", "AP50-95", "recall@100")
    for name, row in report["per_class"].items():
        per_class.add_row(escape(name), f"{row['ap50_95']:.4f}", f"{row['recall100']:.4f}")
    console.print(per_class)


# --- localize and landmarks: one split of an annotation dataset directory (cnntool data scenes/documents) ---

ANNOTATION_SPLITS = ("test", "val", "train")


def _annotation_split(data: str, split: str):
    """(path, annotations) of one split of a train/val/test annotation directory, or a one-line error that
    names the splits there are."""
    from pathlib import Path

    from cnntool.data import annotations as ann

    if split not in ANNOTATION_SPLITS:
        raise ConfigError(f"--split must be one of {', '.join(ANNOTATION_SPLITS)}, not {split!r}")
    root = Path(data)
    path = ann.find_split(root, split)
    if path is None:
        there = [s for s in ANNOTATION_SPLITS if ann.find_split(root, s) is not None]
        has = f"has: {', '.join(there)}" if there else "no test, val or train .json or .csv there"
        raise ConfigError(f"data {data!r} has no {split!r} split ({has})")
    return path, ann.read_annotations(path)


def _localize_split(data: str, split: str, model: str | None, weights: str | None, device: str,
                    threads: int | None, tta: bool = False):
    """(loaded model, its task, the split's cached images, the annotation file, device) for a localizer, the
    data's classes checked against the model's."""
    from pathlib import Path

    from cnntool.data import annotations as ann
    from cnntool.tasks.localize.train import LocalizeConfig, LocalizeTask

    path, annotations = _annotation_split(data, split)
    loaded, device = _load("localize", model, weights, device, threads)
    task = LocalizeTask.for_loaded(loaded, LocalizeConfig(data=data, loss=loaded.metadata.get("loss", "modern"),
                                                          tta=tta))
    if (Path(data) / "classes.txt").is_file():
        listed = ann.read_classes(Path(data), annotations)
        if listed != task.classes:
            raise ConfigError(f"data {data!r} has classes {', '.join(listed)}; the model {', '.join(task.classes)}")
    return loaded, task, task.cache(annotations), path, device


def localize(*, data: str, model: str | None, weights: str | None, split: str = "test", batch_size: int = 500,
             device: str = "cpu", threads: int | None = None, tta: bool = False,
             threshold: float | None = None) -> dict[str, Any]:
    """Presence accuracy, class accuracy, mean IoU and IoU ≥ 0.5 accuracy of a localizer on one split of an
    annotation directory, through the task code and metric that training uses for its held-out figures
    (and the loss the weights were trained with); `tta`: averaged over localize.TTA_SHIFT shifts; presence at
    `threshold`, else the weights' own, else 0.5."""
    from cnntool.engine.evaluate import run_eval

    loaded, task, dataset, path, device = _localize_split(data, split, model, weights, device, threads, tta)
    if threshold is not None:
        task.threshold = threshold
    result = run_eval(loaded.module, dataset, task, device=device, batch_size=batch_size, tta=tta)
    described = (f"{data}: {split} split ({path.name}), {len(dataset)} images, {result.metrics['objects']} objects, "
                 f"presence threshold {task.threshold:g}")
    if tta:
        from cnntool.tasks.localize.predict import TTA_SHIFT

        described += f", test-time augmentation: mean of the image and four copies shifted diagonally by {TTA_SHIFT:.0%}"
    return _report("localize", loaded, described, result)


def localize_presence(*, data: str, weights: str, split: str = "val", batch_size: int = 500, device: str = "cpu",
                      threads: int | None = None):
    """(each image's p_c, whether it holds an object) on one split: what a presence threshold is chosen from
    (the metric keeps sums, not per-image scores)."""
    import torch

    from cnntool.data import batches
    from cnntool.tasks.localize.predict import interpret

    loaded, task, dataset, _, device = _localize_split(data, split, None, weights, device, threads)
    scores, present = [], []
    with torch.inference_mode():
        for images, targets in batches.iterate(dataset, batches.index_batches(torch.arange(len(dataset)), batch_size)):
            scores.append(interpret(loaded.module(task.eval_batch(images.to(device))))[:, 0].cpu())
            present.append(targets[:, 0] > 0.5)
    return torch.cat(scores), torch.cat(present)


def landmarks(*, data: str, model: str | None, weights: str | None, split: str = "test",
              tolerance: float | None = None, batch_size: int = 500, device: str = "cpu",
              threads: int | None = None) -> dict[str, Any]:
    """NME (by the image diagonal) and the share of points within `tolerance` of a landmark model on one
    split of an annotation directory, through the task code and metric that training uses for its held-out
    figures. tolerance None: the one recorded in the weights' held-out metrics, else 0.02."""
    from cnntool.engine.evaluate import run_eval
    from cnntool.tasks.landmarks.predict import DEFAULT_TOLERANCE
    from cnntool.tasks.landmarks.train import LandmarksConfig, LandmarksTask

    path, annotations = _annotation_split(data, split)
    loaded, device = _load("landmarks", model, weights, device, threads)
    if loaded.input.resize == "none":
        raise ConfigError(f"{loaded.name} finds faces in full-resolution images first; evaluate landmarks scores "
                          "fixed-input point regressors such as landmarker-corners")
    meta = loaded.metadata
    if tolerance is None:
        tolerance = (meta.get("metrics") or {}).get("heldout", {}).get("tolerance", DEFAULT_TOLERANCE)
    task = LandmarksTask.for_loaded(loaded, LandmarksConfig(data=data, loss=meta.get("loss", "l1"), tolerance=tolerance))
    named = next((tuple(a.point_names) for a in annotations if a.point_names), None)
    if named is not None and named != task.point_names:
        raise ConfigError(f"data {data!r} has points {', '.join(named)}; the model {', '.join(task.point_names)}")
    dataset = task.cache(annotations)
    result = run_eval(loaded.module, dataset, task, device=device, batch_size=batch_size)
    return _report("landmarks", loaded, f"{data}: {split} split ({path.name}), {len(dataset)} images, "
                   f"{len(task.point_names)} points each", result)


def write_localize_report(report: dict[str, Any], fmt: str, stream: TextIO | None = None) -> None:
    console = _report_console(report, fmt, stream, f"{report['model']} on {report['data']}")
    if console is None:
        return
    console.print(f"presence accuracy {report['presence_accuracy']:.4f}   "
                  f"class accuracy {report['class_accuracy']:.4f}   mean IoU {report['mean_iou']:.4f}   "
                  f"IoU≥0.5 {report['iou50_accuracy']:.4f}   loss {report['loss']:.4f}   "
                  f"{report['images_per_second']} img/s")


def write_landmarks_report(report: dict[str, Any], fmt: str, stream: TextIO | None = None) -> None:
    console = _report_console(report, fmt, stream, f"{report['model']} on {report['data']}")
    if console is None:
        return
    console.print(f"NME {report['nme']:.4f} (by the {report['nme_normalized_by']})   within {report['tolerance']:g} "
                  f"{report['within_tolerance']:.4f} of {report['points']} points   loss {report['loss']:.4f}   "
                  f"{report['images_per_second']} img/s")
