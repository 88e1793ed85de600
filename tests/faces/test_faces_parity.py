"""Parity with real dlib: its outputs on real photos were recorded once (tests/fixtures/dlib/make_fixtures.py)
and are compared here with cnntool's dlib-free port: the same faces with the same integer rectangles, scores
within 1e-4, the same landmark pixels and chip bytes (from the compiled stages and from numpy's), descriptors
within 1e-5. Photos come from scikit-image (pip) and opencv-doc (apt); a photo whose package is absent is
skipped with the reason."""

import hashlib
import importlib.util
import json
import sys
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cnntool.faces import chips, shape
from cnntool.faces.api import FaceDetector, FaceEmbedder, ShapePredictor, align_chip

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dlib"
DATA = json.loads((FIXTURES / "dlib_outputs.json").read_text())
RECORDS = {r["name"]: r for r in DATA["photos"]}
SCORE_TOLERANCE, EMBEDDING_TOLERANCE = 1e-4, 1e-5

_spec = importlib.util.spec_from_file_location("dlib_fixture_photos", FIXTURES / "photos.py")
photos = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = photos  # dataclasses look their module up there
_spec.loader.exec_module(photos)

# Detector runs cost ~0.5–2 s each on 2 cores (the large and upsampled photos far more): a few photos that
# cover upsample 0, 1 and 2 and faces past the border run by default, the rest under -m slow.
FAST_DETECT = ["astronaut", "astronaut_quarter", "astronaut_corner", "face_swapped", "lena_right_edge"]
SLOW_DETECT = [n for n in RECORDS if n not in FAST_DETECT]


@lru_cache(maxsize=None)
def image(name: str) -> np.ndarray:
    try:
        return photos.load(name)
    except photos.MissingPhoto as e:
        pytest.skip(str(e))


@pytest.fixture(params=["compiled", "numpy"])
def stages(request, monkeypatch):
    """Landmarks and chips run by cnntool.faces._native (where it was built) and by the numpy fallback."""
    if request.param == "numpy":
        monkeypatch.setattr(shape, "_native", None)
        monkeypatch.setattr(chips, "_native", None)
    elif shape._native is None:
        pytest.skip("cnntool.faces._native was not built (no C compiler at install)")
    return request.param


def box(rect):  # dlib inclusive rect → cnntool box
    l, t, r, b = rect
    return [l, t, r + 1, b + 1]


def faces_of(name):
    return [(name, i) for i, _ in enumerate(RECORDS[name]["faces"])]


ALL_FACES = [f for name in RECORDS for f in faces_of(name)]
CHIPS = [(n, i) for n, i in ALL_FACES if "chip" in RECORDS[n]["faces"][i]]


def test_fixture_covers_the_cases_that_matter():
    records = RECORDS.values()
    assert len(RECORDS) >= 12 and DATA["dlib_version"]
    assert len([r for r in records if r["faces"]]) >= 12 and any(not r["faces"] for r in records)
    assert {r["upsample"] for r in records} == {0, 1, 2}
    rects = [(f["rect"], r["size"]) for r in records for f in r["faces"]]
    assert any(right - left + 1 >= 1000 for (left, _, right, _), _ in rects)  # a large face
    assert any(l < 0 or t < 0 for (l, t, _, _), _ in rects)  # faces past the border, each side
    assert any(r >= w for (_, _, r, _), (w, _) in rects)
    assert any(b >= h for (_, _, _, b), (_, h) in rects)


def _check_detections(name):
    want = RECORDS[name]["faces"]
    got = FaceDetector(upsample=RECORDS[name]["upsample"]).detect(image(name))
    assert sorted(d.box for d in got) == sorted(box(f["rect"]) for f in want)  # the same faces, IoU 1.000
    scores = {tuple(d.box): d.score for d in got}
    for face in want:
        assert abs(scores[tuple(box(face["rect"]))] - face["score"]) <= SCORE_TOLERANCE


@pytest.mark.parametrize("name", FAST_DETECT)
def test_detector_matches_dlib(name):
    _check_detections(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", SLOW_DETECT)
def test_detector_matches_dlib_more_photos(name):
    _check_detections(name)


@pytest.mark.parametrize("name,i", ALL_FACES)
def test_5_point_landmarks_match_dlib(name, i, stages):
    face = RECORDS[name]["faces"][i]
    assert ShapePredictor("5").predict(image(name), box(face["rect"])) == face["points5"]


@pytest.mark.slow  # the first use converts the 68-point file (~50 s), later runs read the cache
@pytest.mark.parametrize("name,i", ALL_FACES)
def test_68_point_landmarks_match_dlib(name, i, stages):
    face = RECORDS[name]["faces"][i]
    assert ShapePredictor("68").predict(image(name), box(face["rect"])) == face["points68"]


@pytest.mark.parametrize("name,i", ALL_FACES)
def test_aligned_chip_and_embedding_match_dlib(name, i, stages):
    face = RECORDS[name]["faces"][i]
    chip = align_chip(image(name), face["points5"])
    assert hashlib.sha256(np.asarray(chip).tobytes()).hexdigest() == face["chip_sha256"]  # the same bytes
    emb = FaceEmbedder().embed([chip])[0].numpy()
    assert np.abs(emb - np.array(face["embedding_from_image"])).max() <= EMBEDDING_TOLERANCE


@pytest.mark.parametrize("name,i", CHIPS)
def test_embedding_matches_dlib_on_its_own_chips(name, i):
    face = RECORDS[name]["faces"][i]
    chip = Image.open(FIXTURES / face["chip"])
    assert hashlib.sha256(np.asarray(chip).tobytes()).hexdigest() == face["chip_sha256"]
    ours = FaceEmbedder().embed([chip])[0].numpy()
    assert np.abs(ours - np.array(face["embedding_from_chip"])).max() <= EMBEDDING_TOLERANCE


def test_different_people_are_apart_same_person_close():
    by_name = {n: RECORDS[n]["faces"][i] for n, i in CHIPS if i == 0}
    emb = FaceEmbedder()
    vectors = emb.embed([Image.open(FIXTURES / f["chip"]) for f in by_name.values()])
    e = dict(zip(by_name, vectors))
    for same in ("astronaut_double", "astronaut_large", "astronaut_corner"):
        assert emb.distance(e["astronaut"], e[same]) < FaceEmbedder.threshold
    for other in ("face_swapped", "mona_lisa"):
        assert emb.distance(e["astronaut"], e[other]) > FaceEmbedder.threshold
