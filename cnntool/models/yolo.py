"""A YOLO-style one-stage grid detector: a small ResNet backbone, one head predicting, per grid cell and
anchor, objectness, class scores and a box (YOLO v2/v5's parametrisation).

Raw head output: (N, A, H, W, 5 + K) = [t_x, t_y, t_w, t_h, t_o, class logits …] for an input of
H·stride × W·stride pixels. A cell (i, j) with anchor (a_w, a_h) decodes to
  centre = ((j, i) + 2σ(t_x, t_y) − 0.5) · stride     (the centre may sit up to half a cell outside, so
                                                      neighbouring cells can predict it too, as in YOLOv5)
  size   = (a_w, a_h) · exp(t_w, t_h)
  score  = σ(t_o) · max softmax(class logits)
In training mode the module returns the raw tensor (for the loss); in eval mode one dict per image,
{"boxes" (A·H·W, 4) xyxy input pixels, "scores", "labels", "class_scores" (A·H·W, K) objectness × each
class's probability}, every cell's candidate: the detect task's decode applies the confidence threshold,
NMS and the mapping to original pixels (the contract every detector of the registry shares).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock
from torchvision.ops import generalized_box_iou_loss

# exp(t) is capped so an untrained head cannot produce inf-sized boxes.
_MAX_LOG_SCALE = 4.0
_NEIGHBOUR_MARGIN = 0.05  # cells


def _down(c_in: int, c_out: int) -> BasicBlock:
    """A ResNet basic block that halves the size (1×1 strided projection on the shortcut)."""
    project = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride=2, bias=False), nn.BatchNorm2d(c_out))
    return BasicBlock(c_in, c_out, stride=2, downsample=project)


class GridDetector(nn.Module):
    def __init__(self, *, num_classes: int, in_channels: int = 3, widths: Sequence[int] = (16, 32, 64),
                 extra_blocks: int = 1, anchors: Sequence[Sequence[float]] = ((32.0, 32.0),)) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.anchors = tuple((float(w), float(h)) for w, h in anchors)
        self.stride = 2 ** len(widths)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, widths[0], 3, stride=2, padding=1, bias=False),
                                   nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)]
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers.append(_down(c_in, c_out))
        layers += [BasicBlock(widths[-1], widths[-1]) for _ in range(extra_blocks)]
        self.backbone = nn.Sequential(*layers)
        w = widths[-1]
        self.head = nn.Sequential(nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w),
                                  nn.ReLU(inplace=True), nn.Conv2d(w, len(self.anchors) * (5 + num_classes), 1))
        with torch.no_grad():  # objectness starts at a 1% prior so the many empty cells do not swamp early steps
            bias = self.head[-1].bias.view(len(self.anchors), 5 + num_classes)
            bias.zero_()
            bias[:, 4] = math.log(0.01 / 0.99)

    def raw(self, x: Tensor) -> Tensor:
        out = self.head(self.backbone(x))
        n, _, h, w = out.shape
        return out.view(n, len(self.anchors), 5 + self.num_classes, h, w).permute(0, 1, 3, 4, 2)

    def forward(self, x: Tensor):
        raw = self.raw(x)
        return raw if self.training else decode(raw, self.anchors, self.stride)


def grid_boxes(raw: Tensor, anchors: Sequence[Sequence[float]], stride: int) -> Tensor:
    """Raw (N, A, H, W, ≥4) → decoded boxes (N, A, H, W, 4) xyxy in input pixels."""
    _, _, h, w, _ = raw.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=raw.device), torch.arange(w, device=raw.device), indexing="ij")
    cx = (xs + 2 * raw[..., 0].sigmoid() - 0.5) * stride
    cy = (ys + 2 * raw[..., 1].sigmoid() - 0.5) * stride
    size = torch.tensor(anchors, dtype=raw.dtype, device=raw.device).view(1, -1, 1, 1, 2)
    wh = size * raw[..., 2:4].clamp(max=_MAX_LOG_SCALE).exp()
    return torch.stack([cx - wh[..., 0] / 2, cy - wh[..., 1] / 2, cx + wh[..., 0] / 2, cy + wh[..., 1] / 2], -1)


def lecture_volume(raw: Tensor, anchors: Sequence[Sequence[float]], stride: int) -> Tensor:
    """Raw (N, A, H, W, 5 + K) → the lecture's y volume (N, H, W, A, 5 + K): per cell and anchor
    [p_c, b_x, b_y, b_h, b_w, c_1 … c_K] with p_c = σ(t_o); (b_x, b_y) the box centre in units of the cell,
    measured from the cell's top-left corner (0..1 inside it; this parametrisation reaches −0.5..1.5);
    b_h, b_w the box's height and width in cell units (more than 1 for a box larger than a cell); c_k the
    class probabilities (softmax). An S×S grid with A anchors and K classes is S×S×A×(5 + K): 3×3×1×8 for
    the lecture's 3×3 grid, one anchor and three classes."""
    raw = raw.float()
    boxes = grid_boxes(raw, anchors, stride) / stride  # cell units
    _, _, h, w, _ = raw.shape
    ys, xs = torch.meshgrid(torch.arange(h, device=raw.device), torch.arange(w, device=raw.device), indexing="ij")
    b_x = (boxes[..., 0] + boxes[..., 2]) / 2 - xs
    b_y = (boxes[..., 1] + boxes[..., 3]) / 2 - ys
    b_h, b_w = boxes[..., 3] - boxes[..., 1], boxes[..., 2] - boxes[..., 0]
    y = torch.cat([torch.stack([raw[..., 4].sigmoid(), b_x, b_y, b_h, b_w], -1), raw[..., 5:].softmax(-1)], -1)
    return y.permute(0, 2, 3, 1, 4)


