"""The whole corpus through every predict subcommand, one run each, as a user would run it.

Each run gets every corpus path with known-good real images interleaved, by argv and by `-` on stdin
(odd names: spaces, a newline, non-UTF-8 bytes, glob characters), `--format jsonl`, small batches so bad
items land inside a batch, and a strict UTF-8 locale (PYTHONIOENCODING=utf-8:strict, as en_US.UTF-8
gives; this machine has only C locales). The conventions checked: one record per input, in input order;
error kinds become error records with a one-line message; ok kinds and the good images become results;
exit code 1; no traceback.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass

import numpy as np
import pytest
from PIL import Image

from .corpus import ERROR, CorpusItem
from .subcommands import default_model_reason, has_option, predict_subcommands

# The field a result record of each subcommand carries (verify-face's 1:1 comparison: the distance).
RESULT_FIELD = {"classify": "predictions", "localize": "object", "landmarks": "points", "detect": "detections",
                "verify-face": "distance"}
GOOD_EVERY = 6  # a good image after every this many corpus paths
# verify-face: a corpus image with no face in it is legitimately refused, with this error type.
NO_FACE = "NoFaceError"


def printed(path: str) -> str:
    """A path as records print it: undecodable bytes as \\xNN escapes."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


@dataclass(frozen=True)
class Expected:
    source: str  # as the record must name it
    ok: bool  # a result, or an error record
    what: str  # the corpus kind or "good", for failure messages
    error_type: str | None = None  # an ok item a task may legitimately refuse, with this error type


@pytest.fixture(scope="module")
def good_images(tmp_path_factory) -> dict[str, list[str]]:
    """Real images: handwritten digits as PNG, and scikit-image's astronaut (a face) in variants."""
    import skimage.data

    from cnntool.data.builtin import load_opencv_digits

    d = tmp_path_factory.mktemp("good")
    images, labels = load_opencv_digits()
    digits = []
    for digit in (0, 3, 7, 9):
        path = d / f"digit-{digit}.png"
        Image.fromarray(images[np.flatnonzero(labels == digit)[0]]).save(path)
        digits.append(str(path))
    astronaut = skimage.data.astronaut()
    faces = [d / "astronaut.png", d / "astronaut-mirrored.png", d / "astronaut.jpg"]
    Image.fromarray(astronaut).save(faces[0])
    Image.fromarray(np.ascontiguousarray(astronaut[:, ::-1])).save(faces[1])
    Image.fromarray(astronaut).save(faces[2], quality=90)
    return {"digits": digits, "faces": [str(p) for p in faces]}


