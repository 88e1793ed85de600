"""Localization: the lecture's loss against hand-computed values, IoU metrics, decoding back to original
pixels, the annotation readers and box-aware augmentation, and the embedded model against its goals."""

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from cnntool.preprocess import Preprocessor
from cnntool.registry import InputSpec
from cnntool import boxes
from cnntool.models import yvector
from cnntool.tasks.localize import loss as losses
from cnntool.tasks.localize import metrics
from cnntool.tasks.localize import predict as localize


def logit(p):
    return math.log(p / (1 - p))


def raw_from(y_hat):
    """Network scores z whose interpretation is exactly ŷ (logits for p_c and the box, log-probabilities
    for the classes)."""
    return torch.tensor([[logit(v) for v in row[:5]] + [math.log(v) for v in row[5:]] for row in y_hat])


Y_HAT = [[0.9, 0.5, 0.4, 0.2, 0.3, 0.7, 0.2, 0.1],
         [0.9, 0.5, 0.4, 0.2, 0.3, 0.7, 0.2, 0.1]]
# Targets [p_c, b_x, b_y, b_h, b_w, class]: an object of class 0, and no object (the rest is "don't care").
TARGET = torch.tensor([[1.0, 0.5, 0.5, 0.25, 0.25, 0.0],
                       [0.0, 0.3, 0.3, 0.6, 0.6, 2.0]])


def test_lecture_loss_matches_the_hand_computed_example():
    # p_c = 1: every term.  (0.9−1)² + (0.5−0.5)² + (0.4−0.5)² + (0.2−0.25)² + (0.3−0.25)²
    #                       + (0.7−1)² + (0.2−0)² + (0.1−0)² = 0.01 + 0 + 0.01 + 0.0025 + 0.0025 + 0.09 + 0.04 + 0.01
    with_object = 0.165
    # p_c = 0: only (ŷ_1 − y_1)² = 0.9² = 0.81, whatever the box and class outputs are.
    without = 0.81
    y = losses.target_vector(TARGET, 3)
    assert y.tolist()[1] == [0.0] * 8
    y_hat = torch.tensor(Y_HAT)
    assert float(losses.lecture_loss(y_hat[:1], y[:1])) == pytest.approx(with_object)
    assert float(losses.lecture_loss(y_hat[1:], y[1:])) == pytest.approx(without)
    assert float(losses.loss(raw_from(Y_HAT), TARGET, "lecture")) == pytest.approx((with_object + without) / 2, abs=1e-6)


def test_modern_loss_ignores_box_and_class_without_an_object_and_prefers_better_boxes():
    z = raw_from(Y_HAT)
    only_absent = losses.loss(z[1:], TARGET[1:], "modern")
    assert float(only_absent) == pytest.approx(-math.log(1 - 0.9), rel=1e-5)  # BCE of p_c alone
    good = torch.tensor([[1.0, 0.5, 0.4, 0.2, 0.3, 0.0]])
    worse = torch.tensor([[1.0, 0.2, 0.8, 0.2, 0.3, 0.0]])
    assert float(losses.loss(z[:1], good, "modern")) < float(losses.loss(z[:1], worse, "modern"))
    with pytest.raises(ValueError):
        losses.loss(z, TARGET, "other")


def test_iou_and_metrics_against_hand_computed_values():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 1.0, 1.0]])
    assert boxes.iou_pairs(a, b).tolist() == pytest.approx([1 / 7, 1.0])
    # Image 1: object, predicted box centre (0.5, 0.4) size 0.2×0.3 vs truth centre (0.5, 0.5) 0.25×0.25:
    # prediction x 0.35..0.65, y 0.3..0.5; truth 0.375..0.625, 0.375..0.625 → inter 0.25 × 0.125,
    # union 0.06 + 0.0625 − 0.03125 → IoU 0.03125 / 0.09125. Class 0 is right; p_c 0.9 right.
    # Image 2: no object, p_c 0.9 → presence wrong.
    m = metrics.LocalizeMetrics(["a", "b", "c"])
    m.update(raw_from(Y_HAT), TARGET)
    out = m.compute()
    assert out["presence_accuracy"] == pytest.approx(0.5)
    assert out["class_accuracy"] == pytest.approx(1.0)
    assert out["mean_iou"] == pytest.approx(0.03125 / 0.09125, rel=1e-5)
    assert out["iou50_accuracy"] == 0.0 and out["objects"] == 1 and out["images"] == 2


