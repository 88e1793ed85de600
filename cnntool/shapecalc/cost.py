"""The lecture's Inception cost argument: the multiplications of one conv layer, and of the same layer behind a
1×1 "bottleneck" conv that first shrinks the channels. The counts are the chain evaluator's MACs
(cnntool.shapecalc.layers), so they are the numbers `--layers` shows for the same layers. stdlib only.

  28×28×192 → conv 5×5 same, 32 filters:          28·28·32 · 5·5·192            = 120,422,400
  28×28×192 → conv 1×1, 16 → conv 5×5 same, 32:   28·28·16 · 1·1·192 + 28·28·32 · 5·5·16 = 12,443,648
"""

from __future__ import annotations

from dataclasses import dataclass

from cnntool.shapecalc.layers import describe

Padding = str | tuple[int, ...]  # same, valid, or one number per dimension


@dataclass(frozen=True)
class Step:
    """One conv of a cost comparison."""

    layer: str  # in the layer grammar, e.g. conv5psame:32
    input_shape: tuple[int, ...]  # (C, *spatial)
    output_shape: tuple[int, ...]
    kernel: tuple[int, ...]
    macs: int

    @property
    def formula(self) -> str:
        """out sizes · out channels · kernel sizes · in channels = MACs, the lecture's way."""
        out = "·".join(map(str, (*self.output_shape[1:], self.output_shape[0])))
        kernel = "·".join(map(str, (*self.kernel, self.input_shape[0])))
        return f"{out} · {kernel} = {self.macs:,}"


@dataclass(frozen=True)
class Cost:
    direct: Step
    bottlenecked: tuple[Step, Step] | None  # the 1×1 conv, then the layer on its output

    @property
    def bottleneck_macs(self) -> int | None:
        return None if self.bottlenecked is None else sum(step.macs for step in self.bottlenecked)

    @property
    def ratio(self) -> float | None:
        """How many times fewer multiplications the bottleneck needs."""
        return None if self.bottlenecked is None else self.direct.macs / self.bottleneck_macs


def _word(kernel: tuple[int, ...], stride: tuple[int, ...], padding: Padding, dilation: tuple[int, ...],
          channels: int) -> str:
    def dims(values: tuple[int, ...]) -> str:
        return str(values[0]) if len(set(values)) == 1 else "x".join(map(str, values))

    s = f"s{dims(stride)}" if set(stride) != {1} else ""
    p = f"p{padding}" if isinstance(padding, str) else (f"p{dims(padding)}" if set(padding) != {0} else "")
    d = f"d{dims(dilation)}" if set(dilation) != {1} else ""
    return f"conv{dims(kernel)}{s}{p}{d}:{channels}"


def _steps(layers: list[tuple[str, tuple[int, ...]]], input_shape: tuple[int, ...]) -> tuple[Step, ...]:
    chain = describe(" ".join(word for word, _ in layers), input_shape)
    shapes = [input_shape] + [row.output_shape for row in chain.rows]
    return tuple(Step(word, shapes[i], shapes[i + 1], kernel, chain.rows[i].macs)
                 for i, (word, kernel) in enumerate(layers))


def conv_cost(input_shape: tuple[int, ...], kernel: tuple[int, ...], channels: int, *, stride: tuple[int, ...],
              padding: Padding, dilation: tuple[int, ...], bottleneck: int | None) -> Cost:
    """The layer's multiplications on (C, *spatial), and with a 1×1 conv to `bottleneck` channels first."""
    dims = len(input_shape) - 1
    layer = (_word(kernel, stride, padding, dilation, channels), kernel)
    (direct,) = _steps([layer], input_shape)
    if bottleneck is None:
        return Cost(direct, None)
    ones = (1,) * dims
    shrink = (_word(ones, ones, (0,), ones, bottleneck), ones)
    first, second = _steps([shrink, layer], input_shape)
    return Cost(direct, (first, second))
