"""Detection core: the grid detector's target encoding/decoding and loss, post-processing back to original
pixels through a letterbox Geometry, and mAP through the kept library (torchmetrics + pycocotools)."""

import math

import pytest
import torch

from cnntool.models import yolo
from cnntool.preprocess import Geometry
from cnntool.registry import InputSpec
from cnntool.tasks.detect import predict as detect
from cnntool.tasks.detect.metrics import DetectMetrics, DetectOutputs

ANCHORS = ((28.0, 36.0),)
STRIDE = 8
GRID = (12, 12)


def hand_boxes():
    # Two digits far apart, one near the border (its neighbour cell falls off the grid), one tiny.
    boxes = torch.tensor([[10.0, 12.0, 40.0, 50.0], [50.0, 47.0, 81.0, 91.0], [0.0, 70.0, 9.0, 95.0],
                          [60.0, 5.0, 70.0, 17.0]])
    labels = torch.tensor([3, 7, 1, 0])
    return boxes, labels


def test_assignment_is_the_centre_cell_and_its_nearer_neighbours():
    # Centre (25, 31) → cell column 3 (frac 0.125 → left neighbour 2), row 3 (frac 0.875 → lower neighbour 4).
    cells = yolo.assign(torch.tensor([[10.0, 12.0, 40.0, 50.0]]), ANCHORS, STRIDE, GRID)
    assert sorted(cells) == [(0, 0, 3, 2), (0, 0, 3, 3), (0, 0, 4, 3)]
    # At exactly half a cell the neighbour cannot reach the centre: only the centre cell.
    assert yolo.assign(torch.tensor([[28.0, 28.0, 44.0, 44.0]]), ANCHORS, STRIDE, GRID) == [(0, 0, 4, 4)]


def test_encoding_then_decoding_gives_the_hand_made_boxes_back():
    boxes, labels = hand_boxes()
    raw = yolo.encode(boxes, labels, ANCHORS, STRIDE, GRID, num_classes=10)
    (candidates,) = yolo.decode(raw[None], ANCHORS, STRIDE)
    kept = detect.postprocess(candidates, detect.PostProcess(conf=0.5, iou=0.5))
    order = kept["boxes"][:, 0].argsort()
    expected = boxes[boxes[:, 0].argsort()]
    assert torch.allclose(kept["boxes"][order], expected, atol=1e-3)
    assert kept["labels"][order].tolist() == labels[boxes[:, 0].argsort()].tolist()
    assert (kept["scores"] > 0.99).all()


def test_the_loss_on_a_hand_computed_case():
    # One image, a 2×2 grid at stride 8, one anchor 8×8, two classes; one object [4, 4, 12, 12] (class 1),
    # centre (8, 8): exactly on a cell corner → cell (1, 1) only (both fractions are 0, far from 0.5: the
    # nearer neighbours (0, 1) and (1, 0) are also responsible).
    anchors, stride = ((8.0, 8.0),), 8
    raw = torch.zeros(1, 1, 2, 2, 7)
    raw[..., 4] = torch.tensor([[-1.0, 2.0], [0.5, 3.0]])  # objectness logits
    raw[0, 0, 1, 1, 5:] = torch.tensor([0.0, 1.0])
    targets = torch.tensor([[[1.0, 4.0, 4.0, 12.0, 12.0]]])
    cells = yolo.assign(targets[0, :, 1:], anchors, stride, (2, 2))
    assert sorted(cells) == [(0, 0, 0, 1), (0, 0, 1, 0), (0, 0, 1, 1)]
    # By hand. Every box decodes from t = 0: centre (cell + 2·σ(0) − 0.5)·8 = (cell + 0.5)·8, size 8×8.
    #   cell (1, 1): centre (12, 12) → [8, 8, 16, 16]; (0, 1): (12, 4) → [8, 0, 16, 8]; (1, 0): [0, 8, 8, 16].
    #   GIoU with [4, 4, 12, 12]: intersection 16, union 112, hull 12×12 = 144 → 1/7 − 32/144 for all three.
    giou = 16 / 112 - (144 - 112) / 144
    bce = lambda z, y: -(y * math.log(1 / (1 + math.exp(-z))) + (1 - y) * math.log(1 - 1 / (1 + math.exp(-z))))  # noqa: E731
    obj = bce(-1.0, 0) + bce(2.0, 1) + bce(0.5, 1) + bce(3.0, 1)
    ce_11 = -math.log(math.exp(1) / (1 + math.exp(1)))  # logits (0, 1), class 1
    ce_other = math.log(2)  # logits (0, 0)
    expected = obj + (ce_11 + 2 * ce_other) + 5.0 * 3 * (1 - giou)
    got = yolo.loss(raw, targets, anchors, stride)
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_padding_rows_are_ignored_by_the_loss():
    raw = torch.randn(2, 1, 12, 12, 15)
    targets = torch.tensor([[[3.0, 10, 12, 40, 50], [-1, 0, 0, 0, 0]], [[-1.0, 0, 0, 0, 0], [-1, 0, 0, 0, 0]]])
    loss = yolo.loss(raw, targets, ANCHORS, STRIDE)
    ref = (yolo.loss(raw[:1], targets[:1, :1], ANCHORS, STRIDE) + yolo.loss(raw[1:], targets[1:, :0], ANCHORS, STRIDE)) / 2
    assert loss.item() == pytest.approx(ref.item(), rel=1e-6)


