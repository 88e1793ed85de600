"""Batches in a fixed index order, from any dataset of (uint8 image, target) items.

In-memory datasets (with a `batch(indices)` method) are sliced with one indexing op per batch; others go
through a DataLoader with worker processes and prefetch, in the same order, so results do not depend on
which path was taken.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Iterator, Sequence

import numpy as np

if TYPE_CHECKING:
    import torch


class ImageTensors:
    """The one in-memory dataset: uint8 images (N, C, H, W) at the model's input size and their targets (N,) or
    (N, T); every task's cached data (built-in sets, annotation files, detection layouts) is one of these.
    `skipped`: (path, reason) of the files left out because they would not read."""

    def __init__(self, images: "torch.Tensor", targets: "torch.Tensor", skipped: Sequence[tuple[Any, str]] = ()) -> None:
        self.images, self.targets, self.skipped = images, targets, list(skipped)

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int) -> tuple["torch.Tensor", Any]:
        target = self.targets[index]
        return self.images[index], target.item() if target.ndim == 0 else target

    def batch(self, indices: "torch.Tensor") -> tuple["torch.Tensor", "torch.Tensor"]:
        """A whole batch by one indexing op: the fast path that needs no DataLoader."""
        return self.images[indices], self.targets[indices]

    def subset(self, indices: Sequence[int]) -> "ImageTensors":
        import torch

        idx = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        return ImageTensors(self.images[idx], self.targets[idx], self.skipped)

    def concat(self, other: "ImageTensors") -> "ImageTensors":
        import torch

        return ImageTensors(torch.cat([self.images, other.images]), torch.cat([self.targets, other.targets]),
                            self.skipped + other.skipped)

    def labels(self) -> np.ndarray:
        return self.targets.numpy()


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
