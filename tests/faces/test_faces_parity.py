"""Parity with real dlib: its outputs on real photos were recorded once (tests/fixtures/dlib/make_fixtures.py)
and are compared here with cnntool's dlib-free port. Photos come from scikit-image (pip) and opencv-doc (apt);
a photo whose package is absent is skipped with the reason."""

import importlib.util
import json
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnntool.faces.api import FaceDetector, FaceEmbedder, ShapePredictor, align_chip

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dlib"
DATA = json.loads((FIXTURES / "dlib_outputs.json").read_text())
RECORDS = {r["name"]: r for r in DATA["photos"]}

_spec = importlib.util.spec_from_file_location("dlib_fixture_photos", FIXTURES / "photos.py")
photos = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = photos  # dataclasses look their module up there
_spec.loader.exec_module(photos)

# Detector runs cost ~0.5–2 s each on 2 cores; the rest run under -m slow.
FAST_DETECT = ["astronaut", "astronaut_rot15", "face_swapped", "mona_lisa"]
SLOW_DETECT = [n for n in RECORDS if n not in FAST_DETECT]


@lru_cache(maxsize=None)
def image(name: str) -> np.ndarray:
    try:
        return photos.load(name)
    except photos.MissingPhoto as e:
        pytest.skip(str(e))


def box(rect):  # dlib inclusive rect → cnntool box
    l, t, r, b = rect
    return [l, t, r + 1, b + 1]


def iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    area = lambda r: (r[2] - r[0]) * (r[3] - r[1])
    return inter / (area(a) + area(b) - inter)


def faces_of(name):
    return [(name, i) for i, _ in enumerate(RECORDS[name]["faces"])]


ALL_FACES = [f for name in RECORDS for f in faces_of(name)]
CHIPS = [(n, i) for n, i in ALL_FACES if "chip" in RECORDS[n]["faces"][i]]


def test_fixture_covers_enough_real_faces():
    assert len([r for r in RECORDS.values() if r["faces"]]) >= 6
    assert DATA["dlib_version"]


@pytest.mark.parametrize("name,i", CHIPS)
def test_embedding_matches_dlib_on_its_own_chips(name, i):
    face = RECORDS[name]["faces"][i]
    chip = Image.open(FIXTURES / face["chip"])
    ours = FaceEmbedder().embed([chip])[0].numpy()
    assert np.abs(ours - np.array(face["embedding_from_chip"])).max() <= 1e-4


def _check_detections(name):
    want = RECORDS[name]["faces"]
    got = FaceDetector(upsample=RECORDS[name]["upsample"]).detect(image(name))
    assert len(got) == len(want)
    for face in want:
        best = max(got, key=lambda d: iou(d.box, box(face["rect"])))
        assert iou(best.box, box(face["rect"])) >= 0.95
        assert best.score == pytest.approx(face["score"], abs=1e-4)


@pytest.mark.parametrize("name", FAST_DETECT)
def test_detector_matches_dlib(name):
    _check_detections(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW_DETECT)
def test_detector_matches_dlib_more_photos(name):
    _check_detections(name)


@pytest.mark.parametrize("name,i", ALL_FACES)
def test_5_point_landmarks_match_dlib(name, i):
    face = RECORDS[name]["faces"][i]
    pts = np.array(ShapePredictor("5").predict(image(name), box(face["rect"])))
    assert np.abs(pts - np.array(face["points5"])).max() <= 1


@pytest.mark.slow  # the first use converts the 68-point file (~50 s), later runs read the cache
@pytest.mark.parametrize("name,i", ALL_FACES)
def test_68_point_landmarks_match_dlib(name, i):
    face = RECORDS[name]["faces"][i]
    pts = np.array(ShapePredictor("68").predict(image(name), box(face["rect"])))
    assert np.abs(pts - np.array(face["points68"])).max() <= 1


@pytest.mark.parametrize("name,i", CHIPS)
def test_aligned_chip_and_embedding_match_dlib(name, i):
    face = RECORDS[name]["faces"][i]
    ours = np.asarray(align_chip(image(name), face["points5"])).astype(int)
    theirs = np.asarray(Image.open(FIXTURES / face["chip"])).astype(int)
    assert np.abs(ours - theirs).mean() <= 0.5
    emb = FaceEmbedder().embed([Image.fromarray(ours.astype(np.uint8))])[0].numpy()
    assert np.linalg.norm(emb - np.array(face["embedding_from_image"])) <= 0.01


def test_different_people_are_apart_same_person_close():
    by_name = {n: RECORDS[n]["faces"][i] for n, i in CHIPS}
    emb = FaceEmbedder()
    vectors = emb.embed([Image.open(FIXTURES / f["chip"]) for f in by_name.values()])
    e = dict(zip(by_name, vectors))
    assert emb.distance(e["astronaut"], e["astronaut_double"]) < FaceEmbedder.threshold
    for other in ("face_swapped", "mona_lisa"):
        assert emb.distance(e["astronaut"], e[other]) > FaceEmbedder.threshold