# 200×100 letterboxes with even padding; 100×47 with odd padding (31 rows + 16 above, 17 below), where the
# frame cannot be inferred from the mapping; center-crop cuts the frame out of a larger resized image.
@pytest.mark.parametrize("resize, size", [("stretch", (200, 100)), ("letterbox", (200, 100)), ("letterbox", (100, 47)),
                                          ("center-crop", (200, 100))])
def test_decode_maps_the_box_back_to_original_pixels(resize, size):
    spec = InputSpec(size=(64, 64), channels=3, resize=resize)
    _, geometry = Preprocessor(spec)(Image.new("RGB", size))
    assert geometry.frame_size() == (64, 64)
    W, H = size
    box = [0.3 * W, 0.3 * H, 0.6 * W, 0.7 * H]  # original pixels, inside the centre crop too
    (x1, y1), (x2, y2) = geometry.point_to_input(*box[:2]), geometry.point_to_input(*box[2:])
    rel = [1.0, (x1 + x2) / 128, (y1 + y2) / 128, (y2 - y1) / 64, (x2 - x1) / 64, 0.1, 0.8, 0.1]
    (fields,) = localize.decode(raw_from([[0.999999] + rel[1:]]), [geometry], classes=["a", "b", "c"], options={})
    obj = fields.to_dict()["object"]
    assert obj["box"] == pytest.approx(box, abs=1e-3)
    assert obj["label"] == "b" and obj["score"] == pytest.approx(0.8)
    (absent,) = localize.decode(raw_from([[0.2] + rel[1:]]), [geometry], classes=["a", "b", "c"], options={})
    assert absent.box is None and absent.present == pytest.approx(0.2)
    drawn = localize.draw(Image.new("RGB", size), fields)
    assert drawn.size == size and np.asarray(drawn).any()


def _dataset(tmp_path):
    img = np.zeros((100, 200, 3), np.uint8)
    img[20:90, 40:120] = 255
    Image.fromarray(img).save(tmp_path / "a.png")
    Image.fromarray(img[:, :, 0] * 0).save(tmp_path / "b.png")
    return tmp_path


def test_json_and_csv_annotations_give_the_same_targets(tmp_path):
    from cnntool.data import annotations as ann
    from cnntool.tasks.localize.train import box_target

    root = _dataset(tmp_path)
    (root / "l.json").write_text(json.dumps([{"image": "a.png", "label": "1", "box": [40, 20, 120, 90]},
                                             {"image": "b.png", "objects": []}]))
    (root / "l.csv").write_text("image,label,x1,y1,x2,y2\na.png,1,40,20,120,90\nb.png,,,,,\n")
    spec = InputSpec(size=(64, 64), channels=3, resize="stretch")
    target = lambda a, g: box_target(a, g, ("0", "1"), (64, 64))  # noqa: E731
    from_json = ann.cache(ann.read_annotations(root / "l.json"), spec, target)
    from_csv = ann.cache(ann.read_annotations(root / "l.csv"), spec, target)
    assert torch.equal(from_json.targets, from_csv.targets) and torch.equal(from_json.images, from_csv.images)
    # Stretch 200×100 → 64×64: box centre (80, 55) → (0.4, 0.55) of the frame, size 70/100 × 80/200.
    assert from_json.targets[0].tolist() == pytest.approx([1, 0.4, 0.55, 0.7, 0.4, 1])
    assert from_json.targets[1].tolist() == [0.0] * 6


def test_box_aware_augmentation_moves_the_box_with_the_object():
    from cnntool.tasks.localize.train import shift_and_zoom

    image = torch.zeros(3, 64, 64)
    image[:, 20:40, 16:32] = 255  # x 16..32, y 20..40
    target = torch.tensor([1.0, 24 / 64, 30 / 64, 20 / 64, 16 / 64, 3.0])
    torch.manual_seed(0)
    outs, moved = shift_and_zoom(image.expand(20, -1, -1, -1), target.expand(20, -1), shift=0.1, scale=0.15, fill=0.0)
    moved_any = False
    for out, t in zip(outs, moved):
        bright = (out[0] > 128).nonzero()
        y_min, x_min = bright.min(0).values.tolist()
        y_max, x_max = bright.max(0).values.tolist()
        x1, y1, x2, y2 = (boxes.cxcyhw_to_xyxy(t[1:5]) * 64).tolist()
        assert abs(x1 - x_min) <= 1.5 and abs(x2 - (x_max + 1)) <= 1.5
        assert abs(y1 - y_min) <= 1.5 and abs(y2 - (y_max + 1)) <= 1.5
        assert t[0] == 1 and t[5] == 3
        moved_any |= not torch.equal(out, image)
    assert moved_any


