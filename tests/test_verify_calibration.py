"""Where thresholds come from and where calibration is written: --threshold, --calibration FILE, the weights'
metadata, dlib's published 0.6; a calibration is written only where --out names, and applies only where it is
passed: no command changes another's defaults."""

import hashlib
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from cnntool import weights
from cnntool.errors import ConfigError
from cnntool.tasks.verify.run import CalibrationConfig, VerifyOptions, resolve_metric_threshold, write_calibration


def _loaded(name="dlib-face-resnet", metadata=None, path=None, head=None):
    spec = SimpleNamespace(name=name, weights="external:dlib" if path is None else "file")
    return SimpleNamespace(name=name, spec=spec, metadata=metadata or {}, module=SimpleNamespace(head=head), path=path)


def test_dlib_defaults_to_its_published_threshold_and_needs_calibration_for_cosine():
    assert resolve_metric_threshold(_loaded(), VerifyOptions()) == ("euclidean", 0.6, "dlib's published threshold")
    with pytest.raises(ConfigError, match="calibrate"):
        resolve_metric_threshold(_loaded(), VerifyOptions(metric="cosine"))
    with pytest.raises(ConfigError, match="similarity head"):
        resolve_metric_threshold(_loaded(), VerifyOptions(metric="learned", threshold=0.5))


def test_a_calibration_applies_only_where_it_is_passed(tmp_path):
    loaded = _loaded()
    target = write_calibration(loaded, "cosine", {"threshold": 0.07}, tmp_path / "dlib.json")
    assert resolve_metric_threshold(loaded, VerifyOptions(calibration=target)) == ("cosine", 0.07, str(target))
    # Without it, the defaults are as they were: nothing was stored anywhere else.
    assert resolve_metric_threshold(loaded, VerifyOptions()) == ("euclidean", 0.6, "dlib's published threshold")
    assert resolve_metric_threshold(loaded, VerifyOptions(calibration=target, threshold=0.3))[1:] == (0.3, "--threshold")


def test_calibration_file_beats_metadata(tmp_path):
    loaded = _loaded("m", {"verification": {"metric": "euclidean", "thresholds": {"euclidean": {"threshold": 0.5}}}})
    assert resolve_metric_threshold(loaded, VerifyOptions())[1] == 0.5
    out = write_calibration(loaded, "euclidean", {"threshold": 0.4}, tmp_path / "cal.json")
    assert resolve_metric_threshold(loaded, VerifyOptions(calibration=out))[1] == 0.4


def test_calibrating_our_weights_writes_a_calibrated_copy_and_leaves_the_file_alone(tmp_path):
    path = weights.save(tmp_path / "emb.safetensors", {"w": torch.zeros(2)}, {"task": "face-embed"})
    before = hashlib.md5(path.read_bytes()).hexdigest()
    out = write_calibration(_loaded("emb", path=path), "euclidean", {"threshold": 0.33}, tmp_path / "calibrated.safetensors")
    meta = weights.read_metadata(out)
    assert meta["task"] == "verify-face" and meta["verification"]["thresholds"]["euclidean"]["threshold"] == 0.33
    assert weights.load(Path(out))[0]["w"].tolist() == [0.0, 0.0]
    assert hashlib.md5(path.read_bytes()).hexdigest() == before
    assert resolve_metric_threshold(_loaded("emb", meta, out), VerifyOptions(calibration=out))[1] == 0.33
    with pytest.raises(ConfigError, match="no weights file of ours"):
        write_calibration(_loaded(), "euclidean", {"threshold": 0.5}, tmp_path / "dlib.safetensors")


def test_an_out_path_under_a_file_is_refused_before_any_embedding(tmp_path, monkeypatch):
    from cnntool.tasks.verify import run as verify

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(verify, "load", lambda opts: pytest.fail("the model was loaded before --out was checked"))
    with pytest.raises(ConfigError, match="^--out: cannot write to .*a-file"):
        verify.calibrate(VerifyOptions(), CalibrationConfig(pairs=tmp_path / "pairs.txt", out=blocker / "cal.json"))


def test_calibrating_onto_the_models_own_weights_file_is_refused_before_any_work(tmp_path, capsys):
    from cnntool.cli import main

    path = weights.save(tmp_path / "emb.safetensors", {"w": torch.zeros(2)}, {"task": "verify-face"})
    before = hashlib.md5(path.read_bytes()).hexdigest()
    with pytest.raises(SystemExit) as stop:
        main(["verify-face", "calibrate", "--data", str(tmp_path), "--weights", str(path), "--out", str(path)])
    assert stop.value.code == 2 and "never writes over an input" in capsys.readouterr().err
    assert hashlib.md5(path.read_bytes()).hexdigest() == before


@pytest.mark.parametrize("entry", [{"threshold": "0.5"}, {"threshold": 0.5, "probability": {"slope": "steep", "offset": 1}},
                                   {"threshold": 0.5, "probability": {"slope": float("nan"), "offset": 1}}, []])
def test_a_malformed_calibration_is_one_clear_error(tmp_path, entry):
    import json

    from cnntool.meta import check

    path = tmp_path / "cal.json"
    path.write_text(json.dumps({"metric": "euclidean", "thresholds": {"euclidean": entry}}))
    with pytest.raises(ConfigError, match="not a calibration document"):
        resolve_metric_threshold(_loaded(), VerifyOptions(calibration=path))
    with pytest.raises(ConfigError, match="verification"):
        check({"task": "verify-face", "verification": {"metric": "euclidean", "thresholds": {"euclidean": entry}}}, "w.safetensors")
