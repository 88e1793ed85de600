"""Honest on real photos: a digit model reads print on grey paper (polarity from the image's own two tones,
contrast stretched), and withholds its answer for a photo that is not a digit (its domain check)."""

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from PIL import Image

from cnntool import weights
from cnntool.preprocess import ground_is_light, stretched

CNNTOOL = [sys.executable, "-m", "cnntool"]
SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "docs" / "records.schema.json").read_text())


def _page(ground: int, ink: int) -> np.ndarray:
    img = np.full((40, 40), ground, np.uint8)
    img[10:30, 17:23] = ink  # a stroke
    return img


@pytest.mark.parametrize("ground, ink, light", [
    (120, 60, True),  # dark print on grey paper: border mean 120 < 127.5, yet the ground is the lighter tone
    (250, 10, True),  # ink on white paper
    (0, 255, False),  # a white stroke on black, as the training digits
    (140, 220, False),  # light chalk on a mid-grey board
])
def test_the_ground_is_the_frames_tone_whatever_its_level(ground, ink, light):
    assert ground_is_light(_page(ground, ink)) is light


def test_only_low_contrast_images_are_stretched():
    faint = Image.fromarray(_page(120, 60))
    spread = np.asarray(stretched(faint))
    assert spread.min() == 0 and spread.max() == 255
    full = Image.fromarray(_page(0, 255))
    assert stretched(full) is full  # already spans the range: left alone


def test_printed_digits_on_grey_paper_are_read():
    """The 25 printed digits of OpenCV's sudoku.png photo (never trained on): the border-mean rule read 2 of
    11 such crops right; the two-tone ground and the contrast stretch read every one."""
    from cnntool.engine.evaluate import EvalOptions
    from cnntool.tasks.classify.evaluate import ClassifyEvaluation, evaluate

    report = evaluate(ClassifyEvaluation(data="sudoku-digits", split="all",
                                         common=EvalOptions(model="lenet5-digits", weights=None, threads=1)))
    assert report["images"] == 25 and report["accuracy"] >= 24 / 25
    assert report["out_of_domain"] == 0


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    skimage_data = pytest.importorskip("skimage.data", reason="test photos need scikit-image: pip install scikit-image")
    folder = tmp_path_factory.mktemp("photos")
    for name in ("chelsea", "astronaut", "coffee", "rocket"):
        Image.fromarray(getattr(skimage_data, name)()).save(folder / f"{name}.png")
    return folder


def test_the_default_digit_model_gives_no_answer_for_photos(photos, digit_png):
    proc = subprocess.run([*CNNTOOL, "classify", "--format", "jsonl", str(photos), digit_png], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    records = {r["source"].rsplit("/", 1)[-1]: r for r in map(json.loads, proc.stdout.splitlines())}
    for name in ("chelsea.png", "astronaut.png", "coffee.png", "rocket.png"):
        record = records[name]
        jsonschema.validate(record, SCHEMA)
        assert record["in_domain"] is False and record["label"] is None, record
        assert len(record["predictions"]) == 5  # the raw scores stay
    digit = records["seven.png"]
    assert digit["in_domain"] is True and digit["label"] == "7" == digit["predictions"][0]["label"]
    assert "4 of 5 image(s) do not look like what the model was trained on" in proc.stderr


def test_the_shipped_domain_check_states_its_figures_and_command():
    meta = weights.read_metadata(weights.resolve("lenet5-digits"))
    flagged = meta["domain"]["flagged"]
    assert flagged["validation"] <= 0.01 and flagged["ood_photos"] >= 0.95
    assert meta["domain"]["command"].startswith("cnntool train domain")
    assert "domain_threshold" in meta["decode"] and meta["input"]["contrast"] == "stretch"


def test_train_domain_writes_a_gate_that_classify_uses(tmp_path, digit_png):
    out = tmp_path / "gated.safetensors"
    proc = subprocess.run([*CNNTOOL, "train", "domain", "--weights", "lenet5-digits", "--data", "digits", "--steps",
                           "20", "--photos", "200", "--threads", "1", "--out", str(out)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    meta = weights.read_metadata(out)
    assert set(meta["domain"]["flagged"]) == {"validation", "held-out"}
    assert "flags 0.005 of the validation split (1000 images)" == meta["domain"]["threshold_rule"]
    record = json.loads(subprocess.run([*CNNTOOL, "classify", "--weights", str(out), "--format", "jsonl", digit_png],
                                       capture_output=True, text=True, timeout=120).stdout)
    assert isinstance(record["in_domain"], bool) and 0 <= record["domain_score"] <= 1
    refused = subprocess.run([*CNNTOOL, "train", "domain", "--weights", str(out), "--data", "digits", "--out", str(out)],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2  # never written over its own input


def test_the_fashion_model_answers_for_a_product_shot_not_for_photos(photos, tmp_path):
    from cnntool.data.builtin import load_fashion_mnist

    images, labels = load_fashion_mnist("test")
    Image.fromarray(images[0]).save(tmp_path / "item.png")
    proc = subprocess.run([*CNNTOOL, "classify", "--model", "fashion-resnet-small", "--format", "jsonl",
                           str(tmp_path / "item.png"), str(photos / "chelsea.png"), str(photos / "coffee.png")],
                          capture_output=True, text=True, timeout=120)
    item, *others = map(json.loads, proc.stdout.splitlines())
    assert item["in_domain"] is True and item["label"] == item["predictions"][0]["label"]
    assert all(r["in_domain"] is False and r["label"] is None for r in others)


def test_a_landmark_model_gets_a_domain_check_and_its_records_say_so(tmp_path):
    """`train domain` on the corner model's own kind of data (document scenes): its records gain in_domain and
    domain_score, and --rectify leaves an image the check calls empty alone."""
    data, out = tmp_path / "documents", tmp_path / "corners.safetensors"
    made = subprocess.run([*CNNTOOL, "data", "documents", "--out", str(data), "--n", "40", "--val", "20", "--test",
                           "10", "--quiet"], capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    proc = subprocess.run([*CNNTOOL, "train", "domain", "--weights", "landmarker-corners", "--data", str(data),
                           "--texture", "0", "--steps", "10", "--photos", "200", "--threads", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert weights.read_metadata(out)["domain"]["threshold_rule"] == "flags 0.005 of the validation split (20 images)"
    scene = sorted((data / "test").iterdir())[0]
    run = subprocess.run([*CNNTOOL, "landmarks", "--weights", str(out), "--format", "jsonl", str(scene)],
                         capture_output=True, text=True, timeout=120)
    record = json.loads(run.stdout)
    jsonschema.validate(record, SCHEMA)
    assert isinstance(record["in_domain"], bool) and 0 <= record["domain_score"] <= 1 and len(record["points"]) == 4
    report = json.loads(subprocess.run([*CNNTOOL, "evaluate", "landmarks", "--weights", str(out), "--data", str(data),
                                        "--split", "test", "--format", "json"], capture_output=True, text=True,
                                       timeout=120).stdout)
    assert 0 <= report["out_of_domain"] <= 1
