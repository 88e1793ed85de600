"""Model + weights → a ready nn.Module with its input spec and classes. The one place that resolves
`--model` and `--weights` for every subcommand (predict, evaluate, fine-tuning).

Weights sources:
- a cnntool safetensors file (a path, or a name in weights/): its metadata may carry the architecture,
  builder kwargs, classes and input spec, which replace the registry entry's (the kwargs whole: training
  records all of them, and a registry entry changed since must not leak into older weights);
- `DEFAULT` or a torchvision weights name (`IMAGENET1K_V1`, `ResNet18_Weights.IMAGENET1K_V1`) for models
  whose registry entry names torchvision weights: read from the torch hub cache, downloaded where online,
  with categories and transforms from the weights' meta;
- a `.pt`/`.pth` state dict (read with weights_only=True: pickled code is refused).
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cnntool import registry, weights
from cnntool.errors import ConfigError, first_line
from cnntool.registry import InputSpec, ModelSpec

if TYPE_CHECKING:
    import torch

# A download that cannot connect must fail fast, not hang (offline machines, firewalls).
DOWNLOAD_TIMEOUT_S = 10.0


@dataclass
class LoadedModel:
    name: str  # what records report as "model"
    spec: ModelSpec  # the registry entry, with input/classes/kwargs as the weights define them
    module: "torch.nn.Module"
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def task(self) -> str:
        return self.spec.task

    @property
    def input(self) -> InputSpec:
        return self.spec.input

    @property
    def classes(self) -> tuple[str, ...]:
        return self.spec.classes


def input_spec_from(document: dict[str, Any], base: InputSpec) -> InputSpec:
    """A weights file's input spec, over the registry's: files written before a field existed take the
    registry's value for it."""
    try:
        fields = dict(document)
        for key in ("size", "mean", "std"):
            if key in fields:
                fields[key] = tuple(fields[key])
        return replace(base, **fields)
    except (TypeError, ValueError) as exc:  # a crafted or foreign header
        raise ConfigError(f"input spec {document!r} in the metadata: {exc}") from None


def default_model(task: str) -> str:
    return registry.default(task)


def load_model(model: str | None, weights_arg: str | None, *, task: str, device: str = "cpu") -> LoadedModel:
    """Resolve and build. `model` None → the architecture a weights file names, else the task's default;
    `weights_arg` None → the registry entry's own source."""
    weights_file = None
    if weights_arg is not None and not is_torchvision_name(weights_arg):
        weights_file = weights.resolve(weights_arg)
        meta = weights.read_metadata(weights_file)
        # Before the file's architecture is looked up among this task's models: "weights for task X"
        # says what is wrong, "unknown model" would not.
        if meta.get("task") not in (None, task):
            raise ConfigError(f"{weights_file}: weights are for task {meta['task']!r}, not {task!r}")
        model = model or meta.get("model")
    spec = registry.get(model or default_model(task), task=task)
    source = weights_arg or spec.weights
    if weights_file is not None:
        loaded = _from_file(spec, weights_file)
    elif source is None:
        raise ConfigError(f"model {spec.name!r} has no default weights; pass --weights FILE "
                          f"(train one with `cnntool train {task} --model {spec.name}`)")
    elif source.startswith("embedded:"):
        loaded = _from_file(spec, weights.resolve(source.split(":", 1)[1]))
    elif source.startswith("external:"):
        # Converted from another format by the builder itself (e.g. dlib's face models).
        loaded = LoadedModel(spec.name, spec, spec.build())
    else:
        loaded = _from_torchvision(spec, source)
    loaded.module.eval()
    loaded.module.to(device)
    return loaded


def is_torchvision_name(source: str) -> bool:
    """DEFAULT, IMAGENET1K_V1, ResNet18_Weights.IMAGENET1K_V1 — unless a file of that name exists."""
    if Path(source).is_file():
        return False
    return source.upper() == "DEFAULT" or source.isupper() or "_Weights." in source or source.startswith("torchvision:")