def test_a_perfect_head_has_near_zero_loss_and_training_reduces_it():
    boxes, labels = hand_boxes()
    raw = yolo.encode(boxes, labels, ANCHORS, STRIDE, GRID, num_classes=10)[None]
    targets = torch.cat([labels[:, None].float(), boxes], 1)[None]
    assert yolo.loss(raw, targets, ANCHORS, STRIDE).item() < 1e-2
    # A tiny detector (32×32 input, 4×4 grid) learns one box in a few steps.
    torch.manual_seed(0)
    model = yolo.grid_detector(num_classes=2, widths=(8, 8, 8), extra_blocks=0, anchors=((12.0, 16.0),))
    x, one = torch.randn(1, 3, 32, 32), torch.tensor([[[1.0, 4.0, 4.0, 18.0, 26.0]]])
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    losses = []
    for _ in range(8):
        loss = yolo.loss(model(x), one, model.anchors, model.stride)
        losses.append(loss.item())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert losses[-1] < 0.75 * losses[0]
    model.eval()
    (out,) = model(x)
    assert out["boxes"].shape == (16, 4) and out["scores"].shape == (16,) and out["labels"].shape == (16,)


def test_decode_applies_nms_conf_classes_and_maps_through_a_letterbox():
    # A 200×100 photo letterboxed into 96×96: scale 0.48, padded 24 px above and below.
    from PIL import Image

    from cnntool.preprocess import Preprocessor

    _, g = Preprocessor(InputSpec(size=(96, 96), resize="letterbox"))(Image.new("RGB", (200, 100)))
    assert g == Geometry(200, 100, 0.48, 0.48, pad_x=0, pad_y=24, frame=(96, 96))
    candidates = {
        "boxes": torch.tensor([[24.0, 36.0, 48.0, 60.0], [25.0, 36.0, 49.0, 61.0], [60.0, 30.0, 90.0, 70.0],
                               [0.0, 30.0, 10.0, 40.0]]),
        "scores": torch.tensor([0.9, 0.8, 0.7, 0.1]),
        "labels": torch.tensor([2, 2, 5, 2]),
    }
    classes = tuple("0123456789")
    (fields,) = detect.decode([candidates], [g], classes=classes, options={"conf": 0.25, "iou": 0.45})
    found = fields.to_dict()["detections"]
    assert [d["label"] for d in found] == ["2", "5"]  # the overlapping "2" suppressed, the 0.1 one under --conf
    assert found[0]["box"] == pytest.approx([50.0, 25.0, 100.0, 75.0])  # (x − pad) / 0.48
    assert found[0]["score"] == pytest.approx(0.9)
    # The last box reaches into the padding: clipped to the image.
    assert found[1]["box"] == pytest.approx([125.0, 12.5, 187.5, 95.83], abs=0.01)
    only_five = detect.decode([candidates], [g], classes=classes, options={"classes": "5"})[0].to_dict()["detections"]
    assert [d["label"] for d in only_five] == ["5"]
    top = detect.decode([candidates], [g], classes=classes, options={"max_det": 1})[0].to_dict()["detections"]
    assert len(top) == 1 and top[0]["score"] == pytest.approx(0.9)
    with pytest.raises(Exception, match="unknown class 'cat'"):
        detect.decode([candidates], [g], classes=classes, options={"classes": "cat"})


def test_perfect_predictions_have_map_one_and_a_miss_lowers_it():
    truth = torch.tensor([[[3.0, 10, 12, 40, 50], [7, 50, 50, 80, 90], [-1, 0, 0, 0, 0]],
                          [[1.0, 5, 5, 20, 30], [-1, 0, 0, 0, 0], [-1, 0, 0, 0, 0]]])

    def metrics_for(predictions):
        m = DetectMetrics(tuple("0123456789"), detect.PostProcess(conf=0.001))
        m.update(DetectOutputs(None, predictions), truth.view(2, -1))
        return m.compute()

    perfect = [{"boxes": truth[0, :2, 1:], "scores": torch.tensor([0.9, 0.8]), "labels": torch.tensor([3, 7])},
               {"boxes": truth[1, :1, 1:], "scores": torch.tensor([0.7]), "labels": torch.tensor([1])}]
    result = metrics_for(perfect)
    assert result["map50_95"] == 1.0 and result["map50"] == 1.0
    assert set(result["per_class"]) == {"1", "3", "7"} and result["per_class"]["7"]["ap50_95"] == 1.0
    shifted = [dict(perfect[0]), perfect[1]]
    shifted[0]["boxes"] = perfect[0]["boxes"] + torch.tensor([8.0, 0, 8, 0])  # IoU 0.58 for the "3"
    worse = metrics_for(shifted)
    assert worse["map50"] == 1.0 and worse["map50_95"] < 0.9
    # No per-class scores: one label per box is all there is, and the figures are the same ones.
    assert worse["one_label_per_box"] == {k: worse[k] for k in ("map50_95", "map50", "map75", "mar100")}


