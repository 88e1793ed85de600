"""--model/--weights resolution: torchvision's hub cache path, cnntool files, and refusing unsafe files."""

import os
import pickle
import subprocess
import sys
import time
import warnings

import pytest
import torch

from cnntool import weights

from cnntool.models import catalog
from cnntool import loader as loading
from cnntool.errors import ConfigError


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_torchvision_weights_load_from_a_planted_hub_cache(hub):
    import torchvision.models as tvm

    enum = tvm.ResNet18_Weights.IMAGENET1K_V1
    reference = catalog.get("resnet18").build().state_dict()
    hub.mkdir(parents=True)
    torch.save(reference, hub / os.path.basename(enum.url))

    loaded = loading.load_model("resnet18", "DEFAULT", task="classify")
    assert loaded.name == "resnet18@IMAGENET1K_V1"
    for key, tensor in loaded.module.state_dict().items():
        assert torch.equal(tensor, reference[key]), key
    # Categories and preprocessing come from the weights' meta, not from our registry entry.
    assert loaded.classes == tuple(enum.meta["categories"]) and len(loaded.classes) == 1000
    assert loaded.input.size == (224, 224) and loaded.input.crop_fraction == pytest.approx(224 / 256)
    assert loaded.input.mean == tuple(enum.transforms().mean)
    # The enum's own member name works too.
    assert loading.load_model("resnet18", "IMAGENET1K_V1", task="classify").name == "resnet18@IMAGENET1K_V1"


def test_unknown_torchvision_weights_name_lists_valid_ones(hub):
    with pytest.raises(ConfigError, match="IMAGENET1K_V1"):
        loading.load_model("resnet18", "IMAGENET9K", task="classify")


def test_download_failure_is_fast_and_clear(hub):
    started = time.monotonic()
    with pytest.raises(ConfigError, match="cannot download .* place the file at"):
        loading.fetch_torchvision_state_dict("http://127.0.0.1:9/resnet18-f37072fd.pth")
    assert time.monotonic() - started < loading.DOWNLOAD_TIMEOUT_S + 5


def test_offline_cli_fails_within_seconds_with_one_line(tmp_path, digit_png):
    env = {**os.environ, "TORCH_HOME": str(tmp_path / "empty")}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "cnntool", "classify", "--model", "resnet18", digit_png],
                          capture_output=True, text=True, env=env, timeout=120)
    if proc.returncode == 0:
        pytest.skip("this machine is online: the weights downloaded")
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "cannot download" in proc.stderr
    assert time.monotonic() - started < 60


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_a_pickle_payload_is_refused_and_never_runs(tmp_path, writer):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.pt"
    with open(evil, "wb") as fh:  # pickling happens here, harmlessly; unpickling would run the payload
        (torch.save if writer == "torch.save" else pickle.dump)({"weight": Payload()}, fh)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's own warnings would be stray lines on the user's stderr
        with pytest.raises(ConfigError, match="refused") as refusal:
            weights.load(evil)
    assert not marker.exists()
    message = str(refusal.value)
    assert "weights_only" not in message and "\n" not in message  # torch's text advises the unsafe load
    if writer == "torch.save":
        assert "asks for posix.system" in message


def test_truncated_safetensors_is_one_clear_error(tmp_path):
    good = weights.save(tmp_path / "m.safetensors", {"w": torch.ones(100)}, {"task": "classify"})
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[:-50])
    with pytest.raises(ConfigError, match="truncated"):
        weights.load(cut)
    with pytest.raises(ConfigError, match="not a safetensors file"):
        (tmp_path / "text.safetensors").write_text("hello world, not weights")
        weights.load(tmp_path / "text.safetensors")


def test_weights_of_another_architecture_are_refused(tmp_path):
    other = catalog.get("lenet5-relu").build(num_classes=3)
    path = weights.save(tmp_path / "other.safetensors", other.state_dict(), {})
    with pytest.raises(ConfigError, match="do not fit this model"):
        loading.load_model("resnet-small", str(path), task="classify")


def test_weights_for_another_task_are_refused(tmp_path):
    model = catalog.get("lenet5").build()
    path = weights.save(tmp_path / "m.safetensors", model.state_dict(), {"task": "detect"})
    with pytest.raises(ConfigError, match="task 'detect'"):
        loading.load_model("lenet5", str(path), task="classify")


