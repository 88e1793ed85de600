"""The box reader (R-CNN's second stage for one box): crops are the image sampled where the box says, the
training crops hold the annotated object centred, and a localizer file with a reader multiplies the two
class distributions while p_c and the box stay the localizer's."""

import hashlib
import json

import numpy as np
import pytest
import torch
from PIL import Image

from train_helpers import run_cli, tiny_localizer

from cnntool import weights
from cnntool.data.crops import CropConfig, background_boxes, write_crops
from cnntool.errors import ConfigError
from cnntool.loader import load_model
from cnntool.models.reader import BoxReader, crop_boxes
from cnntool.models.yvector import BACKGROUND
from cnntool.registry import UnknownModelError
from cnntool.models.yvector import interpret

DIGITS = [str(d) for d in range(10)]


@pytest.mark.parametrize("context", [1.0, 1.5])
def test_a_crop_reads_the_image_at_its_bin_centres(context):
    # On a ramp (pixel i holds i, pixel i covering [i, i + 1)) bilinear sampling is exact: each output pixel
    # is the ramp at its bin's centre, minus the half pixel from pixel centres.
    ramp = torch.arange(16.0)
    image = torch.stack([ramp.expand(16, 16), ramp[:, None].expand(16, 16)])[None]  # x ramp, y ramp
    box = torch.tensor([[0.5, 0.5, 0.25, 0.125]])  # centre (8, 8) px; 4 px high, 2 px wide → a 4·context square
    crop = crop_boxes(image, box, size=4, context=context)
    side = 4 * context
    centres = 8 - side / 2 + (torch.arange(4) + 0.5) * side / 4
    assert torch.allclose(crop[0, 0], (centres - 0.5).expand(4, 4), atol=1e-5)
    assert torch.allclose(crop[0, 1], (centres - 0.5)[:, None].expand(4, 4), atol=1e-5)


COLOUR = torch.tensor([0.9, 0.3, 0.6])


def _read_one_colour(z, weight, *, reader_stats, background=None):
    """ŷ of a BoxReader whose localizer always outputs `z` and whose reader is a linear map (`weight`) of the crop's
    mean colour, on an image of one colour (so every crop inside it is that colour)."""

    class Fixed(torch.nn.Module):
        def forward(self, x):
            return z.expand(len(x), -1)

    reader = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(3, len(weight)))
    with torch.no_grad():
        reader[2].weight.copy_(torch.tensor(weight))
        reader[2].bias.zero_()
    model = BoxReader(Fixed(), reader, crop=8, context=1.2, localizer_stats=((0.5,) * 3, (0.25,) * 3),
                      reader_stats=reader_stats, background=background)
    with torch.no_grad():
        return interpret(model(((COLOUR - 0.5) / 0.25).reshape(1, 3, 1, 1).expand(1, 3, 32, 32)))


def test_the_reader_multiplies_class_probabilities_and_keeps_p_c_and_box():
    z = torch.tensor([[2.0, 0.1, -0.2, -1.0, -1.2, 1.0, 0.0, -1.0]])  # p_c, box, 3 classes
    y_hat = _read_one_colour(z, [[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0]], reader_stats=((0.2, 0.4, 0.6), (0.5,) * 3))
    read = torch.softmax((COLOUR - torch.tensor([0.2, 0.4, 0.6])) / 0.5, 0)
    product = torch.softmax(z[0, 5:], 0) * read
    assert torch.allclose(y_hat[0, 5:], product / product.sum(), atol=1e-5)
    assert torch.allclose(y_hat[0, :5], interpret(z)[0, :5], atol=1e-5)


