"""Shared by the lecture's worked examples: `cnntool shape-calc` run in-process, and the outputs of a torch
model's layers in the lecture's n_H×n_W×n_C order."""

import json

import pytest
import torch
from torch import nn

from cnntool.cli import main

# The layers whose outputs the lecture's architecture drawings list.
DRAWN = (nn.Conv2d, nn.MaxPool2d, nn.AvgPool2d, nn.Linear)


@pytest.fixture
def shape_calc(capsys):
    """`cnntool shape-calc ARGS`: the JSON answer (text with text=True); any exit but 0 fails the test."""

    def run(*args: str, text: bool = False):
        with pytest.raises(SystemExit) as exit_info:
            main(["shape-calc", *args, *(() if text else ("--format", "json"))])
        captured = capsys.readouterr()
        assert exit_info.value.code == 0, captured.err
        return captured.out if text else json.loads(captured.out)

    return run


def lecture_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """A torch shape without its batch: (C, H, W) → (H, W, C); a flat (F,) stays."""
    return (*shape[1:], shape[0]) if len(shape) == 3 else shape


@pytest.fixture
def drawn_outputs():
    """Output shapes, in the lecture's order, of every conv, pooling and fc layer of one forward pass of a
    model (on the meta device for models too large to allocate)."""

    def run(model: nn.Module, input_shape: tuple[int, ...], device: str = "cpu") -> list[tuple[int, ...]]:
        shapes = []
        hooks = [m.register_forward_hook(lambda _m, _i, out: shapes.append(lecture_shape(tuple(out.shape[1:]))))
                 for m in model.modules() if isinstance(m, DRAWN)]
        try:
            with torch.no_grad():
                model.eval()(torch.zeros(1, *input_shape, device=device))
        finally:
            for hook in hooks:
                hook.remove()
        return shapes

    return run
