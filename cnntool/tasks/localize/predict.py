"""Classification with localization, the lecture's y-vector: y = [p_c, b_x, b_y, b_h, b_w, c_1 … c_K].

p_c: is there an object; (b_x, b_y): the box centre and (b_h, b_w): its height and width, all relative to
the model's input frame (0..1); c_1 … c_K: which class. The network emits raw scores z of the same
length; `interpret` turns them into ŷ: sigmoid for p_c and the box (so the box stays in the frame),
softmax for the classes.

Targets are (N, 6) float tensors [p_c, b_x, b_y, b_h, b_w, class index] (box and class ignored when
p_c = 0).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from cnntool.preprocess import Geometry

TASK = "localize"
LOSSES = ("lecture", "modern")
# p_c at or above this reports an object, unless the weights carry a threshold calibrated on validation
# (`cnntool ensemble --calibrate`, metadata "decode") or --threshold says otherwise.
DEFAULT_THRESHOLD = 0.5


def interpret(z: "torch.Tensor") -> "torch.Tensor":
    """Raw network output (N, 5 + K) → ŷ = [p_c, b_x, b_y, b_h, b_w, class probabilities]."""
    import torch

    z = z.float()
    return torch.cat([z[:, :5].sigmoid(), z[:, 5:].softmax(dim=1)], dim=1)


def encode(y_hat: "torch.Tensor") -> "torch.Tensor":
    """ŷ → raw scores that `interpret` reads back as ŷ: how averaged predictions (test-time shifts, an
    ensemble's members) pass through decode and the metrics as one forward pass's output."""
    import torch

    eps = 1e-6
    return torch.cat([torch.logit(y_hat[:, :5].clamp(eps, 1 - eps)), y_hat[:, 5:].clamp_min(eps).log()], dim=1)


def cxcyhw_to_xyxy(b: "torch.Tensor") -> "torch.Tensor":
    """[b_x, b_y, b_h, b_w] → [x1, y1, x2, y2] (same units)."""
    import torch

    bx, by, bh, bw = b.unbind(-1)
    return torch.stack([bx - bw / 2, by - bh / 2, bx + bw / 2, by + bh / 2], dim=-1)


def target_vector(target: "torch.Tensor", num_classes: int) -> "torch.Tensor":
    """(N, 6) targets → the lecture's y (N, 5 + K): one-hot classes, zeros after p_c when absent."""
    import torch

    present = target[:, :1]
    onehot = torch.nn.functional.one_hot(target[:, 5].long().clamp_min(0), num_classes).float()
    return torch.cat([present, target[:, 1:5] * present, onehot * present], dim=1)


def lecture_loss(y_hat: "torch.Tensor", y: "torch.Tensor") -> "torch.Tensor":
    """The lecture's loss, averaged over the batch: Σ_i (ŷ_i − y_i)² over every term when y_1 = p_c = 1,
    only (ŷ_1 − y_1)² when p_c = 0 (the other terms are "don't care")."""
    squared = (y_hat - y) ** 2
    per_image = squared[:, 0] + y[:, 0] * squared[:, 1:].sum(dim=1)
    return per_image.mean()


def modern_loss(z: "torch.Tensor", target: "torch.Tensor", *, l1_weight: float = 5.0,
                giou_weight: float = 2.0) -> "torch.Tensor":
    """Binary cross-entropy for p_c on every image; on images with an object also cross-entropy for the
    class and L1 + generalized-IoU for the box (weights as in DETR). Box and class terms are averaged
    over the images that have an object."""
    import torch.nn.functional as F
    from torchvision.ops import generalized_box_iou_loss

    z = z.float()
    present = target[:, 0]
    loss = F.binary_cross_entropy_with_logits(z[:, 0], present)
    mask = present > 0.5
    if mask.any():
        box = z[mask, 1:5].sigmoid()
        true_box = target[mask, 1:5]
        loss = loss + F.cross_entropy(z[mask, 5:], target[mask, 5].long())
        loss = loss + l1_weight * F.l1_loss(box, true_box)
        giou = generalized_box_iou_loss(cxcyhw_to_xyxy(box), cxcyhw_to_xyxy(true_box), reduction="mean")
        loss = loss + giou_weight * giou
    return loss


def loss(z: "torch.Tensor", target: "torch.Tensor", kind: str = "modern") -> "torch.Tensor":
    if kind == "lecture":
        return lecture_loss(interpret(z), target_vector(target.float(), z.shape[1] - 5))
    if kind == "modern":
        return modern_loss(z, target.float())
    raise ValueError(f"loss must be one of {', '.join(LOSSES)}, not {kind!r}")


def box_iou_pairs(a: "torch.Tensor", b: "torch.Tensor") -> "torch.Tensor":
    """IoU of a[i] with b[i] for xyxy boxes (N, 4)."""
    wh = (a[:, 2:].minimum(b[:, 2:]) - a[:, :2].maximum(b[:, :2])).clamp_min(0)
    inter = wh[:, 0] * wh[:, 1]
    area = lambda t: (t[:, 2] - t[:, 0]).clamp_min(0) * (t[:, 3] - t[:, 1]).clamp_min(0)  # noqa: E731
    union = area(a) + area(b) - inter
    return inter / union.clamp_min(1e-12)


def calibrate_threshold(p_c: "torch.Tensor", present: "torch.Tensor") -> float:
    """The presence threshold on a 0.05 grid (0.05 … 0.95) with the most images right; among equals the one
    nearest DEFAULT_THRESHOLD, so a flat curve leaves the default."""
    grid = [round(0.05 * i, 2) for i in range(1, 20)]
    right = {t: int(((p_c >= t) == present.bool()).sum()) for t in grid}
    return max(grid, key=lambda t: (right[t], -abs(t - DEFAULT_THRESHOLD)))


class LocalizeMetrics:
    """Presence accuracy (p_c ≥ threshold vs the truth, all images); on images with an object: class accuracy,
    mean IoU and the share with IoU ≥ 0.5. `score` = presence × class accuracy × mean IoU, one number
    that needs all three, is what checkpoints are selected on. State: one summable float64 vector."""

    primary = "score"
    _FIELDS = ("images", "presence_correct", "objects", "class_correct", "iou_sum", "iou50")

    def __init__(self, classes: Sequence[str] = (), *, threshold: float = DEFAULT_THRESHOLD) -> None:
        import torch

        self.classes, self.threshold = list(classes), threshold
        self.sums = torch.zeros(len(self._FIELDS), dtype=torch.float64)

    def update(self, z: "torch.Tensor", target: "torch.Tensor") -> None:
        import torch

        y_hat, target = interpret(z.detach()).cpu(), target.detach().float().cpu()
        present = target[:, 0] > 0.5
        predicted = y_hat[:, 0] >= self.threshold
        iou = box_iou_pairs(cxcyhw_to_xyxy(y_hat[present, 1:5]), cxcyhw_to_xyxy(target[present, 1:5]))
        correct_class = y_hat[present, 5:].argmax(1) == target[present, 5].long()
        self.sums += torch.tensor([len(target), float((predicted == present).sum()), float(present.sum()),
                                   float(correct_class.sum()), float(iou.sum()), float((iou >= 0.5).sum())],
                                  dtype=torch.float64)

    def tensors(self) -> list["torch.Tensor"]:
        return [self.sums]

    def load_tensors(self, values: Sequence[Any]) -> None:
        import torch

        self.sums.copy_(torch.as_tensor(values[0], dtype=torch.float64))

    def summary(self) -> dict[str, float]:
        s = dict(zip(self._FIELDS, self.sums.tolist()))
        n, k = max(s["images"], 1.0), max(s["objects"], 1.0)
        out = {"presence_accuracy": s["presence_correct"] / n, "class_accuracy": s["class_correct"] / k,
               "mean_iou": s["iou_sum"] / k}
        out["score"] = out["presence_accuracy"] * out["class_accuracy"] * out["mean_iou"]
        return out

    def compute(self) -> dict[str, Any]:
        s = dict(zip(self._FIELDS, self.sums.tolist()))
        return {"images": int(s["images"]), "objects": int(s["objects"]), **self.summary(),
                "iou50_accuracy": s["iou50"] / max(s["objects"], 1.0)}


# Test-time augmentation (--tta): the image and four copies shifted diagonally by 5 % of the frame (edges
# repeated), each ŷ moved back by its shift and the five averaged. The localizer's box head is sized by
# its input, so it cannot be run at other scales as a detector can. 5 % was chosen on localizer-digits'
# validation scenes (weights/README.md § localizer-digits).
TTA_SHIFT = 0.05


def shifted_mean(model: Callable[["torch.Tensor"], "torch.Tensor"], images: "torch.Tensor", *,
                 shift: float = TTA_SHIFT) -> "torch.Tensor":
    """Raw scores whose ŷ (`interpret`) is the mean ŷ of the image and its four diagonal shifts, so
    decode and the metrics read them as one forward pass's."""
    import torch.nn.functional as F

    height, width = images.shape[-2:]
    d = max(1, round(shift * min(height, width)))
    padded = F.pad(images, (d, d, d, d), mode="replicate")
    shifts = ((0, 0), (d, d), (-d, -d), (d, -d), (-d, d))
    total = 0
    for dx, dy in shifts:
        y_hat = interpret(model(padded[..., d - dy:d - dy + height, d - dx:d - dx + width]))  # content moved by (dx, dy)
        y_hat[:, 1] -= dx / width
        y_hat[:, 2] -= dy / height
        total = total + y_hat
    return encode(total / len(shifts))


def runner(model: Callable, module: "torch.nn.Module", options: Mapping[str, Any]) -> Callable:
    """How the prediction pipeline calls the localizer: as it is, or averaged over shifts under --tta."""
    return partial(shifted_mean, model) if options.get("tta") else model


def decode(z: "torch.Tensor", geometries: Sequence["Geometry"], *, classes: Sequence[str],
           options: Mapping[str, Any]) -> list[dict[str, Any]]:
    """{"object": {"present": p_c, "label", "score": class probability, "box": [x1, y1, x2, y2]}} in
    original pixels; label, score and box are null when p_c is below options["threshold"] (0.5)."""
    y_hat = interpret(z.detach()).cpu()
    threshold = float(options.get("threshold", DEFAULT_THRESHOLD))
    out = []
    for row, geometry in zip(y_hat.tolist(), geometries):
        present = row[0]
        if present < threshold:
            out.append({"object": {"present": present, "label": None, "score": None, "box": None}})
            continue
        w, h = geometry.frame_size()
        bx, by, bh, bw = row[1:5]
        box = [(bx - bw / 2) * w, (by - bh / 2) * h, (bx + bw / 2) * w, (by + bh / 2) * h]
        probs = row[5:]
        best = max(range(len(probs)), key=probs.__getitem__)
        label = classes[best] if best < len(classes) else str(best)
        out.append({"object": {"present": present, "label": label, "score": probs[best],
                               "box": geometry.box_to_original(box)}})
    return out


def draw(image: "Image.Image", fields: Mapping[str, Any]) -> "Image.Image":
    """The box and "label score" on the image; "no object" written in the corner when there is none."""
    from PIL import ImageDraw

    image = image.convert("RGB")
    pen = ImageDraw.Draw(image)
    obj = fields.get("object") or {}
    if obj.get("box") is None:
        pen.text((3, 3), f"no object (p_c {obj.get('present', 0.0):.2f})", fill=(255, 255, 0))
        return image
    x1, y1, x2, y2 = obj["box"]
    width = max(1, round(min(image.size) / 150))
    pen.rectangle((x1, y1, x2, y2), outline=(255, 40, 40), width=width)
    pen.text((x1 + 2, max(0, y1 - 12)), f"{obj['label']} {obj['score']:.2f}", fill=(255, 255, 0))
    return image
