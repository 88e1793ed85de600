"""Pipes and Ctrl-C for every predict subcommand other than classify (tests/test_cli.py has classify's):
`| head -1` ends quietly (exit 0 under pipefail, nothing on stderr), SIGINT ends with 130 and no traceback.

Random-initialised weights stand in where a default model is not embedded yet: this is about the
process, not the predictions. verify-face runs dlib's default model.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from .subcommands import ARCH, absent_reason, default_model_reason, predict_subcommands, save_random_weights

CNNTOOL = [sys.executable, "-m", "cnntool"]
SUBCOMMANDS = [s for s in predict_subcommands() if s != "classify"]


@pytest.fixture(scope="module")
def face(tmp_path_factory) -> str:
    import skimage.data

    path = tmp_path_factory.mktemp("face") / "astronaut.png"
    Image.fromarray(skimage.data.astronaut()).save(path)
    return str(path)


@pytest.fixture(scope="module")
def digit(tmp_path_factory) -> str:
    from cnntool.data.builtin import load_opencv_digits

    images, labels = load_opencv_digits()
    path = tmp_path_factory.mktemp("digit") / "seven.png"
    Image.fromarray(images[np.flatnonzero(labels == 7)[0]]).save(path)
    return str(path)


def model_options(subcommand: str, tmp_path) -> list[str]:
    """Options that give the subcommand a working model here, or skip with the reason."""
    reason = absent_reason(subcommand)
    if reason:
        pytest.skip(reason)
    if subcommand == "verify-face":
        reason = default_model_reason(subcommand)
        if reason:
            pytest.skip(reason)
        return []
    if subcommand not in ARCH:
        pytest.skip(f"{subcommand}: no reference architecture known to this test yet")
    return ["--weights", save_random_weights(tmp_path / "w.safetensors", ARCH[subcommand]), "--batch-size", "1"]


def _env() -> dict[str, str]:
    return dict(os.environ, OMP_NUM_THREADS="1")


@pytest.mark.parametrize("subcommand", SUBCOMMANDS)
def test_closed_pipe_ends_quietly(subcommand, tmp_path, digit, face):
    options = model_options(subcommand, tmp_path)
    if subcommand == "verify-face":  # the first image against each other; a crop needs no face detector
        inputs = ["--no-detect", face, *[face] * 1000]
    else:
        inputs = [digit] * 400
    # Far more output than a pipe buffers, so the writes after head exits do hit the closed pipe.
    command = shlex.join([*CNNTOOL, subcommand, *options, "--format", "jsonl", *inputs])
    proc = subprocess.run(f"set -o pipefail; {command} | head -1", shell=True, executable="/bin/bash",
                          capture_output=True, text=True, timeout=600, env=_env())
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(proc.stdout.splitlines()) == 1 and proc.stdout.startswith("{")
    assert proc.stderr == ""


@pytest.mark.parametrize("subcommand", SUBCOMMANDS)
def test_ctrl_c_exits_130_without_traceback(subcommand, tmp_path, digit, face):
    options = model_options(subcommand, tmp_path)
    if subcommand == "verify-face":
        # It reads all its inputs before the first pair; distinct paths (each detected and embedded anew)
        # keep it busy well after its first record.
        copies = []
        for i in range(20):
            copies.append(str(tmp_path / f"face-{i}.png"))
            os.symlink(face, copies[-1])
        args, stdin = ["--upsample", "0", face, *copies], subprocess.DEVNULL
    else:
        args, stdin = ["-"], subprocess.PIPE  # stdin stays open: the run waits for more paths
    proc = subprocess.Popen([*CNNTOOL, subcommand, *options, "--format", "jsonl", *args], stdin=stdin,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env())
    try:
        if stdin is subprocess.PIPE:
            proc.stdin.write(digit + "\n")
            proc.stdin.flush()
        assert proc.stdout.readline().startswith("{")  # the model is loaded and working
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err[-2000:]
    assert "Traceback" not in err