def test_decoded_class_scores_are_objectness_times_each_class_probability():
    torch.manual_seed(0)
    raw = torch.randn(2, 1, 3, 3, 5 + 4)
    (first, _) = yolo.decode(raw, ANCHORS, STRIDE)
    expected = raw[0, ..., 4:5].sigmoid() * raw[0, ..., 5:].softmax(-1)
    assert torch.allclose(first["class_scores"], expected.reshape(-1, 4))
    best, labels = expected.reshape(-1, 4).max(-1)
    assert torch.equal(first["scores"], best) and torch.equal(first["labels"], labels)


def test_multi_label_keeps_every_class_that_clears_the_threshold():
    boxes = torch.tensor([[0.0, 0, 10, 10], [50, 50, 60, 60]])
    candidates = {"boxes": boxes, "scores": torch.tensor([0.6, 0.9]), "labels": torch.tensor([2, 0]),
                  "class_scores": torch.tensor([[0.05, 0.3, 0.6], [0.9, 0.01, 0.02]])}
    one = detect.postprocess(candidates, detect.PostProcess(conf=0.25))
    every = detect.postprocess(candidates, detect.PostProcess(conf=0.25, multi_label=True))
    assert one["labels"].tolist() == [0, 2]
    assert every["labels"].tolist() == [0, 2, 1] and every["scores"].tolist() == pytest.approx([0.9, 0.6, 0.3])
    assert torch.equal(every["boxes"][2], boxes[0])  # the same box, once per class
    no_per_class = {k: v for k, v in candidates.items() if k != "class_scores"}  # e.g. torchvision's
    same = detect.postprocess(no_per_class, detect.PostProcess(conf=0.25, multi_label=True))
    assert same["labels"].tolist() == [0, 2]


def test_a_misread_object_scores_with_its_second_class_only_when_every_label_is_kept():
    # Two objects; the first is read as a 9 (0.7) though it is a 2 (0.25): with one label per box it is a
    # false positive and a miss; kept as a 2 at the lower score it is found, ranked after the other object.
    truth = torch.tensor([[[2.0, 10, 10, 40, 40], [5.0, 50, 50, 80, 80]]])
    scores = torch.zeros(2, 10)
    scores[0, 9], scores[0, 2], scores[1, 5] = 0.7, 0.25, 0.9
    found = [{"boxes": truth[0, :, 1:], "scores": scores.max(-1).values, "labels": scores.argmax(-1),
              "class_scores": scores}]
    m = DetectMetrics(tuple("0123456789"), detect.PostProcess(conf=0.001))
    m.update(DetectOutputs(None, found), truth.view(1, -1))
    result = m.compute()
    assert result["map50"] == 1.0 and result["per_class"]["2"]["ap50_95"] == 1.0
    # Class 2's AP 0, class 5's 1; class 9 has no truth and COCO leaves it out of the mean.
    assert result["one_label_per_box"]["map50"] == pytest.approx(0.5)


def test_training_outputs_are_not_scored():
    m = DetectMetrics(("a",), detect.PostProcess())
    m.update(torch.zeros(1, 1, 2, 2, 6, requires_grad=True), torch.zeros(1, 5))
    assert m.images == 0 and m.summary() == {}


def test_the_training_shift_moves_boxes_with_their_objects_and_keeps_them_whole():
    from cnntool.tasks.detect.train import DetectConfig, DetectTask

    task = DetectTask(DetectConfig(data="unused", shift=0.2))
    images = torch.zeros(2, 3, 40, 40, dtype=torch.uint8)
    images[0, :, 10:20, 5:15] = 255
    images[1, :, 0:8, 30:40] = 255  # touches the top and right borders: may only move left or down
    targets = torch.full((2, 2, 5), -1.0)  # [class, x1, y1, x2, y2], class −1 = padding
    targets[0, 0] = torch.tensor([1, 5, 10, 15, 20.0])
    targets[1, 0] = torch.tensor([2, 30, 0, 40, 8.0])
    torch.manual_seed(0)
    offsets = set()
    for _ in range(20):
        out, moved = task._shift(images, targets)
        for k in range(2):
            rows, cols = (out[k, 0] > 128).nonzero().T
            assert moved[k, 0].tolist()[1:] == [cols.min(), rows.min(), cols.max() + 1, rows.max() + 1]
            assert len(rows) == 100 if k == 0 else len(rows) == 80  # whole
            offsets.add((k, *(moved[k, 0, 1:3] - targets[k, 0, 1:3]).tolist()))
        assert torch.equal(moved[:, 1], targets[:, 1])  # padding rows stay padding
    assert len(offsets) > 20
    assert all(dx <= 0 and dy >= 0 for k, dx, dy in offsets if k == 1)