def _interleave(corpus: list[str], good: list[str]) -> list[str]:
    out = []
    for i, path in enumerate(corpus):
        if i % GOOD_EVERY == 0:
            out.append(good[(i // GOOD_EVERY) % len(good)])
        out.append(path)
    return out


def _expect(path: str, kinds: dict[str, CorpusItem], refuse_ok: str | None) -> Expected:
    item = kinds.get(path)
    if item is None:
        return Expected(printed(path), True, "good")
    if item.expected == ERROR:
        return Expected(printed(path), False, item.name)
    return Expected(printed(path), refuse_ok is None, item.name, refuse_ok)


# Odd names go through stdin as well; a newline inside a name splits its line in two missing paths.
STDIN_KINDS = ("name_with_spaces", "name_not_utf8", "name_with_glob_characters", "name_with_newline")


@dataclass
class Plan:
    argv: list[str]
    stdin: bytes
    expected: list[Expected]


def plan_run(items: list[CorpusItem], good: list[str], refuse_ok: str | None = None) -> Plan:
    """argv: the corpus with good images interleaved, then `-`; stdin: the odd names and a good image."""
    kinds = {i.path: i for i in items}
    argv = _interleave([i.path for i in items], good)
    expected = [_expect(p, kinds, refuse_ok) for p in argv]
    listed = [i for i in items if i.name in STDIN_KINDS]
    stdin = b"".join(os.fsencode(p) + b"\n" for p in [good[0], *(i.path for i in listed)])
    expected.append(_expect(good[0], kinds, refuse_ok))
    for item in listed:
        if "\n" in item.path:
            expected += [Expected(printed(part), False, f"{item.name} (half)") for part in item.path.split("\n")]
        else:
            expected.append(_expect(item.path, kinds, refuse_ok))
    return Plan([*argv, "-"], stdin, expected)


def run_cnntool(args: list[str], stdin: bytes, cwd) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8:strict", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "cnntool", *args], input=stdin, capture_output=True, env=env,
                          cwd=cwd, timeout=900)


def check_run(proc: subprocess.CompletedProcess, expected: list[Expected], result_field: str) -> None:
    stderr = proc.stderr.decode("utf-8", "replace")
    assert "Traceback" not in stderr, stderr[-3000:]
    records = [json.loads(line) for line in proc.stdout.decode("utf-8").splitlines()]
    assert len(records) == len(expected), f"{len(records)} records for {len(expected)} inputs; stderr: {stderr[-1000:]}"
    for want, record in zip(expected, records):
        assert record["source"] == want.source, f"out of order at {want.what}: {record['source']!r}"
        error = record.get("error")
        if want.ok:
            assert error is None and result_field in record, f"{want.what}: {record}"
            continue
        assert error is not None, f"{want.what} should have failed: {record}"
        assert error["message"].strip() and "\n" not in error["message"], f"{want.what}: {error}"
        if want.error_type is not None:
            assert error["type"] == want.error_type, f"{want.what}: {error}"
    assert proc.returncode == 1, stderr[-1000:]


def _usable(items: list[CorpusItem]) -> list[CorpusItem]:
    return [i for i in items if i.skip is None]


@pytest.mark.parametrize("subcommand", predict_subcommands())
def test_corpus_through_subcommand(subcommand, corpus, good_images, tmp_path):
    reason = default_model_reason(subcommand)
    if reason:
        pytest.skip(reason)
    _, items = corpus
    items = _usable(items)
    if subcommand == "verify-face":
        _verify_face_corpus(items, good_images, tmp_path)
        return
    plan = plan_run(items, good_images["digits"] + good_images["faces"][:1])
    options = ["--batch-size", "4"] if has_option(subcommand, "--batch-size") else []
    proc = run_cnntool([subcommand, "--format", "jsonl", *options, *plan.argv], plan.stdin, tmp_path)
    check_run(proc, plan.expected, RESULT_FIELD.get(subcommand, "source"))


def _verify_face_corpus(items: list[CorpusItem], good_images, cwd) -> None:
    """Pair-shaped: the first image (a good face) against each of the others, one record per pair. The
    corpus has no faces in it, so its ok kinds (1x1 ones too) are refused as NoFaceError; the face variants
    match."""
    reference, *faces = good_images["faces"]
    plan = plan_run(items, faces, refuse_ok=NO_FACE)
    # --upsample 0: the astronaut's face is large, and the detector runs 4x faster.
    proc = run_cnntool(["verify-face", "--format", "jsonl", "--upsample", "0", reference, *plan.argv], plan.stdin, cwd)
    check_run(proc, plan.expected, RESULT_FIELD["verify-face"])
    records = [json.loads(line) for line in proc.stdout.decode().splitlines()]
    matches = [r for r in records if "error" not in r]
    assert matches and all(r["same"] and r["a"] == printed(reference) for r in matches)


def test_verify_face_bad_reference_fails_every_pair(corpus, good_images, tmp_path):
    """(bad, good) pairs: each record is an error naming the unreadable first image; nothing else is lost."""
    reason = default_model_reason("verify-face")
    if reason:
        pytest.skip(reason)
    _, items = corpus
    bad = next(i for i in _usable(items) if i.name == "truncated_jpeg")
    probes = good_images["faces"]
    proc = run_cnntool(["verify-face", "--format", "jsonl", "--upsample", "0", bad.path, *probes], b"", tmp_path)
    check_run(proc, [Expected(printed(bad.path), False, "truncated reference")] * len(probes), "distance")