def test_a_background_class_makes_p_c_a_product_of_experts_too():
    z = torch.tensor([[0.5, 0.1, -0.2, -1.0, -1.2, 1.0, 0.0, -1.0]])  # p_c, box, 3 classes
    # reader outputs: class 0, background, class 1, class 2
    y_hat = _read_one_colour(z, [[1.0, 0, 0], [2.0, 2.0, 0], [0, 1.0, 0], [0, 0, 1.0]],
                             reader_stats=((0.0,) * 3, (1.0,) * 3), background=1)
    read = torch.softmax(torch.tensor([0.9, 2.4, 0.3, 0.6]), 0)
    p_c = torch.sigmoid(torch.tensor(0.5))
    agree, disagree = p_c * (1 - read[1]), (1 - p_c) * read[1]
    assert y_hat[0, 0] == pytest.approx(float(agree / (agree + disagree)), abs=1e-5)
    product = torch.softmax(z[0, 5:], 0) * read[[0, 2, 3]]
    assert torch.allclose(y_hat[0, 5:], product / product.sum(), atol=1e-5)
    assert torch.allclose(y_hat[0, 1:5], interpret(z)[0, 1:5], atol=1e-5)


def test_background_boxes_keep_their_crop_off_the_object_and_come_at_the_asked_rate():
    rng = np.random.default_rng(0)
    sizes = np.array([[0.2, 0.1], [0.3, 0.3]])
    avoid = np.array([0.4, 0.5, 0.3, 0.2])
    boxes = [b for _ in range(500) for b in background_boxes(rng, 1.0, sizes, [avoid], 1.2)]
    assert len(boxes) > 450  # a place is found almost every time here
    for bx, by, bh, bw in boxes:
        half = max(bh, bw) * 1.2 / 2
        assert bw / 2 <= bx <= 1 - bw / 2 and bh / 2 <= by <= 1 - bh / 2
        assert abs(bx - avoid[0]) >= half + avoid[3] / 2 or abs(by - avoid[1]) >= half + avoid[2] / 2
        assert [bh, bw] in sizes.tolist()
    drawn = [len(background_boxes(rng, 0.5, sizes, [], 1.2)) for _ in range(4000)]
    assert set(drawn) == {0, 1} and np.mean(drawn) == pytest.approx(0.5, abs=0.03)


def _scene_dir(root, *, with_test=True):
    """Two 64×64 black scenes with a white 16-wide, 24-high rectangle ([16, 16, 32, 40]), one empty scene."""
    root.mkdir()
    image = np.zeros((64, 64, 3), np.uint8)
    image[16:40, 16:32] = 255
    Image.fromarray(image).save(root / "object.png")
    Image.fromarray(np.zeros_like(image)).save(root / "empty.png")
    entries = [{"image": "object.png", "label": "3", "box": [16, 16, 32, 40]},
               {"image": "empty.png", "label": None, "box": None},
               {"image": "object.png", "label": "7", "box": [16, 16, 32, 40]}]
    for split in ("train", "test") if with_test else ("train",):
        (root / f"{split}.json").write_text(json.dumps(entries))
    (root / "classes.txt").write_text("\n".join(DIGITS) + "\n")
    return root


def test_held_out_crops_hold_the_annotated_object_centred(tmp_path):
    counts = write_crops([_scene_dir(tmp_path / "s")], tmp_path / "crops", CropConfig(size=24, frame=64, copies=3))
    assert counts == {"train": 6, "test": 2}  # the empty scene gives none
    crop = np.asarray(Image.open(tmp_path / "crops/test/3/s-test-000000-0.png"))[..., 0]
    # The crop is a 28.8 px square (1.2 × the 24 px side) around the box: the rectangle fills rows 2.4 … 26.4
    # and columns 6.4 … 22.4 of it, i.e. rows 2 … 21 and columns 5 … 18 of the 24 crop pixels.
    assert crop[3:21, 6:18].min() == 255
    assert crop[:, :5].max() == 0 and crop[:, 19:].max() == 0 and crop[0].max() == 0 and crop[23].max() == 0
    assert sorted(p.name for p in (tmp_path / "crops/train/7").iterdir()) == [f"s-train-000002-{i}.png" for i in range(3)]
    recorded = json.loads((tmp_path / "crops/crops.json").read_text())
    assert recorded["counts"] == counts and recorded["context"] == 1.2 and recorded["classes"] == DIGITS


