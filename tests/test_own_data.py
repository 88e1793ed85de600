"""Your own data, every task, the way README's "Train on your own data" does it: `cnntool data example TASK`
writes a tiny data set in the layout the task reads, `cnntool train` learns from it for two epochs, and the
weights it writes are used at once by the predict command and by `cnntool evaluate`. The validation figure
of every epoch is a real number, and the shipped epoch's is what `evaluate --split val` computes again."""

from __future__ import annotations

import json
import math
from pathlib import Path

import jsonschema
import pytest
from PIL import Image

from cnntool import weights
from cnntool.cli import main

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "docs" / "records.schema.json").read_text())

# task → (its primary validation figure, the predict command's extra options, an image of the example to predict)
TASKS = {
    "classify": ("accuracy", [], "test/0/0-000.png"),
    "localize": ("score", [], "test/000000.png"),
    "landmarks": ("score", [], "test/000000.png"),
    "detect": ("map50_95", [], "images/test/000000.png"),
}


def cli(args, capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        main([str(a) for a in args])
    out = capsys.readouterr()
    assert stop.value.code == 0, out.err
    assert "Traceback" not in out.err
    return out.out


def train(task: str, tmp_path: Path, capsys, *extra) -> tuple[Path, Path, list[dict]]:
    data, out = tmp_path / "data", tmp_path / "mine.safetensors"
    cli(["data", "example", task, "--out", data, "-q"], capsys)
    cli(["train", task, "--data", data, "--epochs", 2, "--out", out, "--run-dir", tmp_path / "run", "-q", *extra],
        capsys)
    history = json.loads(out.with_name("mine.metrics.json").read_text())["history"]
    return data, out, history


@pytest.mark.parametrize("task", sorted(TASKS))
def test_train_predict_evaluate_on_the_example_of_each_layout(task, tmp_path, capsys):
    primary, options, image = TASKS[task]
    data, out, history = train(task, tmp_path, capsys)
    figures = [epoch[f"val_{primary}"] for epoch in history]
    assert len(figures) == 2 and all(isinstance(v, float) and math.isfinite(v) for v in figures)

    meta = weights.read_metadata(out)
    assert meta["task"] == task and meta["metrics"]["heldout_kind"] == "test"  # the example has a test split
    best = max(range(2), key=lambda i: figures[i])  # the checkpoint validation chose is the one shipped
    report = json.loads(cli(["evaluate", task, "--weights", out, "--data", data, "--split", "val", "--format",
                             "json"], capsys))
    assert report[primary] == pytest.approx(figures[best], abs=1e-6)

    record = json.loads(cli([task, "--weights", out, data / image, "--format", "jsonl", *options], capsys))
    jsonschema.validate(record, SCHEMA)
    assert record["model"].endswith("@mine.safetensors") and "error" not in record
    assert (tmp_path / "run" / "curve.png").is_file()


def test_classify_writes_a_confusion_matrix_and_fine_tunes_a_frozen_backbone(tmp_path, capsys):
    data, out, _ = train("classify", tmp_path, capsys, "--model", "window-digits", "--init", "window-digits",
                         "--freeze-backbone")
    fresh = weights.read_metadata(out)["init"]["left_fresh"]
    embedded, _ = weights.load(weights.weights_dir() / "window-digits.safetensors")
    mine, _ = weights.load(out)
    kept = [k for k in mine if k not in fresh]
    assert fresh and kept and all((mine[k] == embedded[k]).all() for k in kept)  # only the new 4-class head learnt
    assert any(not (mine[k] == 0).all() for k in fresh)
    assert Image.open(tmp_path / "run" / "confusion_matrix.png").size[0] > 100


def test_verify_face_on_a_folder_per_identity(tmp_path, capsys):
    data, out, history = train("verify-face", tmp_path, capsys)
    assert all(0 < epoch["val_auc"] <= 1 for epoch in history)
    meta = weights.read_metadata(out)
    thresholds = meta["verification"]["thresholds"]
    assert all(math.isfinite(entry["threshold"]) for entry in thresholds.values())
    a, b = sorted((data / "0").iterdir())[:2]
    record = json.loads(cli(["verify-face", "--weights", out, a, b, "--format", "jsonl"], capsys))
    jsonschema.validate(record, SCHEMA)
    assert isinstance(record["same"], bool) and record["threshold"] == pytest.approx(
        thresholds[meta["verification"]["metric"]]["threshold"], abs=1e-4)
    assert 0 <= record["p_same"] <= 1  # the probability fitted with the thresholds after training
    report = json.loads(cli(["evaluate", "verify-face", "--weights", out, "--data", data, "--format", "json"], capsys))
    assert all(0 < figures["auc"] <= 1 for figures in report["metrics"].values())
    assert (tmp_path / "run" / "roc_curve.png").is_file()


def test_a_sliding_window_detector_trains_its_window_classifier(tmp_path, capsys):
    data, out, _ = train("detect", tmp_path, capsys, "--model", "conv-sliding-windows-digits")
    meta = weights.read_metadata(out)
    assert meta["task"] == "classify" and meta["detector"] == "conv-sliding-windows-digits"
    assert "background" in meta["classes"] and 0 <= meta["metrics"]["detector_heldout"]["map50"] <= 1
    record = json.loads(cli(["detect", "--weights", out, data / "images/test/000000.png", "--format", "jsonl"], capsys))
    assert record["model"].startswith("conv-sliding-windows-digits@") and isinstance(record["detections"], list)


# --- awkward data: one line and exit 2 before any training, or a warning and the run goes on -----------------

def refused(args, capsys) -> str:
    with pytest.raises(SystemExit) as stop:
        main([str(a) for a in args])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def test_one_class_is_refused(tmp_path, capsys):
    (tmp_path / "only").mkdir()
    Image.new("L", (28, 28)).save(tmp_path / "only" / "a.png")
    assert "two or more class folders" in refused(["train", "classify", "--data", tmp_path, "--out",
                                                   tmp_path / "w.safetensors"], capsys)


def test_a_box_outside_its_image_is_refused(tmp_path, capsys):
    cli(["data", "example", "localize", "--out", tmp_path / "data", "-q"], capsys)
    entries = json.loads((tmp_path / "data" / "train.json").read_text())
    first = next(e for e in entries if e.get("box"))
    first["box"] = [first["box"][0], first["box"][1], 500.0, 500.0]
    (tmp_path / "data" / "train.json").write_text(json.dumps(entries))
    assert "outside the 64×64 image" in refused(["train", "localize", "--data", tmp_path / "data", "--out",
                                                 tmp_path / "w.safetensors"], capsys)


def test_too_few_images_per_identity_to_validate_is_one_line(tmp_path, capsys):
    for who in "abc":
        (tmp_path / who).mkdir()
        Image.new("L", (28, 28), ord(who)).save(tmp_path / who / "one.png")
    assert "verification figures need" in refused(["train", "verify-face", "--data", tmp_path, "--out",
                                                   tmp_path / "w.safetensors"], capsys)


def test_non_ascii_class_names_and_bad_files_in_a_training_tree(tmp_path, capsys):
    for name, value in (("chat_été", 40), ("犬", 220)):
        (tmp_path / "data" / name).mkdir(parents=True)
        for i in range(8):
            Image.new("L", (28, 28), value + i).save(tmp_path / "data" / name / f"{i}.png")
    (tmp_path / "data" / "犬" / "tiny.png").parent.mkdir(exist_ok=True)
    Image.new("L", (1, 1)).save(tmp_path / "data" / "犬" / "tiny.png")
    (tmp_path / "data" / "犬" / "zero.jpg").write_bytes(b"")
    with pytest.raises(SystemExit) as stop:
        main(["train", "classify", "--data", str(tmp_path / "data"), "--model", "lenet5", "--epochs", "1", "--out",
              str(tmp_path / "w.safetensors")])
    err = capsys.readouterr().err
    assert stop.value.code == 0 and "2 unreadable image(s) left out" in err
    assert weights.read_metadata(tmp_path / "w.safetensors")["classes"] == ["chat_été", "犬"]
