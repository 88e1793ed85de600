"""Seeded, stratified train/validation splits: the same seed always holds out the same indices."""

from __future__ import annotations

import numpy as np


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