def test_a_draw_that_would_cut_the_object_leaves_the_image_alone_and_empty_scenes_always_move():
    from cnntool.tasks.localize.train import shift_and_zoom

    image = torch.rand(1, 3, 32, 32) * 255
    at_edge = torch.tensor([[1.0, 4 / 32, 16 / 32, 16 / 32, 8 / 32, 1.0]])  # touches the left border
    empty = torch.zeros(1, 6)
    torch.manual_seed(0)
    out, moved = shift_and_zoom(image.expand(40, -1, -1, -1), torch.cat([at_edge, empty]).repeat(20, 1),
                                shift=0.1, scale=0.1, fill=0.0)
    kept = [torch.equal(o, image[0]) for o in out]
    assert any(kept[0::2]) and not all(kept[0::2])  # some edge draws cut the digit: kept as they were
    assert not any(kept[1::2])
    for o, t, same in zip(out[0::2], moved[0::2], kept[0::2]):
        assert torch.equal(t, at_edge[0]) if same else t[1] - t[4] / 2 >= 0
    assert torch.equal(moved[1::2], torch.zeros(20, 6))


# --- the embedded model ---------------------------------------------------------------------------------

GOALS = {"class_accuracy": 0.985, "mean_iou": 0.85, "presence_accuracy": 0.99}


def test_untrained_refiner_leaves_the_first_stage_output_unchanged():
    from cnntool.models.localizer import localizer

    torch.manual_seed(0)
    two_stage = localizer(widths=(8, 16), input_size=32, refine=4).eval()
    one_stage = localizer(widths=(8, 16), input_size=32).eval()
    one_stage.load_state_dict({k: v for k, v in two_stage.state_dict().items() if not k.startswith("refiner.")})
    x = torch.rand(3, 3, 32, 32)
    torch.testing.assert_close(two_stage(x), one_stage(x), atol=1e-5, rtol=1e-5)


def test_refiner_reads_the_first_stage_box_and_applies_fast_rcnn_deltas():
    """The crop is the (widened) first-stage box: a bright square exactly there fills it; the refined box
    follows the deltas written out: centre + d·size·context, size·exp(d); scores are added."""
    from cnntool.models.localizer import CropRefiner

    refiner = CropRefiner(in_channels=1, num_classes=2, width=2, crop=8, context=1.0).eval()
    seen = []
    refiner.net[0].register_forward_hook(lambda module, args, out: seen.append(args[0]))
    d = torch.tensor([0.5, 0.1, -0.2, math.log(1.5), math.log(0.5), 1.0, -1.0])
    refiner.net[-1].bias.data.copy_(d)
    x = torch.zeros(1, 1, 64, 64)
    x[..., 16:48, 8:24] = 1.0  # rows 16..48 (centre y 0.5, h 0.5), columns 8..24 (centre x 0.25, w 0.25)
    box = [0.25, 0.5, 0.5, 0.25]
    z = torch.tensor([[0.2, *(logit(v) for v in box), 0.3, 0.4]])
    out = refiner(x, z)
    torch.testing.assert_close(seen[0], torch.ones(1, 1, 8, 8))
    expected_box = [0.25 + 0.1 * 0.25, 0.5 - 0.2 * 0.5, 0.5 * 1.5, 0.25 * 0.5]
    torch.testing.assert_close(out[0, 1:5].sigmoid(), torch.tensor(expected_box), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out[0, [0, 5, 6]], torch.tensor([0.7, 1.3, -0.6]))


class BrightSquareLocalizer:
    """A stand-in localizer: raw scores whose ŷ is p_c 0.9, the box of the bright pixels (> 0.5) of each image
    in the frame it is given, and class probabilities that depend on that box's place (so shifted copies
    disagree and the mean is not any one of them)."""

    def __call__(self, images):
        rows = []
        for image in images:
            ys, xs = torch.nonzero(image[0] > 0.5, as_tuple=True)
            h, w = image.shape[-2:]
            x1, y1, x2, y2 = xs.min() / w, ys.min() / h, (xs.max() + 1) / w, (ys.max() + 1) / h
            box = torch.stack([(x1 + x2) / 2, (y1 + y2) / 2, y2 - y1, x2 - x1])
            rows.append(torch.cat([torch.logit(torch.tensor([0.9])), torch.logit(box), torch.stack([x1 * 10, -x1 * 10])]))
        return torch.stack(rows)


