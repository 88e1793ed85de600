"""Models trained on light objects on black (OpenCV's digits, Fashion-MNIST) read dark-on-light images the
right way round: the input spec's `foreground`, read off the training data and kept in the weights."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from cnntool import weights

from cnntool.models import catalog
from cnntool import loader as loading
from cnntool.data.builtin import load_opencv_digits
from cnntool.data.classify import foreground_of
from cnntool.preprocess import Preprocessor

EXAMPLES = sorted((Path(__file__).parents[1] / "examples/digits").glob("*.png"))


def _resized(spec, img):
    return np.asarray(Preprocessor(spec).geometry_and_resized(img)[0], dtype=int)


def test_held_out_digits_written_dark_on_light_reach_the_model_as_the_originals_do():
    spec = catalog.get("lenet5-digits").input
    assert spec.foreground == "light" and len(EXAMPLES) == 20
    for path in EXAMPLES:
        original = Image.open(path).convert("L")
        inverted = ImageOps.invert(original)
        # Equal up to two roundings of 255 − x against x: the bilinear resize's and the contrast stretch's.
        assert np.abs(_resized(spec, inverted) - _resized(spec, original)).max() <= 2, path.name
        assert not np.array_equal(_resized(catalog.get("lenet5-relu").input, inverted), _resized(spec, original))


def test_dark_turns_light_on_dark_images_and_any_leaves_them():
    spec = catalog.get("lenet5-relu").input
    light_on_dark = Image.open(EXAMPLES[0]).convert("L")
    as_is = _resized(spec, light_on_dark)
    assert np.abs(_resized(spec, ImageOps.invert(light_on_dark)) - (255 - as_is)).max() <= 1  # "any": untouched
    dark = _resized(replace(spec, foreground="dark"), light_on_dark)
    assert np.abs(dark - (255 - as_is)).max() <= 1
    with pytest.raises(ValueError, match="foreground must be one of any, light, dark"):
        replace(spec, foreground="white")


def test_the_ground_is_read_off_real_training_data():
    images, _ = load_opencv_digits()
    digits = torch.from_numpy(images[:, None])
    assert foreground_of(digits) == "light"
    assert foreground_of(255 - digits) == "dark"
    assert foreground_of(torch.cat([digits[:10], 255 - digits[:10]])) == "any"  # mixed grounds


def test_files_written_before_the_field_take_the_registrys_value_and_newer_files_their_own(tmp_path):
    model = catalog.get("lenet5-relu").build()
    old_input = {"size": [32, 32], "channels": 1, "mean": [0.5], "std": [0.5], "resize": "stretch",
                 "crop_fraction": 0.875, "fill": 0}
    for name, recorded, expected in (("old", {}, "light"), ("new", {"foreground": "any"}, "any")):
        meta = {"task": "classify", "model": "lenet5-relu", "kwargs": {"num_classes": 10},
                "classes": list("0123456789"), "input": {**old_input, **recorded}}
        path = weights.save(tmp_path / f"{name}.safetensors", model.state_dict(), meta)
        assert loading.load_model("lenet5-digits", str(path), task="classify").input.foreground == expected
    assert loading.load_model("lenet5-digits", None, task="classify").input.foreground == "light"
