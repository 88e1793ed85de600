"""The lecture's object localization and detection sections: classification with localization (the y-vector
and its loss), landmark detection (the l-vector), the convolutional implementation of sliding windows, YOLO's
output grid, intersection over union, non-max suppression and anchor boxes. Each runs through cnntool's own
code (its loss, box geometry, detector post-processing, YOLO model and shape-calc) on the lecture's numbers."""

import pytest
import torch
from torch import nn
from torchvision.ops import box_iou

from cnntool.boxes import iou, iou_pairs
from cnntool.models import catalog
from cnntool.models import yolo
from cnntool.models.yolo import assign, encode, lecture_volume
from cnntool.registry import InputSpec, ModelSpec
from cnntool.shapecalc.layers import describe
from cnntool.shapecalc.trace import trace
from cnntool.tasks.detect.predict import PostProcess, postprocess
from cnntool.tasks.localize.loss import lecture_loss, target_vector

# --- classification with localization ---------------------------------------------------------------

# Classes 1 pedestrian, 2 car, 3 motorcycle; y = [p_c, b_x, b_y, b_h, b_w, c_1, c_2, c_3].
CAR = [1.0, 0.5, 0.7, 0.3, 0.4, 1.0]  # cnntool's target row: p_c, box, class index (car = index 1)
NOTHING = [0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
Y_HAT = [0.9, 0.4, 0.6, 0.3, 0.5, 0.1, 0.7, 0.2]


def test_lecture_localization_y_vector():
    y = target_vector(torch.tensor([CAR, NOTHING], dtype=torch.float64), num_classes=3)
    assert y[0].tolist() == pytest.approx([1.0, 0.5, 0.7, 0.3, 0.4, 0.0, 1.0, 0.0], abs=1e-6)
    assert y[1, 0] == 0.0  # p_c = 0: "no object"; the rest is "don't care"


def test_lecture_localization_loss_with_an_object_counts_every_term():
    # Σ (ŷ_i − y_i)² against y = [1, 0.5, 0.7, 0.3, 0.4, 0, 1, 0]: 0.01 + 0.01 + 0.01 + 0 + 0.01 + 0.01 + 0.09 + 0.04
    loss = lecture_loss(torch.tensor([Y_HAT], dtype=torch.float64), target_vector(torch.tensor([CAR]), 3).double())
    assert loss.item() == pytest.approx(0.18, abs=1e-6)


def test_lecture_localization_loss_without_an_object_counts_only_p_c():
    y = target_vector(torch.tensor([NOTHING]), 3).double()
    for other in (Y_HAT, [0.9] + [5.0] * 7):
        assert lecture_loss(torch.tensor([other], dtype=torch.float64), y).item() == pytest.approx(0.81, abs=1e-6)


# --- landmark detection --------------------------------------------------------------------------------

def test_lecture_landmarks_the_output_is_2n_numbers():
    spec = catalog.get("landmarker-corners")
    points = len(spec.classes)
    with torch.no_grad():
        l_vector = spec.build().eval()(torch.zeros(1, spec.input.channels, *spec.input.size))
    assert l_vector.shape == (1, 2 * points)  # l_1x, l_1y, …, l_Nx, l_Ny


# --- convolutional implementation of sliding windows -------------------------------------------------------

# 14×14×3 → conv 5×5 16 → max 2 → "fc" 400 as a 5×5 conv → "fc" 400 as a 1×1 conv → softmax 4 as a 1×1 conv
FC_AS_CONV = "conv5:16 max2 conv5:400 conv1:400 conv1:4"


@pytest.mark.parametrize("side, grid", [(14, 1), (16, 2), (28, 8)])
def test_lecture_sliding_windows_as_one_convolution(side, grid):
    assert describe(FC_AS_CONV, (3, side, side)).output_shape == (4, grid, grid)
    net = nn.Sequential(nn.Conv2d(3, 16, 5), nn.MaxPool2d(2), nn.Conv2d(16, 400, 5), nn.Conv2d(400, 400, 1),
                        nn.Conv2d(400, 4, 1))
    assert net(torch.zeros(1, 3, side, side)).shape == (1, 4, grid, grid)


# --- YOLO's grid ---------------------------------------------------------------------------------------

def grid_detector(classes: int, anchors: int, side: int) -> ModelSpec:
    """cnntool's YOLO-style detector (stride 8) for `classes` classes and `anchors` anchors, as a spec to trace."""
    return ModelSpec(name="lecture-yolo", task="detect", builder="cnntool.models.yolo:grid_detector",
                     kwargs={"num_classes": classes, "widths": (8, 8, 8), "extra_blocks": 0,
                             "anchors": tuple((8.0 * (a + 1), 8.0) for a in range(anchors))},
                     input=InputSpec(size=(side, side)))


@pytest.mark.parametrize("anchors, per_cell", [(1, 8), (2, 16)])
def test_lecture_yolo_3x3_grid_with_three_classes(anchors, per_cell):
    """3×3 grid, C = 3 (pedestrian, car, motorcycle): y is 3×3×8, or 3×3×16 with two anchor boxes."""
    head = trace(grid_detector(3, anchors, 24), (3, 24, 24)).head
    assert (head.rows, head.cols, head.anchors, head.values) == (3, 3, anchors, 5 + 3)
    assert head.anchors * head.values == per_cell


def test_lecture_yolo_19x19_grid_5_anchors_80_classes():
    head = trace(grid_detector(80, 5, 19 * 8), (3, 19 * 8, 19 * 8)).head
    assert (head.rows, head.cols, head.anchors, head.values) == (19, 19, 5, 85)
    assert head.volume == 19 * 19 * 425


def test_lecture_yolo_the_registered_detectors_grid(shape_calc):
    spec = catalog.get("yolo-digits")
    cells = spec.input.size[0] // 2 ** len(spec.kwargs["widths"])  # one cell per stride-8 step
    anchors, classes = len(spec.kwargs["anchors"]), spec.kwargs["num_classes"]
    head = shape_calc("--model", "yolo-digits")["grid_head"]
    assert (head["rows"], head["cols"], head["anchors"], head["values"]) == (cells, cells, anchors, 5 + classes)
    assert head["volume"] == cells * cells * anchors * (5 + classes)


# --- intersection over union, non-max suppression, anchor boxes --------------------------------------------

@pytest.mark.parametrize("a, b, lecture", [
    ([0, 0, 2, 2], [1, 1, 3, 3], 1 / 7),  # a 1×1 overlap of two 2×2 boxes: 1 / (4 + 4 − 1)
    ([0, 0, 4, 4], [2, 0, 6, 4], 1 / 3),  # half of each: 8 / (16 + 16 − 8)
    ([0, 0, 2, 2], [0, 0, 2, 2], 1.0),
    ([0, 0, 1, 1], [2, 2, 3, 3], 0.0),
])
def test_lecture_iou(a, b, lecture):
    assert iou(a, b) == pytest.approx(lecture, abs=1e-6)
    pair = iou_pairs(torch.tensor([a], dtype=torch.float64), torch.tensor([b], dtype=torch.float64))
    assert pair.item() == pytest.approx(lecture, abs=1e-6)
    assert box_iou(torch.tensor([a], dtype=torch.float64), torch.tensor([b], dtype=torch.float64)).item() == \
        pytest.approx(lecture, abs=1e-6)


def test_lecture_non_max_suppression():
    """Drop boxes with p_c ≤ 0.6; take the best left, drop those overlapping it by IoU ≥ 0.5; repeat."""
    boxes = torch.tensor([[10, 10, 50, 50], [12, 12, 52, 52], [8, 10, 48, 50],  # one car, three boxes
                          [100, 10, 140, 50], [102, 12, 142, 52],  # another car, two boxes
                          [200, 200, 240, 240]], dtype=torch.float32)  # a weak box alone
    scores = torch.tensor([0.9, 0.7, 0.65, 0.8, 0.62, 0.3])
    kept = postprocess({"boxes": boxes, "scores": scores, "labels": torch.zeros(6, dtype=torch.int64)},
                       PostProcess(conf=0.6, iou=0.5))
    assert kept["scores"].tolist() == pytest.approx([0.9, 0.8])
    assert kept["boxes"].tolist() == [[10, 10, 50, 50], [100, 10, 140, 50]]


def test_lecture_anchor_boxes_tall_object_to_tall_anchor_wide_to_wide():
    """Two anchors, a tall one (pedestrian) and a wide one (car): each object goes to the grid cell holding its
    midpoint and to the anchor whose shape overlaps it most."""
    anchors = ((10.0, 30.0), (30.0, 10.0))  # (width, height)
    pedestrian, car = [12.0, 2.0, 22.0, 34.0], [40.0, 40.0, 70.0, 52.0]  # midpoints (17, 18) and (55, 46)
    cells = assign(torch.tensor([pedestrian, car]), anchors, stride=8, grid=(8, 8))
    assert {(k, a) for k, a, _, _ in cells} == {(0, 0), (1, 1)}
    assert (0, 0, 18 // 8, 17 // 8) in cells  # (object, anchor, row, column)
    assert (1, 1, 46 // 8, 55 // 8) in cells


def _perfect_volume(boxes, labels, anchors, stride=8, grid=(3, 3), classes=3):
    """The lecture's y volume of a detector whose raw output encodes these boxes exactly (yolo.encode)."""
    raw = encode(torch.tensor(boxes), torch.tensor(labels), anchors, stride, grid, classes)
    return lecture_volume(raw[None], anchors, stride)[0]


def test_lecture_yolo_y_volume_3x3x8_car_in_one_cell():
    """3×3 grid, C = 3: one car whose midpoint lies in the centre of the bottom-middle cell gives that cell
    y = [1, 0.5, 0.5, b_h, b_w, 0, 1, 0] (box in cell units) and p_c = 0 everywhere else."""
    stride = 8
    car = [8 + 4 - 6, 16 + 4 - 3, 8 + 4 + 6, 16 + 4 + 3]  # 12 wide, 6 high, centred in cell (row 2, column 1)
    y = _perfect_volume([car], [1], ((12.0, 6.0),))
    assert tuple(y.shape) == (3, 3, 1, 8)
    assert y[2, 1, 0].tolist() == pytest.approx([1, 0.5, 0.5, 6 / stride, 12 / stride, 0, 1, 0], abs=1e-5)
    others = torch.ones(3, 3, dtype=torch.bool)
    others[2, 1] = False
    assert y[..., 0, 0][others].max() < 1e-5


def test_lecture_yolo_y_volume_two_anchors_each_object_in_its_anchors_slot():
    """Two anchors (tall, wide): the pedestrian's box is in the tall anchor's 8 numbers of its cell, the car's in
    the wide anchor's, and decoding the volume back gives both boxes exactly."""
    anchors = ((8.0, 16.0), (16.0, 8.0))
    pedestrian, car = [1.0, 0.0, 7.0, 16.0], [12.0, 18.0, 28.0, 22.0]  # midpoints (4, 8) in cell (1, 0), (20, 20) in (2, 2)
    y = _perfect_volume([pedestrian, car], [0, 1], anchors)
    assert tuple(y.shape) == (3, 3, 2, 8)
    assert y[1, 0, 0, 0] > 0.999 and y[1, 0, 1, 0] < 1e-5  # tall anchor holds the pedestrian
    assert y[2, 2, 1, 0] > 0.999 and y[2, 2, 0, 0] < 1e-5  # wide anchor holds the car
    assert y[1, 0, 0, 5:].argmax() == 0 and y[2, 2, 1, 5:].argmax() == 1
    for (row, col, a), box in (((1, 0, 0), pedestrian), ((2, 2, 1), car)):
        p_c, b_x, b_y, b_h, b_w = y[row, col, a, :5].tolist()
        cx, cy = (col + b_x) * 8, (row + b_y) * 8
        assert [cx - b_w * 4, cy - b_h * 4, cx + b_w * 4, cy + b_h * 4] == pytest.approx(box, abs=1e-4)


def test_lecture_yolo_two_anchor_loss_wants_each_object_in_its_anchors_slot():
    """The training loss with two anchors: near zero for the raw output that holds each object in its own
    anchor's slot, large when the two anchors' slots are swapped."""
    anchors = ((8.0, 16.0), (16.0, 8.0))
    boxes = torch.tensor([[1.0, 0.0, 7.0, 16.0], [12.0, 18.0, 28.0, 22.0]])
    raw = encode(boxes, torch.tensor([0, 1]), anchors, 8, (3, 3), 2)[None]
    targets = torch.cat([torch.tensor([[0.0], [1.0]]), boxes], 1)[None]
    assert yolo.loss(raw, targets, anchors, 8).item() < 1e-3
    assert yolo.loss(raw.flip(1), targets, anchors, 8).item() > 10
