"""Seeded, stratified train/validation splits: the same seed always holds out the same indices; and the split
sizes a data generator writes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnntool.console import quiet_option
from cnntool.options import option


@dataclass
class Generated:
    """Where a generator (`cnntool data scenes|documents`) writes how many scenes of each split."""

    out: Path = option(dataclasses.MISSING, "--out", "-o", help="Directory to write: train/ val/ test/ images and "
                       "train.json val.json test.json.")
    n: int = option(12000, "--n", min=1, help="Training scenes.")
    val: int = option(1000, "--val", min=0, help="Validation scenes (training objects and photos, or --val-photos).")
    test: int = option(2000, "--test", min=0, help="Held-out scenes: held-out objects on held-out photos.")
    seed: int = option(0, "--seed", help="Scene i of a split depends only on (seed, split, i).")
    quiet: bool = quiet_option()

    def counts(self) -> dict[str, int]:
        return {"train": self.n, "val": self.val, "test": self.test}


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train_indices, heldout_indices), both sorted. Each class gives round(n_class * fraction) samples
    (at least one when it has two or more), so small classes are never left out of validation."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"split fraction must be between 0 and 1, not {fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for cls in np.unique(labels):  # sorted, so the draw order is fixed
        members = np.flatnonzero(labels == cls)
        take = int(round(len(members) * fraction))
        if len(members) >= 2:
            take = min(max(take, 1), len(members) - 1)
        held.append(rng.permutation(members)[:take])
    heldout = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    mask = np.ones(len(labels), dtype=bool)
    mask[heldout] = False
    return np.flatnonzero(mask), heldout
