"""The torch-free face API: import cost, conventions, errors, and same/different person on real photos."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from cnntool.faces.api import FaceDetector, FaceEmbedder, ShapePredictor, align_chip, as_rgb_array, box_to_rect
from cnntool.faces.chips import pyramid_down2
from cnntool.faces.pyramid import tile_layout
from cnntool.faces.rects import Rect, lround, nms


def test_api_import_does_not_load_torch():
    code = "import sys, cnntool.faces.api; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_box_convention_roundtrips_dlib_rect():
    assert box_to_rect([10, 20, 30, 40]) == (10, 20, 29, 39)


def test_bad_inputs_are_clear():
    with pytest.raises(ValueError, match="'5' or '68'"):
        ShapePredictor("7")
    with pytest.raises(ValueError, match="150"):
        FaceEmbedder().embed([Image.new("RGB", (100, 100))])
    with pytest.raises(ValueError, match="RGB"):
        as_rgb_array(np.zeros((4, 4), np.float32))


def test_lround_and_nms_follow_dlib():
    assert [lround(v) for v in (2.5, -2.5, 1.49)] == [3, -3, 1]
    a, b, c = Rect(0, 0, 9, 9), Rect(1, 1, 10, 10), Rect(50, 50, 59, 59)
    kept = nms([(0.5, b), (0.9, a), (0.7, c)], iou_thresh=0.338, covered_thresh=1.0)
    assert kept == [(0.9, a), (0.7, c)]


def test_pyramid_layout_keeps_levels_apart():
    rects, nr, nc = tile_layout(342, 548, padding=10, outer=11)
    assert rects[0] == Rect(11, 11, 11 + 547, 11 + 341)
    assert all(r.left >= 0 and r.top >= 0 and r.right < nc and r.bottom < nr for r in rects)
    for i, r in enumerate(rects):
        for s in rects[i + 1:]:
            assert r.intersect(s).area() == 0


def test_banded_streamed_pyramid_scores_equal_the_whole_canvas(monkeypatch):
    """A photo's canvas is made and scored a band at a time; the scores must be those of the whole canvas."""
    import torch

    from cnntool.faces import mmod, pyramid
    from cnntool.faces.api import _detector_net

    rng = np.random.default_rng(0)
    rgb = np.kron(rng.integers(0, 256, (60, 90, 3), dtype=np.uint8), np.ones((5, 5, 1), np.uint8))  # 300×450
    net = _detector_net()
    monkeypatch.setattr(pyramid, "KEEP_LEVEL_PIXELS", 20_000)  # most levels streamed, the smallest kept
    monkeypatch.setattr(pyramid, "CHUNK_ROWS", 7)
    monkeypatch.setattr(mmod, "STRIDED_BAND_PIXELS", 50_000)
    monkeypatch.setattr(mmod, "PADDED_BAND_ROWS", 9)
    padding, outer = net.input["pyramid_padding"], net.input["pyramid_outer_padding"]
    canvas = pyramid.Canvas(rgb, net.mean, padding, outer)
    assert any(isinstance(canvas._chain(i), pyramid.StreamedLevel) for i in range(1, 3))
    with torch.no_grad():
        banded = torch.cat([rows for _, rows in net.score_bands(canvas)])
        whole_canvas = pyramid.Canvas(rgb, net.mean, padding, outer).strip(0, canvas.height)
        whole = net(whole_canvas)[0, 0]
    assert banded.shape == whole.shape
    assert (banded - whole).abs().max() <= 1e-5


def test_pyramid_down2_is_a_binomial_blur_and_subsample():
    flat = np.full((20, 30, 3), 77, np.uint8)
    out = pyramid_down2(flat)
    assert out.shape == (8, 13, 3) and (out == 77).all()


def test_same_person_close_different_people_far():
    skimage_data = pytest.importorskip("skimage.data", reason="scikit-image supplies the test photo")
    astronaut = skimage_data.astronaut()
    rotated = np.asarray(Image.fromarray(astronaut).rotate(15, resample=Image.Resampling.BILINEAR))
    other = np.ascontiguousarray(astronaut[:, ::-1])  # mirror image: still the same person
    det, sp, emb = FaceDetector(), ShapePredictor("5"), FaceEmbedder()
    chips = []
    for img in (astronaut, rotated, other):
        (face,) = det.detect(img)
        chips.append(align_chip(img, sp.predict(img, face.box)))
    e = emb.embed(chips)
    assert e.shape == (3, 128)
    assert emb.distance(e[0], e[1]) < FaceEmbedder.threshold
    assert emb.distance(e[0], e[2]) < FaceEmbedder.threshold
    noise = np.random.default_rng(0).integers(0, 256, (150, 150, 3), dtype=np.uint8)
    assert emb.distance(e[0], emb.embed([noise])[0]) > FaceEmbedder.threshold
