"""`cnntool detect` end to end with the embedded detector, and what its weights' metadata promises."""

import json
import subprocess
import sys

import numpy as np
import pytest

from cnntool import weights
from cnntool.data import scenes
from cnntool.data.builtin import photo_paths

CNNTOOL = [sys.executable, "-m", "cnntool"]
# The goal of the detect issue, on held-out scenes (objects and photos never trained on).
GOAL = {"map50": 0.97, "map50_95": 0.80}


@pytest.fixture(scope="module")
def embedded():
    try:
        return weights.resolve("yolo-digits")
    except Exception:
        pytest.skip("weights/yolo-digits.safetensors not trained yet")


@pytest.fixture(scope="module")
def held_out_scene(tmp_path_factory):
    """A held-out test scene (objects and background photo never trained on) as a PNG, with its truth."""
    config = scenes.SceneConfig(size=96, max_objects=4, empty_fraction=0.0, min_scale=0.25, max_scale=0.5)
    scene = scenes.make_scene(scenes.scene_rng(7, "test", 0), backgrounds=scenes.background_paths("test"),
                              pool=scenes.object_pool("digits", "test"), config=config)
    path = tmp_path_factory.mktemp("scene") / "scene.png"
    scene.image.save(path)
    return str(path), scene.objects


def test_detect_on_a_real_photo_and_a_corrupt_file(embedded, held_out_scene, tmp_path):
    scene_path, truth = held_out_scene
    photo = str(photo_paths()[0])
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    proc = subprocess.run([*CNNTOOL, "detect", "--model", "yolo-digits", "--format", "jsonl", "--threads", "2",
                           "--conf", "0.3", "--save", str(tmp_path / "drawn"), scene_path, photo, str(corrupt)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    scene_rec, photo_rec, bad = (json.loads(line) for line in proc.stdout.splitlines())
    assert bad["source"].endswith("corrupt.png") and "error" in bad and "detections" not in bad
    for record in (scene_rec, photo_rec):
        assert record["task"] == "detect" and record["model"] == "yolo-digits"
        for d in record["detections"]:
            x1, y1, x2, y2 = d["box"]
            assert 0 <= x1 < x2 <= record["width"] and 0 <= y1 < y2 <= record["height"]
            assert d["label"] in "0123456789" and 0.3 <= d["score"] <= 1
    assert (tmp_path / "drawn" / "scene.png").is_file()
    # The held-out scene's digits are found: most true boxes matched by a detection of their label at
    # IoU ≥ 0.5 (the shipped detector's held-out mAP50 is below 1, so not necessarily every one).
    assert _matched(scene_rec["detections"], truth) >= len(truth) / 2, (truth, scene_rec["detections"])


def test_detect_with_tta_keeps_the_record_shape(embedded, held_out_scene):
    scene_path, truth = held_out_scene
    proc = subprocess.run([*CNNTOOL, "detect", "--model", "yolo-digits", "--format", "jsonl", "--threads", "2",
                           "--conf", "0.3", "--tta", scene_path], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    (record,) = (json.loads(line) for line in proc.stdout.splitlines())
    assert set(record) == {"source", "task", "model", "width", "height", "detections"}
    for d in record["detections"]:  # pooled over the scales, still in original pixels and NMS'd
        assert set(d) == {"label", "score", "box"} and 0 <= d["box"][0] < d["box"][2] <= record["width"]
    assert _matched(record["detections"], truth) >= len(truth) / 2, (truth, record["detections"])


def test_multi_label_adds_second_readings_of_found_objects(embedded, held_out_scene):
    scene_path, _ = held_out_scene
    runs = {}
    for flag in ([], ["--multi-label"]):
        proc = subprocess.run([*CNNTOOL, "detect", "--model", "yolo-digits", "--format", "jsonl", "--threads", "2",
                               "--conf", "0.001", *flag, scene_path], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        (runs[bool(flag)],) = (json.loads(line) for line in proc.stdout.splitlines())
    one, every = runs[False]["detections"], runs[True]["detections"]
    assert set(runs[True]) == set(runs[False]) and all(set(d) == {"label", "score", "box"} for d in every)
    # At this low threshold some object found with one label is also reported with another.
    second = [d for d in every if any(o["label"] != d["label"] and _iou(o["box"], d["box"]) >= 0.5 for o in one)]
    assert second and len(every) > len(one)


def test_raw_writes_the_lecture_y_volume_whose_best_cells_are_the_detections(embedded, held_out_scene):
    """--raw: y is S×S×A×(5 + C) = 12×12×1×15, [p_c, b_x, b_y, b_h, b_w, c_1 …] in cell units; every detection
    is a cell of it read back into pixels (the scene is 96×96: input pixels are the scene's)."""
    scene_path, _ = held_out_scene
    proc = subprocess.run([*CNNTOOL, "detect", "--model", "yolo-digits", "--format", "jsonl", "--raw", scene_path],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    y = np.array(record["y"])
    assert record["y_shape"] == [12, 12, 1, 15] == list(y.shape)
    assert np.allclose(y[..., 5:].sum(-1), 1, atol=1e-3) and ((0 <= y[..., 0]) & (y[..., 0] <= 1)).all()
    row, col = np.indices((12, 12))
    cx, cy = (col[..., None] + y[..., 1]) * 8, (row[..., None] + y[..., 2]) * 8
    h, w = y[..., 3] * 8, y[..., 4] * 8
    boxes = np.clip(np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], -1).reshape(-1, 4), 0, 96)
    assert record["detections"]
    for d in record["detections"]:  # detections' boxes are clipped to the image, as these
        assert np.abs(boxes - d["box"]).max(1).min() < 0.05
    refused = subprocess.run([*CNNTOOL, "detect", "--model", "yolo-digits", "--raw", "--tta", scene_path],
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "--raw" in refused.stderr


def _matched(found, truth):
    """How many true objects a detection of their label covers at IoU ≥ 0.5."""
    return sum(any(d["label"] == o["label"] and _iou(d["box"], o["box"]) >= 0.5 for d in found) for o in truth)


def test_class_filter_and_usage_errors(embedded, held_out_scene):
    scene_path, _ = held_out_scene
    proc = subprocess.run([*CNNTOOL, "detect", "-m", "yolo-digits", "--classes", "seven", scene_path],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "unknown class 'seven'" in proc.stderr


def test_embedded_detector_metadata_records_held_out_figures_and_command(embedded):
    meta = weights.read_metadata(embedded)
    assert meta["task"] == "detect" and meta["model"] == "yolo-digits" and meta["classes"] == list("0123456789")
    assert meta["command"].startswith("cnntool train detect ")
    heldout = meta["metrics"]["heldout"]
    assert set(heldout["per_class"]) == set("0123456789")
    assert embedded.stat().st_size < 5_000_000
    augmented = meta["metrics"]["heldout_tta"]  # the same split under --tta, recorded by `train detect --tta`
    assert set(augmented["per_class"]) == set("0123456789")
    # The goal is read on COCO mAP as Ultralytics' validation scores it (every class that clears the
    # threshold kept per box); the figures with one label per box are recorded beside it.
    for figures in (heldout, augmented):
        assert set(figures["one_label_per_box"]) == {"map50_95", "map50", "map75", "mar100"}
    assert {k: heldout[k] for k in GOAL if heldout[k] < GOAL[k]} == {}, f"held-out figures below the goal {GOAL}"


def _iou(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_train_detect_tta_records_what_evaluate_tta_gives(tmp_path, capsys):
    """`train detect --tta` stores held-out figures both ways; `evaluate detect --tta` on the written weights
    gives the stored TTA figures again (the training's and the command's TTA are one code path)."""
    from cnntool.cli import main

    data, out = tmp_path / "scenes", tmp_path / "tiny.safetensors"
    scenes.write_dataset(data, {"train": 8, "val": 2, "test": 6}, seed=0,
                         config=scenes.SceneConfig(size=96, max_objects=4, min_scale=0.25, max_scale=0.5))
    for args in (["train", "detect", "--data", str(data), "--out", str(out), "--kwarg", "widths=[8,16,32]",
                  "--epochs", "1", "--batch-size", "4", "--threads", "1", "--tta", "--quiet"],
                 ["evaluate", "detect", "--data", str(data), "--weights", str(out), "--tta", "--format", "json",
                  "--threads", "1"]):
        with pytest.raises(SystemExit) as stop:
            main(args)
        assert stop.value.code == 0
    report = json.loads(capsys.readouterr().out)
    stored = weights.read_metadata(out)["metrics"]
    assert set(stored["heldout_tta"]) == set(stored["heldout"])
    for key in ("map50_95", "map50", "mar100"):
        assert report[key] == pytest.approx(stored["heldout_tta"][key], abs=1e-6), key