def _from_file(spec: ModelSpec, path: Path) -> LoadedModel:
    state, meta = weights.load(path)
    if meta:
        if meta.get("task") not in (None, spec.task):
            raise ConfigError(f"{path}: weights are for task {meta['task']!r}, not {spec.task!r}")
        arch = meta.get("model")
        if arch and arch != spec.name:
            arch_spec = registry.get(arch, task=spec.task)
            if arch_spec.builder != spec.builder:
                raise ConfigError(f"{path}: weights are for model {arch!r}, not {spec.name!r}")
        spec = replace(
            spec,
            kwargs=meta.get("kwargs", spec.kwargs),
            classes=tuple(meta.get("classes", spec.classes)),
            input=input_spec_from(meta["input"], spec.input) if "input" in meta else spec.input,
            decode={**spec.decode, **_decode_options(meta.get("decode", {}), path)},
        )
    outputs = spec.kwargs.get("num_classes", spec.kwargs.get("num_points"))
    if spec.classes and outputs is not None and len(spec.classes) != outputs:
        # Tensors of the right shape would load, and the labels would silently be wrong.
        raise ConfigError(f"{path}: metadata names {len(spec.classes)} classes but the model has {outputs} outputs")
    module = _build(spec, meta.get("ensemble", 0), path)
    if "reader" in meta:
        module = _with_reader(module, spec, meta["reader"], path)
    weights.load_into(module, state, source=str(path))
    name = spec.name if path.parent == weights.weights_dir() else f"{spec.name}@{path.name}"
    return LoadedModel(name, spec, module, meta)


def _decode_options(document: Any, path: Path) -> dict[str, float]:
    """Decode defaults a weights file carries (e.g. a presence threshold calibrated on validation): names and
    numbers only, since they reach the task's decode as its options."""
    if not isinstance(document, dict) or not all(
            isinstance(k, str) and type(v) in (int, float) for k, v in document.items()):
        raise ConfigError(f"{path}: metadata 'decode' must map option names to numbers, not {document!r}")
    return document


# More members than this is not a file we wrote (and would make a crafted header build models without end).
MAX_ENSEMBLE = 64


def _build(spec: ModelSpec, ensemble: Any, path: Path) -> "torch.nn.Module":
    """The architecture, or `ensemble` copies of it averaged (cnntool.models.ensemble)."""
    if ensemble == 0:
        return spec.build()
    if type(ensemble) is not int or not 1 <= ensemble <= MAX_ENSEMBLE:
        raise ConfigError(f"{path}: metadata 'ensemble' must be a member count 1..{MAX_ENSEMBLE}, not {ensemble!r}")
    from cnntool.models.ensemble import AVERAGES, Ensemble

    if spec.task not in AVERAGES:
        raise ConfigError(f"{path}: an ensemble of {spec.task} models; only {' and '.join(AVERAGES)} models are averaged")
    return Ensemble([spec.build() for _ in range(ensemble)], task=spec.task)


def _with_reader(localizer: "torch.nn.Module", spec: ModelSpec, document: Any, path: Path) -> "torch.nn.Module":
    """A localizer whose boxes a classifier reads again (cnntool.models.reader): the classifier's description is
    the metadata's 'reader' entry (as its own file's metadata had it), its tensors are under reader.*."""
    from cnntool.models.reader import BoxReader, background_index

    fields = ("model", "kwargs", "input", "classes", "context")
    if spec.task != "localize" or not isinstance(document, dict) or not all(k in document for k in fields):
        raise ConfigError(f"{path}: metadata 'reader' must give a localizer's box reader as {', '.join(fields)}")
    context = document["context"]
    if type(context) not in (int, float) or not 1 <= context <= 4 or not all(
            isinstance(document[k], dict) for k in ("kwargs", "input")):
        raise ConfigError(f"{path}: metadata 'reader' needs kwargs and input as mappings and a context from 1 to 4")
    try:
        background = background_index(document["classes"], spec.classes)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    base = registry.get(document["model"], task="classify")
    reader_spec = replace(base, kwargs=document["kwargs"], classes=tuple(document["classes"]),
                          input=input_spec_from(document["input"], base.input))
    height, width = reader_spec.input.size
    if height != width or reader_spec.input.channels != spec.input.channels:
        raise ConfigError(f"{path}: the reader must read square {spec.input.channels}-channel crops, "
                          f"not {reader_spec.input.describe()}")
    reader = _build(reader_spec, document.get("ensemble", 0), path)
    return BoxReader(localizer, reader, crop=height, context=float(context),
                     localizer_stats=(spec.input.mean, spec.input.std),
                     reader_stats=(reader_spec.input.mean, reader_spec.input.std), background=background)


