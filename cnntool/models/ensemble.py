"""Ensembling, as the lecture's tips for benchmarks put it: train several networks independently and average
their outputs. A weights file whose metadata says `"ensemble": K` holds K copies of its architecture under
`members.0.` … `members.K-1.`; loading builds them and wraps them here. What "average" means is the task's:
the class probabilities of classifiers, the whole ŷ = [p_c, box, class probabilities] of localizers."""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import nn

from cnntool.models.yvector import encode, interpret


def mean_probabilities(outputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Logits whose softmax is the members' mean class probabilities (the log of that mean)."""
    return (sum(z.float().softmax(1) for z in outputs) / len(outputs)).log()


def mean_localization(outputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Raw scores whose ŷ is the members' mean ŷ, as test-time shifts are averaged."""
    return encode(sum(interpret(z) for z in outputs) / len(outputs))


AVERAGES: dict[str, Callable[[Sequence[torch.Tensor]], torch.Tensor]] = {
    "classify": mean_probabilities, "localize": mean_localization,
}


class Ensemble(nn.Module):
    """Members of one task, run on the same input, their outputs averaged as AVERAGES[task] says, so that
    decode and the metrics read the result as one network's output."""

    def __init__(self, members: Sequence[nn.Module], *, task: str) -> None:
        super().__init__()
        if not members:
            raise ValueError("an ensemble needs at least one member")
        if task not in AVERAGES:
            raise ValueError(f"no average defined for {task!r} models; valid: {', '.join(AVERAGES)}")
        self.members = nn.ModuleList(members)
        self.average = AVERAGES[task]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.average([member(x) for member in self.members])
