"""R-CNN and Fast R-CNN around window-digits: selective search finds the objects, both detectors keep the
detector contract, and Fast R-CNN's shared convolution computes what each crop's own convolution would."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from cnntool.data import scenes
from cnntool.errors import ConfigError
from cnntool.loader import load_model
from cnntool.models import catalog, proposals, rcnn
from cnntool.models.reader import crop_boxes
from cnntool.models.yvector import CONTEXT
from cnntool.preprocess import Preprocessor

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CNNTOOL = [sys.executable, "-m", "cnntool"]
# The scenes the embedded detectors were made for (weights/yolo-digits.md), held-out digits on held-out photos.
SCENES = scenes.SceneConfig(size=96, max_objects=4, empty_fraction=0.0, min_scale=0.25, max_scale=0.5)


@pytest.fixture(scope="module")
def skimage():
    return pytest.importorskip("skimage.segmentation", reason="selective search needs scikit-image: "
                                                              "pip install scikit-image")


@pytest.fixture(scope="module")
def held_out_scenes():
    """Four held-out digit scenes (PIL images with their true objects); skipped without opencv-doc."""
    pool, backgrounds = scenes.object_pool("digits", "test"), scenes.background_paths("test")
    return [scenes.make_scene(scenes.scene_rng(3, "test", i), backgrounds=backgrounds, pool=pool, config=SCENES)
            for i in range(4)]


@pytest.fixture(scope="module")
def detectors(skimage):
    return {name: load_model(name, None, task="detect").module for name in ("rcnn-digits", "fast-rcnn-digits")}


@pytest.fixture(scope="module")
def scene_input(held_out_scenes):
    """The held-out scenes as the detectors receive them (their input spec's preprocessing)."""
    pre = Preprocessor(catalog.get("fast-rcnn-digits").input)
    return torch.stack([pre(scene.image)[0] for scene in held_out_scenes])


def recall(truth: np.ndarray, found: np.ndarray, threshold: float = 0.5) -> float:
    """Share of true boxes that some found box overlaps by IoU ≥ threshold."""
    from torchvision.ops import box_iou

    best = box_iou(torch.from_numpy(truth).double(), torch.from_numpy(found).double()).max(1).values
    return float((best >= threshold).double().mean())


def shapes_scene() -> tuple[np.ndarray, np.ndarray]:
    """A 96×96 scene drawn here: three flat-coloured shapes (a rectangle, a disc, a ring) on a noisy
    two-tone background, and their true boxes."""
    rng = np.random.default_rng(0)
    image = np.where(np.arange(96)[None, :, None] < 48, [0.35, 0.45, 0.3], [0.5, 0.4, 0.45])
    image = image + rng.normal(0, 0.03, (96, 96, 3))
    ys, xs = np.indices((96, 96))
    image[10:40, 8:30] = [0.9, 0.2, 0.1]
    image[(ys - 70) ** 2 + (xs - 25) ** 2 < 14 ** 2] = [0.1, 0.3, 0.9]
    radius = np.hypot(ys - 35, xs - 68)
    image[(radius < 18) & (radius > 11)] = [0.95, 0.9, 0.2]
    truth = np.array([[8, 10, 30, 40], [12, 57, 39, 84], [51, 18, 86, 53]], dtype=float)
    return np.clip(image, 0, 1), truth


def test_proposals_cover_every_shape_of_a_drawn_scene(skimage):
    image, truth = shapes_scene()
    found = proposals.selective_search(image)
    assert 50 <= len(found) <= 2000
    assert len(np.unique(found, axis=0)) == len(found)  # deduplicated
    assert found.min() >= 0 and found[:, 2].max() <= 96 and found[:, 3].max() <= 96
    assert recall(truth, found, 0.7) == 1.0
    np.testing.assert_array_equal(found, proposals.selective_search(image))  # repeatable


def test_proposals_cover_the_digits_of_held_out_scenes(skimage, held_out_scenes):
    for scene in held_out_scenes:
        found = proposals.selective_search(np.asarray(scene.image, dtype=np.float64) / 255)
        truth = np.array([o["box"] for o in scene.objects], dtype=float)
        assert recall(truth, found) == 1.0, (scene.objects, len(found))


def test_missing_scikit_image_is_a_one_line_config_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "skimage.segmentation", None)  # `import skimage.segmentation` now fails
    with pytest.raises(ConfigError, match="pip install scikit-image") as caught:
        load_model("rcnn-digits", None, task="detect")
    assert "\n" not in str(caught.value)