def test_background_crops_are_a_class_of_both_splits_and_miss_the_object(tmp_path):
    counts = write_crops([_scene_dir(tmp_path / "s")], tmp_path / "crops", CropConfig(size=24, frame=64, copies=1, background=1))
    for split, objects in (("train", 2), ("test", 2)):
        crops = sorted((tmp_path / "crops" / split / BACKGROUND).iterdir())
        assert crops and counts[split] == objects + len(crops)
        # The white rectangle is never inside a background crop (bilinear sampling may graze its edge).
        assert all(np.asarray(Image.open(c)).max() < 255 for c in crops)
    assert json.loads((tmp_path / "crops/crops.json").read_text())["classes"] == DIGITS + [BACKGROUND]


def test_data_crops_on_the_command_line(tmp_path, capsys):
    source = _scene_dir(tmp_path / "s")
    code, err = run_cli(["data", "crops", str(source), "--out", str(tmp_path / "crops"), "--size", "24", "--frame", "64",
                          "--background", "1"], capsys)
    assert code == 0 and "training and" in err, err
    recorded = json.loads((tmp_path / "crops/crops.json").read_text())
    assert recorded["background"] == 1 and recorded["size"] == 24 and (tmp_path / "crops/test" / BACKGROUND).is_dir()
    code, err = run_cli(["data", "crops", str(source), "--out", str(tmp_path / "again"), "--background", "-1"], capsys)
    assert code == 2 and "--background" in err


@pytest.mark.parametrize("background", [0.0, 1.0])
def test_an_unreadable_scene_image_is_one_line(tmp_path, background):
    source = _scene_dir(tmp_path / "s", with_test=False)
    (source / "object.png").write_text("not a png")
    with pytest.raises(ConfigError, match="object.png: not a readable image"):
        write_crops([source], tmp_path / "crops", CropConfig(size=24, frame=64, background=background))


def test_background_crops_need_an_object_to_be_sized_as(tmp_path):
    source = _scene_dir(tmp_path / "s", with_test=False)
    (source / "train.json").write_text(json.dumps([{"image": "empty.png", "label": None, "box": None}]))
    with pytest.raises(ConfigError, match="the train split has no object to size background crops as"):
        write_crops([source], tmp_path / "crops", CropConfig(size=24, frame=64, background=1))


def test_training_crops_are_jittered_the_same_way_every_run(tmp_path):
    source = _scene_dir(tmp_path / "s", with_test=False)
    for name in ("a", "b"):
        write_crops([source], tmp_path / name, CropConfig(size=24, frame=64, copies=2, jitter=0.1))
    files = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a/train").rglob("*.png"))
    first, second = (np.asarray(Image.open(tmp_path / "a" / f)) for f in files[:2])
    assert not np.array_equal(first, second)  # two copies, two jitters
    assert all(np.array_equal(np.asarray(Image.open(tmp_path / "a" / f)), np.asarray(Image.open(tmp_path / "b" / f)))
               for f in files)
    assert not (tmp_path / "a/test").exists()


def _tiny_reader(path, classes=DIGITS, task="classify"):
    from cnntool.models.resnet import resnet_small

    torch.manual_seed(5)
    kwargs = {"widths": [4, 8, 8], "blocks": [1, 1, 1], "num_classes": len(classes), "in_channels": 3, "dropout": 0.0}
    meta = {"task": task, "model": "resnet-small", "kwargs": kwargs, "classes": classes,
            "input": {"size": [16, 16], "channels": 3, "mean": [0.4, 0.4, 0.4], "std": [0.3, 0.3, 0.3]},
            "command": "cnntool train classify # tiny reader", "metrics": {"heldout": {"accuracy": 0.5}}}
    return weights.save(path, resnet_small(**kwargs).state_dict(), meta)


