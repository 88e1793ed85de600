"""Model + weights → a ready nn.Module with its input spec and classes. The one place that resolves `--model`
and `--weights` for every command (predict, evaluate, fine-tuning), and the only place that loads weights.

Weights sources:
- a cnntool safetensors file (a path, or a name in weights/): its metadata (cnntool.meta, checked whole
  before anything is built) may carry the architecture, builder kwargs, classes and input spec, which replace
  the registry entry's (the kwargs whole: training records all of them, and a registry entry changed since
  must not leak into older weights);
- `DEFAULT` or a torchvision weights name (`IMAGENET1K_V1`, `ResNet18_Weights.IMAGENET1K_V1`) for models
  whose registry entry names torchvision weights: read from the torch hub cache, downloaded where online,
  with categories and transforms from the weights' meta;
- a `.pt`/`.pth` state dict (read with weights_only=True: pickled code is refused);
- for a model made of parts (sliding windows around a window classifier): each part's own weights, or a
  file of the part's task given as --weights.

A file's tensors must fit the architecture it names: the model is first built on torch's "meta" device
(shapes, no memory) and compared with the file's header, so a file that would ask for gigabytes is refused
before any is allocated.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from cnntool import weights
from cnntool.errors import ConfigError, first_line
from cnntool.meta import WeightsMeta, check_input
from cnntool.models import catalog
from cnntool.options import option
from cnntool.registry import InputSpec, ModelSpec

if TYPE_CHECKING:
    import torch

# A download that cannot connect must fail fast, not hang (offline machines, firewalls).
DOWNLOAD_TIMEOUT_S = 10.0


def model_option(help: str = "Registry name (see `cnntool models`). Default: the task's embedded model.") -> Any:
    return option(None, "--model", "-m", help=help)


def weights_option() -> Any:
    return option(None, "--weights", "-w", help="Weights: a file path, an embedded name, or DEFAULT / a torchvision "
                  "weights name for torchvision models.")


@dataclass
class LoadedModel:
    name: str  # what records report as "model"
    spec: ModelSpec  # the registry entry, with input/classes/kwargs as the weights define them
    module: "torch.nn.Module"
    metadata: WeightsMeta = field(default_factory=dict)  # type: ignore[assignment]
    path: Path | None = None  # the weights file, when there is one
    domain: "torch.nn.Module | None" = None  # its domain check (cnntool.models.domain), when the file holds one

    @property
    def task(self) -> str:
        return self.spec.task

    @property
    def input(self) -> InputSpec:
        return self.spec.input

    @property
    def classes(self) -> tuple[str, ...]:
        return self.spec.classes


def input_spec_from(document: Any, base: InputSpec, source: str = "weights") -> InputSpec:
    """A weights file's input spec over the registry's: files written before a field existed take the
    registry's value for it."""
    check_input(document, lambda why: ConfigError(f"{source}: metadata 'input' {why}"))
    fields = dict(document)
    for key in ("size", "mean", "std"):
        if key in fields:
            fields[key] = tuple(fields[key])
    try:
        return replace(base, **fields)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: metadata 'input': {exc}") from None


def load_model(model: str | None, weights_arg: str | None, *, task: str, device: str = "cpu") -> LoadedModel:
    """Resolve and build. `model` None → the architecture a weights file names, else the task's default;
    `weights_arg` None → the registry entry's own source."""
    weights_file, meta = None, {}
    if weights_arg is not None and not is_torchvision_name(weights_arg):
        weights_file = weights.resolve(weights_arg)
        meta = weights.read_metadata(weights_file)
    spec = catalog.get(model or _file_model(meta, task, weights_file) or catalog.default(task), task=task)
    if weights_file is not None and meta.get("task") not in (None, task):
        part = _part_for(spec, meta["task"])
        if part is None:
            raise ConfigError(f"{weights_file}: weights are for task {meta['task']!r}, not {task!r}")
        loaded = _with_parts(spec, {part: str(weights_file)})
    elif weights_file is not None:
        loaded = _from_file(spec, weights_file, meta)
    else:
        source = weights_arg or spec.weights
        if spec.parts and weights_arg is None:
            loaded = _with_parts(spec, {})
        elif source is None:
            raise ConfigError(f"model {spec.name!r} has no default weights; pass --weights FILE "
                              f"(train one with `cnntool train {task} --model {spec.name}`)")
        elif source.startswith("embedded:"):
            path = weights.resolve(source.split(":", 1)[1])
            loaded = _from_file(spec, path, weights.read_metadata(path))
        elif source.startswith("external:"):  # converted from another format by the builder (dlib's face models)
            loaded = LoadedModel(spec.name, spec, _build(spec, source))
        else:
            loaded = _from_torchvision(spec, source)
    loaded.module.eval()
    loaded.module.to(device)
    if loaded.domain is not None:
        loaded.domain.to(device)
    return loaded


