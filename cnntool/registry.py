"""The one model registry: every model of every task is registered here, once.

stdlib only. Builders are named as "module:function" strings and imported when a model is built, so
listing models (and `--help`) never imports torch. Architectures register themselves in
`cnntool/models/catalog.py`, which is also stdlib-only.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Mapping

TASKS = ("classify", "localize", "landmarks", "detect", "face-embed")

# Resize modes understood by cnntool.preprocess.
RESIZE_MODES = ("stretch", "letterbox", "center-crop", "none")
# What the model was trained to see on what: "light" objects on a dark ground (MNIST, OpenCV's digits,
# Fashion-MNIST), so an image whose border is brighter than mid-grey (a digit written on paper, a product
# shot on white) is inverted first; "dark" the other way round; "any" leaves images as they are.
FOREGROUNDS = ("any", "light", "dark")


class UnknownModelError(KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True, kw_only=True)
class InputSpec:
    """How an image becomes this model's input tensor: data on the model, never restated by callers."""

    size: tuple[int, int]  # (height, width)
    channels: int = 3
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    resize: str = "stretch"
    # center-crop only: the image's shorter side is first resized to size / crop_fraction (torchvision's
    # 256 → 224 recipe is crop_fraction 0.875).
    crop_fraction: float = 0.875
    # Colour of letterbox padding and of transparent pixels when an image is flattened, 0..255.
    fill: int = 0
    foreground: str = "any"  # one of FOREGROUNDS

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, not {self.channels}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError("mean and std need one value per channel")
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}, not {self.resize!r}")
        if self.foreground not in FOREGROUNDS:
            raise ValueError(f"foreground must be one of {', '.join(FOREGROUNDS)}, not {self.foreground!r}")

    def describe(self) -> str:
        if self.resize == "none":
            return f"any x{self.channels}"
        h, w = self.size
        return f"{h}x{w}x{self.channels}"


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    name: str
    task: str
    builder: str  # "package.module:function", called with **kwargs (keyword-only builders)
    input: InputSpec
    kwargs: Mapping[str, Any] = field(default_factory=dict)
    classes: tuple[str, ...] = ()
    # Where default weights come from: "embedded:FILE" (in weights/), "torchvision:EnumName.MEMBER",
    # "external:ID" (converted from another format by the builder), or None (random init, for training).
    weights: str | None = None
    # Torch-free layer description in shape-calc's grammar (cnntool.shapecalc.layers), or None when the
    # architecture is not a chain that grammar can express.
    layers: str | None = None
    # Task options this model prefers (e.g. a detector's own score threshold); options the user gives
    # override them, the task's defaults apply where neither says.
    decode: Mapping[str, Any] = field(default_factory=dict)
    summary: str = ""

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {', '.join(TASKS)}, not {self.task!r}")
        if ":" not in self.builder:
            raise ValueError(f"builder must be 'module:function', not {self.builder!r}")
        object.__setattr__(self, "kwargs", MappingProxyType(dict(self.kwargs)))
        object.__setattr__(self, "decode", MappingProxyType(dict(self.decode)))
        object.__setattr__(self, "classes", tuple(self.classes))

    def build(self, **overrides: Any):
        """Instantiate the architecture (imports torch). Options left as None are dropped so they never
        mask the spec's own defaults."""
        module_name, func_name = self.builder.split(":")
        builder = getattr(importlib.import_module(module_name), func_name)
        kwargs = {**self.kwargs, **{k: v for k, v in overrides.items() if v is not None}}
        return builder(**kwargs)


_REGISTRY: dict[str, ModelSpec] = {}
_DEFAULTS: dict[str, str] = {}
_loaded = False


def register(spec: ModelSpec) -> ModelSpec:
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def set_default(task: str, name: str) -> None:
    """Make `name` the model a task's subcommand uses when --model is not given."""
    if _DEFAULTS.get(task, name) != name:
        raise ValueError(f"task {task!r} already has default model {_DEFAULTS[task]!r}")
    if name not in _REGISTRY or _REGISTRY[name].task != task:
        raise ValueError(f"default for {task!r} must be a registered {task} model, not {name!r}")
    _DEFAULTS[task] = name


def default(task: str) -> str:
    _ensure_loaded()
    if task not in _DEFAULTS:
        raise UnknownModelError(f"task {task!r} has no default model; pass --model (valid: {', '.join(names(task)) or 'none'})")
    return _DEFAULTS[task]


def _ensure_loaded() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        importlib.import_module("cnntool.models.catalog")


def names(task: str | None = None) -> list[str]:
    _ensure_loaded()
    if task is not None and task not in TASKS:
        raise ValueError(f"unknown task {task!r}; valid tasks: {', '.join(TASKS)}")
    return sorted(n for n, s in _REGISTRY.items() if task is None or s.task == task)


def specs(task: str | None = None) -> list[ModelSpec]:
    return [_REGISTRY[n] for n in names(task)]


def get(name: str, *, task: str | None = None) -> ModelSpec:
    _ensure_loaded()
    spec = _REGISTRY.get(name)
    if spec is None or (task is not None and spec.task != task):
        valid = names(task)
        where = f" for task {task!r}" if task else ""
        raise UnknownModelError(f"unknown model {name!r}{where}; valid: {', '.join(valid) or '(none)'}")
    return spec
