"""torchvision's detectors in the registry: COCO weights through the real loading path (a planted hub-cache
file here), a fast clear failure offline, the shared post-processing, and training on user data."""

import os
import time

import pytest
import torch

from cnntool import tasks
from cnntool.models import catalog
from cnntool import loader as loading
from cnntool.engine import predict
from cnntool.data.builtin import photo_paths
from cnntool.errors import ConfigError


@pytest.fixture
def hub(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch" / "hub" / "checkpoints"


def test_every_family_is_registered_as_a_detector():
    for name in ("fasterrcnn-mobilenet", "fasterrcnn-resnet50", "retinanet-resnet50", "ssdlite320", "fcos-resnet50"):
        spec = catalog.get(name, task="detect")
        assert spec.weights.startswith("torchvision:") and spec.weights.endswith(".COCO_V1")


def test_coco_weights_load_from_a_planted_hub_cache_and_predict(hub, tmp_path):
    import torchvision.models.detection as tvd

    enum = tvd.SSDLite320_MobileNet_V3_Large_Weights.COCO_V1
    torch.manual_seed(0)
    reference = catalog.get("ssdlite320").build().state_dict()
    hub.mkdir(parents=True)
    torch.save(reference, hub / os.path.basename(enum.url))

    loaded = loading.load_model("ssdlite320", "DEFAULT", task="detect")
    assert loaded.name == "ssdlite320@COCO_V1"
    for key, tensor in loaded.module.state_dict().items():
        assert torch.equal(tensor, reference[key]), key
    # COCO's categories from the weights' meta (91 with background and the unused "N/A" ids); the input
    # spec stays the detector's own (it normalizes inside its transform).
    assert loaded.classes == tuple(enum.meta["categories"]) and loaded.classes[1] == "person"
    assert loaded.input.size == (320, 320) and loaded.input.mean == (0.0, 0.0, 0.0)

    photo = str(photo_paths()[0])
    options = predict.RunOptions(model="ssdlite320", weights="DEFAULT", device="cpu", threads=2, batch_size=2,
                                 task_options={"conf": 0.0, "max_det": 5})
    (record,) = list(predict.predict(tasks.get("detect"), [photo], options))
    assert record.ok and len(record.fields["detections"]) == 5
    for d in record.fields["detections"]:
        x1, y1, x2, y2 = d["box"]
        assert 0 <= x1 <= x2 <= record.width and 0 <= y1 <= y2 <= record.height
        assert d["label"] in loaded.classes


def test_offline_default_weights_fail_fast_and_clearly(hub):
    started = time.monotonic()
    try:
        loading.load_model("fasterrcnn-mobilenet", "DEFAULT", task="detect")
    except ConfigError as exc:
        assert "cannot download" in str(exc) and "fasterrcnn_mobilenet_v3_large_320_fpn" in str(exc)
    else:
        pytest.skip("this machine is online: the weights downloaded")
    assert time.monotonic() - started < loading.DOWNLOAD_TIMEOUT_S + 5


@pytest.mark.slow  # building and running a torchvision detector takes tens of seconds on a busy CPU
def test_training_mode_takes_the_images_and_targets_pair():
    # The engine calls model(inputs) with one argument; the pre-hook hands torchvision (images, targets).
    torch.manual_seed(0)
    model = catalog.get("ssdlite320").build(num_classes=3).train()
    images = torch.rand(2, 3, 64, 64)
    targets = [{"boxes": torch.tensor([[10.0, 10.0, 40.0, 50.0]]), "labels": torch.tensor([1])},
               {"boxes": torch.tensor([[5.0, 5.0, 20.0, 30.0]]), "labels": torch.tensor([2])}]
    losses = model((images, targets))
    assert set(losses) == {"bbox_regression", "classification"} and all(v.isfinite() for v in losses.values())


@pytest.mark.slow
def test_train_detect_fasterrcnn_mobilenet_on_tiny_data(tmp_path):
    from cnntool import weights
    from cnntool.data import scenes
    from cnntool.engine.train import TrainConfig, train
    from cnntool.tasks.detect.train import DetectConfig, DetectTask

    data = tmp_path / "data"
    scenes.write_dataset(data, {"train": 12, "test": 4},
                         seed=1, config=scenes.SceneConfig(size=96, max_objects=3, min_scale=0.3, max_scale=0.5))
    out = tmp_path / "frcnn.safetensors"
    train(DetectTask(DetectConfig(data=str(data), model="fasterrcnn-mobilenet", val_split=0.25, shift=0.0)),
          TrainConfig(out=out, epochs=1, batch_size=4, lr=0.001, optimizer="adamw", weight_decay=0.0,
                      schedule="constant", warmup=0.0, threads=2, run_dir=tmp_path / "run", quiet=True, command="test"))
    meta = weights.read_metadata(out)
    assert meta["classes"][0] == "__background__" and meta["classes"][1:] == list("0123456789")
    assert 0.0 <= meta["metrics"]["heldout"]["map50"] <= 1.0
    loaded = loading.load_model(None, str(out), task="detect")
    assert loaded.spec.name == "fasterrcnn-mobilenet" and len(loaded.classes) == 11
