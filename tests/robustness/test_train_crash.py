"""`cnntool train classify` killed with SIGKILL at random points, resumed each time with --resume.

After every kill the weights file and the checkpoints are either absent or complete (atomic writes), and
the resumed run ends with exactly the weights of an uninterrupted run with the same --seed. (SIGTERM →
checkpoint + exit 143 is tests/test_train_process.py's.) The engine checkpoints at each epoch's end, so a
kill costs at most the epoch in progress; the kill points are drawn (seeded) over the training phase, after
the process has logged "training …", since the seconds before that are only imports.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from train_helpers import tiny_idx

from cnntool import weights
from cnntool.engine import checkpoint

EPOCHS = 4
STARTED = "training lenet5-relu on"  # the engine's first log line: data and model are ready


def _command(data: Path, out: Path, run_dir: Path, resume: bool) -> list[str]:
    # Augmentation on, so the per-step reseeding the engine relies on for exact resumes is exercised.
    return [sys.executable, "-m", "cnntool", "train", "classify", "--data", str(data), "--model", "lenet5-relu",
            "--input-size", "16", "--epochs", str(EPOCHS), "--batch-size", "8", "--threads", "1", "--seed", "5",
            "--shift", "0.1", "--rotate", "5", "--out", str(out), "--run-dir", str(run_dir),
            *(["--resume"] if resume else [])]


def _env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")


def _wait_started(proc: subprocess.Popen, log: Path, timeout: float = 300) -> float:
    """Block until the run logs that training starts; return that moment (monotonic)."""
    deadline = time.monotonic() + timeout
    while STARTED not in log.read_text(errors="replace"):
        assert proc.poll() is None, log.read_text(errors="replace")[-2000:]
        assert time.monotonic() < deadline, "training never started"
        time.sleep(0.05)
    return time.monotonic()


class Run:
    """One directory: data, the weights file, the checkpoints, and each process's stderr."""

    def __init__(self, root: Path, data: Path, name: str) -> None:
        self.data, self.out, self.run_dir = data, root / f"{name}.safetensors", root / f"{name}.run"
        self.logs = root / f"{name}.logs"
        self.logs.mkdir()
        self.starts = 0

    def start(self) -> tuple[subprocess.Popen, Path]:
        resume = (self.run_dir / "last.safetensors").exists()  # a kill before the first checkpoint: start over
        self.starts += 1
        log = self.logs / f"{self.starts}.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen(_command(self.data, self.out, self.run_dir, resume), env=_env(),
                                    stdout=subprocess.DEVNULL, stderr=fh)
        return proc, log

    def to_completion(self) -> float:
        """Run (or resume) to the end; return the seconds from "training …" to the exit."""
        proc, log = self.start()
        started = _wait_started(proc, log)
        assert proc.wait(timeout=600) == 0, log.read_text(errors="replace")[-2000:]
        assert "Traceback" not in log.read_text(errors="replace")
        return time.monotonic() - started

    def kill_after(self, delay: float) -> bool:
        """Start, SIGKILL `delay` s into training; False when the run had already finished by then."""
        proc, log = self.start()
        _wait_started(proc, log)
        time.sleep(delay)
        if proc.poll() is not None:
            assert proc.returncode == 0, log.read_text(errors="replace")[-2000:]
            return False
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
        return True

    def assert_files_whole(self) -> None:
        """Each file a kill may have been writing is absent or complete and loadable."""
        if self.out.exists():
            weights.load(self.out)
        if (self.run_dir / "best.safetensors").exists():
            weights.load(self.run_dir / "best.safetensors")
        if (self.run_dir / "last.safetensors").exists():
            checkpoint.load(self.run_dir / "last.safetensors")


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    return tiny_idx(tmp_path_factory.mktemp("tiny"), n_train=240)


@pytest.fixture(scope="module")
def reference(data, tmp_path_factory) -> tuple[dict[str, torch.Tensor], float]:
    """The uninterrupted run's weights, and how long its training phase took."""
    run = Run(tmp_path_factory.mktemp("reference"), data, "whole")
    seconds = run.to_completion()
    return weights.load(run.out)[0], seconds


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    differ = [k for k in a if not torch.equal(a[k], b[k])]
    assert not differ, f"resumed weights differ from the uninterrupted run's in {differ}"


def killed_and_resumed(data: Path, root: Path, delays: list[float]) -> tuple[dict[str, torch.Tensor], int]:
    """Kill at each delay into training (resuming each time), then finish; (final weights, kills landed)."""
    run = Run(root, data, "cut")
    landed = 0
    for delay in delays:
        if not run.kill_after(delay):
            break  # finished before the kill: nothing left to interrupt
        landed += 1
        run.assert_files_whole()
    else:
        run.to_completion()
    return weights.load(run.out)[0], landed


def test_one_sigkill_then_resume_gives_the_uninterrupted_weights(data, reference, tmp_path):
    state, seconds = reference
    delay = random.Random(0).uniform(0.2, 0.7) * seconds  # well inside training
    final, landed = killed_and_resumed(data, tmp_path, [delay])
    assert landed == 1
    _assert_same(state, final)


@pytest.mark.slow
def test_repeated_sigkills_at_random_points(data, reference, tmp_path):
    state, seconds = reference
    rng = random.Random(20261130)
    delays = [rng.uniform(0.0, 0.8) * seconds for _ in range(5)]
    final, landed = killed_and_resumed(data, tmp_path, delays)
    assert landed >= 3, f"only {landed} kills landed during training"
    _assert_same(state, final)
