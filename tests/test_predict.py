"""The pipeline's own rules, with a stand-in model: batches that fail are split so one image costs one record."""

import numpy as np
import pytest
import torch
from torch import nn

from cnntool import tasks
from cnntool.errors import ConfigError
from cnntool.loader import LoadedModel
from cnntool.engine.predict import Item, Predictor, batched
from cnntool.preprocess import Geometry
from cnntool.registry import InputSpec, ModelSpec

SPEC = ModelSpec(name="refuses-white", task="classify", builder="torch.nn:Identity", classes=("dark", "light"),
                 input=InputSpec(size=(2, 2), channels=1, mean=(0.0,), std=(1.0,)))


class RefusesWhite(nn.Module):
    """Mean brightness as two logits; raises, like a conv on a too-small input, on an all-white image."""

    def forward(self, x):
        if (x.flatten(1) >= 1.0).all(dim=1).any():
            raise RuntimeError("cannot take a white image\nsecond line")
        m = x.flatten(1).mean(1, keepdim=True)
        return torch.cat([1 - m, m], dim=1) * 10


def item(name, value):
    return Item(name, name, np.full((1, 2, 2), value, dtype=np.uint8), Geometry(2, 2, 1.0, 1.0))


def test_one_image_the_model_refuses_costs_only_its_own_record():
    predictor = Predictor(tasks.get("classify"), LoadedModel("refuses-white", SPEC, RefusesWhite()), "cpu", {"topk": 1})
    records = predictor([item("a", 0), item("b", 255), item("c", 250)])
    assert [r.source for r in records] == ["a", "b", "c"]
    assert records[0].fields["predictions"][0]["label"] == "dark"
    assert records[1].error == {"type": "ModelError",
                                "message": "the model cannot process this image (cannot take a white image)"}
    assert records[2].fields["predictions"][0]["label"] == "light"


def test_configuration_errors_still_end_the_run():
    class Misconfigured(nn.Module):
        def forward(self, x):
            raise ConfigError("--classes: unknown class 'cat'")

    predictor = Predictor(tasks.get("classify"), LoadedModel("m", SPEC, Misconfigured()), "cpu", {})
    with pytest.raises(ConfigError):
        predictor([item("a", 0)])


def test_batches_hold_the_requested_good_images_and_pauses_end_them_early():
    bad = Item("bad", "bad", error=ValueError("x"))
    good = [item(str(i), 0) for i in range(5)]
    groups = list(batched(iter([good[0], bad, good[1], good[2], None, good[3], good[4]]), 2))
    assert [[i.source for i in g] for g in groups] == [["0", "bad", "1"], ["2"], ["3", "4"]]


def test_classify_tta_flip_scores_are_the_mean_over_the_image_and_its_mirror_file(tmp_path):
    """`classify --tta-flip` against the plain pipeline run on the image and on a mirrored copy written to disk."""
    from pathlib import Path

    from PIL import Image, ImageOps

    from cnntool.engine.predict import RunOptions, predict

    digits = sorted(Path(__file__).parents[1].joinpath("examples/digits").glob("*.png"))[:4]
    mirrored = []
    for path in digits:
        mirrored.append(tmp_path / path.name)
        ImageOps.mirror(Image.open(path)).save(mirrored[-1])

    def scores(paths, **task_options):
        records = predict(tasks.get("classify"), [str(p) for p in paths], RunOptions(device="cpu", threads=1, quiet=True,
                                                                          task_options={"topk": 10, **task_options}))
        return [{p["label"]: p["score"] for p in r.fields["predictions"]} for r in records]

    flipped = scores(digits, tta_flip=True)
    for both, plain, mirror in zip(flipped, scores(digits), scores(mirrored)):
        for label, score in both.items():
            assert score == pytest.approx((plain[label] + mirror[label]) / 2, abs=1e-5)


@pytest.mark.parametrize("name, message", [
    ("tpu", "unknown device 'tpu'; valid: auto, cpu, cuda, cuda:N, mps"),
    ("cuda:x", "unknown device"),
    ("cuda", "CUDA is not available"),
    ("cuda:1", "CUDA is not available"),
])
def test_a_device_that_cannot_be_used_is_one_line(monkeypatch, name, message):
    from cnntool.device import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        resolve_device(name)
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