def _file_model(meta: WeightsMeta, task: str, path: Path | None) -> str | None:
    """The architecture a weights file names, when it is one of this task's; a part's file names its own, and
    the detector it was trained for (a window classifier)."""
    if meta.get("task") in (None, task):
        return meta.get("model")
    if task == "detect":
        return meta.get("detector")
    return None


def _part_for(spec: ModelSpec, task: str) -> str | None:
    """The one part of a composed model (sliding windows' classifier) that weights of `task` can be."""
    fitting = [name for name, part in spec.parts.items() if catalog.get(part).task == task]
    return fitting[0] if len(fitting) == 1 else None


def _with_parts(spec: ModelSpec, given: dict[str, str]) -> LoadedModel:
    """A model built around other registered models (spec.parts: builder keyword → model name), each loaded
    with its own weights, or with the file `given` for it; the builder receives each as (module, classes)."""
    kwargs, described = {}, []
    for keyword, part in spec.parts.items():
        part_spec = catalog.get(part)
        loaded = load_model(None, given.get(keyword), task=part_spec.task) if keyword in given else \
            load_model(part, None, task=part_spec.task)
        kwargs[keyword] = (loaded.module, loaded.classes)
        described.append(loaded.name)
    name = spec.name if not given else f"{spec.name}@{'+'.join(described)}"
    return LoadedModel(name, spec, _build(spec, "its parts", **kwargs))


def is_torchvision_name(source: str) -> bool:
    """DEFAULT, IMAGENET1K_V1, ResNet18_Weights.IMAGENET1K_V1 — unless a file of that name exists."""
    if Path(source).is_file():
        return False
    return source.upper() == "DEFAULT" or source.isupper() or "_Weights." in source or source.startswith("torchvision:")


def _from_file(spec: ModelSpec, path: Path, meta: WeightsMeta) -> LoadedModel:
    if meta:
        arch = meta.get("model")
        if arch and arch != spec.name:
            if catalog.get(arch, task=spec.task).builder != spec.builder:
                raise ConfigError(f"{path}: weights are for model {arch!r}, not {spec.name!r}")
        spec = replace(
            spec,
            kwargs=meta.get("kwargs", spec.kwargs),
            classes=tuple(meta.get("classes", spec.classes)),
            input=input_spec_from(meta["input"], spec.input, str(path)) if "input" in meta else spec.input,
            decode={**spec.decode, **meta.get("decode", {})},
        )
    outputs = spec.kwargs.get("num_classes", spec.kwargs.get("num_points"))
    if spec.classes and outputs is not None and len(spec.classes) != outputs:
        # Tensors of the right shape would load, and the labels would silently be wrong.
        raise ConfigError(f"{path}: metadata names {len(spec.classes)} classes but the model has {outputs} outputs")

    def assemble() -> "torch.nn.Module":
        module = _assembled(spec, meta.get("ensemble", 0), path)
        return _with_reader(module, spec, meta["reader"], path) if "reader" in meta else module

    _check_shapes(assemble, path)
    module = assemble()
    state = weights.load(path)[0]
    gate = _domain_gate(state, spec, path)
    weights.load_into(module, state, source=str(path))
    name = spec.name if path.parent == weights.weights_dir() else f"{spec.name}@{path.name}"
    return LoadedModel(name, spec, module, meta, path, gate)


