"""Scene and document generators: deterministic by seed, held-out pools disjoint from training ones, and
every box really encloses the pasted object's pixels."""

import json

import numpy as np
import pytest
from PIL import Image

from cnntool.data import documents, scenes
from cnntool.data.builtin import photo_paths

CONFIG = scenes.SceneConfig(size=96)


def test_the_same_seed_gives_the_same_files(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    scenes.write_dataset(a, {"train": 4, "test": 3}, seed=5, config=CONFIG)
    scenes.write_dataset(b, {"train": 4, "test": 3}, seed=5, config=CONFIG)
    for name in ("train.json", "test.json", "classes.txt", "train/000003.png", "test/000002.png"):
        assert (a / name).read_bytes() == (b / name).read_bytes()
    other = scenes.make_scene(scenes.scene_rng(6, "train", 0), backgrounds=scenes.background_paths("train"),
                              pool=scenes.object_pool("digits", "train"), config=CONFIG)
    first = np.asarray(Image.open(a / "train/000000.png"))
    assert not np.array_equal(first, np.asarray(other.image))


def test_a_scene_does_not_depend_on_how_many_are_made(tmp_path):
    scenes.write_split(tmp_path / "few", "val", 2, seed=1, config=CONFIG)
    scenes.write_split(tmp_path / "more", "val", 5, seed=1, config=CONFIG)
    few = json.loads((tmp_path / "few/val.json").read_text())
    more = json.loads((tmp_path / "more/val.json").read_text())
    assert few == more[:2]
    assert (tmp_path / "few/val/000001.png").read_bytes() == (tmp_path / "more/val/000001.png").read_bytes()


def test_parallel_workers_write_the_same_files(tmp_path):
    config = scenes.SceneConfig(size=64, max_objects=3, mix_backgrounds=True)
    scenes.write_dataset(tmp_path / "one", {"train": 7, "test": 3}, seed=2, config=config)
    scenes.write_dataset(tmp_path / "three", {"train": 7, "test": 3}, seed=2, config=config, workers=3)
    written = sorted(p.relative_to(tmp_path / "one") for p in (tmp_path / "one").rglob("*") if p.is_file())
    assert len(written) == 1 + 2 + 7 + 3  # classes.txt, two annotation files, the scenes
    for name in written:
        assert (tmp_path / "one" / name).read_bytes() == (tmp_path / "three" / name).read_bytes()


def test_annotation_format_single_and_multi(tmp_path):
    scenes.write_split(tmp_path, "train", 6, seed=0, config=CONFIG)
    for entry in json.loads((tmp_path / "train.json").read_text()):
        assert set(entry) == {"image", "label", "box"}
        assert (entry["box"] is None) == (entry["label"] is None)
        if entry["box"] is not None:
            x1, y1, x2, y2 = entry["box"]
            assert 0 <= x1 < x2 <= 96 and 0 <= y1 < y2 <= 96 and entry["label"] in "0123456789"
    multi = scenes.SceneConfig(size=96, max_objects=4, empty_fraction=0.0, min_scale=0.2, max_scale=0.35)
    scenes.write_split(tmp_path / "m", "train", 4, seed=0, config=multi)
    entries = json.loads((tmp_path / "m/train.json").read_text())
    assert all(set(e) == {"image", "objects"} and 1 <= len(e["objects"]) <= 4 for e in entries)
    assert any(len(e["objects"]) > 1 for e in entries)


def test_mixed_backgrounds_change_training_scenes_only(tmp_path):
    mixed = scenes.SceneConfig(size=96, mix_backgrounds=True)
    scenes.write_dataset(tmp_path / "plain", {"train": 3, "val": 2, "test": 2}, seed=4, config=CONFIG)
    scenes.write_dataset(tmp_path / "mixed", {"train": 3, "val": 2, "test": 2}, seed=4, config=mixed)
    for name in ("val/000001.png", "test/000001.png", "val.json", "test.json"):
        assert (tmp_path / "plain" / name).read_bytes() == (tmp_path / "mixed" / name).read_bytes()
    for i in range(3):
        plain = np.asarray(Image.open(tmp_path / f"plain/train/{i:06d}.png"))
        assert not np.array_equal(plain, np.asarray(Image.open(tmp_path / f"mixed/train/{i:06d}.png")))


def test_a_scene_names_the_photo_under_it(tmp_path):
    # Two flat photos of different colours: the scene's corner pixel tells which one was drawn.
    photos = []
    for name, colour in (("red.png", (220, 20, 20)), ("blue.png", (20, 20, 220))):
        photos.append(tmp_path / name)
        Image.new("RGB", (200, 200), colour).save(photos[-1])
    pool = scenes.object_pool("digits", "train")
    for seed in range(6):
        scene = scenes.make_scene(np.random.default_rng(seed), backgrounds=photos, pool=pool, config=CONFIG)
        corner = np.asarray(scene.image)[0, 0]
        assert scene.background == ("red.png" if corner[0] > corner[2] else "blue.png")
    mixed = scenes.make_scene(np.random.default_rng(0), backgrounds=photos, pool=pool,
                              config=scenes.SceneConfig(size=96, mix_backgrounds=True))
    assert mixed.background == "mixed"


def test_a_mixed_background_is_tiled_from_the_given_photos(tmp_path):
    # Flat photos stay flat through turns, flips and recolouring: each tile is one colour, one rectangle.
    photos = []
    for i, colour in enumerate([(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40)]):
        photos.append(tmp_path / f"flat{i}.png")
        Image.new("RGB", (60, 50), colour).save(photos[-1])
    counts = []
    for seed in range(24):
        background = scenes.mixed_background(np.random.default_rng(seed), photos, 40)
        np.testing.assert_array_equal(background, scenes.mixed_background(np.random.default_rng(seed), photos, 40))
        assert background.shape == (40, 40, 3) and background.min() >= 0 and background.max() <= 255
        colours = np.unique(background.reshape(-1, 3), axis=0)
        for colour in colours:
            rows, cols = np.nonzero((background == colour).all(-1))
            assert rows.size == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)  # a rectangle
        counts.append(len(colours))
    assert set(counts) <= {1, 2, 3, 4} and 1 in counts and 4 in counts


