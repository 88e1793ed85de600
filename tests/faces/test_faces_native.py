"""The compiled per-face stages (cnntool/faces/_native.c) against the numpy ones they replace: the same landmark
pixels and the same chip bytes on real photos with faces anywhere, boxes past every border, landmarks far outside
the image, large faces that take pyramid levels, and tiny images. Both are checked against real dlib in
test_faces_parity.py; this file covers the inputs no fixture has."""

import shutil

import numpy as np
import pytest

from cnntool.faces import chips, shape
from cnntool.faces.api import _shape_model, as_rgb_array

needs_native = pytest.mark.skipif(shape._native is None, reason="cnntool.faces._native was not built (no C "
                                  "compiler at install): cnntool runs the numpy stages, which test_faces_parity.py checks")


def test_native_module_is_built_where_a_compiler_is():
    # `pip install` builds it wherever a C compiler is; anywhere else the numpy stages run.
    if not (shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")):
        pytest.skip("no C compiler here: cnntool runs the numpy stages")
    assert shape._native is not None and chips._native is shape._native, "pip install did not build _native"


@pytest.fixture(scope="module")
def photo():
    skimage_data = pytest.importorskip("skimage.data", reason="scikit-image supplies the test photo")
    return as_rgb_array(skimage_data.astronaut())


def numpy_only(monkeypatch):
    monkeypatch.setattr(shape, "_native", None)
    monkeypatch.setattr(chips, "_native", None)


@needs_native
@pytest.mark.parametrize("kind", ["5", "68"])
def test_landmarks_equal_numpy_on_random_boxes(kind, photo, monkeypatch):
    rng = np.random.default_rng(int(kind))
    model = _shape_model(kind)
    rects = []
    for _ in range(40):  # faces anywhere, of any size, including boxes that leave the image on any side
        side = int(rng.integers(8, 700))
        left, top = (int(v) for v in rng.integers(-side, 512, 2))
        rects.append((left, top, left + side, top + int(side * rng.uniform(0.7, 1.4))))
    native = [model.predict(photo, r) for r in rects]
    numpy_only(monkeypatch)
    for r, got in zip(rects, native):
        assert np.array_equal(got, model.predict(photo, r)), r


@needs_native
def test_chips_equal_numpy_everywhere(photo, monkeypatch):
    rng = np.random.default_rng(0)
    cases = []
    for _ in range(60):
        # Five points of a face of random size (some needing pyramid levels), angle and place, part outside.
        size = rng.uniform(5, 1500)
        angle = rng.uniform(-np.pi, np.pi)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        centre = rng.uniform(-300, 800, 2)
        pts = (np.array(chips.TEMPLATE5) - 0.5) @ rot.T * size + centre
        cases.append(np.round(pts).tolist())
    cases.append([[0, 0]] * 5)  # all points alike: no scale, no rotation
    images = [photo, np.ascontiguousarray(photo[:7, :9]), np.ascontiguousarray(photo[:1, :1])]
    native = [[chips.extract_chip(img, p) for p in cases] for img in images]
    numpy_only(monkeypatch)
    for img, outs in zip(images, native):
        for p, got in zip(cases, outs):
            assert np.array_equal(got, chips.extract_chip(img, p)), (img.shape, p)


@needs_native
def test_pyramid_down2_equals_numpy(photo):
    for h, w in [(5, 5), (6, 9), (37, 52), (512, 512)]:
        region = photo[3:3 + h, 4:4 + w] if h < 500 else photo
        region = np.ascontiguousarray(region)
        out = np.empty(((h - 3) // 2, (w - 3) // 2, 3), np.uint8)
        shape._native.pyramid_down2(region, h, w, 0, 0, h, w, out)
        assert np.array_equal(out, chips.pyramid_down2(region))


@needs_native
def test_native_refuses_regions_outside_the_image(photo):
    out = np.empty((150, 150, 3), np.uint8)
    with pytest.raises(ValueError, match="region outside"):
        shape._native.sample_chip(photo, 512, 512, 500, 0, 20, 20, 0, 0, 1, 0, 0, 1, 150, out)
    with pytest.raises(ValueError, match="bytes"):
        shape._native.sample_chip(photo, 600, 512, 0, 0, 20, 20, 0, 0, 1, 0, 0, 1, 150, out)


def test_a_shape_model_with_indices_outside_its_arrays_is_refused():
    # The C loops trust the indices, so a file whose splits or anchors point outside is refused at load.
    from cnntool.dlib import ShapePredictorData
    from cnntool.faces.shape import ShapeModel

    good = _shape_model("5").d
    for field, value in (("splits", good.deltas.shape[1]), ("splits", -1), ("anchors", good.initial_shape.shape[0])):
        arrays = good.arrays()
        arrays[field] = arrays[field].copy()
        arrays[field].flat[7] = value
        with pytest.raises(ValueError, match="out of range"):
            ShapeModel(ShapePredictorData(**arrays))
