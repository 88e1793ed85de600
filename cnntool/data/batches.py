"""Batches in a fixed index order, from any dataset of (uint8 image, target) items.

In-memory datasets (with a `batch(indices)` method) are sliced with one indexing op per batch; others go
through a DataLoader with worker processes and prefetch, in the same order, so results do not depend on
which path was taken.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterator, Sequence

if TYPE_CHECKING:
    import torch


def index_batches(order: "torch.Tensor", batch_size: int) -> list["torch.Tensor"]:
    return list(order.split(batch_size))


def iterate(dataset, batches: Sequence["torch.Tensor"], *, workers: int = 0) -> Iterator[tuple]:
    if hasattr(dataset, "batch"):
        for idx in batches:
            yield dataset.batch(idx)
        return
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_sampler=[b.tolist() for b in batches], num_workers=workers,
                        prefetch_factor=4 if workers else None, persistent_workers=False)
    yield from loader