def test_extra_photos_join_training_and_validation_backgrounds_only(tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, colour in enumerate([(250, 0, 0), (0, 0, 250)]):
        Image.new("RGB", (120, 100), colour).save(folder / f"p{i}.jpg")
    (folder / "notes.txt").write_text("not a photo")
    extra = scenes.photo_files([folder])
    assert [p.name for p in extra] == ["p0.jpg", "p1.jpg"]
    assert scenes.background_paths("train", extra)[-2:] == list(extra)
    assert scenes.background_paths("val", extra)[-2:] == list(extra)
    assert scenes.background_paths("test", extra) == scenes.background_paths("test")
    with_extra = scenes.SceneConfig(size=96, extra_photos=extra)
    scenes.write_dataset(tmp_path / "plain", {"train": 2, "test": 2}, seed=4, config=CONFIG)
    scenes.write_dataset(tmp_path / "extra", {"train": 2, "test": 2}, seed=4, config=with_extra)
    assert (tmp_path / "plain/test.json").read_bytes() == (tmp_path / "extra/test.json").read_bytes()
    assert (tmp_path / "plain/test/000001.png").read_bytes() == (tmp_path / "extra/test/000001.png").read_bytes()


def test_validation_photos_are_the_whole_validation_pool_and_touch_no_other_split(tmp_path):
    folder = tmp_path / "unseen"
    folder.mkdir()
    Image.new("RGB", (150, 120), (0, 200, 0)).save(folder / "green.png")
    unseen = scenes.SceneConfig(size=96, val_photos=scenes.photo_files([folder]))
    counts = {"train": 2, "val": 6, "test": 2}
    scenes.write_dataset(tmp_path / "plain", counts, seed=3, config=CONFIG)
    scenes.write_dataset(tmp_path / "unseen-val", counts, seed=3, config=unseen)
    for name in ("train.json", "test.json", "train/000001.png", "test/000001.png"):
        assert (tmp_path / "plain" / name).read_bytes() == (tmp_path / "unseen-val" / name).read_bytes()
    for entry in json.loads((tmp_path / "unseen-val/val.json").read_text()):
        pixels = np.asarray(Image.open(tmp_path / "unseen-val" / entry["image"]))
        outside = np.ones(pixels.shape[:2], bool)
        if entry["box"]:  # grown by 3 px: the box is the mask's visible part, its faint edge reaches 1-2 px out
            x1, y1, x2, y2 = (int(v) for v in entry["box"])
            outside[max(y1 - 3, 0):y2 + 3, max(x1 - 3, 0):x2 + 3] = False
        assert (pixels[outside] == (0, 200, 0)).all()

    with pytest.raises(ValueError, match="already a training or held-out photo"):
        scenes.SceneConfig(val_photos=unseen.val_photos, extra_photos=unseen.val_photos)
    with pytest.raises(ValueError, match="already a training or held-out photo"):
        scenes.SceneConfig(val_photos=(photo_paths()[0],))


def test_extra_photos_that_are_not_photos_are_refused_up_front(tmp_path):
    fake = tmp_path / "fake.jpg"
    fake.write_text("a text file named .jpg")
    with pytest.raises(ValueError, match="not a readable photo"):
        scenes.photo_files([fake])
    with pytest.raises(ValueError, match="no such file"):
        scenes.photo_files([tmp_path / "missing"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no photos"):
        scenes.photo_files([tmp_path / "empty"])


def _cutouts(root):
    """A nested stamp folder: magenta discs with transparent corners, and one opaque picture to skip."""
    nested = root / "food" / "fruit"
    nested.mkdir(parents=True)
    disc = Image.new("RGBA", (60, 60), (0, 0, 0, 0))
    inside = Image.eval(Image.radial_gradient("L"), lambda v: 255 if v < 128 else 0).resize((60, 60))
    disc.paste((255, 0, 255, 255), mask=inside)
    disc.save(nested / "disc.png")
    disc.transpose(Image.ROTATE_90).save(root / "food" / "disc2.png")
    Image.new("RGB", (40, 40), (0, 255, 0)).save(nested / "opaque.png")
    return root


def test_clutter_cut_outs_are_found_through_subfolders_and_need_transparency(tmp_path):
    root = _cutouts(tmp_path / "stamps")
    assert [p.name for p in scenes.cutout_files([root])] == ["disc2.png", "disc.png"]
    with pytest.raises(ValueError, match="no such folder"):
        scenes.cutout_files([tmp_path / "missing"])
    opaque_only = tmp_path / "opaque"
    opaque_only.mkdir()
    Image.new("RGB", (40, 40), (0, 255, 0)).save(opaque_only / "flat.png")
    with pytest.raises(ValueError, match="no PNG cut-outs"):
        scenes.cutout_files([opaque_only])
    (opaque_only / "broken.png").write_text("a text file named .png")
    with pytest.raises(ValueError, match="broken.png: not a readable picture"):
        scenes.cutout_files([opaque_only])


def test_clutter_is_pasted_into_training_scenes_only(tmp_path):
    cluttered = scenes.SceneConfig(size=96, clutter=scenes.cutout_files([_cutouts(tmp_path / "stamps")]))
    counts = {"train": 12, "val": 2, "test": 2}
    scenes.write_dataset(tmp_path / "plain", counts, seed=4, config=CONFIG)
    scenes.write_dataset(tmp_path / "clutter", counts, seed=4, config=cluttered)
    for name in ("val.json", "test.json", "val/000001.png", "test/000001.png"):
        assert (tmp_path / "plain" / name).read_bytes() == (tmp_path / "clutter" / name).read_bytes()
    magenta = [((np.asarray(Image.open(tmp_path / kind / f"train/{i:06d}.png"), dtype=int)
                 - (255, 0, 255)) ** 2).sum(-1).min() == 0
               for kind in ("plain", "clutter") for i in range(12)]
    assert not any(magenta[:12]) and sum(magenta[12:]) >= 4  # 0..3 discs a scene: most scenes get one
    for entry in json.loads((tmp_path / "clutter/train.json").read_text()):  # the annotations stay the objects'
        assert (entry["label"] is None) == (entry["box"] is None)


@pytest.mark.parametrize("seed", range(8))
def test_the_pasted_object_lies_inside_its_box_and_touches_every_side(seed):
    rng = np.random.default_rng(seed)
    canvas = np.full((96, 96, 3), 128.0)
    patch = scenes.object_pool("digits", "train").images[seed * 37]
    box = scenes.paste_object(rng, canvas, patch, CONFIG, [])
    changed = np.abs(canvas - 128.0).max(axis=2) > 0.12 * 255  # visibly changed pixels (alpha above ~0.1)
    rows, cols = np.nonzero(changed)
    x1, y1, x2, y2 = (int(v) for v in box)
    assert rows.size > 20
    assert x1 <= cols.min() and cols.max() < x2 and y1 <= rows.min() and rows.max() < y2
    # Tight: the box is no more than a pixel or two wider than what is visibly there.
    assert cols.min() - x1 <= 2 and x2 - 1 - cols.max() <= 2 and rows.min() - y1 <= 2 and y2 - 1 - rows.max() <= 2


def test_held_out_objects_and_photos_are_disjoint_from_training():
    train, test = scenes.object_pool("digits", "train"), scenes.object_pool("digits", "test")
    assert len(train.labels) == 4500 and len(test.labels) == 500
    assert np.bincount(test.labels).tolist() == [50] * 10
    train_bytes = {img.tobytes() for img in train.images}
    assert sum(img.tobytes() in train_bytes for img in test.images) < 5  # the sheet may repeat a blank cell
    photos = photo_paths()
    bg_train, bg_test = set(scenes.background_paths("train")), set(scenes.background_paths("test"))
    assert bg_train.isdisjoint(bg_test) and bg_train | bg_test == set(photos) and len(bg_test) >= 5
    assert set(scenes.background_paths("val")) == bg_train
    docs_train = set(scenes.split_paths(documents.document_paths(), "train"))
    docs_test = set(scenes.split_paths(documents.document_paths(), "test"))
    assert docs_train.isdisjoint(docs_test) and len(docs_test) >= 5


def test_document_scenes_are_deterministic_and_corners_are_in_frame(tmp_path):
    cfg = documents.DocumentConfig(size=96)
    documents.write_dataset(tmp_path / "a", {"train": 3}, seed=2, config=cfg)
    documents.write_dataset(tmp_path / "b", {"train": 3}, seed=2, config=cfg)
    assert (tmp_path / "a/train.json").read_bytes() == (tmp_path / "b/train.json").read_bytes()
    for entry in json.loads((tmp_path / "a/train.json").read_text()):
        pts = np.array(entry["points"])
        assert pts.shape == (4, 2) and (pts > 0).all() and (pts < 96).all()
        assert entry["point_names"] == list(documents.CORNER_NAMES)
        # Top-left is left of top-right and above bottom-left (rotation stays within ±20° + jitter).
        assert pts[0, 0] < pts[1, 0] and pts[0, 1] < pts[3, 1]


def test_document_corners_are_where_the_document_is():
    """A white page on a black background: the pixels inside the annotated quadrilateral are bright, a
    ring just outside it is dark."""
    from PIL import ImageDraw

    cfg = documents.DocumentConfig(size=96, margin=0.0)
    rng = np.random.default_rng(3)
    quad = documents._quad(rng, 0.8, cfg)
    page = Image.new("RGB", (80, 100), (255, 255, 255))
    coefficients = documents.perspective_coefficients(quad, [(0, 0), (80, 0), (80, 100), (0, 100)])
    warped = np.asarray(page.transform((96, 96), Image.PERSPECTIVE, coefficients, Image.BILINEAR).convert("L"))
    inside = Image.new("L", (96, 96), 0)
    ImageDraw.Draw(inside).polygon([tuple(p) for p in quad], fill=255)
    inner = np.asarray(inside) > 0
    from scipy.ndimage import binary_dilation, binary_erosion  # scikit-image depends on scipy

    assert warped[inner].mean() > 240
    assert warped[binary_erosion(inner, iterations=1)].min() > 200
    ring = binary_dilation(inner, iterations=3) & ~binary_dilation(inner, iterations=1)
    assert warped[ring].mean() < 15
