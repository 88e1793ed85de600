"""Run a model over a dataset and accumulate a task's metrics: used by the training engine for
validation and held-out figures, and by every `cnntool evaluate <task>` (the options they share, the model
loading and the report's common fields are here)."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from cnntool.data import batches
from cnntool.device import device_option, resolve_device, set_threads, threads_option
from cnntool.engine.distributed import Dist
from cnntool.loader import model_option, weights_option
from cnntool.options import option

if TYPE_CHECKING:
    import torch

    from cnntool.loader import LoadedModel


def report_format_option() -> Any:
    return option("table", "--format", "-f", help="table or json.")


@dataclass
class EvalOptions:
    """What every `cnntool evaluate <task>` takes besides its data."""

    model: str | None = model_option()
    weights: str | None = weights_option()
    format: Literal["table", "json"] = report_format_option()
    device: str = device_option("cpu")
    batch_size: int = option(500, "--batch-size", "-b", min=1, help="Images per forward pass.")
    threads: int | None = threads_option()


class Evaluation:
    """What an evaluation config of a task holds beside its own options: the EvalOptions, as `common`."""

    common: EvalOptions

    @property
    def report_format(self) -> str:
        return self.common.format


def load_for_eval(task: str, options: EvalOptions) -> tuple["LoadedModel", str]:
    """(the loaded model, the resolved device): every evaluation starts here."""
    from cnntool.loader import load_model

    set_threads(options.threads)
    device = resolve_device(options.device)
    return load_model(options.model, options.weights, task=task, device=device), device


def report(task: str, loaded: "LoadedModel", data: str, result: "EvalResult", **extra: Any) -> dict[str, Any]:
    """One evaluation's report: what was scored, on what, and its metrics (as training records them)."""
    from cnntool import version

    return {"task": task, "model": loaded.name, "data": data, "loss": result.loss, **extra,
            "images_per_second": round(result.images_per_second, 1), **result.metrics, "cnntool_version": version()}


@dataclass
class EvalResult:
    metrics: dict[str, Any]  # the task's full report (compute())
    summary: dict[str, float]  # its headline scalars
    loss: float | None  # None for a model that gives no loss in evaluation (torchvision's detectors)
    images: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else 0.0


def autocast(device: str, enabled: bool):
    import torch

    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)


def domain_pass(loaded, dataset, task, *, device: str = "cpu", batch_size: int = 500,
                model=None) -> tuple["torch.Tensor", "torch.Tensor | None", "torch.Tensor"]:
    """A model's domain check over a whole dataset, in order: whether it takes each image as like the training
    images (at the threshold stored with it), the model's outputs when `model` is given (one pass serves
    both), and the targets."""
    import torch

    threshold = float(loaded.spec.decode.get("domain_threshold", 0.0))
    inside, outputs, targets = [], [], []
    with torch.inference_mode():
        for images, batch_targets in batches.iterate(dataset, batches.index_batches(torch.arange(len(dataset)),
                                                                                    batch_size)):
            x = task.eval_batch(images.to(device))
            inside.append((loaded.domain(x) >= threshold).cpu())
            if model is not None:
                outputs.append(model(x).cpu())
            targets.append(batch_targets)
    return torch.cat(inside), torch.cat(outputs) if outputs else None, torch.cat(targets)


def run_eval(model, dataset, task, *, device: str = "cpu", batch_size: int = 500, workers: int = 0,
             channels_last: bool = False, bf16: bool = False, tta: bool = False, dist: Dist | None = None) -> EvalResult:
    """Each rank evaluates its own share (every world-th item); the sums are added across ranks."""
    import torch

    dist = dist or Dist()
    metrics = task.new_metrics()
    order = torch.arange(dist.rank, len(dataset), dist.world)
    totals = torch.zeros(3, dtype=torch.float64)  # loss sum, image count, images with a loss
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    with torch.inference_mode():
        for images, targets in batches.iterate(dataset, batches.index_batches(order, batch_size), workers=workers):
            inputs = task.eval_batch(images.to(device, non_blocking=True))
            if channels_last:
                inputs = inputs.contiguous(memory_format=torch.channels_last)
            targets = targets.to(device)
            with autocast(device, bf16):
                outputs = task.forward_eval(model, inputs, tta=tta)
            loss = task.loss(outputs, targets)
            if loss is not None:
                totals[0] += float(loss) * len(targets)
                totals[2] += len(targets)
            totals[1] += len(targets)
            metrics.update(outputs, targets)
    seconds = time.perf_counter() - start
    model.train(was_training)
    dist.sum_([totals, *metrics.tensors()])
    n, with_loss = int(totals[1]), int(totals[2])
    loss = float(totals[0]) / with_loss if with_loss else None
    return EvalResult(metrics.compute(), metrics.summary(), loss, n, seconds)