def test_metadata_carries_classes_input_and_kwargs(tmp_path):
    model = catalog.get("lenet5").build(num_classes=3)
    meta = {"task": "classify", "model": "lenet5", "kwargs": {"num_classes": 3}, "classes": ["a", "b", "c"],
            "input": {"size": [32, 32], "channels": 1, "mean": [0.1], "std": [0.2], "resize": "letterbox"}}
    path = weights.save(tmp_path / "abc.safetensors", model.state_dict(), meta)
    loaded = loading.load_model("lenet5", str(path), task="classify")
    assert loaded.classes == ("a", "b", "c")
    assert loaded.input.resize == "letterbox" and loaded.input.mean == (0.1,)
    assert weights.read_metadata(path)["format_version"] == weights.FORMAT_VERSION


def test_weights_keep_the_architecture_they_were_trained_with_after_the_registry_entry_changes(tmp_path):
    """A localizer trained when the registry entry was one stage at 64×64 (its metadata records that entry's
    kwargs, without the later refine/downsample) still loads as that net, not the entry's current two stages."""
    trained_kwargs = {"num_classes": 10, "in_channels": 3, "widths": [8, 16], "input_size": 64, "hidden": 32,
                      "dropout": 0.1}
    from cnntool.models.localizer import localizer

    model = localizer(**trained_kwargs)  # the builder alone: the registry entry would add its current kwargs
    meta = {"task": "localize", "model": "localizer-digits", "kwargs": trained_kwargs,
            "input": {"size": [64, 64], "channels": 3, "resize": "stretch"}}
    path = weights.save(tmp_path / "old.safetensors", model.state_dict(), meta)
    loaded = loading.load_model(None, str(path), task="localize")
    assert catalog.get("localizer-digits").kwargs["downsample"] == 2  # what would otherwise leak in
    assert loaded.module.refiner is None and loaded.module.downsample == 1
    assert loaded.module(torch.zeros(1, 3, 64, 64)).shape == (1, 15)

def test_googlenet_weights_with_aux_heads_load_into_the_aux_free_model(hub):
    import torchvision

    enum = torchvision.models.GoogLeNet_Weights.IMAGENET1K_V1
    published = torchvision.models.googlenet(weights=None, aux_logits=True, init_weights=False).state_dict()
    hub.mkdir(parents=True)
    torch.save(published, hub / os.path.basename(enum.url))
    loaded = loading.load_model("googlenet", "DEFAULT", task="classify")
    assert torch.equal(loaded.module.state_dict()["fc.weight"], published["fc.weight"])


def test_training_can_start_from_torchvision_weights_under_a_new_head(hub, tmp_path):
    import torchvision.models as tvm
    from train_helpers import tiny_config, tiny_idx, tiny_task

    from cnntool.engine.train import train

    torch.manual_seed(0)
    published = catalog.get("resnet18").build().state_dict()
    hub.mkdir(parents=True)
    torch.save(published, hub / os.path.basename(tvm.ResNet18_Weights.IMAGENET1K_V1.url))
    (tmp_path / "data").mkdir()
    data = tiny_idx(tmp_path / "data")
    cfg = tiny_config(tmp_path, epochs=1, lr=0.0, schedule="constant", init="DEFAULT")
    meta = train(tiny_task(data, model="resnet18"), cfg)  # 3 classes, not ImageNet's 1,000
    assert meta["init"]["torchvision_weights"] == "ResNet18_Weights.IMAGENET1K_V1"
    assert meta["init"]["left_fresh"] == ["fc.weight", "fc.bias"]
    shipped = weights.load(cfg.out)[0]
    assert shipped["fc.weight"].shape == (3, 512)
    assert torch.equal(shipped["conv1.weight"], published["conv1.weight"])  # lr 0: exactly what was planted
    with pytest.raises(ConfigError, match="apply only to torchvision models"):
        train(tiny_task(data), tiny_config(tmp_path, "lenet", init="DEFAULT"))


@pytest.mark.parametrize("name", sorted(p.stem for p in weights.weights_dir().glob("*.safetensors")))
def test_every_embedded_file_ships_with_its_own_runs_metrics_and_curve(name):
    """weights/NAME.metrics.json and NAME.curve.png are the sidecars of the run that wrote NAME.safetensors:
    replacing the weights without them leaves another training's history beside them."""
    import json

    folder = weights.weights_dir()
    meta = weights.read_metadata(folder / f"{name}.safetensors")
    run = json.loads((folder / f"{name}.metrics.json").read_text())
    assert (run["command"], run["final"]["metrics"], run["final"]["created"]) == (
        meta["command"], meta["metrics"], meta["created"])
    assert (folder / f"{name}.curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
