"""`cnntool evaluate classify`: accuracy, top-5, per-class precision/recall and the confusion matrix of a
classifier, through the loading and metric code training uses."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from cnntool.data.classify import data_option, open_classify_data
from cnntool.data.splits import stratified_split
from cnntool.device import workers_option
from cnntool.engine.evaluate import EvalOptions, Evaluation, domain_pass, load_for_eval, report, run_eval
from cnntool.engine.inference import bf16_option, int8_option
from cnntool.errors import ConfigError
from cnntool.options import option

SPLITS = ("auto", "test", "val", "all")


@dataclass
class ClassifyEvaluation(Evaluation):
    data: str = data_option()
    split: str = option("auto", "--split", help="test, val (the validation split training used: the data's val/, or "
                        "the --val-split recorded in the weights), all, or auto.")
    tta_flip: bool = option(False, "--tta-flip", help="Average predictions with the mirror image.")
    workers: int = workers_option()
    bf16: bool = bf16_option()
    int8: bool = int8_option()
    common: EvalOptions = field(default_factory=EvalOptions)


def evaluate(config: ClassifyEvaluation) -> dict[str, Any]:
    """split: test = the source's official test part; val = its val part, else the validation split recorded in
    the weights' metadata (same --val-split and --seed as training); all = every image; auto = test when there
    is one, else val when there is one, else all."""
    from cnntool.tasks.classify.train import ClassifyConfig, ClassifyTask

    if config.split not in SPLITS:
        raise ConfigError(f"--split must be one of {', '.join(SPLITS)}, not {config.split!r}")
    loaded, device = load_for_eval("classify", config.common)
    module = loaded.module
    if config.int8:  # as `cnntool classify --int8` runs it (refusing --bf16 and CUDA): calibrated on the first batch
        from cnntool.engine.inference import InferenceOptions, prepare

        module = prepare(module, device, InferenceOptions(int8=True, bf16=config.bf16, channels_last=False)).module
    source = open_classify_data(config.data, loaded.input)
    if len(source.classes) != len(loaded.classes):
        raise ConfigError(f"data {config.data!r} has {len(source.classes)} classes, the model {len(loaded.classes)}")
    recorded, split = loaded.metadata, config.split
    if split == "auto":
        split = "test" if source.test is not None else (
            "val" if source.val is not None or "val_split" in recorded else "all")
    if split == "test":
        if source.test is None:
            raise ConfigError(f"data {config.data!r} has no test split; use --split val or all")
        dataset, described = source.test, f"{source.description}: official test split"
    elif split == "val" and source.val is not None:
        dataset, described = source.val, f"{source.description}: val split"
    elif split == "val":
        if "val_split" not in recorded:
            raise ConfigError("the data has no val split and these weights record no training split; use --split "
                              "test or all")
        seed = recorded.get("seed", 0)
        _, held = stratified_split(source.train.labels(), recorded["val_split"], seed)
        dataset = source.train.subset(held)
        described = f"{source.description}: validation split (val_split {recorded['val_split']}, seed {seed})"
    else:
        dataset, described = source.train, f"{source.description}: all images"
    task = ClassifyTask(ClassifyConfig(data=config.data, model=loaded.spec.name, tta_flip=config.tta_flip))
    task.input, task.classes = loaded.input, loaded.classes
    result = run_eval(module, dataset, task, device=device, batch_size=config.common.batch_size,
                      workers=config.workers, tta=config.tta_flip, bf16=config.bf16)
    extra = {}
    if loaded.domain is not None:
        extra = domain_figures(loaded, module, task, dataset, device, config.common.batch_size)
    return report("classify", loaded, described, result, bf16=config.bf16, int8=config.int8, **extra)


def domain_figures(loaded, module, task, dataset, device: str, batch_size: int) -> dict[str, float | None]:
    """The share of images the domain check gives no answer for, and the accuracy on those it answers."""
    inside, logits, labels = domain_pass(loaded, dataset, task, device=device, batch_size=batch_size, model=module)
    answered = int(inside.sum())
    right = int((logits.argmax(1) == labels)[inside].sum())
    return {"out_of_domain": 1 - answered / max(len(dataset), 1),
            "accuracy_in_domain": right / answered if answered else None}


def report_lines(report: dict[str, Any]) -> list[Any]:
    from rich.markup import escape
    from rich.table import Table

    per_class = Table("class", "precision", "recall", "support")
    for name, row in report["per_class"].items():  # class names are folder names: [brackets] are not markup
        per_class.add_row(escape(name), f"{row['precision']:.4f}", f"{row['recall']:.4f}", str(row["support"]))
    names = list(report["per_class"])
    confusion = Table("true \\ predicted", *[escape(n[:8]) for n in names], title="confusion matrix")
    for name, row in zip(names, report["confusion"]):
        confusion.add_row(escape(name), *[str(v) for v in row])
    domain = ""
    if "out_of_domain" in report:
        answered = report["accuracy_in_domain"]
        domain = (f"   out of domain {report['out_of_domain']:.4f} (no answer given)   accuracy where answered "
                  + ("-" if answered is None else f"{answered:.4f}"))
    return [f"accuracy {report['accuracy']:.4f}   top-5 {report['top5']:.4f}   loss {report['loss']:.4f}{domain}",
            per_class, confusion]


def score(weights: str, data: str, *, tta: bool, device: str, threads: int | None) -> dict[str, Any]:
    return evaluate(ClassifyEvaluation(data=data, tta_flip=tta, common=EvalOptions(weights=weights, device=device,
                                                                                   threads=threads)))


CONFIG = ClassifyEvaluation


def domain_splits(loaded, data: str, extra_train) -> tuple[Any, Any, Any, str]:
    """`cnntool train domain`: the classifier's training, validation and held-out images as its training split
    them (the recorded --val-split and --seed where the data has no val part), --extra-train sets joined to
    the training images."""
    source = open_classify_data(data, loaded.input)
    recorded = loaded.metadata
    if source.val is not None:
        train, val = source.train, source.val
    else:
        if "val_split" not in recorded:
            raise ConfigError(f"{loaded.name}: no training split recorded and {data!r} has no val part")
        kept, held = stratified_split(source.train.labels(), recorded["val_split"], recorded.get("seed", 0))
        train, val = source.train.subset(kept), source.train.subset(held)
    for extra in extra_train:
        train = train.concat(open_classify_data(extra, loaded.input).train)
    if not hasattr(train, "images"):
        raise ConfigError("the domain check is trained on in-memory data (built-in names or idx files)")
    return train, val, source.test if source.test is not None else val, source.description