def decode(raw: Tensor, anchors: Sequence[Sequence[float]], stride: int) -> list[dict[str, Tensor]]:
    """Every cell's candidate per image: boxes (input pixels), class_scores = objectness × each class's
    probability, and the best of them as scores and labels (class index)."""
    raw = raw.float()
    boxes = grid_boxes(raw, anchors, stride).flatten(1, 3)
    class_scores = raw[..., 4:5].sigmoid().flatten(1, 3) * raw[..., 5:].softmax(-1).flatten(1, 3)
    scores, labels = class_scores.max(-1)
    return [{"boxes": b, "scores": s, "labels": l, "class_scores": c}
            for b, s, l, c in zip(boxes, scores, labels, class_scores)]


def assign(boxes: Tensor, anchors: Sequence[Sequence[float]], stride: int, grid: tuple[int, int]) -> list[tuple[int, int, int, int]]:
    """The cells responsible for each box (xyxy input pixels) → (box index, anchor, row, column).

    Anchor: the one closest in shape (largest IoU of centred width×height). Cells: the one holding the
    centre plus its nearer horizontal and vertical neighbours (YOLOv5), those inside the grid; the decoded
    centre range (−0.5 … 1.5 cells) reaches the box centre from all three."""
    gh, gw = grid
    out = []
    for k, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
        bw, bh = x2 - x1, y2 - y1
        shape_iou = [min(bw, aw) * min(bh, ah) / (bw * bh + aw * ah - min(bw, aw) * min(bh, ah))
                     for aw, ah in anchors]
        a = max(range(len(anchors)), key=shape_iou.__getitem__)
        gx, gy = (x1 + x2) / 2 / stride, (y1 + y2) / 2 / stride
        j, i = min(int(gx), gw - 1), min(int(gy), gh - 1)
        cells = [(i, j)]
        # A neighbour only when the centre is clearly nearer to it: at exactly half a cell it sits on the
        # open edge of the neighbour's reach.
        if abs(gx - j - 0.5) > _NEIGHBOUR_MARGIN:
            cells.append((i, j + (1 if gx - j > 0.5 else -1)))
        if abs(gy - i - 0.5) > _NEIGHBOUR_MARGIN:
            cells.append((i + (1 if gy - i > 0.5 else -1), j))
        out += [(k, a, r, c) for r, c in cells if 0 <= r < gh and 0 <= c < gw]
    return out