def _domain_gate(state: dict[str, Any], spec: ModelSpec, path: Path) -> "torch.nn.Module | None":
    """The domain check a file holds under domain.* (taken out of `state`), loaded; None when there is none."""
    from cnntool.models.domain import PREFIX

    tensors = {k[len(PREFIX):]: state.pop(k) for k in [k for k in state if k.startswith(PREFIX)]}
    if not tensors:
        return None
    from cnntool.models.domain import DomainGate

    gate = DomainGate(spec.input.channels)
    weights.load_into(gate, tensors, source=f"{path} (domain check)")
    return gate.eval()


def _check_shapes(assemble: Callable[[], "torch.nn.Module"], path: Path) -> None:
    """The architecture built on the meta device (no memory) against the file's tensor index."""
    import torch

    if path.suffix in weights.TORCH_SUFFIXES:
        return
    try:
        with torch.device("meta"):
            own = {k: tuple(v.shape) for k, v in assemble().state_dict().items()}
    except NotImplementedError:  # a builder that must compute on real tensors: checked when it loads
        return
    index = {k: tuple(v.get("shape", ())) for k, v in weights.read_header(path).items()
             if k != "__metadata__" and not k.startswith("domain.")}  # a domain check is loaded on its own
    weights.check_fits(own, index, source=str(path))


def _build(spec: ModelSpec, source: Any, **kwargs: Any) -> "torch.nn.Module":
    """spec.build, its keyword and value errors (a crafted or foreign file's kwargs) as one line."""
    unknown = [k for k in {**spec.kwargs, **kwargs} if not spec.accepts(k)]
    if unknown:
        raise ConfigError(f"{source}: model {spec.name!r} takes no argument {unknown[0]!r}")
    try:
        return spec.build(**kwargs)
    except (TypeError, ValueError, ConfigError) as exc:
        raise ConfigError(f"{source}: cannot build {spec.name!r}: {first_line(exc)}") from None


def _assembled(spec: ModelSpec, ensemble: int, path: Path) -> "torch.nn.Module":
    """The architecture, or `ensemble` copies of it averaged (cnntool.models.ensemble)."""
    if ensemble == 0:
        return _build(spec, path)
    from cnntool.models.ensemble import AVERAGES, Ensemble

    if spec.task not in AVERAGES:
        raise ConfigError(f"{path}: an ensemble of {spec.task} models; only {' and '.join(AVERAGES)} models are averaged")
    return Ensemble([_build(spec, path) for _ in range(ensemble)], task=spec.task)


def _with_reader(localizer: "torch.nn.Module", spec: ModelSpec, document: Any, path: Path) -> "torch.nn.Module":
    """A localizer whose boxes a classifier reads again (cnntool.models.reader): the classifier's description is
    the metadata's 'reader' entry (as its own file's metadata had it), its tensors are under reader.*."""
    from cnntool.models.reader import BoxReader
    from cnntool.models.yvector import background_index

    if spec.task != "localize":
        raise ConfigError(f"{path}: metadata 'reader' belongs to a localizer, not a {spec.task} model")
    try:
        background = background_index(document["classes"], spec.classes)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    base = catalog.get(document["model"], task="classify")
    reader_spec = replace(base, kwargs=document["kwargs"], classes=tuple(document["classes"]),
                          input=input_spec_from(document["input"], base.input, f"{path} (reader)"))
    height, width = reader_spec.input.size
    if height != width or reader_spec.input.channels != spec.input.channels:
        raise ConfigError(f"{path}: the reader must read square {spec.input.channels}-channel crops, "
                          f"not {reader_spec.input.describe()}")
    reader = _assembled(reader_spec, document.get("ensemble", 0), path)
    return BoxReader(localizer, reader, crop=height, context=float(document["context"]),
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
        if name.upper() == "DEFAULT":
            # get_weight also finds the enums of torchvision.models.detection, which getattr(tvm) does not.
            enum = tvm.get_weight(f"{enum_name}.DEFAULT")
        else:
            enum = tvm.get_weight(name if "." in name else f"{enum_name}.{name}")
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
