"""The model registry's types and store: InputSpec, ModelSpec, and register/get/names over one table. stdlib only.

Builders are named as "module:function" strings and imported when a model is built, so listing models (and
`--help`) never imports torch. The registrations themselves are in cnntool/models/catalog.py, which fills the
table on import and is the module to look models up through (`catalog.get`, `catalog.names`, …).
"""

from __future__ import annotations

import importlib
import inspect
from dataclasses import asdict, dataclass, field, replace
from types import MappingProxyType
from typing import Any, Mapping

# Resize modes understood by cnntool.preprocess.
RESIZE_MODES = ("stretch", "letterbox", "center-crop", "none")
# What the model was trained to see on what: "light" objects on a dark ground (MNIST, OpenCV's digits,
# Fashion-MNIST), so an image whose border is brighter than mid-grey (a digit written on paper, a product
# shot on white) is inverted first; "dark" the other way round; "any" leaves images as they are.
FOREGROUNDS = ("any", "light", "dark")
CONTRASTS = ("none", "stretch")


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
    contrast: str = "none"  # "stretch": a low-contrast image's levels spread to 0..255 after its polarity is set

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, not {self.channels}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError("mean and std need one value per channel")
        if self.resize not in RESIZE_MODES:
            raise ValueError(f"resize must be one of {', '.join(RESIZE_MODES)}, not {self.resize!r}")
        if self.foreground not in FOREGROUNDS:
            raise ValueError(f"foreground must be one of {', '.join(FOREGROUNDS)}, not {self.foreground!r}")
        if self.contrast not in CONTRASTS:
            raise ValueError(f"contrast must be one of {', '.join(CONTRASTS)}, not {self.contrast!r}")

    def adapted(self, *, size: tuple[int, int] | None = None, channels: int | None = None,
                mean: tuple[float, ...] | None = None, std: tuple[float, ...] | None = None) -> "InputSpec":
        """This spec for a training run's --input-size/--channels/--mean/--std: statistics given are kept, a
        changed channel count without them starts from 0.5."""
        channels = channels or self.channels
        keep = channels == self.channels
        return replace(self, size=tuple(size or self.size), channels=channels,
                       mean=tuple(mean) if mean else (self.mean if keep else (0.5,) * channels),
                       std=tuple(std) if std else (self.std if keep else (0.5,) * channels))

    def document(self) -> dict[str, Any]:
        """The spec as weights metadata stores it (JSON lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

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
    # Models this one is built around (builder keyword → registered model): the loader loads each with its own
    # weights and passes (module, classes); sliding windows take a window classifier this way.
    parts: Mapping[str, str] = field(default_factory=dict)
    # Torch-free layer description in shape-calc's grammar (cnntool.shapecalc.layers), or None when the
    # architecture is not a chain that grammar can express.
    layers: str | None = None
    # Task options this model prefers (e.g. a detector's own score threshold); options the user gives
    # override them, the task's defaults apply where neither says.
    decode: Mapping[str, Any] = field(default_factory=dict)
    summary: str = ""
    card: str | None = None  # its card is weights/<card>.md (default: its name), when there is one

    def __post_init__(self) -> None:
        if ":" not in self.builder:
            raise ValueError(f"builder must be 'module:function', not {self.builder!r}")
        object.__setattr__(self, "kwargs", MappingProxyType(dict(self.kwargs)))
        object.__setattr__(self, "decode", MappingProxyType(dict(self.decode)))
        object.__setattr__(self, "parts", MappingProxyType(dict(self.parts)))
        object.__setattr__(self, "classes", tuple(self.classes))

    def builder_function(self):
        module_name, func_name = self.builder.split(":")
        return getattr(importlib.import_module(module_name), func_name)

    def build(self, **overrides: Any):
        """Instantiate the architecture (imports torch). Options left as None are dropped so they never
        mask the spec's own defaults."""
        kwargs = {**self.kwargs, **{k: v for k, v in overrides.items() if v is not None}}
        return self.builder_function()(**kwargs)

    def accepts(self, name: str) -> bool:
        """Whether the builder takes this keyword (e.g. input_size, for layers sized by the input)."""
        parameters = inspect.signature(self.builder_function()).parameters
        return name in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


class Registry:
    """Models by name, one default per task; a duplicate name or a second default is an error."""

    def __init__(self) -> None:
        self._specs: dict[str, ModelSpec] = {}
        self._defaults: dict[str, str] = {}

    def register(self, spec: ModelSpec) -> ModelSpec:
        if spec.name in self._specs:
            raise ValueError(f"model {spec.name!r} is already registered")
        self._specs[spec.name] = spec
        return spec

    def set_default(self, task: str, name: str) -> None:
        """Make `name` the model a task's subcommand uses when --model is not given."""
        if self._defaults.get(task, name) != name:
            raise ValueError(f"task {task!r} already has default model {self._defaults[task]!r}")
        if name not in self._specs or self._specs[name].task != task:
            raise ValueError(f"default for {task!r} must be a registered {task} model, not {name!r}")
        self._defaults[task] = name

    def default(self, task: str) -> str:
        if task not in self._defaults:
            raise UnknownModelError(f"task {task!r} has no default model; pass --model "
                                    f"(valid: {', '.join(self.names(task)) or 'none'})")
        return self._defaults[task]

    def names(self, task: str | None = None) -> list[str]:
        return sorted(n for n, s in self._specs.items() if task is None or s.task == task)

    def specs(self, task: str | None = None) -> list[ModelSpec]:
        return [self._specs[n] for n in self.names(task)]

    def get(self, name: str, *, task: str | None = None) -> ModelSpec:
        spec = self._specs.get(name)
        if spec is None or (task is not None and spec.task != task):
            where = f" for task {task!r}" if task else ""
            raise UnknownModelError(f"unknown model {name!r}{where}; valid: {', '.join(self.names(task)) or '(none)'}")
        return spec
