"""Detection datasets: the scene generator's JSON ↔ COCO JSON ↔ YOLO txt round trips, and window crops."""

import json

import pytest
from PIL import Image

from cnntool.data import detect_formats as formats
from cnntool.data import scenes
from cnntool.errors import ConfigError


@pytest.fixture(scope="module")
def scene_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("scenes")
    config = scenes.SceneConfig(size=64, objects="digits", max_objects=4, empty_fraction=0.2, min_scale=0.3, max_scale=0.5)
    scenes.write_dataset(root, {"train": 6, "test": 3}, seed=3, config=config)
    return root


def flat(splits):
    return {split: [(s.image.name, [(o["label"], o["box"]) for o in s.objects]) for s in samples]
            for split, samples in splits.items()}


def assert_same(a, b, tol):
    assert a.keys() == b.keys()
    for split in a:
        assert [name for name, _ in a[split]] == [name for name, _ in b[split]]
        for (_, objs_a), (_, objs_b) in zip(a[split], b[split]):
            assert [label for label, _ in objs_a] == [label for label, _ in objs_b]
            for (_, box_a), (_, box_b) in zip(objs_a, objs_b):
                assert box_a == pytest.approx(box_b, abs=tol)


def test_scenes_read_with_several_objects_and_empty_ones(scene_dir):
    splits, classes = formats.read_dataset(scene_dir)
    assert classes == tuple("0123456789") and formats.detect_format(scene_dir) == "scenes"
    counts = [len(s.objects) for s in splits["train"] + splits["test"]]
    assert max(counts) > 1 and all(c <= 4 for c in counts)
    raw = json.loads((scene_dir / "train.json").read_text())
    assert [len(e["objects"]) for e in raw] == [len(s.objects) for s in splits["train"]]


def test_scenes_to_coco_to_yolo_to_scenes_keeps_every_box(scene_dir, tmp_path):
    original = flat(formats.read_dataset(scene_dir)[0])
    coco = formats.convert(scene_dir, tmp_path / "coco", "coco")
    assert formats.detect_format(coco) == "coco"
    doc = json.loads((coco / "train.json").read_text())
    assert {c["name"] for c in doc["categories"]} == set("0123456789")
    first = next(s for s in formats.read_dataset(scene_dir)[0]["train"] if s.objects)
    x1, y1, x2, y2 = first.objects[0]["box"]
    assert doc["annotations"][0]["bbox"] == [x1, y1, x2 - x1, y2 - y1]  # COCO's [x, y, w, h]
    assert_same(original, flat(formats.read_dataset(coco)[0]), 1e-9)

    yolo = formats.convert(coco, tmp_path / "yolo", "yolo")
    assert formats.detect_format(yolo) == "yolo"
    label_file = next((yolo / "labels" / "train").glob("*.txt"))
    for line in label_file.read_text().splitlines():
        c, *rest = line.split()
        assert 0 <= int(c) < 10 and all(0 <= float(v) <= 1 for v in rest)
    assert_same(original, flat(formats.read_dataset(yolo)[0]), 1e-3)  # 6 decimals of a 64 px frame

    back = formats.convert(yolo, tmp_path / "back", "scenes")
    assert formats.detect_format(back) == "scenes"
    assert_same(original, flat(formats.read_dataset(back)[0]), 1e-3)


def test_yolo_errors_name_the_file_and_line(tmp_path):
    (tmp_path / "images" / "train").mkdir(parents=True)
    (tmp_path / "labels" / "train").mkdir(parents=True)
    Image.new("RGB", (10, 10)).save(tmp_path / "images" / "train" / "a.png")
    (tmp_path / "labels" / "train" / "a.txt").write_text("0 0.5 0.5 0.2 0.2\n7 0.5 0.5 0.1 0.1\n")
    formats.write_classes(tmp_path, ["cat", "dog"])
    with pytest.raises(ConfigError, match=r"a.txt:2"):
        formats.read_dataset(tmp_path)


def test_window_crops_of_multi_object_scenes_are_class_folders_of_objects_and_background(scene_dir, tmp_path):
    from cnntool.data.crops import CropConfig, write_crops

    splits, _ = formats.read_dataset(scene_dir)
    counts = write_crops([scene_dir], tmp_path, CropConfig(size=32, frame=0, copies=1, jitter=0.0, background=2))
    objects = sum(len(s.objects) for s in splits["train"])
    found = {p.name: len(list(p.iterdir())) for p in (tmp_path / "train").iterdir()}
    assert sum(v for k, v in found.items() if k != "background") == objects
    assert 0 < found["background"] <= 4 * len(splits["train"]) and counts["train"] == sum(found.values())
    crop = next((tmp_path / "train" / "background").glob("*.png"))
    assert Image.open(crop).size == (32, 32)
