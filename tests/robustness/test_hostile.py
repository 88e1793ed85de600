"""The second hostile round, one class of problem per section: memory on large allowed images, weights
metadata, non-finite numbers, terminal and spreadsheet injection, hangs, the gallery cache, full disks,
training data. Each case asserts the contract: a bad weights file or option is one line and exit 2, a bad
input an error record and exit 1, never a traceback, a hang, a non-finite number or a raw control character.
"""

from __future__ import annotations

import errno
import gzip
import json
import os
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnntool import weights
from cnntool.cli import main
from cnntool.data.builtin import read_idx
from cnntool.errors import ConfigError

from .deadline import time_limit

EMBEDDED = weights.weights_dir() / "lenet5-digits.safetensors"
CONTROL = [chr(c) for c in range(32) if chr(c) not in "\n\t"] + ["\x7f", "\x9b"]


def run_cli(args, capsys):
    with pytest.raises(SystemExit) as stop:
        main(args)
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return stop.value.code, out.out, out.err


def assert_printable(text: str) -> None:
    text = text.replace("\r\n", "\n")  # CSV's own line ends
    assert not any(c in text for c in CONTROL), repr([c for c in CONTROL if c in text])


@pytest.fixture(scope="module")
def digit(tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp("digit") / "seven.png"
    img = Image.new("L", (28, 28), 0)
    img.paste(255, (8, 6, 20, 9))
    img.paste(255, (16, 9, 19, 24))
    img.save(path)
    return str(path)


def lenet_meta() -> dict:
    return json.loads(weights.read_header(EMBEDDED)["__metadata__"][weights.METADATA_KEY])


def write_weights(path: Path, meta: dict | str, state: dict | None = None) -> str:
    from safetensors.torch import load_file, save_file

    text = meta if isinstance(meta, str) else json.dumps(meta)
    save_file(state if state is not None else load_file(EMBEDDED), str(path), metadata={weights.METADATA_KEY: text})
    return str(path)


# --- 1. memory: peak RSS bounded on any image under --max-pixels ----------------------------------------------

MEMORY_BOUND_KB = 2 * 1024 * 1024  # the README's bound: 2 GB


def peak_rss_kb(args: list[str]) -> tuple[int, int]:
    """(exit code, peak RSS in KB) of `cnntool ARGS` in a fresh process whose only child is the command."""
    probe = textwrap.dedent(f"""
        import resource, subprocess, sys
        code = subprocess.run([sys.executable, "-m", "cnntool", *{args!r}], stdout=subprocess.DEVNULL).returncode
        print(code, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    """)
    code, peak = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True,
                                timeout=600).stdout.split()
    return int(code), int(peak)


