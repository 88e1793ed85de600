"""`train classify --ensemble K` and ensemble weights files: the members are the engine's own runs on one split
(member 0 is the run without --ensemble), the file's output is their mean probability, resume keeps finished
members, and a file's member count is checked before anything is built."""

import json
import os

import pytest
import torch
from train_helpers import run_cli, tiny_config, tiny_idx, tiny_localizer, tiny_task

from cnntool import tasks
from cnntool import weights
from cnntool.errors import ConfigError
from cnntool.loader import load_model
from cnntool.models.ensemble import Ensemble
from cnntool.engine.train import train
from cnntool.engine.ensemble import member_config, train_ensemble


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return tiny_idx(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ensemble")
    cfg = tiny_config(tmp, "e", epochs=2)
    train_ensemble(tiny_task(data), cfg, 3)
    return cfg


def test_the_output_is_the_log_of_the_members_mean_probability():
    torch.manual_seed(0)
    members = [torch.nn.Linear(4, 3) for _ in range(3)]
    x = torch.randn(5, 4)
    mean = sum(torch.softmax(m(x), 1) for m in members) / 3
    out = Ensemble(members, task="classify")(x)
    assert torch.allclose(out.exp(), mean, atol=1e-6)
    assert torch.allclose(torch.softmax(out, 1), mean, atol=1e-6)  # what classify's decode reads
    assert torch.allclose(Ensemble(members[:1], task="classify")(x), torch.log_softmax(members[0](x), 1), atol=1e-6)


def test_member_zero_is_the_plain_run_and_the_others_differ(data, trained, tmp_path):
    plain = tiny_config(tmp_path, "plain", epochs=2)
    train(tiny_task(data), plain)
    run = trained.checkpoint_dir
    member = [weights.load(run / f"member{i}.safetensors")[0] for i in range(3)]
    single = weights.load(plain.out)[0]
    assert all(torch.equal(member[0][k], single[k]) for k in single)
    assert not torch.equal(member[1]["features.0.weight"], member[0]["features.0.weight"])
    seeds = [weights.read_metadata(run / f"member{i}.safetensors")["model_seed"] for i in range(3)]
    assert seeds == [0, 1, 2]


def test_the_file_holds_every_member_and_its_figures_are_the_mean_probabilities(data, trained):
    meta = weights.read_metadata(trained.out)
    assert meta["ensemble"] == 3 and [m["file"] for m in meta["members"]] == [f"member{i}.safetensors" for i in range(3)]
    loaded = load_model(None, str(trained.out), task="classify")
    assert isinstance(loaded.module, Ensemble) and len(loaded.module.members) == 3
    # Reference: each member file loaded alone, probabilities averaged by hand on the held-out split.
    task = tiny_task(data)
    heldout = task.prepare(0).heldout
    images = torch.stack([heldout[i][0] for i in range(len(heldout))])
    labels = torch.tensor([int(heldout[i][1]) for i in range(len(heldout))])
    inputs = task.eval_batch(images)
    with torch.no_grad():
        probs = sum(load_model(None, str(trained.checkpoint_dir / f"member{i}.safetensors"), task="classify")
                    .module(inputs).softmax(1) for i in range(3)) / 3
    assert meta["metrics"]["heldout"]["accuracy"] == pytest.approx(float((probs.argmax(1) == labels).float().mean()))
    report = json.loads(trained.sidecar(".metrics.json").read_text())
    assert len(report["members"]) == 3 and all(m["history"] for m in report["members"])
    assert trained.sidecar(".curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_keeps_finished_members(data, trained):
    stamps = [(trained.checkpoint_dir / f"member{i}.safetensors").stat().st_mtime_ns for i in range(3)]
    train_ensemble(tiny_task(data), tiny_config(trained.out.parent, "e", epochs=2, resume=True), 3)
    assert [(trained.checkpoint_dir / f"member{i}.safetensors").stat().st_mtime_ns for i in range(3)] == stamps
    assert member_config(trained, 1).resume is False  # --resume only where a checkpoint is left


def test_one_member_or_torchrun_is_refused(data, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="2 or more"):
        train_ensemble(tiny_task(data), tiny_config(tmp_path), 1)
    monkeypatch.setitem(os.environ, "WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="without torchrun"):
        train_ensemble(tiny_task(data), tiny_config(tmp_path), 2)


@pytest.mark.parametrize("count", ["3", 0.5, 10_000, -1, True])
def test_a_bad_member_count_in_a_file_is_one_line(trained, tmp_path, count):
    state, meta = weights.load(trained.out)
    path = weights.save(tmp_path / "bad.safetensors", state, {**meta, "ensemble": count})
    with pytest.raises(ConfigError, match="member count"):
        load_model(None, str(path), task="classify")


# --- `cnntool ensemble`: files trained apart, averaged into one ----------------------------------------------

def test_cli_combines_trained_files_and_scores_them_on_the_test_split(data, trained, tmp_path, capsys):
    import hashlib

    files = [str(trained.checkpoint_dir / f"member{i}.safetensors") for i in (0, 2)]
    out = tmp_path / "pair.safetensors"
    code, err = run_cli(["ensemble", *files, "--data", str(data), "--out", str(out), "--threads", "1"], capsys)
    assert code == 0 and "ensemble of 2" in err
    meta = weights.read_metadata(out)
    assert meta["command"] == f"cnntool ensemble {files[0]} {files[1]} --out {out} --data {data} --threads 1"
    assert [m["sha256"] for m in meta["members"]] == [hashlib.sha256(open(f, "rb").read()).hexdigest() for f in files]
    assert [m["command"] for m in meta["members"]] == [weights.read_metadata(f)["command"] for f in files]
    # Reference: the two files loaded alone, probabilities averaged by hand on the official test split.
    task = tiny_task(data)
    test = task.prepare(0).heldout
    images = torch.stack([test[i][0] for i in range(len(test))])
    labels = torch.tensor([int(test[i][1]) for i in range(len(test))])
    with torch.no_grad():
        probs = sum(load_model(None, f, task="classify").module(task.eval_batch(images)).softmax(1) for f in files) / 2
    assert meta["metrics"]["heldout"]["accuracy"] == pytest.approx(float((probs.argmax(1) == labels).float().mean()))
    assert "official test split" in meta["metrics"]["heldout_data"]
    report = json.loads((tmp_path / "pair.metrics.json").read_text())  # the members' runs, gathered beside it
    assert [m["file"] for m in report["members"]] == ["member0.safetensors", "member2.safetensors"]
    assert report["final"]["metrics"] == meta["metrics"]
    assert (tmp_path / "pair.curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_members_of_another_architecture_or_an_ensemble_are_refused_in_one_line(trained, data, tmp_path, capsys):
    member = trained.checkpoint_dir / "member0.safetensors"
    state, meta = weights.load(member)
    wider = weights.save(tmp_path / "other.safetensors", state, {**meta, "kwargs": {**meta["kwargs"], "dropout": 0.3}})
    for files, says in (([member, wider], "not the same kwargs"), ([member, trained.out], "already combined"),
                        ([member], "2 or more")):
        code, err = run_cli(["ensemble", *map(str, files), "--data", str(data), "--out", str(tmp_path / "x.safetensors")],
                             capsys)
        assert code == 2 and says in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.safetensors").exists()
    code, err = run_cli(["ensemble", str(member), str(member), "--data", str(tmp_path / "nowhere"), "--out",
                          str(tmp_path / "x.safetensors")], capsys)
    assert code == 2 and "nowhere" in err and list(tmp_path.glob("*x.safetensors*")) == []  # no file without figures
    code, err = run_cli(["ensemble", str(member), str(member), "--data", str(data), "--calibrate", "--out",
                          str(tmp_path / "x.safetensors")], capsys)
    assert code == 2 and "presence threshold" in err


def test_localizers_are_averaged_over_their_whole_y_vector(tmp_path):
    from cnntool.models.localizer import localizer
    from cnntool.models.yvector import interpret

    torch.manual_seed(0)
    members = [localizer(widths=[4, 8], input_size=32, refine=4).eval() for _ in range(3)]
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected = sum(interpret(m(x)) for m in members) / 3
        got = interpret(Ensemble(members, task="localize")(x))
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="valid: classify, localize"):
        Ensemble(members, task="detect")


def test_fine_tuning_from_an_ensemble_is_refused_naming_its_members(data, trained, tmp_path):
    with pytest.raises(ConfigError, match="ensemble of 3 nets; start from one of its members .member0.safetensors"):
        train(tiny_task(data), tiny_config(tmp_path, init=str(trained.out)))


# --- a presence threshold chosen on validation (localize) --------------------------------------------------

def test_the_threshold_with_most_images_right_wins_and_ties_keep_nearest_the_default():
    from cnntool.tasks.localize.metrics import calibrate_threshold

    p_c = torch.tensor([0.1, 0.35, 0.45, 0.6, 0.9])
    present = torch.tensor([False, True, True, True, True])
    assert calibrate_threshold(p_c, present) == 0.35  # 0.15 … 0.35 all get 5 of 5; 0.35 is nearest 0.5
    assert calibrate_threshold(torch.tensor([0.9, 0.95]), torch.tensor([True, True])) == 0.5  # flat: the default


def test_a_threshold_in_the_weights_is_what_decode_and_the_metric_use(tiny_scenes, tmp_path):
    from cnntool.engine.evaluate import EvalOptions
    from cnntool.engine.predict import RunOptions, predict
    from cnntool.tasks.localize.evaluate import LocalizeEvaluation, evaluate, presence

    path = tiny_localizer(tmp_path / "t.safetensors", 0, decode={"threshold": 0.99})
    common = EvalOptions(weights=str(path))
    p_c, present = presence(LocalizeEvaluation(data=str(tiny_scenes), common=common))
    report = evaluate(LocalizeEvaluation(data=str(tiny_scenes), common=common))
    assert "presence threshold 0.99" in report["data"]
    assert report["presence_accuracy"] == pytest.approx(float(((p_c >= 0.99) == present).float().mean()))
    at_half = evaluate(LocalizeEvaluation(data=str(tiny_scenes), threshold=0.5, common=common))
    assert at_half["presence_accuracy"] == pytest.approx(float(((p_c >= 0.5) == present).float().mean()))
    images = sorted(str(p) for p in (tiny_scenes / "test").glob("*.png"))
    own = [r.fields["object"] for r in predict(tasks.get("localize"), images, RunOptions(weights=str(path), device="cpu"))]
    given = [r.fields["object"] for r in predict(tasks.get("localize"), images, RunOptions(weights=str(path), device="cpu",
                                                                               task_options={"threshold": 0.0}))]
    assert [o["label"] is None for o in own] == [bool(p < 0.99) for p in p_c.tolist()]
    assert all(o["label"] is not None for o in given)  # --threshold overrides the file's


def test_a_bad_decode_entry_in_a_file_is_one_line(tmp_path):
    path = tiny_localizer(tmp_path / "bad.safetensors", 0, decode={"threshold": "high"})
    with pytest.raises(ConfigError, match="'decode' must map option names to finite numbers"):
        load_model(None, str(path), task="localize")


def test_ensemble_calibrate_keeps_the_validation_threshold_and_scores_held_out_with_it(tiny_scenes, tmp_path, capsys):
    from cnntool.engine.evaluate import EvalOptions
    from cnntool.tasks.localize.evaluate import LocalizeEvaluation, presence
    from cnntool.tasks.localize.metrics import calibrate_threshold

    files = [str(tiny_localizer(tmp_path / f"m{i}.safetensors", i)) for i in range(2)]
    out = tmp_path / "cal.safetensors"
    code, _ = run_cli(["ensemble", *files, "--data", str(tiny_scenes), "--out", str(out), "--calibrate"], capsys)
    assert code == 0
    meta = weights.read_metadata(out)
    p_c, present = presence(LocalizeEvaluation(data=str(tiny_scenes), split="val", common=EvalOptions(weights=str(out))))
    assert meta["decode"] == {"threshold": calibrate_threshold(p_c, present)}
    assert "val split, 12 images" in meta["threshold_from"]
    assert f"presence threshold {meta['decode']['threshold']:g}" in meta["metrics"]["heldout_data"]