def test_an_ensemble_with_a_reader_is_the_members_mean_read_again(tiny_scenes, tmp_path, capsys):
    from cnntool.models.ensemble import Ensemble

    members = [tiny_localizer(tmp_path / f"m{i}.safetensors", i) for i in range(2)]
    reader = _tiny_reader(tmp_path / "reader.safetensors")
    (tmp_path / "reader.metrics.json").write_text(json.dumps({"command": "cnntool train classify # tiny reader"}))
    out = tmp_path / "read.safetensors"
    code, err = run_cli(["ensemble", *map(str, members), "--reader", str(reader), "--reader-context", "1.3",
                          "--data", str(tiny_scenes), "--out", str(out)], capsys)
    assert code == 0, err
    meta = weights.read_metadata(out)
    assert meta["reader"]["sha256"] == hashlib.sha256(reader.read_bytes()).hexdigest()
    assert meta["reader"]["context"] == 1.3 and meta["reader"]["model"] == "resnet-small"
    assert "read again by reader.safetensors" in meta["metrics"]["weights_from"]
    sidecar = json.loads((tmp_path / "read.metrics.json").read_text())
    assert sidecar["reader"] == {"file": "reader.safetensors", "command": "cnntool train classify # tiny reader"}

    loaded = load_model(None, str(out), task="localize")
    assert isinstance(loaded.module, BoxReader)
    parts = [load_model(None, str(m), task="localize") for m in members]
    reader_model = load_model(None, str(reader), task="classify")
    by_hand = BoxReader(Ensemble([p.module for p in parts], task="localize"), reader_model.module, crop=16, context=1.3,
                        localizer_stats=(parts[0].input.mean, parts[0].input.std), reader_stats=((0.4,) * 3, (0.3,) * 3))
    x = torch.randn(3, 3, 128, 128)
    with torch.no_grad():
        assert torch.allclose(loaded.module(x), by_hand.eval()(x), atol=1e-5)

    from cnntool.engine.evaluate import EvalOptions
    from cnntool.tasks.localize.evaluate import LocalizeEvaluation, evaluate

    report = evaluate(LocalizeEvaluation(data=str(tiny_scenes), common=EvalOptions(weights=str(out))))
    assert report["class_accuracy"] == pytest.approx(meta["metrics"]["heldout"]["class_accuracy"])


def _with_sidecars(path, colour):
    """A weights file's training report and a one-colour curve beside it, as a training run leaves them."""
    path.with_name(f"{path.stem}.metrics.json").write_text(json.dumps({"command": f"cnntool train # {colour}"}))
    Image.new("RGB", (40, 10), colour).save(path.with_name(f"{path.stem}.curve.png"))
    return path


def test_an_ensemble_is_combined_again_with_another_reader_keeping_its_members(tiny_scenes, tmp_path, capsys):
    members = [_with_sidecars(tiny_localizer(tmp_path / f"m{i}.safetensors", i), colour)
               for i, colour in enumerate(("red", "blue"))]
    first, second = (_with_sidecars(_tiny_reader(tmp_path / f"{name}.safetensors"), colour)
                     for name, colour in (("r1", "green"), ("r2", "yellow")))
    state = {k: v + 0.1 if v.is_floating_point() else v for k, v in weights.load(second)[0].items()}
    weights.save(second, state, weights.read_metadata(first))  # a reader of its own: r2's weights differ from r1's
    once, again, plain = (tmp_path / f"{name}.safetensors" for name in ("once", "again", "plain"))
    assert run_cli(["ensemble", *map(str, members), "--reader", str(first), "--data", str(tiny_scenes), "--out",
                    str(once)], capsys)[0] == 0
    code, err = run_cli(["ensemble", str(once), "--reader", str(second), "--data", str(tiny_scenes), "--calibrate",
                          "--out", str(again)], capsys)
    assert code == 0, err
    assert run_cli(["ensemble", str(once), "--reader", "none", "--data", str(tiny_scenes), "--out", str(plain)],
                   capsys)[0] == 0

    (once_state, once_meta), (again_state, again_meta) = weights.load(once), weights.load(again)
    assert again_meta["members"] == once_meta["members"]  # each member's own file, by sha256 and command
    assert [m["sha256"] for m in again_meta["members"]] == [hashlib.sha256(m.read_bytes()).hexdigest() for m in members]
    assert again_meta["reader"]["sha256"] == hashlib.sha256(second.read_bytes()).hexdigest()
    assert "decode" in again_meta and "decode" not in once_meta
    members_of = {k: v for k, v in again_state.items() if k.startswith("localizer.")}
    assert members_of.keys() == {k for k in once_state if k.startswith("localizer.")}
    assert all(torch.equal(v, once_state[k]) for k, v in members_of.items())
    plain_state, plain_meta = weights.load(plain)
    assert "reader" not in plain_meta and plain_meta["ensemble"] == 2
    assert all(torch.equal(v, once_state[f"localizer.{k}"]) for k, v in plain_state.items())

    x = torch.randn(2, 3, 128, 128)
    averaged = load_model(None, str(plain), task="localize")
    by_parts = BoxReader(averaged.module, load_model(None, str(second), task="classify").module, crop=16, context=1.2,
                         localizer_stats=(averaged.input.mean, averaged.input.std), reader_stats=((0.4,) * 3, (0.3,) * 3))
    with torch.no_grad():
        assert torch.allclose(load_model(None, str(again), task="localize").module(x), by_parts.eval()(x), atol=1e-5)

    report = json.loads((tmp_path / "again.metrics.json").read_text())  # the members' reports and curves carried over
    assert [m["command"] for m in report["members"]] == ["cnntool train # red", "cnntool train # blue"]
    assert report["reader"]["command"] == "cnntool train # yellow"
    sheet = np.asarray(Image.open(tmp_path / "again.curve.png"))
    assert [tuple(sheet[5 + 10 * i, 20]) for i in range(3)] == [(255, 0, 0), (0, 0, 255), (255, 255, 0)]


