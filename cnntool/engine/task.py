"""The task contract: what a task folder (cnntool/tasks/<name>/) gives the predict, train and evaluate
engines. The engines call these methods and never look at a task's name or fields.

A task folder's __init__.py defines one `Task` subclass and an instance of it, TASK (cnntool.tasks lists
the folders). The folder's modules are found by name and imported by the methods that need them, so the
command line can read a task's option dataclasses without torch:
  predict.py   the predict command's options (OPTIONS), payload, decode, draw, runner
  train.py     the training config (CONFIG) and the engine's training object (TRAINABLE)
  evaluate.py  the evaluation config (CONFIG), evaluate(config) → report, report_lines(report)
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, Sequence, TextIO

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from cnntool.preprocess import Geometry
    from cnntool.records import Payload, Record


@dataclass
class TaskData:
    """What a training task prepares: datasets of (uint8 image (C, H, W), target) items."""

    train: Any
    val: Any
    heldout: Any
    heldout_description: str
    # False when the held-out split is the validation split itself (no separate test set): the engine
    # then ships the last epoch's weights, never ones selected on the data it reports.
    select_on_val: bool

    def skipped(self) -> list[tuple[Any, str]]:
        """(path, reason) of every file the splits left out because it would not read, each once."""
        found: dict[str, str] = {}
        for split in (self.train, self.val, self.heldout):
            found.update((str(path), why) for path, why in getattr(split, "skipped", ()))
        return list(found.items())


def held_out(train: Any, val: Any, test: Any | None, *, where: str) -> TaskData:
    """The splits as training uses them. With a test split, validation chooses the checkpoint and the test
    split is held out; without one, the last epoch is shipped and its figure on the validation split is
    reported, named as such (never "held-out")."""
    if test is not None:
        return TaskData(train, val, test, f"{where}: official test split, {len(test)} images", True)
    return TaskData(train, val, val, f"{where}: validation split, {len(val)} images (the data has no test split), "
                    "never trained on; the last epoch's weights, not chosen on it", False)


class Metrics(Protocol):
    """A task's metric accumulator. Its state is a few summable tensors, so ranks add theirs together and a
    resumed run carries them as plain lists."""

    primary: str  # the number checkpoints are selected on (higher is better)

    def update(self, outputs: Any, targets: Any) -> None: ...
    def tensors(self) -> list["torch.Tensor"]: ...
    def load_tensors(self, values: Sequence[Any]) -> None: ...
    def summary(self) -> dict[str, float]: ...  # headline scalars (progress, curves)
    def compute(self) -> dict[str, Any]: ...  # the full report


class Trainable(Protocol):
    """The object the training engine trains (Task.trainer builds it from the task's training config)."""

    name: str  # the task name, written to the weights' metadata

    def prepare(self, seed: int) -> TaskData: ...
    def build_model(self) -> "torch.nn.Module": ...
    def train_batch(self, images: "torch.Tensor", targets: Any) -> tuple[Any, Any]: ...  # augment + normalize
    def eval_batch(self, images: "torch.Tensor") -> "torch.Tensor": ...  # normalize only
    def forward_eval(self, model: Any, inputs: "torch.Tensor", *, tta: bool = False) -> Any: ...
    def loss(self, outputs: Any, targets: Any) -> "torch.Tensor": ...
    def new_metrics(self) -> Metrics: ...
    def metadata(self) -> dict[str, Any]: ...  # task, model, kwargs, classes, input: what prediction reads
    def extra_evaluations(self) -> list[tuple[str, Any, str]]: ...  # (key, dataset, description)
    tta_key: str | None  # the metadata key of held-out figures with test-time augmentation, when asked for


class Task:
    """One task, as the engines see it. Subclasses set the class attributes and override what differs."""

    name: str = ""
    package: str = ""  # the task's folder, as a module path
    summary: str = ""  # one line: what the task answers
    docs: Mapping[str, str] = {}  # --help of its predict, train and evaluate commands, each with an example
    predict_defaults: Mapping[str, Any] = {}  # RunOptions defaults this task's command changes
    predict_skip: tuple[str, ...] = ("int8",)  # RunOptions this task's command does not offer
    train_defaults: Mapping[str, Any] = {}  # training-engine defaults this task's command changes
    evaluate_defaults: Mapping[str, Any] = {}  # EvalOptions defaults this task's command changes
    evaluate_skip: tuple[str, ...] = ()  # options of its evaluation config the command does not offer
    reads_boxes = False  # a box reader and a presence threshold apply (`cnntool ensemble --reader/--calibrate`)
    tta_report_key = "heldout_tta"  # where held-out figures with test-time augmentation go in the metadata

    def part(self, module: str) -> Any:
        """One module of the task's folder (predict, train, evaluate)."""
        return importlib.import_module(f"{self.package}.{module}")

    # --- prediction -------------------------------------------------------------------------------------

    @property
    def options(self) -> type:
        """The predict command's decode options (a dataclass with cnntool.options fields)."""
        return self.part("predict").OPTIONS

    @property
    def csv_columns(self) -> tuple[str, ...]:
        """The CSV columns of one row of the task's payload."""
        return self.part("predict").CSV_COLUMNS

    def decode(self, outputs: Any, geometries: Sequence["Geometry"], *, classes: Sequence[str],
               options: Mapping[str, Any]) -> list["Payload"]:
        return self.part("predict").decode(outputs, geometries, classes=classes, options=options)

    def runner(self, model: Callable, module: "torch.nn.Module", options: Mapping[str, Any]) -> Callable:
        """How the prediction pipeline calls the model (a task may add test-time augmentation)."""
        predict = self.part("predict")
        return predict.runner(model, module, options) if hasattr(predict, "runner") else model

    def draw(self, image: "Image.Image", payload: "Payload") -> "Image.Image":
        return self.part("predict").draw(image, payload)

    def after_each(self, options: Any, *, quiet: bool) -> Callable[["Record"], None] | None:
        """A per-record action the task's options ask for (landmarks --rectify), or None."""
        return None

    # --- training -------------------------------------------------------------------------------------

    @property
    def train_config(self) -> type:
        return self.part("train").CONFIG

    def trainer(self, config: Any) -> Trainable:
        return self.part("train").TRAINABLE(config)

    def train(self, config: Any, engine: Any) -> dict[str, Any]:
        """Train and write the weights; returns their metadata."""
        from cnntool.engine.train import train

        return train(self.trainer(config), engine)

    # --- evaluation -------------------------------------------------------------------------------------

    @property
    def evaluate_config(self) -> type:
        return self.part("evaluate").CONFIG

    def evaluate(self, config: Any) -> dict[str, Any]:
        return self.part("evaluate").evaluate(config)

    def score(self, weights: str, data: str, *, tta: bool, device: str, threads: int | None) -> dict[str, Any]:
        """A weights file's held-out figures on `data`, as `cnntool evaluate` reports them (`cnntool ensemble`)."""
        evaluate = self.part("evaluate")
        if not hasattr(evaluate, "score"):
            from cnntool.errors import ConfigError

            raise ConfigError(f"{self.name} models are not averaged into ensembles")
        return evaluate.score(weights, data, tta=tta, device=device, threads=threads)

    def calibrate(self, weights: str, data: str, *, device: str, threads: int | None) -> dict[str, Any]:
        """Metadata fields of decode defaults chosen on `data`'s validation split (`cnntool ensemble --calibrate`)."""
        evaluate = self.part("evaluate")
        if not hasattr(evaluate, "calibrate"):
            from cnntool.errors import ConfigError

            raise ConfigError(f"{self.name} models have no threshold to calibrate")
        return evaluate.calibrate(weights, data, device=device, threads=threads)

    def domain_splits(self, loaded: Any, data: str, extra_train: Sequence[str]) -> tuple[Any, Any, Any, str]:
        """What `cnntool train domain` learns as in-domain: (training, validation, held-out) image sets as the
        model's training split them (each with uint8 `images` (N, C, H, W) at the model's input) and the words
        for the data."""
        evaluate = self.part("evaluate")
        if not hasattr(evaluate, "domain_splits"):
            from cnntool.errors import ConfigError

            raise ConfigError(f"{self.name} models take no domain check (classify and landmarks models do)")
        return evaluate.domain_splits(loaded, data, extra_train)

    def report_lines(self, report: dict[str, Any]) -> list[Any]:
        """The table view of an evaluation report: lines of text or rich renderables."""
        return self.part("evaluate").report_lines(report)

    def write_report(self, report: dict[str, Any], fmt: str, stream: TextIO | None = None) -> None:
        """JSON, or a title line and the task's table view."""
        import json

        stream = stream or sys.stdout
        if fmt == "json":
            stream.write(json.dumps(report, indent=2) + "\n")
            return
        from rich.markup import escape

        from cnntool.records import rich_console

        console = rich_console(stream)
        console.print(escape(self.report_title(report)))  # paths may hold [brackets], which rich reads as markup
        for line in self.report_lines(report):
            console.print(line)

    def report_title(self, report: dict[str, Any]) -> str:
        return f"{report['model']} on {report['data']}"
