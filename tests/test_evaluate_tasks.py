"""`cnntool evaluate localize`, `evaluate landmarks` and `evaluate detect` on small generated data sets: the
command's figures are the ones run_eval gives through the training task's held-out path on the same data, a
missing split is one error line with exit 2, and the table format prints the headline figures."""

import json

import pytest

LOCALIZE_KEYS = ("presence_accuracy", "class_accuracy", "mean_iou", "iou50_accuracy", "objects", "images")
LANDMARKS_KEYS = ("nme", "within_tolerance", "points", "images")


def run_cli(args, capsys):
    """The command line in this process: (exit code, stdout, stderr)."""
    from cnntool.cli import main

    with pytest.raises(SystemExit) as stop:
        main(args)
    out = capsys.readouterr()
    return stop.value.code, out.out, out.err


@pytest.fixture(scope="module")
def scenes_dir(tmp_path_factory):
    """30 held-out scenes and 1 training scene; no val split."""
    from cnntool.data import scenes

    root = tmp_path_factory.mktemp("scenes")
    scenes.write_dataset(root, {"train": 1, "test": 30}, seed=0, config=scenes.SceneConfig())
    return root


@pytest.fixture(scope="module")
def documents_dir(tmp_path_factory):
    from cnntool.data import documents

    root = tmp_path_factory.mktemp("documents")
    documents.write_dataset(root, {"train": 1, "val": 1, "test": 30}, seed=0, config=documents.DocumentConfig())
    return root


def test_evaluate_localize_gives_the_training_held_out_figures(scenes_dir, capsys):
    from cnntool.engine.evaluate import run_eval
    from cnntool.loader import load_model
    from cnntool.tasks.localize.train import LocalizeConfig, LocalizeTask

    code, out, _ = run_cli(["evaluate", "localize", "--data", str(scenes_dir), "--format", "json", "--threads", "1"],
                           capsys)
    assert code == 0
    report = json.loads(out)
    loaded = load_model(None, None, task="localize")
    task = LocalizeTask(LocalizeConfig(data=str(scenes_dir), loss=loaded.metadata.get("loss", "modern")))
    task.threshold = loaded.spec.decode.get("threshold", 0.5)  # the file's own, as its figures are
    direct = run_eval(loaded.module, task.prepare(0).heldout, task)
    assert report["task"] == "localize" and report["model"] == loaded.name
    assert "test split" in report["data"] and "30 images" in report["data"]
    assert report["images"] == direct.images == 30
    for key in LOCALIZE_KEYS:
        assert report[key] == pytest.approx(direct.metrics[key], rel=1e-9), key
    assert report["loss"] == pytest.approx(direct.loss, rel=1e-6)
    assert report["images_per_second"] > 0

    code, out, _ = run_cli(["evaluate", "localize", "--data", str(scenes_dir), "--threads", "1"], capsys)
    assert code == 0 and "presence accuracy" in out and "mean IoU" in out

    code, out, _ = run_cli(["evaluate", "localize", "--data", str(scenes_dir), "--tta", "--format", "json",
                            "--threads", "1"], capsys)
    averaged = json.loads(out)
    assert code == 0 and "four copies shifted diagonally by 5%" in averaged["data"] and averaged["images"] == 30
    assert all(0.0 <= averaged[key] <= 1.0 for key in LOCALIZE_KEYS[:4])


def test_evaluate_localize_missing_split_is_one_line_exit_2(scenes_dir, capsys):
    code, out, err = run_cli(["evaluate", "localize", "--data", str(scenes_dir), "--split", "val"], capsys)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "no 'val' split" in lines[0] and "has: test, train" in lines[0]


def test_evaluate_landmarks_gives_the_training_held_out_figures(documents_dir, capsys):
    from cnntool.engine.evaluate import run_eval
    from cnntool.loader import load_model
    from cnntool.tasks.landmarks.train import LandmarksConfig, LandmarksTask

    loaded = load_model(None, None, task="landmarks")
    recorded = loaded.metadata.get("metrics", {}).get("heldout", {}).get("tolerance", 0.02)
    loss = loaded.metadata.get("loss", "l1")

    def direct(tolerance):
        task = LandmarksTask(LandmarksConfig(data=str(documents_dir), loss=loss, tolerance=tolerance))
        return run_eval(loaded.module, task.prepare(0).heldout, task)

    args = ["evaluate", "landmarks", "--data", str(documents_dir), "--format", "json", "--threads", "1"]
    code, out, _ = run_cli(args, capsys)
    assert code == 0
    report = json.loads(out)
    expected = direct(recorded)
    assert report["task"] == "landmarks" and report["model"] == loaded.name
    assert "test split" in report["data"] and report["tolerance"] == recorded
    for key in LANDMARKS_KEYS:
        assert report[key] == pytest.approx(expected.metrics[key], rel=1e-9), key
    assert report["loss"] == pytest.approx(expected.loss, rel=1e-6)

    code, out, _ = run_cli([*args, "--tolerance", "0.05"], capsys)
    wider = json.loads(out)
    assert code == 0 and wider["tolerance"] == 0.05
    assert wider["within_tolerance"] == pytest.approx(direct(0.05).metrics["within_tolerance"], rel=1e-9)
    assert wider["nme"] == pytest.approx(report["nme"], rel=1e-9)

    code, out, _ = run_cli(["evaluate", "landmarks", "--data", str(documents_dir), "--split", "val", "--threads", "1"],
                           capsys)
    assert code == 0 and "NME" in out and "1 images" in out


