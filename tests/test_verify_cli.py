"""verify-face from the command line on real photos: same person, different people, no face, bad inputs,
1:N with a gallery, calibration, and the embedded one-shot model (--no-detect)."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnntool import cli, weights

skimage_data = pytest.importorskip("skimage.data", reason="scikit-image supplies the test photos")
MESSI = Path("/usr/share/doc/opencv-doc/examples/data/messi5.jpg")
FAST = ["--upsample", "0", "--threads", "1", "-f", "jsonl", "-q"]  # every test face is ≥ 100 px


def _crop(array, box, size):
    return Image.fromarray(array).convert("RGB").crop(box).resize((size, size), Image.BILINEAR)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """Two crops at two scales of the astronaut (Eileen Collins), the cameraman, a photo without a face,
    and files that are not images."""
    d = tmp_path_factory.mktemp("faces")
    astronaut, camera = skimage_data.astronaut(), skimage_data.camera()
    paths = {
        "astro_a": _crop(astronaut, (100, 20, 340, 260), 240),
        "astro_b": _crop(astronaut, (120, 30, 320, 230), 300),
        "camera": _crop(camera, (130, 60, 320, 250), 300),
        "coffee": Image.fromarray(skimage_data.coffee()).resize((200, 133)),
    }
    out = {}
    for name, img in paths.items():
        out[name] = d / f"{name}.jpg"
        img.save(out[name], quality=95)
    out["broken"] = d / "broken.jpg"
    out["broken"].write_bytes(b"not a jpeg at all")
    out["missing"] = d / "missing.jpg"
    return out


def run(argv, capsys, jsonl=True):
    """In-process (the face models load once per test session): exit code, records, stderr."""
    try:
        cli.main([str(a) for a in argv])
        code = 0
    except SystemExit as exc:
        code = exc.code
    captured = capsys.readouterr()
    out = [json.loads(line) for line in captured.out.splitlines() if line.strip()] if jsonl else captured.out
    return code, out, captured.err


def test_two_crops_of_one_face_are_the_same_person(photos, capsys):
    code, records, _ = run(["verify-face", photos["astro_a"], photos["astro_b"], *FAST], capsys)
    assert code == 0
    (r,) = records
    assert r["same"] is True and r["distance"] < 0.6 and r["threshold"] == 0.6 and r["metric"] == "euclidean"
    assert (r["a"], r["b"], r["width"], r["height"]) == (str(photos["astro_a"]), str(photos["astro_b"]), 300, 300)


def test_two_people_are_different_and_compare_is_the_default(photos, capsys):
    code, records, _ = run(["verify-face", "compare", photos["astro_a"], photos["camera"], *FAST], capsys)
    assert code == 0 and records[0]["same"] is False and records[0]["distance"] > 0.6


@pytest.mark.skipif(not MESSI.is_file(), reason="opencv-doc's messi5.jpg is not installed")
def test_messi_two_scales_same_and_not_the_astronaut(tmp_path, photos, capsys):
    messi = np.asarray(Image.open(MESSI).convert("RGB"))
    a, b = tmp_path / "messi_a.png", tmp_path / "messi_b.png"
    _crop(messi, (171, 43, 311, 183), 350).save(a)
    _crop(messi, (181, 58, 301, 178), 260).save(b)
    code, records, _ = run(["verify-face", a, b, photos["astro_a"], *FAST], capsys)
    assert code == 0 and [r["same"] for r in records] == [True, False]


def test_no_face_and_bad_inputs_are_error_records_exit_1(photos, capsys):
    argv = ["verify-face", photos["astro_a"], photos["coffee"], photos["broken"], photos["missing"], photos["astro_b"]]
    code, records, _ = run([*argv, *FAST], capsys)
    assert code == 1
    errors = [(Path(r["source"]).name, r["error"]["type"]) for r in records if "error" in r]
    assert errors == [("coffee.jpg", "NoFaceError"), ("broken.jpg", "ImageError"), ("missing.jpg", "MissingSource")]
    assert "no face found" in records[0]["error"]["message"]
    assert records[-1]["same"] is True  # the good pair still done


def test_usage_errors_exit_2(photos, capsys):
    assert run(["verify-face", photos["astro_a"], *FAST], capsys)[0] == 2
    assert run(["verify-face", photos["astro_a"], photos["astro_b"], "--metric", "manhattan", *FAST], capsys)[0] == 2
    assert run(["verify-face", photos["astro_a"], photos["astro_b"], "--metric", "cosine", *FAST], capsys)[0] == 2


def test_gallery_names_the_person_or_unknown(tmp_path, photos, capsys):
    gallery = tmp_path / "people"
    (gallery / "eileen").mkdir(parents=True)
    Image.open(photos["astro_a"]).save(gallery / "eileen" / "1.jpg")
    Image.open(photos["coffee"]).save(gallery / "coffee_1.jpg")  # no face: skipped with a warning
    cache = tmp_path / "gallery.safetensors"
    argv = ["verify-face", "--gallery", gallery, "--gallery-cache", cache, photos["astro_b"], photos["camera"]]
    code, records, _ = run([*argv, "--upsample", "0", "--threads", "1", "-f", "jsonl"], capsys)
    assert code == 0 and cache.is_file()
    assert [r["identity"] for r in records] == ["eileen", "unknown"]
    assert records[1]["nearest"] == "eileen" and records[1]["distance"] > records[1]["threshold"]


def test_calibration_with_the_embedded_model_and_no_detect(tmp_path, capsys):
    """The one-shot model on Fashion-MNIST crops (--no-detect): calibrate from an identity folder, then
    compare with that calibration."""
    from cnntool.data.builtin import load_fashion_mnist

    images, labels = load_fashion_mnist("test")
    root = tmp_path / "ids"
    for c in (7, 8, 9):
        (root / str(c)).mkdir(parents=True)
        for i in np.flatnonzero(labels == c)[:6]:
            Image.fromarray(images[i]).save(root / str(c) / f"{i}.png")
    out = tmp_path / "calibration.json"
    code, report, _ = run(["verify-face", "calibrate", "--model", "oneshot-fashion", "--no-detect", "--data", root,
                           "--metric", "euclidean", "--out", out, "--format", "json"], capsys, jsonl=False)
    assert code == 0 and json.loads(report)["metrics"]["euclidean"]["pairs"] == 18 * 17 // 2
    calibration = json.loads(out.read_text())
    assert calibration["metric"] == "euclidean" and 0 < calibration["thresholds"]["euclidean"]["threshold"] < 2
    a, b = sorted((root / "7").iterdir())[:2]
    c = sorted((root / "8").iterdir())[0]
    code, records, _ = run(["verify-face", "--model", "oneshot-fashion", "--no-detect", "--calibration", out,
                            a, b, c, "-f", "jsonl"], capsys)
    expected = pytest.approx(calibration["thresholds"]["euclidean"]["threshold"], abs=1e-4)  # records round to 4 places
    assert code == 0 and all(r["threshold"] == expected for r in records)
    assert records[0]["distance"] < records[1]["distance"]
    # The calibration also fitted p_same; the records carry it, the nearer pair the likelier.
    fit = calibration["thresholds"]["euclidean"]["probability"]
    assert fit["pairs"] == 18 * 17 // 2 and fit["prior"] == "1:1" and fit["slope"] > 0
    assert 1 >= records[0]["p_same"] > records[1]["p_same"] >= 0
    # The shipped file's calibration predates p_same: the field is there, and null.
    code, records, _ = run(["verify-face", "--model", "oneshot-fashion", "--no-detect", a, b, "-f", "jsonl"], capsys)
    assert code == 0 and records[0]["p_same"] is None


def test_embedded_one_shot_model_metadata():
    """The shipped figures. The issue's goal (AUC >= 0.97 on unseen identities) is NOT met: the run reached
    0.785 (weights/README.md says why); these floors guard what was shipped and documented."""
    meta = weights.read_metadata(weights.resolve("oneshot-fashion"))
    heldout = meta["metrics"]["heldout"]
    assert meta["unseen_identities"] == ["Sneaker", "Bag", "Ankle boot"]
    assert not set(meta["unseen_identities"]) & set(meta["classes"])  # never trained on
    assert heldout["auc"] >= 0.78 and heldout["eer"] <= 0.33 and heldout["pairs"] > 1_000_000
    table = meta["notes"]["objective_comparison"]
    assert set(table) == {"triplet", "contrastive", "similarity"}
    assert table["triplet"]["unseen_auc"] == max(r["unseen_auc"] for r in table.values())  # the one shipped
    assert meta["verification"]["metric"] == "euclidean" and meta["verification"]["thresholds"]["euclidean"]["threshold"] > 0


def test_paths_on_stdin_stream_one_record_per_probe(tmp_path):
    """`-`: the first path read is the reference; each later path gets its record while stdin stays open."""
    import subprocess
    import sys
    import threading

    from cnntool.data.builtin import load_fashion_mnist

    images, _ = load_fashion_mnist("test")
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(images[i]).save(paths[-1])
    proc = subprocess.Popen([sys.executable, "-m", "cnntool", "verify-face", "--model", "oneshot-fashion", "--no-detect",
                             "-f", "jsonl", "--threads", "1", "--device", "auto", "-"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(90, proc.kill)  # a batching regression would block readline forever
    watchdog.start()
    try:
        proc.stdin.write(f"{paths[0]}\n{paths[1]}\n")
        proc.stdin.flush()
        first = json.loads(proc.stdout.readline())  # arrives before stdin is closed
        assert (first["a"], first["b"]) == (str(paths[0]), str(paths[1]))
        proc.stdin.write(f"{paths[2]}\n")
        out, err = proc.communicate(timeout=60)
    finally:
        watchdog.cancel()
        proc.kill()
    assert proc.returncode == 0, err
    (second,) = [json.loads(line) for line in out.splitlines()]
    assert second["b"] == str(paths[2])