def encode(boxes: Tensor, labels: Tensor, anchors: Sequence[Sequence[float]], stride: int,
           grid: tuple[int, int], num_classes: int, *, logit: float = 12.0) -> Tensor:
    """The raw output (A, H, W, 5 + K) of a perfect detector for one image: each responsible cell decodes
    to its box exactly with objectness and class logits ±`logit`; every other cell says "no object"."""
    raw = torch.zeros(len(anchors), *grid, 5 + num_classes)
    raw[..., 4] = -logit
    for k, a, i, j in assign(boxes, anchors, stride, grid):
        x1, y1, x2, y2 = boxes[k].tolist()
        fx = ((x1 + x2) / 2 / stride - j + 0.5) / 2  # = σ(t_x)
        fy = ((y1 + y2) / 2 / stride - i + 0.5) / 2
        aw, ah = anchors[a]
        raw[a, i, j, 0] = math.log(fx / (1 - fx))
        raw[a, i, j, 1] = math.log(fy / (1 - fy))
        raw[a, i, j, 2] = math.log((x2 - x1) / aw)
        raw[a, i, j, 3] = math.log((y2 - y1) / ah)
        raw[a, i, j, 4] = logit
        raw[a, i, j, 5:] = -logit
        raw[a, i, j, 5 + int(labels[k])] = logit
    return raw


def loss(raw: Tensor, targets: Tensor, anchors: Sequence[Sequence[float]], stride: int, *, box_weight: float = 5.0,
         cls_weight: float = 1.0, obj_weight: float = 1.0) -> Tensor:
    """Per image, averaged over the batch:
      obj_weight · Σ_cells BCE(σ(t_o), 1 if responsible else 0)
      + Σ_responsible [cls_weight · CE(class logits, class) + box_weight · (1 − GIoU(decoded box, box))]

    targets: (N, M, 5) [class, x1, y1, x2, y2] in input pixels, rows with class < 0 are padding."""
    raw = raw.float()
    n, _, gh, gw, _ = raw.shape
    b_idx, a_idx, i_idx, j_idx, gt = [], [], [], [], []
    host = targets.detach().cpu()  # one transfer: the assignment below is scalar work
    for b in range(n):
        valid = host[b][host[b, :, 0] >= 0]
        for k, a, i, j in assign(valid[:, 1:], anchors, stride, (gh, gw)):
            b_idx.append(b), a_idx.append(a), i_idx.append(i), j_idx.append(j), gt.append(valid[k])
    obj_target = torch.zeros_like(raw[..., 4])
    total = raw.new_zeros(())
    if gt:
        index = tuple(torch.tensor(v, device=raw.device) for v in (b_idx, a_idx, i_idx, j_idx))
        gt_t = torch.stack(gt).to(raw.device)
        obj_target[index] = 1.0
        pred_boxes = grid_boxes(raw, anchors, stride)[index]
        total = total + box_weight * generalized_box_iou_loss(pred_boxes, gt_t[:, 1:], reduction="sum")
        total = total + cls_weight * F.cross_entropy(raw[index][:, 5:], gt_t[:, 0].long(), reduction="sum")
    total = total + obj_weight * F.binary_cross_entropy_with_logits(raw[..., 4], obj_target, reduction="sum")
    return total / n


def grid_detector(*, num_classes: int, in_channels: int = 3, widths: Sequence[int] = (16, 32, 64),
                  extra_blocks: int = 1, anchors: Sequence[Sequence[float]] = ((32.0, 32.0),)) -> GridDetector:
    return GridDetector(num_classes=num_classes, in_channels=in_channels, widths=widths, extra_blocks=extra_blocks,
                        anchors=anchors)
