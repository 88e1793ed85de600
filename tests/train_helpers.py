"""Tiny synthetic classification data for the training tests: three classes a small CNN separates in a
few steps (a horizontal bar, a vertical bar, a centred square), written as MNIST-style idx files."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np


def write_idx(path: Path, array: np.ndarray) -> Path:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(">i4"): 0x0C}
    header = struct.pack(">BBBB", 0, 0, codes[array.dtype], array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wb") as fh:
        fh.write(header + array.tobytes())
    return path


def shapes(n: int, seed: int, size: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 40, size=(n, size, size)).astype(np.uint8)
    labels = np.arange(n) % 3
    for img, label in zip(images, labels):
        o = rng.integers(3, size - 5)
        if label == 0:
            img[o:o + 2, 2:-2] = 255
        elif label == 1:
            img[2:-2, o:o + 2] = 255
        else:
            img[5:-5, 5:-5] = 255
    return images, labels.astype(np.uint8)


def tiny_idx(directory: Path, n_train: int = 120, n_test: int = 60) -> Path:
    """train-/t10k- idx pairs in `directory`; returns the training images path."""
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = shapes(n, seed)
        write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", images)
        write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return directory / "train-images-idx3-ubyte.gz"


def tiny_task(data: Path, **overrides):
    from cnntool.tasks.classify.train import ClassifyConfig, ClassifyTask

    cfg = dict(data=str(data), model="lenet5-relu", input_size=(16, 16), val_split=0.2)
    cfg.update(overrides)
    return ClassifyTask(ClassifyConfig(**cfg))


def tiny_config(tmp: Path, name: str = "w", **overrides):
    from cnntool.engine.train import TrainConfig

    cfg = dict(out=tmp / f"{name}.safetensors", run_dir=tmp / f"{name}.run", epochs=2, batch_size=16, lr=0.05,
               threads=1, quiet=True, eval_batch_size=64)
    cfg.update(overrides)
    return TrainConfig(**cfg)


def tiny_localizer(path: Path, seed: int, **extra) -> Path:
    """An untrained, small localizer-digits file (its own seed) with the metadata training writes."""
    import torch

    from cnntool import weights
    from cnntool.models.localizer import localizer

    torch.manual_seed(seed)
    kwargs = {"num_classes": 10, "in_channels": 3, "widths": [4, 8], "input_size": 128, "hidden": 8}
    meta = {"task": "localize", "model": "localizer-digits", "kwargs": kwargs,
            "classes": [str(d) for d in range(10)], "command": f"cnntool train localize # tiny {seed}", **extra}
    return weights.save(path, localizer(**kwargs).state_dict(), meta)


def run_cli(args: list[str], capsys) -> tuple[int, str]:
    """cnntool's console entry point on args: (exit code, stderr)."""
    import pytest

    from cnntool.cli import main

    with pytest.raises(SystemExit) as stop:
        main(args)
    return stop.value.code, capsys.readouterr().err