class BrightBoxes:
    """A stand-in detector that boxes the bright pixels (> 0.5) of each image in the frame it is given,
    and remembers the sizes it was run at."""

    def __init__(self):
        self.sizes = []

    def __call__(self, images):
        self.sizes.append(tuple(images.shape[-2:]))
        out = []
        for image in images:
            ys, xs = torch.nonzero(image[0] > 0.5, as_tuple=True)
            box = torch.tensor([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=torch.float32)
            out.append({"boxes": box, "scores": torch.ones(1), "labels": torch.zeros(1, dtype=torch.long)})
        return out


def test_tta_runs_each_scale_at_a_stride_multiple_and_maps_boxes_back():
    images = torch.zeros(2, 1, 96, 96)
    images[0, 0, 20:44, 30:70] = 1.0
    images[1, 0, 60:90, 8:40] = 1.0
    detector = BrightBoxes()
    pooled = detect.multi_scale(detector, images, stride=8)
    assert detector.sizes == [(96, 96), (112, 112), (128, 128)]  # 96 × 1, 1.17, 1.33
    for found, truth in zip(pooled, ([30, 20, 70, 44], [8, 60, 40, 90])):
        assert found["boxes"].shape == (3, 4) and found["labels"].tolist() == [0, 0, 0]
        for box in found["boxes"]:  # each scale's box, back in the 96×96 frame (bilinear edges: ±1 px)
            assert box.tolist() == pytest.approx(truth, abs=1.0)
    assert pooled[0]["boxes"][0].tolist() == [30, 20, 70, 44]  # the input size itself is not resampled


def test_tta_keeps_the_input_size_and_rounds_only_the_larger_ones():
    images = torch.zeros(1, 1, 100, 60)
    images[0, 0, 10:50, 10:30] = 1.0
    detector = BrightBoxes()
    detect.multi_scale(detector, images, stride=32)
    assert detector.sizes == [(100, 60), (128, 64), (128, 64)]  # 117 → 128, 70.2 → 64; 133 → 128, 79.8 → 64


def test_the_pipeline_calls_the_detector_through_tta_only_when_asked():
    detector, module = BrightBoxes(), torch.nn.Module()
    module.stride = 16
    assert detect.runner(detector, module, {"conf": 0.25}) is detector
    images = torch.zeros(1, 1, 64, 64)
    images[0, 0, 8:24, 8:24] = 1.0
    found = detect.runner(detector, module, {"tta": True})(images)
    assert detector.sizes == [(64, 64), (80, 80), (80, 80)] and found[0]["boxes"].shape == (3, 4)


@pytest.mark.parametrize("n", [0, 1, 7, 300, 2000])
def test_class_nms_keeps_what_torchvisions_batched_nms_keeps(n):
    """The detect path's own NMS (no torchvision import for the face models) against torchvision's."""
    from torchvision.ops import batched_nms

    from cnntool.boxes import class_nms

    g = torch.Generator().manual_seed(n)
    for _ in range(5):
        xy, wh = torch.rand(n, 2, generator=g) * 80, torch.rand(n, 2, generator=g) * 30 + 2
        boxes, scores, labels = torch.cat([xy, xy + wh], 1), torch.rand(n, generator=g), torch.randint(0, 5, (n,), generator=g)
        ours, theirs = class_nms(boxes, scores, labels, 0.45), batched_nms(boxes, scores, labels, 0.45)
        assert set(ours.tolist()) == set(theirs.tolist())  # equal scores may come in either order
        assert (scores[ours].diff() <= 0).all()


def test_the_face_detector_path_imports_no_torchvision(tmp_path):
    import subprocess
    import sys

    from PIL import Image

    skimage_data = pytest.importorskip("skimage.data", reason="the photo comes from scikit-image: pip install scikit-image")
    Image.fromarray(skimage_data.astronaut()).save(tmp_path / "astronaut.png")
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "cnntool", "detect", str(tmp_path / "astronaut.png"),
                           "--format", "jsonl", "--upsample", "0"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert '"label": "face"' in proc.stdout
    assert not [line for line in proc.stderr.splitlines() if line.rstrip().endswith("torchvision")]