def test_tta_undoes_each_shift_and_averages_the_y_vectors():
    images = torch.zeros(2, 1, 100, 100)
    images[0, 0, 20:50, 30:70] = 1.0
    images[1, 0, 50:90, 10:40] = 1.0
    stub = BrightSquareLocalizer()
    y_hat = yvector.interpret(localize.shifted_mean(stub, images))
    # Every shifted copy, moved back, gives the same box: the mean is the unshifted image's box.
    assert torch.allclose(y_hat[:, 1:5], yvector.interpret(stub(images))[:, 1:5], atol=1e-5)
    assert y_hat[:, 0].tolist() == pytest.approx([0.9, 0.9], abs=1e-5)
    # The class probabilities are the mean of the five copies' (shift 5 px: x1 moved by 0, +5, −5, +5, −5 px).
    for k, x1 in enumerate((0.30, 0.10)):
        copies = [torch.tensor([x * 10, -x * 10]).softmax(0) for x in (x1, x1 + 0.05, x1 - 0.05, x1 + 0.05, x1 - 0.05)]
        assert y_hat[k, 5:].tolist() == pytest.approx(torch.stack(copies).mean(0).tolist(), abs=1e-5)


def test_the_pipeline_averages_shifts_only_when_asked():
    stub = BrightSquareLocalizer()
    assert localize.runner(stub, torch.nn.Module(), {"threshold": 0.5}) is stub
    images = torch.zeros(1, 1, 40, 40)
    images[0, 0, 10:20, 10:30] = 1.0
    assert localize.runner(stub, torch.nn.Module(), {"tta": True})(images).shape == (1, 7)


def localizer_metadata():
    from cnntool import weights

    return weights.read_metadata(weights.resolve("localizer-digits"))


def test_embedded_localizer_metadata_records_the_held_out_figures():
    meta = localizer_metadata()
    held = meta["metrics"]["heldout"]
    assert meta["task"] == "localize" and meta["command"].startswith("cnntool ensemble ")
    assert meta["ensemble"] == len(meta["members"]) == 4  # each trained here, its command and figures kept
    assert all(m["command"].startswith("cnntool train localize") and len(m["sha256"]) == 64 for m in meta["members"])
    reader = meta["reader"]  # the box reader (cnntool.models.reader), trained here on crops of the training scenes
    assert reader["command"].startswith("cnntool train classify --data runs/data/crops") and len(reader["sha256"]) == 64
    assert reader["classes"] == meta["classes"] and reader["input"]["size"] == [32, 32]
    assert held["images"] == 2000 and "test.json" in meta["metrics"]["heldout_data"]
    assert all(0.0 <= held[key] <= 1.0 for key in GOALS)


@pytest.mark.xfail(strict=True, reason="not reached: held-out presence 0.975 (goal 0.99), class 0.950 (0.985); mean IoU 0.852 "
                   "met (an ensemble of four two-stage fine-tunes with a box reader; weights/README.md); strict, so it "
                   "fails once a model meets the goals")
def test_embedded_localizer_meets_the_goals():
    held = localizer_metadata()["metrics"]["heldout"]
    for key, goal in GOALS.items():
        assert held[key] >= goal, f"{key} {held[key]:.4f} below the goal {goal}"


def test_embedded_localizer_on_a_fresh_copy_of_held_out_scenes(tmp_path):
    """The first 100 held-out scenes regenerated (scene i depends only on seed, split and i), scored again:
    the figures agree with the recorded ones within sampling error."""
    from cnntool.data import scenes
    from cnntool.engine.evaluate import run_eval
    from cnntool.loader import load_model
    from cnntool.tasks.localize.train import LocalizeConfig, LocalizeTask

    scenes.write_dataset(tmp_path, {"train": 1, "test": 100}, seed=0, config=scenes.SceneConfig())
    loaded = load_model(None, None, task="localize")
    held = loaded.metadata["metrics"]["heldout"]
    task = LocalizeTask(LocalizeConfig(data=str(tmp_path)))
    result = run_eval(loaded.module, task.prepare(0).heldout, task)
    assert result.images == 100
    assert result.summary["presence_accuracy"] >= held["presence_accuracy"] - 0.06
    assert result.summary["class_accuracy"] >= held["class_accuracy"] - 0.12
    assert result.summary["mean_iou"] >= held["mean_iou"] - 0.06