def torchvision_weights(spec: ModelSpec, name: str) -> tuple[Any, dict[str, "torch.Tensor"]]:
    """(weights enum, state dict) for DEFAULT / IMAGENET1K_V1 / ResNet18_Weights.IMAGENET1K_V1 / torchvision:…"""
    import torchvision.models as tvm

    if not (spec.weights or "").startswith("torchvision:"):
        raise ConfigError(f"{name!r}: torchvision weights names apply only to torchvision models, not {spec.name!r}")
    name = name.split(":", 1)[1] if name.startswith("torchvision:") else name
    enum_name = spec.weights.split(":", 1)[1].split(".")[0]
    try:
        enum = tvm.get_weight(f"{enum_name}.{name}") if "." not in name and name.upper() != "DEFAULT" else None
        if name.upper() == "DEFAULT":
            # get_weight also finds the enums of torchvision.models.detection, which getattr(tvm) does not.
            enum = tvm.get_weight(f"{enum_name}.DEFAULT")
        elif enum is None:
            enum = tvm.get_weight(name)
    except (ValueError, AttributeError, KeyError):
        members = [m.name for m in type(tvm.get_weight(spec.weights.split(":", 1)[1]))]
        raise ConfigError(f"unknown torchvision weights {name!r} for {spec.name}; valid: DEFAULT, {', '.join(members)}") from None
    return enum, fetch_torchvision_state_dict(enum.url)


def _from_torchvision(spec: ModelSpec, name: str) -> LoadedModel:
    enum, state = torchvision_weights(spec, name)
    if spec.task == "detect":
        input_spec = spec.input  # detectors resize and normalize inside their own transform
    else:
        transforms = enum.transforms()
        crop = transforms.crop_size[0]
        resize = transforms.resize_size[0]
        input_spec = InputSpec(size=(crop, crop), channels=3, mean=tuple(transforms.mean), std=tuple(transforms.std),
                               resize="center-crop", crop_fraction=crop / resize)
    spec = replace(spec, input=input_spec, classes=tuple(enum.meta.get("categories", spec.classes)))
    module = spec.build(num_classes=len(spec.classes)) if spec.classes else spec.build()
    own = module.state_dict()
    # GoogLeNet's published weights carry its training-only auxiliary classifiers; a model built
    # without them drops those tensors, as torchvision's own builder does.
    state = {k: v for k, v in state.items() if k in own or not k.startswith(("aux1.", "aux2."))}
    weights.load_into(module, state, source=f"torchvision {enum}")
    return LoadedModel(f"{spec.name}@{enum.name}", spec, module, {"torchvision_weights": str(enum)})


def fetch_torchvision_state_dict(url: str) -> dict[str, "torch.Tensor"]:
    """torchvision's published weights: the hub cache first, else a download with a short timeout."""
    import torch.hub

    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    if not cached.is_file():
        cached.parent.mkdir(parents=True, exist_ok=True)
        previous = socket.getdefaulttimeout()
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
        try:
            torch.hub.download_url_to_file(url, str(cached), progress=False)
        except Exception as exc:
            reason = first_line(exc)
            raise ConfigError(f"cannot download {url} ({reason}); offline? place the file at {cached}") from None
        finally:
            socket.setdefaulttimeout(previous)
    return weights.load(cached)[0]