def test_an_ensemble_combined_again_keeps_its_reader_unless_told(tiny_scenes, tmp_path, capsys):
    members = [_with_sidecars(tiny_localizer(tmp_path / f"m{i}.safetensors", i), colour)
               for i, colour in enumerate(("red", "blue"))]
    reader = _with_sidecars(_tiny_reader(tmp_path / "r.safetensors"), "green")
    once, kept = tmp_path / "once.safetensors", tmp_path / "kept.safetensors"
    assert run_cli(["ensemble", *map(str, members), "--reader", str(reader), "--reader-context", "1.3", "--data",
                    str(tiny_scenes), "--out", str(once)], capsys)[0] == 0
    code, err = run_cli(["ensemble", str(once), "--calibrate", "--data", str(tiny_scenes), "--out", str(kept)], capsys)
    assert code == 0, err

    (once_state, once_meta), (kept_state, kept_meta) = weights.load(once), weights.load(kept)
    assert kept_meta["reader"] == once_meta["reader"]  # r.safetensors by sha256, with the context it was cut at
    assert kept_meta["reader"]["context"] == 1.3 and "decode" in kept_meta
    assert kept_state.keys() == once_state.keys() and all(torch.equal(v, once_state[k]) for k, v in kept_state.items())
    report = json.loads((tmp_path / "kept.metrics.json").read_text())
    assert report["reader"]["command"] == "cnntool train # green"
    sheet = np.asarray(Image.open(tmp_path / "kept.curve.png"))
    assert [tuple(sheet[5 + 10 * i, 20]) for i in range(3)] == [(255, 0, 0), (0, 0, 255), (0, 128, 0)]

    code, err = run_cli(["ensemble", str(once), "--reader-context", "1.5", "--data", str(tiny_scenes), "--out",
                         str(tmp_path / "x.safetensors")], capsys)
    assert code == 2 and "--reader-context goes with --reader" in err and len(err.strip().splitlines()) == 1

    for broken_state, broken_meta in (({k: v for k, v in once_state.items() if not k.startswith("reader.")}, once_meta),
                                      (once_state, {**once_meta, "reader": "r.safetensors"})):
        weights.save(tmp_path / "broken.safetensors", broken_state, broken_meta)
        code, err = run_cli(["ensemble", str(tmp_path / "broken.safetensors"), "--data", str(tiny_scenes), "--out",
                             str(tmp_path / "x.safetensors")], capsys)
        assert code == 2 and "reader" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x.safetensors").exists()


def test_one_file_that_is_no_ensemble_is_refused_in_one_line(tiny_scenes, tmp_path, capsys):
    code, err = run_cli(["ensemble", str(tiny_localizer(tmp_path / "m.safetensors", 0)), "--data", str(tiny_scenes),
                          "--out", str(tmp_path / "x.safetensors")], capsys)
    assert code == 2 and "2 or more" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("entry", [{"ensemble": 3}, {"ensemble": "two"}, {"ensemble": 1}, {"members": None},
                                   {"members": [{"file": "m0.safetensors"}]}])