def test_both_keep_the_detector_contract_on_real_scenes(detectors, scene_input, held_out_scenes):
    with torch.inference_mode():
        slow, fast = (detectors[name](scene_input) for name in ("rcnn-digits", "fast-rcnn-digits"))
    for a, b, scene in zip(slow, fast, held_out_scenes):
        torch.testing.assert_close(a["boxes"], b["boxes"])  # the same proposals
        for out in (a, b):
            n = len(out["boxes"])
            assert out["boxes"].shape == (n, 4) and out["scores"].shape == out["labels"].shape == (n,)
            assert out["class_scores"].shape == (n, 10) and out["labels"].max() < 10
            torch.testing.assert_close(out["class_scores"].max(1).values, out["scores"])
            assert (out["scores"] > 0).all() and (out["scores"] <= 1).all()
            assert out["boxes"].min() >= 0 and out["boxes"].max() <= 96
        # Every true digit is among R-CNN's proposals; most are read right where one matches well.
        truth = torch.tensor([o["box"] for o in scene.objects])
        labels = torch.tensor([int(o["label"]) for o in scene.objects])
        from torchvision.ops import box_iou

        best = box_iou(truth, a["boxes"]).argmax(1)
        assert (a["class_scores"][best].argmax(1) == labels).float().mean() >= 0.5, scene.objects


def window_proposal(left: int, top: int) -> torch.Tensor:
    """The RoI row [0, x1, y1, x2, y2] of a proposal whose crop is exactly the 32×32 window at (left, top)."""
    side = 32 / CONTEXT  # the crop adds CONTEXT × the longer side around the proposal
    cx, cy = left + 16, top + 16
    return torch.tensor([[0, cx - side / 2, cy - side / 2, cx + side / 2, cy + side / 2]])


def test_fast_rcnn_pools_exactly_each_windows_own_features(detectors, scene_input):
    fast = detectors["fast-rcnn-digits"]
    classifier = fast.classifier
    x = scene_input[:1]
    with torch.inference_mode():
        for left, top in ((0, 0), (8, 20), (64, 36), (40, 64)):  # multiples of the stride, 4
            crop = x[:, :, top:top + 32, left:left + 32]
            roi = window_proposal(left, top)
            torch.testing.assert_close(fast.pooled_features(classifier.features(x), roi), classifier.features(crop),
                                       atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(fast.region_logits(x, roi), classifier(crop), atol=1e-5, rtol=1e-5)


def test_rcnn_classifies_the_crop_the_classifier_was_trained_on(detectors, scene_input):
    """R-CNN's warp is `cnntool data crops`' cut (cnntool.models.reader.crop_boxes): for an odd-sized
    proposal, the same pixels, normalized."""
    slow = detectors["rcnn-digits"]
    x = scene_input[:1]
    box = torch.tensor([[0, 30.5, 12.0, 51.0, 47.5]])  # x1, y1, x2, y2: taller than wide, not on the grid
    x1, y1, x2, y2 = box[0, 1:].tolist()
    relative = torch.tensor([[(x1 + x2) / 2 / 96, (y1 + y2) / 2 / 96, (y2 - y1) / 96, (x2 - x1) / 96]])
    reference = crop_boxes(slow.pixels(x), relative, size=32, context=CONTEXT)
    reference = (reference - slow.pixel_mean) / slow.pixel_std
    with torch.inference_mode():
        torch.testing.assert_close(slow.warped_crops(slow.pixels(x), box), reference)
        torch.testing.assert_close(slow.region_logits(x, box), slow.classifier(reference))


def test_cli_fast_rcnn_writes_a_valid_record(skimage, held_out_scenes, tmp_path):
    path = tmp_path / "scene.png"
    held_out_scenes[0].image.save(path)
    proc = subprocess.run([*CNNTOOL, "detect", "--model", "fast-rcnn-digits", str(path), "--format", "jsonl",
                           "--threads", "1"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    (record,) = (json.loads(line) for line in proc.stdout.splitlines())
    assert record["model"] == "fast-rcnn-digits" and record["task"] == "detect"
    assert (record["width"], record["height"]) == (96, 96) and record["detections"]
    for d in record["detections"]:
        x1, y1, x2, y2 = d["box"]
        assert 0 <= x1 < x2 <= 96 and 0 <= y1 < y2 <= 96
        assert d["label"] in "0123456789" and 0.25 <= d["score"] <= 1


def test_faster_rcnn_finds_the_digits_of_held_out_scenes(held_out_scenes):
    """faster-rcnn-digits (a region proposal network instead of selective search, trained here on the ladder's
    scenes): at its default threshold, most true digits are found with the right label at IoU ≥ 0.5."""
    from torchvision.ops import box_iou

    from cnntool.tasks.detect.predict import PostProcess, postprocess

    loaded = load_model("faster-rcnn-digits", None, task="detect")
    pre = Preprocessor(loaded.input)
    with torch.inference_mode():
        outputs = loaded.module(torch.stack([pre(scene.image)[0] for scene in held_out_scenes]))
    found = right = total = 0
    for out, scene in zip(outputs, held_out_scenes):
        kept = postprocess(out, PostProcess(conf=0.5))
        truth = torch.tensor([o["box"] for o in scene.objects], dtype=torch.float32)
        total += len(truth)
        if len(kept["boxes"]):
            iou = box_iou(truth, kept["boxes"])
            best, hit = iou.argmax(1).tolist(), (iou.max(1).values >= 0.5).tolist()
            found += sum(hit)
            right += sum(h and loaded.classes[int(kept["labels"][b])] == o["label"]
                         for h, b, o in zip(hit, best, scene.objects))
    assert right >= 0.6 * total, (found, right, total)
