"""What a registered model that is not a plain chain does to a tensor, read off the real torch module: built
without weights and run once, in eval mode, on a zero image of its input size, with forward hooks recording
every layer's output shape, parameters and multiply-accumulates. The only shape-calc module that imports
torch, and only when a model is traced.

Rows are the layers that compute (modules without submodules, or with parameters of their own), in the
order they run. The hooks are global rather than per module, because some models run networks they do not
hold as submodules (the dlib face wrappers call networks cached at first use). A module run again (shared
weights: one window classifier over every pyramid level, a detector head over every feature level) gets a
row per run, its parameters counted at the first. MACs are those of conv, transposed conv and fc layers,
as for chains, for the whole run: a batch of windows counts every window.

Detectors show their output grid in the lecture's terms: the YOLO head's S×S×A×(5+C) (cnntool.models.yolo's
raw output per cell and anchor: 4 box numbers, objectness, C class scores), torchvision's detectors the
S×S×A anchors of each feature level their anchor generator covers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from cnntool.errors import ConfigError, first_line
from cnntool.registry import ModelSpec

# Models that take photos at their own size (resize "none", dlib's face models) are traced on this one:
# a 640×480 photo, (height, width).
PHOTO_SIZE = (480, 640)


@dataclass(frozen=True)
class TracedLayer:
    path: str  # where it sits in the model; "(FaceResNet).stem.0" for a network the model runs but does not hold
    layer: str  # what it is: "Conv2d 5×5 s2 → 32", "Linear 9216 → 4096", "ReLU"
    outputs: tuple[tuple[int, ...], ...]  # the torch shape of every tensor it returned, batch first
    params: int
    macs: int
    run: int  # 1 for a module's first run, 2, 3 … when the model runs it again


@dataclass(frozen=True)
class Grid:
    """S_h×S_w cells × A anchors (× values per anchor, for a head's raw output)."""

    rows: int
    cols: int
    anchors: int
    values: int | None = None  # 5 + C for the YOLO head
    classes: int | None = None

    @property
    def volume(self) -> int:
        return self.rows * self.cols * self.anchors * (self.values or 1)


@dataclass(frozen=True)
class Trace:
    input_shape: tuple[int, ...]  # (C, H, W)
    layers: tuple[TracedLayer, ...]
    total_params: int  # every parameter the model holds or runs, each once
    head: Grid | None  # the YOLO grid head
    anchors: tuple[Grid, ...]  # torchvision's anchor grids, one per feature level

    @property
    def total_macs(self) -> int:
        return sum(layer.macs for layer in self.layers)

    @property
    def params_not_run(self) -> int:
        """Parameters the model holds but did not use on this input (the fc layers a convolutional sliding
        window replaces by convolutions)."""
        return self.total_params - sum(layer.params for layer in self.layers)


def trace(spec: ModelSpec, input_shape: tuple[int, int, int]) -> Trace:
    """Build `spec` without weights and trace one zero image of shape (C, H, W) through it."""
    try:
        import torch

        module = _build(spec).eval()
        x = torch.zeros(1, *input_shape)
        with torch.no_grad():
            recorder = _Recorder(module)
            with recorder:
                module(x)
            head = _yolo_head(module, x)
    except ConfigError:
        raise
    except Exception as exc:  # any failure to build or run (a model file missing, a size it refuses): one line
        raise ConfigError(f"cannot trace model {spec.name!r} on {'×'.join(map(str, input_shape[1:]))}×"
                          f"{input_shape[0]}: {first_line(exc)}") from None
    return Trace(tuple(input_shape), tuple(recorder.layers), recorder.total_params(), head,
                 tuple(recorder.anchor_grids))


def _build(spec: ModelSpec) -> Any:
    """The architecture with fresh weights; a model built around others (sliding windows) gets them fresh too."""
    from cnntool.models import catalog

    parts = {}
    for keyword, name in spec.parts.items():
        part = catalog.get(name)
        parts[keyword] = (part.build(), part.classes)
    return spec.build(**parts)


class _Recorder:
    """Global forward hooks for the duration of a `with` block."""

    def __init__(self, root: Any) -> None:
        self.root = root
        self.names = {id(m): name for name, m in root.named_modules()}
        self.runs: dict[int, int] = {}
        self.layers: list[TracedLayer] = []
        self.anchor_grids: list[Grid] = []
        self.seen: dict[int, Any] = {}  # modules that ran, by id, for the parameter total
        self.outsiders: dict[str, int] = {}  # networks run but not held, by class name

    def __enter__(self) -> "_Recorder":
        from torch.nn.modules.module import register_module_forward_hook, register_module_forward_pre_hook

        self.handles = [register_module_forward_pre_hook(self._name_outsider),
                        register_module_forward_hook(self._record)]
        return self

    def __exit__(self, *exc: Any) -> None:
        for handle in self.handles:
            handle.remove()

    def _name_outsider(self, module: Any, inputs: tuple) -> None:
        """A network the model runs without holding it: named after its class (numbered from the second of a
        class on), its submodules under it."""
        if id(module) in self.names:
            return
        kind = type(module).__name__
        self.outsiders[kind] = self.outsiders.get(kind, 0) + 1
        label = f"({kind})" if self.outsiders[kind] == 1 else f"({kind} {self.outsiders[kind]})"
        for name, sub in module.named_modules():
            self.names.setdefault(id(sub), label + (f".{name}" if name else ""))

    def _record(self, module: Any, inputs: tuple, output: Any) -> None:
        if module is self.root:
            return
        self.seen[id(module)] = module
        if hasattr(module, "num_anchors_per_location") and len(inputs) >= 2:
            levels = zip(inputs[1], module.num_anchors_per_location())  # (feature map, anchors per cell)
            self.anchor_grids += [Grid(*feature.shape[-2:], anchors) for feature, anchors in levels]
        own = list(module.parameters(recurse=False))
        if next(module.children(), None) is not None and not own:
            return  # a container: its layers have rows of their own
        run = self.runs[id(module)] = self.runs.get(id(module), 0) + 1
        params = sum(p.numel() for p in own) if run == 1 else 0
        self.layers.append(TracedLayer(self.names.get(id(module), ""), _layer_text(module), tuple(_shapes(output)),
                                       params, _macs(module, inputs, output), run))

    def total_params(self) -> int:
        unique = {id(p): p.numel() for p in self.root.parameters()}
        for module in self.seen.values():
            unique.update({id(p): p.numel() for p in module.parameters()})
        return sum(unique.values())


def _shapes(value: Any) -> list[tuple[int, ...]]:
    """Shapes of the tensors in a module's output: a tensor, lists/tuples/dicts of them, or torchvision's
    ImageList (the resized batch its detectors' transform returns)."""
    import torch

    if isinstance(value, torch.Tensor):
        return [tuple(value.shape)]
    if isinstance(value, (list, tuple)):
        return [shape for item in value for shape in _shapes(item)]
    if isinstance(value, dict):
        return [shape for item in value.values() for shape in _shapes(item)]
    if isinstance(getattr(value, "tensors", None), torch.Tensor):
        return [tuple(value.tensors.shape)]
    return []


def _macs(module: Any, inputs: tuple, output: Any) -> int:
    """Multiply-accumulates of a conv (out elements · k_h·k_w·c_in/groups), a transposed conv (in elements ·
    k_h·k_w·c_out/groups) or an fc layer (out elements · in features); 0 for any other layer."""
    from torch import nn

    if isinstance(module, nn.modules.conv._ConvTransposeNd):
        return inputs[0].numel() * math.prod(module.kernel_size) * module.out_channels // module.groups
    if isinstance(module, nn.modules.conv._ConvNd):
        return output.numel() * math.prod(module.kernel_size) * module.in_channels // module.groups
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    return 0


def _layer_text(module: Any) -> str:
    """A short description: class name, and the geometry of convs, fc layers and pooling."""
    from torch import nn

    name = type(module).__name__
    if isinstance(module, nn.modules.conv._ConvNd):
        geometry = (("s", module.stride, "1"), ("p", module.padding, "0"), ("d", module.dilation, "1"))
        extras = [f"{label}{_dims(value)}" for label, value, plain in geometry if _dims(value) != plain]
        groups = [f"g{module.groups}"] if module.groups != 1 else []
        return " ".join([name, _dims(module.kernel_size), *extras, *groups, f"→ {module.out_channels}"])
    if isinstance(module, nn.Linear):
        return f"{name} {module.in_features} → {module.out_features}"
    if isinstance(module, (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd)):
        return f"{name} {_dims(module.kernel_size)} s{_dims(module.stride)}"
    return name


def _dims(value: Any) -> str:
    """3 or (3, 3) → "3", (3, 5) → "3×5"; "same"/"valid" padding as given."""
    if isinstance(value, str):
        return value
    values = tuple(value) if isinstance(value, (tuple, list)) else (value,)
    return str(values[0]) if len(set(values)) == 1 else "×".join(map(str, values))


def _yolo_head(module: Any, x: Any) -> Grid | None:
    """The raw head output of cnntool's YOLO-style detector: (N, A, S_h, S_w, 5 + C)."""
    from cnntool.models.yolo import GridDetector

    if not isinstance(module, GridDetector):
        return None
    _, anchors, rows, cols, values = module.raw(x).shape
    return Grid(rows, cols, anchors, values, module.num_classes)
