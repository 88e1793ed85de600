"""`cnntool export`: a model as ONNX or TorchScript, for runtimes without cnntool, with its preprocessing beside it.

The exported graph is the model's own forward on a normalized batch, BatchNorm folded in as for prediction:
what it outputs is the raw output cnntool's task decoders read (classify: logits; localize: the y-vector's raw
scores; landmarks: the l-vector; the grid detector: every cell's candidate boxes and scores). FILE.json beside
it says how an image becomes the input (size, resize, channels, mean/std) and what the classes are.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cnntool import version, weights
from cnntool.console import quiet_option
from cnntool.errors import ConfigError, first_line
from cnntool.folders import write_text
from cnntool.options import argument, option


@dataclass(kw_only=True)
class ExportConfig:
    model: str = argument(help="A registered model's name, or a weights file (or embedded name) to export.")
    format: Literal["onnx", "torchscript"] = option("onnx", "--format", "-f", help="onnx (any ONNX runtime) or "
                                                    "torchscript (torch.jit.load).")
    out: Path = option(dataclasses.MISSING, "--out", "-o", help="The file to write; FILE.json beside it describes "
                       "the input and the classes.")
    batch: int = option(1, "--batch", min=1, help="The example batch size the graph is traced with (ONNX keeps the "
                        "batch size variable where the model allows).")
    quiet: bool = quiet_option()


def _load(name: str):
    from cnntool.loader import load_model
    from cnntool.models import catalog

    if Path(name).is_file() or not _registered(name):
        path = weights.resolve(name)
        task = weights.read_metadata(path).get("task")
        if task is None:
            raise ConfigError(f"{path}: no task in its metadata; export a cnntool weights file or a registered name")
        return load_model(None, str(path), task=task)
    return load_model(name, None, task=catalog.get(name).task)


def _registered(name: str) -> bool:
    from cnntool.models import catalog

    return name in catalog.names()


def export(config: ExportConfig) -> dict[str, Any]:
    """Write the model to config.out and its description to config.out.json; returns the description."""
    import torch

    from cnntool.engine.inference import fold_batchnorm

    out = Path(config.out)
    loaded = _load(config.model)
    spec = loaded.input
    if spec.resize == "none":
        raise ConfigError(f"{loaded.name} runs its own image pyramid on images of any size and cannot be traced; "
                          "export a fixed-input model")
    module = loaded.module.eval()
    fold_batchnorm(module)
    example = torch.zeros(config.batch, spec.channels, *spec.size)
    with torch.no_grad():
        reference = module(example)
    if not isinstance(reference, torch.Tensor):
        outputs = "one dict per image: boxes (n, 4) xyxy in input pixels, scores (n,), labels (n,)"
    else:
        outputs = f"a tensor of shape {tuple(reference.shape)[1:]} per image"
    out.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer and exporter advice, about code paths a fixed graph does not take
        try:
            if config.format == "torchscript":
                torch.jit.save(torch.jit.trace(module, example, strict=False), str(out))
                batch = str(config.batch)
            else:
                batch = _onnx(module, example, out)
        except ConfigError:
            raise
        except Exception as exc:  # what the tracer or exporter raises on a model it cannot follow
            raise ConfigError(f"{loaded.name} cannot be exported as {config.format}: {first_line(exc)}") from None
    description = {"model": loaded.name, "task": loaded.task, "format": config.format, "classes": list(loaded.classes),
                   "input": {**spec.document(), "layout": "NCHW float32, RGB or grey 0..255 resized as `resize` "
                             "says, then (x / 255 − mean) / std per channel"},
                   "batch": batch, "outputs": outputs, "cnntool_version": version()}
    write_text(out.with_name(out.name + ".json"), json.dumps(description, indent=2) + "\n")
    return description


def _onnx(module, example, out: Path) -> str:
    """torch.onnx's exporter, the batch size kept variable where the model allows it; returns the batch size the
    graph takes ("any", or the example's)."""
    import logging

    import torch

    logging.getLogger("onnxscript").setLevel(logging.ERROR)  # its optimizer's notes would reach the terminal
    batch = torch.export.Dim("batch", min=1, max=1024)
    try:
        torch.onnx.export(module, (example,), str(out), dynamo=True, verbose=False, input_names=["image"],
                          dynamic_shapes=({0: batch},), external_data=False)
        return "any"
    except Exception:  # a graph that depends on the batch size (per-image lists, per-image crops): fixed batch
        torch.onnx.export(module, (example,), str(out), dynamo=True, verbose=False, input_names=["image"],
                          external_data=False)
        return str(len(example))
