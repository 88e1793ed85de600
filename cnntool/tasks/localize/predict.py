"""Classification with localization at prediction time, the lecture's y-vector: y = [p_c, b_x, b_y, b_h, b_w,
c_1 … c_K]. p_c: is there an object; (b_x, b_y): the box centre and (b_h, b_w): its height and width, all
relative to the model's input frame (0..1); c_1 … c_K: which class (cnntool.models.yvector)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from cnntool.models.yvector import encode, interpret
from cnntool.options import option
from cnntool.tasks.localize.metrics import DEFAULT_THRESHOLD

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from cnntool.preprocess import Geometry


def tta_option(help: str = "Test-time augmentation: average with four copies shifted diagonally by 5% of the frame "
               "(five forward passes).") -> Any:
    return option(False, "--tta", help=help)


@dataclass
class LocalizeOptions:
    threshold: float | None = option(None, "--threshold", min=0.0, max=1.0, help="p_c at or above this reports an "
                                     "object. Default: the model's own (calibrated on validation where the weights "
                                     "record one), else 0.5.")
    tta: bool = tta_option()


CSV_COLUMNS = ("present", "label", "score", "x1", "y1", "x2", "y2")


@dataclass
class YVector:
    """The one object of an image: p_c, and when it clears the threshold its class and box (original pixels)."""

    present: float
    label: str | None = None
    score: float | None = None
    box: list[float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"object": asdict(self)}

    def summary(self) -> str:
        if self.box is None:
            return f"no object (p_c {self.present:.3f})"
        return f"{self.label} {self.score:.3f} p_c {self.present:.3f} box {[round(v) for v in self.box]}"

    def csv_rows(self) -> list[dict[str, Any]]:
        return [{"present": self.present, "label": self.label, "score": self.score,
                 **dict(zip(("x1", "y1", "x2", "y2"), self.box or ()))}]


# Test-time augmentation (--tta): the image and four copies shifted diagonally by 5 % of the frame (edges
# repeated), each ŷ moved back by its shift and the five averaged. The localizer's box head is sized by
# its input, so it cannot be run at other scales as a detector can. 5 % was chosen on localizer-digits'
# validation scenes (weights/localizer-digits.md).
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
           options: Mapping[str, Any]) -> list[YVector]:
    """p_c for every image; label, score and box only when p_c reaches options["threshold"] (0.5)."""
    y_hat = interpret(z.detach()).cpu()
    threshold = float(options.get("threshold", DEFAULT_THRESHOLD))
    out = []
    for row, geometry in zip(y_hat.tolist(), geometries):
        present = row[0]
        if present < threshold:
            out.append(YVector(present))
            continue
        w, h = geometry.frame_size()
        bx, by, bh, bw = row[1:5]
        box = [(bx - bw / 2) * w, (by - bh / 2) * h, (bx + bw / 2) * w, (by + bh / 2) * h]
        probs = row[5:]
        best = max(range(len(probs)), key=probs.__getitem__)
        label = classes[best] if best < len(classes) else str(best)
        out.append(YVector(present, label, probs[best], geometry.box_to_original(box)))
    return out


def draw(image: "Image.Image", payload: YVector) -> "Image.Image":
    """The box and "label score" on the image; "no object" written in the corner when there is none."""
    from PIL import ImageDraw

    image = image.convert("RGB")
    pen = ImageDraw.Draw(image)
    if payload.box is None:
        pen.text((3, 3), f"no object (p_c {payload.present:.2f})", fill=(255, 255, 0))
        return image
    x1, y1, x2, y2 = payload.box
    width = max(1, round(min(image.size) / 150))
    pen.rectangle((x1, y1, x2, y2), outline=(255, 40, 40), width=width)
    pen.text((x1 + 2, max(0, y1 - 12)), f"{payload.label} {payload.score:.2f}", fill=(255, 255, 0))
    return image


OPTIONS = LocalizeOptions