@pytest.fixture(scope="module")
def large_photos(tmp_path_factory):
    """A 36 MP JPEG (7360×4912, a camera's full size) and a 49 MP 16-bit PNG of a few hundred KB."""
    folder = tmp_path_factory.mktemp("large")
    y, x = np.mgrid[0:4912, 0:7360]
    rgb = np.stack([(x // 7) % 256, (y // 5) % 256, ((x + y) // 11) % 256], -1).astype(np.uint8)
    Image.fromarray(rgb).save(folder / "36mp.jpg", quality=85)
    del rgb, x, y
    wide = (np.add.outer(np.arange(7000, dtype=np.uint32) * 9, np.arange(7000, dtype=np.uint32)) % 65536)
    Image.fromarray(wide.astype(np.uint16)).save(folder / "49mp16.png", compress_level=1)
    return folder


def test_peak_memory_of_detect_on_a_36_mp_jpeg(large_photos):
    code, peak = peak_rss_kb(["detect", str(large_photos / "36mp.jpg"), "-q"])
    assert code == 0 and peak <= MEMORY_BOUND_KB, f"peak RSS {peak / 1024:.0f} MB"


def test_peak_memory_of_classify_on_a_49_mp_16_bit_png(large_photos):
    code, peak = peak_rss_kb(["classify", str(large_photos / "49mp16.png"), "-q"])
    assert code == 0 and peak <= MEMORY_BOUND_KB, f"peak RSS {peak / 1024:.0f} MB"


# --- 2. weights metadata: validated whole, before anything is built ------------------------------------------

def _bad_metadata():
    meta = lenet_meta()
    return {
        "not_an_object": "[1, 2]",
        "not_json": "{cnntool",
        "classes_a_number": {**meta, "classes": 10},
        "classes_of_objects": {**meta, "classes": [{"name": str(i)} for i in range(10)]},
        "model_a_list": {**meta, "model": ["lenet5"]},
        "kwargs_unknown": {**meta, "kwargs": {**meta["kwargs"], "bogus": 1}},
        "kwargs_a_string": {**meta, "kwargs": "num_classes=10"},
        "class_count_for_terabytes": {**meta, "kwargs": {**meta["kwargs"], "num_classes": 10 ** 12}},
        "input_60000_square": {**meta, "input": {**meta["input"], "size": [60000, 60000]}},
        "input_size_zero": {**meta, "input": {**meta["input"], "size": [0, 0]}},
        "input_size_negative": {**meta, "input": {**meta["input"], "size": [-3, 32]}},
        "std_zero": {**meta, "input": {**meta["input"], "std": [0.0]}},
        "ensemble_huge": {**meta, "ensemble": 10 ** 6},
    }


@pytest.mark.parametrize("case", sorted(_bad_metadata()))
def test_bad_metadata_is_one_line_and_exit_2(case, tmp_path, digit, capsys):
    path = write_weights(tmp_path / f"{case}.safetensors", _bad_metadata()[case])
    with time_limit(60):
        code, out, err = run_cli(["classify", "--weights", path, digit], capsys)
    assert code == 2 and out == "" and len(err.splitlines()) == 1 and err.startswith("cnntool: error: "), err


def test_a_header_of_a_million_tensors_is_refused_unread(tmp_path, digit, capsys):
    entries = {f"t{i}": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]} for i in range(1_000_000)}
    header = json.dumps(entries).encode()
    path = tmp_path / "many.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)
    with time_limit(30):
        code, _, err = run_cli(["classify", "--weights", str(path), digit], capsys)
    assert code == 2 and len(err.splitlines()) == 1


@pytest.mark.parametrize("body", [b"\x80\x04\x95garbage" + bytes(range(200)), b"PK\x03\x04" + bytes(300)])
def test_a_corrupt_torch_file_is_one_line(body, tmp_path, digit, capsys):
    path = tmp_path / "corrupt.pt"
    path.write_bytes(body)
    code, _, err = run_cli(["classify", "--weights", str(path), digit], capsys)
    assert code == 2 and len(err.splitlines()) == 1


def test_a_corrupt_pickle_inside_a_torch_zip_is_one_line(tmp_path, digit, capsys):
    from safetensors.torch import load_file

    path = tmp_path / "zip.pt"
    torch.save(load_file(EMBEDDED), path)
    raw = bytearray(path.read_bytes())
    at = raw.find(b"data.pkl") + 40
    raw[at:at + 30] = bytes(range(200, 230))
    path.write_bytes(bytes(raw))
    code, _, err = run_cli(["classify", "--weights", str(path), digit], capsys)
    assert code == 2 and len(err.splitlines()) == 1


# --- 3. no NaN: non-finite weights refused, non-finite outputs an error ---------------------------------------

def test_weights_holding_nan_are_refused(tmp_path, digit, capsys):
    from safetensors.torch import load_file

    state = load_file(EMBEDDED)
    name = next(k for k, v in state.items() if v.is_floating_point())
    state[name] = torch.full_like(state[name], float("nan"))
    path = write_weights(tmp_path / "nan.safetensors", lenet_meta(), state)
    code, out, err = run_cli(["classify", "--weights", path, digit], capsys)
    assert code == 2 and "NaN" in err and out == ""


def test_non_finite_outputs_are_an_error_record_never_a_score(tmp_path, digit, capsys):
    meta = lenet_meta()
    path = write_weights(tmp_path / "tiny-std.safetensors", {**meta, "input": {**meta["input"], "std": [1e-38]}})
    for fmt in ("jsonl", "json", "csv", "table"):
        code, out, _ = run_cli(["classify", "--weights", path, digit, "--format", fmt], capsys)
        numbers = out.replace("(NaN or infinity)", "").lower()
        assert code == 1 and "nan" not in numbers and "inf" not in numbers.replace("infinity", "")
    code, out, _ = run_cli(["classify", "--weights", path, digit, "--format", "jsonl"], capsys)
    record = json.loads(out)  # strict JSON
    assert record["error"]["type"] == "NonFiniteOutput" and "predictions" not in record


# --- 4. terminal and spreadsheet injection --------------------------------------------------------------------

ESCAPES = ["\x1b[2J", "\x1b]0;pwned\x07", "\x1b]8;;x\x1b\\", "\x9b31m", "\x1b]2;unterminated"]


def test_control_characters_in_names_never_reach_a_terminal_or_a_spreadsheet(tmp_path, digit, capsys):
    meta = lenet_meta()
    classes = ["=HYPERLINK(\"http://x\",\"7\")", *(f"c{i}{ESCAPES[i % len(ESCAPES)]}" for i in range(1, 10))]
    path = write_weights(tmp_path / "names.safetensors", {**meta, "classes": classes})
    named = tmp_path / f"in{''.join(ESCAPES)}.png"
    named.write_bytes(Path(digit).read_bytes())
    missing = str(tmp_path / "gone\x1b[2J.png")
    for fmt in ("table", "csv"):
        code, out, err = run_cli(["classify", "--weights", path, str(named), missing, "--format", fmt,
                                  "--topk", "10"], capsys)
        assert code == 1
        assert_printable(out)
        assert_printable(err)
    rows = out.splitlines()
    assert any(",'=HYPERLINK(" in row or ",\"'=HYPERLINK(" in row for row in rows)
    assert not any(",=HYPERLINK(" in row or ",\"=HYPERLINK(" in row for row in rows)


def test_gallery_warnings_escape_file_names(tmp_path, capsys):
    gallery = tmp_path / "gallery" / "ann"
    gallery.mkdir(parents=True)
    (gallery / "evil\x1b]0;x\x07.png").write_text("not an image")
    Image.new("RGB", (64, 64), (120, 90, 60)).save(gallery / "plain.png")
    probe = tmp_path / "probe.png"
    Image.new("RGB", (64, 64), (121, 90, 60)).save(probe)
    code, out, err = run_cli(["verify-face", "--model", "oneshot-fashion", "--gallery", str(tmp_path / "gallery"),
                              "--gallery-cache", str(tmp_path / "cache.safetensors"), str(probe),
                              "--format", "table"], capsys)
    assert "skipped" in err
    assert_printable(err)
    assert_printable(out)


# --- 5. hangs: bounded globs and input lines ------------------------------------------------------------------

def test_a_recursive_glob_through_a_symlink_loop_ends(tmp_path, digit, capsys):
    root = tmp_path / "loop"
    (root / "sub").mkdir(parents=True)
    Image.open(digit).save(root / "sub" / "a.png")
    (root / "l1").symlink_to(".")
    (root / "sub" / "up").symlink_to("..")
    with time_limit(60):
        code, out, _ = run_cli(["classify", str(root / "**" / "*.png"), "--format", "jsonl"], capsys)
    assert code == 0 and [json.loads(line)["source"] for line in out.splitlines()] == [str(root / "sub" / "a.png")]


def test_a_huge_line_on_stdin_is_one_error_record(digit):
    line = b"x" * 32_000_000 + b"\n" + digit.encode() + b"\n"
    proc = subprocess.run([sys.executable, "-m", "cnntool", "classify", "-", "--format", "jsonl"], input=line,
                          capture_output=True, timeout=60)
    records = [json.loads(r) for r in proc.stdout.splitlines()]
    assert proc.returncode == 1 and len(records) == 2
    assert "32000000 characters" in records[0]["error"]["message"] and len(records[0]["source"]) < 100
    assert records[1]["predictions"]


def test_a_huge_line_in_a_list_file_is_one_error_record(tmp_path, digit, capsys):
    listing = tmp_path / "list.txt"
    listing.write_text("y" * 100_000 + "\n" + digit + "\n")
    with time_limit(60):
        code, out, _ = run_cli(["classify", f"@{listing}", "--format", "jsonl"], capsys)
    assert code == 1 and len(out.splitlines()) == 2


# --- 6. the gallery cache cannot lie --------------------------------------------------------------------------

class MeanColour:
    """Embeds an image as its mean colour: identities are told apart by colour alone."""

    def __call__(self, path):
        return torch.tensor(np.asarray(Image.open(path).convert("RGB"), np.float32).mean((0, 1)))


@pytest.fixture
def two_people(tmp_path):
    root = tmp_path / "people"
    root.mkdir()
    Image.new("RGB", (8, 8), (250, 0, 0)).save(root / "ann_1.png")
    Image.new("RGB", (8, 8), (0, 0, 250)).save(root / "bob_1.png")
    return root


def _by_identity(gallery) -> dict[str, list[float]]:
    return {who: row.tolist() for who, row in zip(gallery.identities, gallery.embeddings)}


KEY = {"model": "test"}


def test_swapped_files_with_the_same_size_and_time_keep_their_right_identities(two_people, tmp_path):
    from cnntool.tasks.verify.run import build_gallery

    cache = tmp_path / "cache.safetensors"
    build_gallery(two_people, MeanColour(), KEY, cache)
    ann, bob = two_people / "ann_1.png", two_people / "bob_1.png"
    stat = ann.stat()
    ann.rename(tmp_path / "swap")
    bob.rename(ann)
    (tmp_path / "swap").rename(bob)
    for path in (ann, bob):
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    rebuilt = _by_identity(build_gallery(two_people, MeanColour(), KEY, cache))
    assert rebuilt["ann"][2] == 250 and rebuilt["bob"][0] == 250


@pytest.mark.parametrize("edit", ["swap_rows", "negative_row", "nan_bytes", "wrong_width", "garbage"])
def test_an_edited_cache_is_rebuilt(edit, two_people, tmp_path):
    from safetensors.torch import load_file, save_file

    from cnntool.tasks.verify.run import build_gallery

    cache = tmp_path / "cache.safetensors"
    truth = _by_identity(build_gallery(two_people, MeanColour(), KEY, cache))
    meta = json.loads(weights.read_header(cache)["__metadata__"][weights.METADATA_KEY])
    rows = load_file(cache)["embeddings"]
    files = meta["files"]
    if edit == "swap_rows":
        for entry, row in zip(files.values(), (1, 0)):
            entry["row"] = row
    elif edit == "negative_row":
        next(iter(files.values()))["row"] = -1
    elif edit == "nan_bytes":
        rows[0, 0] = float("nan")
    elif edit == "wrong_width":
        rows = torch.zeros(2, 7)
    if edit == "garbage":
        cache.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    else:
        save_file({"embeddings": rows}, str(cache), metadata={weights.METADATA_KEY: json.dumps(meta)})
    again = build_gallery(two_people, MeanColour(), KEY, cache)
    assert _by_identity(again) == truth and again.embedded_now == 2


# --- 7. full disks --------------------------------------------------------------------------------------------

def _full_disk(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_save_on_a_full_disk_keeps_every_record_and_leaves_no_temporary_file(tmp_path, digit, capsys, monkeypatch):
    out_dir = tmp_path / "drawn"
    real_save = Image.Image.save

    def save(image, target, *args, **kwargs):  # the file is created, then the disk is full
        if str(target).startswith(str(out_dir)):
            open(target, "wb").close()
            _full_disk()
        return real_save(image, target, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", save)
    code, out, err = run_cli(["classify", digit, digit, digit, "--save", str(out_dir), "--format", "jsonl"], capsys)
    records = [json.loads(line) for line in out.splitlines()]
    assert code == 1 and len(records) == 3
    assert all(r["predictions"] and "No space left" in r["save_error"] for r in records)
    assert not [p for p in out_dir.rglob("*") if p.is_file()]


def test_train_on_a_full_disk_is_one_line_and_leaves_no_report_beside_missing_weights(tmp_path, capsys, monkeypatch):
    from cnntool.engine import train as engine

    out = tmp_path / "model.safetensors"
    real_save = weights.save

    def save(path, *args, **kwargs):
        if Path(path) == out:
            _full_disk()
        return real_save(path, *args, **kwargs)

    monkeypatch.setattr(engine.weights, "save", save)
    data = tmp_path / "data"
    for c, value in (("dark", 40), ("light", 220)):
        (data / c).mkdir(parents=True)
        for i in range(6):
            Image.new("L", (28, 28), value + i).save(data / c / f"{i}.png")
    code, _, err = run_cli(["train", "classify", "--data", str(data), "--model", "lenet5", "--epochs", "1",
                            "--out", str(out), "--run-dir", str(tmp_path / "run"), "-q"], capsys)
    assert code == 1 and err.splitlines() == [f"cnntool: error: No space left on device"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "run"]


# --- 8. training data -----------------------------------------------------------------------------------------

def _idx(path: Path, code: int, dims: list[int], body: bytes, *, zipped: bool = False) -> Path:
    raw = bytes([0, 0, code, len(dims)]) + struct.pack(f">{len(dims)}I", *dims) + body
    path.write_bytes(gzip.compress(raw) if zipped else raw)
    return path


@pytest.mark.parametrize("case", ["short_body", "overflowing_dims", "many_dims", "gzip_bomb", "not_idx"])
def test_bad_idx_files_are_one_line_without_allocating(case, tmp_path):
    path = {
        "short_body": lambda: _idx(tmp_path / "a-idx3-ubyte", 0x08, [10, 28, 28], bytes(100)),
        "overflowing_dims": lambda: _idx(tmp_path / "b-idx3-ubyte", 0x0E, [2 ** 32 - 1] * 3, bytes(8)),
        "many_dims": lambda: _idx(tmp_path / "c-idx3-ubyte", 0x08, [2] * 255, bytes(8)),
        "gzip_bomb": lambda: _idx(tmp_path / "d-idx3-ubyte.gz", 0x08, [2 ** 20, 64, 64], bytes(200_000_000),
                                  zipped=True),
        "not_idx": lambda: (tmp_path / "e-idx3-ubyte").write_bytes(b"hello") and tmp_path / "e-idx3-ubyte",
    }[case]()
    with time_limit(30), pytest.raises(ConfigError) as info:
        read_idx(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("labels", [np.array([0, -3], np.int8), np.array([0, 2_000_000_000], ">i4")])
def test_idx_labels_out_of_range_are_refused(labels, tmp_path, capsys):
    code = {np.dtype(np.int8): 0x09, np.dtype(">i4"): 0x0C}[labels.dtype]
    _idx(tmp_path / "train-images-idx3-ubyte", 0x08, [2, 28, 28], bytes(2 * 28 * 28))
    _idx(tmp_path / "train-labels-idx1-ubyte", code, [2], labels.tobytes())
    with time_limit(60):
        exit_code, _, err = run_cli(["train", "classify", "--data", str(tmp_path / "train-images-idx3-ubyte"),
                                     "--epochs", "1", "--out", str(tmp_path / "w.safetensors")], capsys)
    assert exit_code == 2 and "labels must be class indices" in err and len(err.splitlines()) == 1


def test_unreadable_images_in_class_folders_are_left_out_with_a_warning(tmp_path, capsys):
    data = tmp_path / "data"
    for c, value in (("dark", 40), ("light", 220)):
        (data / c).mkdir(parents=True)
        for i in range(6):
            Image.new("L", (28, 28), value + i).save(data / c / f"{i}.png")
    (data / "dark" / "text.jpg").write_text("not a picture")
    (data / "dark" / "empty.png").write_bytes(b"")
    Image.new("RGB", (64, 64), "white").save(data / "light" / "full.jpg")
    whole = (data / "light" / "full.jpg").read_bytes()
    (data / "light" / "cut.jpg").write_bytes(whole[:len(whole) // 2])
    code, _, err = run_cli(["train", "classify", "--data", str(data), "--model", "lenet5", "--epochs", "1",
                            "--out", str(tmp_path / "w.safetensors")], capsys)
    assert code == 0 and "unreadable image(s) left out" in err
    assert (tmp_path / "w.safetensors").is_file()


# --- 9. options out of range ----------------------------------------------------------------------------------

@pytest.mark.parametrize("args", [["detect", "--conf", "2"], ["detect", "--iou", "-0.5"], ["classify", "--topk", "0"],
                                  ["classify", "--max-pixels", "0"]])
def test_options_out_of_range_are_exit_2(args, digit, capsys):
    code, out, err = run_cli([*args, digit], capsys)
    assert code == 2 and out == ""
