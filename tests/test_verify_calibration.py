"""Where thresholds come from and where calibration is written: --threshold, --calibration FILE, the
weights' metadata, the cache-directory sidecar (dlib's model), dlib's published 0.6."""

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from cnntool import weights
from cnntool.errors import ConfigError
from cnntool.tasks.verify.run import CalibrationConfig, VerifyOptions, resolve_metric_threshold, sidecar_path, write_calibration


def _loaded(name="dlib-face-resnet", metadata=None, source="external:dlib", head=None):
    spec = SimpleNamespace(name=name, weights=source)
    return SimpleNamespace(name=name, spec=spec, metadata=metadata or {}, module=SimpleNamespace(head=head))


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))


def test_dlib_defaults_to_its_published_threshold_and_needs_calibration_for_cosine():
    assert resolve_metric_threshold(_loaded(), VerifyOptions()) == ("euclidean", 0.6, "dlib's published threshold")
    with pytest.raises(ConfigError, match="calibrate"):
        resolve_metric_threshold(_loaded(), VerifyOptions(metric="cosine"))
    with pytest.raises(ConfigError, match="similarity head"):
        resolve_metric_threshold(_loaded(), VerifyOptions(metric="learned", threshold=0.5))


def test_calibrating_dlib_writes_the_sidecar_that_later_runs_use():
    loaded = _loaded()
    target = write_calibration(loaded, VerifyOptions(), "cosine", {"threshold": 0.07}, None)
    assert target == sidecar_path("dlib-face-resnet") and target.is_file()
    assert resolve_metric_threshold(loaded, VerifyOptions()) == ("cosine", 0.07, str(target))
    # dlib's own 0.6 still applies to euclidean; --threshold beats everything.
    assert resolve_metric_threshold(loaded, VerifyOptions(metric="euclidean"))[1] == 0.6
    assert resolve_metric_threshold(loaded, VerifyOptions(threshold=0.3))[1:] == (0.3, "--threshold")


def test_calibration_file_beats_metadata(tmp_path):
    loaded = _loaded("m", {"verification": {"metric": "euclidean", "thresholds": {"euclidean": {"threshold": 0.5}}}})
    assert resolve_metric_threshold(loaded, VerifyOptions())[1] == 0.5
    out = write_calibration(loaded, VerifyOptions(), "euclidean", {"threshold": 0.4}, tmp_path / "cal.json")
    assert resolve_metric_threshold(loaded, VerifyOptions(calibration=out))[1] == 0.4


def test_calibrating_our_weights_writes_into_their_metadata(tmp_path):
    path = weights.save(tmp_path / "emb.safetensors", {"w": torch.zeros(2)}, {"task": "face-embed"})
    loaded = _loaded("emb", source=None)
    write_calibration(loaded, VerifyOptions(weights=str(path)), "euclidean", {"threshold": 0.33}, None)
    meta = weights.read_metadata(path)
    assert meta["task"] == "verify-face" and meta["verification"]["thresholds"]["euclidean"]["threshold"] == 0.33
    assert weights.load(Path(path))[0]["w"].tolist() == [0.0, 0.0]


def test_an_out_path_under_a_file_is_refused_before_any_embedding(tmp_path, monkeypatch):
    from cnntool.tasks.verify import run as verify

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(verify, "load", lambda opts: pytest.fail("the model was loaded before --out was checked"))
    with pytest.raises(ConfigError, match="^--out: cannot write to .*a-file"):
        verify.calibrate(VerifyOptions(), CalibrationConfig(pairs=tmp_path / "pairs.txt", out=blocker / "cal.json"))