def test_evaluate_landmarks_missing_split_is_one_line_exit_2(tmp_path, capsys):
    (tmp_path / "test.json").write_text("[]\n")
    code, out, err = run_cli(["evaluate", "landmarks", "--data", str(tmp_path), "--split", "train"], capsys)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "no 'train' split" in lines[0] and "has: test" in lines[0]
    code, _, err = run_cli(["evaluate", "landmarks", "--data", str(tmp_path / "missing")], capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no 'test' split" in err


@pytest.fixture(scope="module")
def detect_scenes_dir(tmp_path_factory):
    """20 held-out scenes of up to four digits (as yolo-digits' data) and 1 training scene."""
    from cnntool.data import scenes

    root = tmp_path_factory.mktemp("detect-scenes")
    config = scenes.SceneConfig(size=96, max_objects=4, empty_fraction=0.1, min_scale=0.25, max_scale=0.5)
    scenes.write_dataset(root, {"train": 1, "test": 20}, seed=0, config=config)
    return root


def test_evaluate_detect_gives_the_training_held_out_figures(detect_scenes_dir, capsys):
    from cnntool.engine.evaluate import run_eval
    from cnntool.loader import load_model
    from cnntool.tasks.detect.train import DetectConfig, DetectTask

    code, out, _ = run_cli(["evaluate", "detect", "--data", str(detect_scenes_dir), "--model", "yolo-digits",
                            "--format", "json", "--threads", "1"], capsys)
    assert code == 0
    report = json.loads(out)
    loaded = load_model("yolo-digits", None, task="detect")
    task = DetectTask.for_loaded(loaded, DetectConfig(data=str(detect_scenes_dir)))
    direct = run_eval(loaded.module, task.prepare(0).heldout, task)
    assert report["task"] == "detect" and "test split, 20 images" in report["data"]
    for key in ("map50_95", "map50", "map75", "mar100"):
        assert report[key] == pytest.approx(direct.metrics[key], rel=1e-9), key
    assert set(report["per_class"]) <= set("0123456789") and report["map50"] > 0.5

    code, out, _ = run_cli(["evaluate", "detect", "--data", str(detect_scenes_dir), "--model", "yolo-digits",
                            "--threads", "1"], capsys)
    assert code == 0 and "mAP50-95" in out and "recall@100" in out


def test_evaluate_detect_tta_scores_what_detect_tta_finds(detect_scenes_dir, capsys):
    """The evaluation's TTA (input size through the loss path, larger sizes added) pools the same
    candidates as the prediction pipeline's (detect.multi_scale over every scale)."""
    import torch

    from cnntool.loader import load_model
    from cnntool.tasks.detect import predict as detect
    from cnntool.tasks.detect.metrics import DetectMetrics, DetectOutputs
    from cnntool.tasks.detect.train import DetectConfig, DetectTask

    code, out, _ = run_cli(["evaluate", "detect", "--data", str(detect_scenes_dir), "--model", "yolo-digits",
                            "--tta", "--format", "json", "--threads", "1"], capsys)
    assert code == 0
    report = json.loads(out)
    assert "test-time augmentation at scales 1.0, 1.17, 1.33" in report["data"]
    loaded = load_model("yolo-digits", None, task="detect")
    task = DetectTask.for_loaded(loaded, DetectConfig(data=str(detect_scenes_dir)))
    heldout = task.prepare(0).heldout
    metrics = DetectMetrics(task.classes, task.post)
    model = loaded.module.eval()
    with torch.no_grad():
        images, targets = heldout[:]
        found = detect.multi_scale(model, task.eval_batch(images), stride=model.stride)
    metrics.update(DetectOutputs(None, found), targets)
    direct = metrics.compute()
    for key in ("map50_95", "map50", "mar100"):
        assert report[key] == pytest.approx(direct[key], abs=1e-6), key
        assert report["one_label_per_box"][key] == pytest.approx(direct["one_label_per_box"][key], abs=1e-6), key
