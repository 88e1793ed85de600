"""Hostile or wrong `--weights` files given to every predict subcommand: each one is refused before any
input is read, with exit code 2 and one line on stderr; a pickle payload never runs.

CLI-level and per subcommand (tests/test_loading.py covers the library-level loading). The weights are
random-initialised: what matters is the file, not what the model would predict.
"""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from cnntool.models import catalog
from cnntool.cli import main

from .subcommands import ARCH, CARD, absent_reason, predict_subcommands, save_random_weights

# Tasks whose metadata names classes (or points) the model's outputs must match; embeddings have none.
HAS_CLASSES = {"classify", "localize", "landmarks", "detect"}


class TouchOnUnpickle:
    """Unpickling this opens (creates) the marker file: stands in for any code a pickle could run."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def _subcommand_params(with_classes: bool = False) -> list:
    names = [s for s in predict_subcommands() if not with_classes or s in HAS_CLASSES]
    return [pytest.param(s, marks=[pytest.mark.skip(reason=absent_reason(s))] if absent_reason(s) else [])
            for s in names]


def _arch(subcommand: str) -> str:
    if subcommand not in ARCH:
        pytest.skip(f"{subcommand}: no reference architecture known to this test yet")
    return ARCH[subcommand]


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("img") / "grey.png"
    Image.new("L", (32, 32), 128).save(path)
    return str(path)


def refused(capsys, subcommand: str, weights_file: str, image: str, *options: str) -> str:
    """Run the subcommand on good images with these weights; assert exit 2 with one line; return it."""
    inputs = [image, image] if CARD.get(subcommand) == "verify-face" else [image]  # verify-face compares pairs
    with pytest.raises(SystemExit) as exit_info:
        main([subcommand, "--weights", weights_file, *options, "--format", "jsonl", *inputs])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 2, err
    assert out == ""  # refused before any record
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("cnntool: error: "), err
    return lines[0]


def test_the_pickle_payload_is_live(tmp_path):
    """The payload would run if unpickled: so the marker staying absent below means something."""
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(2), "x": TouchOnUnpickle(str(marker))}, path)
    torch.load(path, weights_only=False)
    assert marker.exists()


@pytest.mark.parametrize("subcommand", _subcommand_params())
def test_pickle_payload_never_runs(subcommand, tmp_path, image, capsys):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    torch.save({"weight": torch.zeros(2), "x": TouchOnUnpickle(str(marker))}, path)
    line = refused(capsys, subcommand, str(path), image, "--model", _arch(subcommand))
    assert "refused" in line
    assert not marker.exists()


def test_a_plain_state_dict_pt_loads(tmp_path, image, capsys):
    """The safe path still works: tensors saved with torch.save are read (weights_only) and used."""
    torch.manual_seed(0)
    path = tmp_path / "lenet.pt"
    torch.save(catalog.get("lenet5").build().state_dict(), path)
    with pytest.raises(SystemExit) as exit_info:
        main(["classify", "--model", "lenet5", "--weights", str(path), "--format", "jsonl", image])
    out, err = capsys.readouterr()
    assert exit_info.value.code == 0, err
    assert '"predictions"' in out


@pytest.mark.parametrize("subcommand", _subcommand_params())
def test_truncated_safetensors(subcommand, tmp_path, image, capsys):
    path = tmp_path / "cut.safetensors"
    whole = open(save_random_weights(tmp_path / "whole.safetensors", _arch(subcommand)), "rb").read()
    path.write_bytes(whole[: len(whole) // 2])
    assert "truncated" in refused(capsys, subcommand, str(path), image)


@pytest.mark.parametrize("subcommand", _subcommand_params())
def test_weights_of_another_task(subcommand, tmp_path, image, capsys):
    other = "localize" if subcommand == "classify" else "classify"
    path = save_random_weights(tmp_path / "other.safetensors", ARCH[other])
    line = refused(capsys, subcommand, path, image)
    assert f"weights are for task {other!r}" in line


@pytest.mark.parametrize("subcommand", _subcommand_params())
def test_tensors_of_another_architecture(subcommand, tmp_path, image, capsys):
    """Bare tensors (no metadata) of another network, for this task's architecture."""
    other = "resnet-small" if subcommand == "classify" else "lenet5"
    path = save_random_weights(tmp_path / "bare.safetensors", other, bare=True)
    line = refused(capsys, subcommand, path, image, "--model", _arch(subcommand))
    assert "do not fit this model" in line


@pytest.mark.parametrize("subcommand", _subcommand_params(with_classes=True))
def test_class_count_differs_from_the_tensors(subcommand, tmp_path, image, capsys):
    """Metadata says 3 classes, the tensors have the architecture's own count: labels would be wrong."""
    path = save_random_weights(tmp_path / "three.safetensors", _arch(subcommand), classes=["a", "b", "c"])
    assert "metadata names 3 classes" in refused(capsys, subcommand, path, image)