def run_cli(args, capsys):
    """The command line in this process (no second torch import): (exit code, stdout)."""
    from cnntool.cli import main

    with pytest.raises(SystemExit) as stop:
        main(args)
    return stop.value.code, capsys.readouterr().out


def test_cli_generates_scenes_and_localizes_them(tmp_path, capsys):
    code, _ = run_cli(["data", "scenes", "--out", str(tmp_path / "s"), "--n", "2", "--val", "0", "--test", "2",
                       "--quiet"], capsys)
    assert code == 0
    assert json.loads((tmp_path / "s/test.json").read_text())[0]["image"] == "test/000000.png"
    images = sorted(str(p) for p in (tmp_path / "s/test").glob("*.png"))
    code, out = run_cli(["localize", *images, "--format", "jsonl", "--device", "cpu", "--save", str(tmp_path / "drawn")],
                        capsys)
    assert code == 0
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) == 2 and all(set(r["object"]) == {"present", "label", "score", "box"} for r in records)
    assert len(list((tmp_path / "drawn").iterdir())) == 2
    code, out = run_cli(["localize", *images, "--format", "jsonl", "--device", "cpu", "--tta"], capsys)
    assert code == 0
    averaged = [json.loads(line) for line in out.splitlines()]
    assert [set(r) for r in averaged] == [set(r) - {"saved"} for r in records]
    assert all(set(r["object"]) == {"present", "label", "score", "box"} for r in averaged)


def test_cli_refuses_a_clutter_folder_without_cut_outs_before_writing_scenes(tmp_path, capsys):
    from cnntool.cli import main

    (tmp_path / "flat").mkdir()
    Image.new("RGB", (20, 20)).save(tmp_path / "flat/opaque.png")
    for folder in (tmp_path / "flat", tmp_path / "missing"):
        with pytest.raises(SystemExit) as stop:
            main(["data", "scenes", "--out", str(tmp_path / "s"), "--n", "2", "--clutter", str(folder)])
        message = capsys.readouterr().err.strip()
        assert stop.value.code == 2 and str(folder) in message and len(message.splitlines()) == 1
    assert not (tmp_path / "s/train.json").exists()


def test_cli_refuses_a_validation_photo_another_split_shows_before_writing_scenes(tmp_path, capsys):
    from cnntool.cli import main
    from cnntool.data.builtin import photo_paths

    held_out = photo_paths()[4]  # every fifth bundled photo is a held-out one
    with pytest.raises(SystemExit) as stop:
        main(["data", "scenes", "--out", str(tmp_path / "s"), "--n", "2", "--val-photos", str(held_out)])
    message = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and "already a training or held-out photo" in message and len(message.splitlines()) == 1
    assert not (tmp_path / "s/val.json").exists()


def test_train_at_another_input_size_records_it_and_the_weights_load_with_it(tmp_path, capsys):
    """--input-size N trains the localizer at N×N (its box head is sized by it); the weights' metadata carries
    the size and the kwargs, so `cnntool localize --weights` rebuilds the same two-stage net."""
    from cnntool import weights

    code, _ = run_cli(["data", "scenes", "--out", str(tmp_path / "s"), "--n", "8", "--val", "2", "--test", "2",
                       "--quiet"], capsys)
    assert code == 0
    out = tmp_path / "loc.safetensors"
    code, _ = run_cli(["train", "localize", "--data", str(tmp_path / "s"), "--out", str(out), "--input-size", "96",
                       "--kwarg", "widths=[8,16]", "--kwarg", "refine=4", "--kwarg", "downsample=2", "--epochs", "1",
                       "--batch-size", "4", "--threads", "1", "--tta", "--quiet"], capsys)
    assert code == 0
    meta = weights.read_metadata(out)
    assert meta["input"]["size"] == [96, 96]
    assert set(meta["metrics"]["heldout_tta"]) == set(meta["metrics"]["heldout"])  # --tta: held-out figures both ways
    assert {k: meta["kwargs"][k] for k in ("input_size", "refine", "downsample")} == {"input_size": 96, "refine": 4,
                                                                                   "downsample": 2}
    code, printed = run_cli(["localize", str(tmp_path / "s/test/000000.png"), "--weights", str(out), "--format",
                             "jsonl"], capsys)
    assert code == 0 and json.loads(printed)["width"] == 128
    code, _ = run_cli(["train", "localize", "--data", str(tmp_path / "s"), "--out", str(tmp_path / "x.safetensors"),
                       "--input-size", "96x64", "--epochs", "1", "--quiet"], capsys)
    assert code == 2  # the localizer's frame is square
