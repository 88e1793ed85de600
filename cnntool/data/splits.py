"""Seeded, stratified train/validation splits: the same seed always holds out the same indices; and the split
sizes a data generator writes."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def stratified_split(labels: np.ndarray, fraction: float, seed: int, *, least: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """(train_indices, heldout_indices), both sorted. Each class gives round(n_class * fraction) samples, at
    least `least` when it has 2·least or more (and never all of them), so small classes are never left out of
    validation; least=2 gives verification the same-identity pairs it measures."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"split fraction must be between 0 and 1, not {fraction}")
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    held: list[np.ndarray] = []
    for cls in np.unique(labels):  # sorted, so the draw order is fixed
        members = np.flatnonzero(labels == cls)
        take = int(round(len(members) * fraction))
        floor = least if len(members) >= 2 * least else 1
        if len(members) >= 2:
            take = min(max(take, floor), len(members) - floor)
        held.append(rng.permutation(members)[:take])
    heldout = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    mask = np.ones(len(labels), dtype=bool)
    mask[heldout] = False
    return np.flatnonzero(mask), heldout


def val_split_option() -> Any:
    return option(0.1, "--val-split", min=0.0, max=0.9, help="Share of the training data set aside for validation "
                  "(stratified by class where there are classes) when the data has no val split of its own.")


def carve(train: Any, fraction: float, seed: int, labels: np.ndarray | None = None) -> tuple[Any, Any]:
    """(train, validation) subsets of a dataset that came without a validation split: stratified by `labels`
    when given, else a seeded random share (at least one item)."""
    if labels is not None:
        kept, held = stratified_split(labels, fraction, seed)
    else:
        order = np.random.default_rng(seed).permutation(len(train))
        cut = min(max(1, round(fraction * len(train))), len(train) - 1)
        kept, held = np.sort(order[cut:]), np.sort(order[:cut])
    return train.subset(kept), train.subset(held)