def test_an_ensemble_file_whose_members_do_not_add_up_is_one_line(tiny_scenes, tmp_path, capsys, entry):
    members = [str(tiny_localizer(tmp_path / f"m{i}.safetensors", i)) for i in range(2)]
    pair = tmp_path / "pair.safetensors"
    assert run_cli(["ensemble", *members, "--data", str(tiny_scenes), "--out", str(pair)], capsys)[0] == 0
    state, meta = weights.load(pair)
    weights.save(pair, state, {**meta, **entry})
    code, err = run_cli(["ensemble", str(pair), "--data", str(tiny_scenes), "--out", str(tmp_path / "x.safetensors")],
                        capsys)
    assert code == 2 and "members" in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "x.safetensors").exists()


def test_a_reader_with_a_background_class_joins_an_ensemble_as_a_veto(tiny_scenes, tmp_path, capsys):
    from cnntool.models.ensemble import Ensemble

    members = [tiny_localizer(tmp_path / f"m{i}.safetensors", i) for i in range(2)]
    reader = _tiny_reader(tmp_path / "reader.safetensors", classes=DIGITS + [BACKGROUND])
    out = tmp_path / "read.safetensors"
    code, err = run_cli(["ensemble", *map(str, members), "--reader", str(reader), "--data", str(tiny_scenes),
                          "--out", str(out)], capsys)
    assert code == 0, err
    loaded = load_model(None, str(out), task="localize")
    assert loaded.classes == tuple(DIGITS) and loaded.module.background == 10
    parts = [load_model(None, str(m), task="localize") for m in members]
    by_hand = BoxReader(Ensemble([p.module for p in parts], task="localize"),
                        load_model(None, str(reader), task="classify").module, crop=16, context=1.2,
                        localizer_stats=(parts[0].input.mean, parts[0].input.std),
                        reader_stats=((0.4,) * 3, (0.3,) * 3), background=10)
    x = torch.randn(3, 3, 128, 128)
    with torch.no_grad():
        assert torch.allclose(loaded.module(x), by_hand.eval()(x), atol=1e-5)


def test_a_reader_of_other_classes_or_task_is_refused_in_one_line(tiny_scenes, tmp_path, capsys):
    members = [str(tiny_localizer(tmp_path / f"m{i}.safetensors", i)) for i in range(2)]
    for name, reader in (("classes", _tiny_reader(tmp_path / "c.safetensors", classes=list("abcdefghij"))),
                         ("task", _tiny_reader(tmp_path / "t.safetensors", task="landmarks"))):
        code, err = run_cli(["ensemble", *members, "--reader", str(reader), "--data", str(tiny_scenes),
                              "--out", str(tmp_path / f"{name}.safetensors")], capsys)
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / f"{name}.safetensors").exists()


@pytest.mark.parametrize("entry, message", [
    ({"context": "wide"}, "context from 1 to 4"),
    ({"classes": list("abcdefghij")}, "are not the localizer's"),
    ({"classes": DIGITS + [BACKGROUND] * 2}, "at most one background"),
    ({"model": "no-such-model"}, "no-such-model"),
    ({"input": {"size": [16, 8], "channels": 3, "mean": [0.4] * 3, "std": [0.3] * 3}}, "square 3-channel crops"),
    ({"input": {"size": [16, 16], "channels": 3}}, "mean and std need one value per channel"),
])
def test_a_bad_reader_entry_in_a_file_is_one_line(tiny_scenes, tmp_path, capsys, entry, message):
    members = [str(tiny_localizer(tmp_path / f"m{i}.safetensors", i)) for i in range(2)]
    out = tmp_path / "read.safetensors"
    assert run_cli(["ensemble", *members, "--reader", str(_tiny_reader(tmp_path / "r.safetensors")), "--data",
                     str(tiny_scenes), "--out", str(out)], capsys)[0] == 0
    state, meta = weights.load(out)
    bad = tmp_path / "bad.safetensors"
    weights.save(bad, state, {**meta, "reader": {**meta["reader"], **entry}})
    with pytest.raises((ConfigError, UnknownModelError), match=message):  # both: one line, exit 2
        load_model(None, str(bad), task="localize")
