"""Object detection: every detector's candidates → thresholded, NMS'd boxes in original pixels.

The contract every registered detector keeps (YOLO-style grid, sliding windows, torchvision's Faster
R-CNN / RetinaNet / SSDlite / FCOS): in eval mode the module returns one dict per image, torchvision's
{"boxes": (n, 4) xyxy in the model's input frame, "scores": (n,), "labels": (n,) class indices}, and
optionally "class_scores" (n, K): every class's score for each box (the grid detector keeps them;
torchvision's detectors already return a box per class), and "upsample" (int): dlib's face detector's
upsampling, whose boxes, like dlib's, may reach past the image (the record keeps that box beside the
clipped one). So the prediction pipeline stays as it is, and
post-processing (--conf, --classes, --multi-label, class-wise NMS at --iou, --max-det) happens once, here,
for all of them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from cnntool.faces import upsample_option
from cnntool.options import option

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from cnntool.preprocess import Geometry


def tta_option() -> Any:
    return option(False, "--tta", help="Test-time augmentation: also run every image 1.17× and 1.33× larger and pool "
                  "the boxes before NMS (three forward passes, 4.1× the arithmetic).")


@dataclass
class DetectOptions:
    conf: float | None = option(None, "--conf", min=0.0, max=1.0, help="Least score a detection needs. Default: the "
                                "model's own (0.25; faces: 0, dlib's threshold).")
    iou: float | None = option(None, "--iou", min=0.0, max=1.0, help="Non-maximum suppression: drop a box "
                               "overlapping a better one of its class by more than this IoU. Default 0.45.")
    max_det: int | None = option(None, "--max-det", min=1, help="Most detections per image. Default 100.")
    classes: str | None = option(None, "--classes", help="Only these classes, comma-separated names or indices: "
                                 "--classes 3,7.")
    multi_label: bool = option(False, "--multi-label", help="A box may be reported once for every class whose score "
                               "clears --conf, not only for its best (as Ultralytics' validation; the mAP that "
                               "`evaluate detect` reports first).")
    tta: bool = tta_option()
    upsample: int | None = upsample_option(" (dlib's face models only)")
    raw: bool = option(False, "--raw", help="Also write the grid detector's whole output as the lecture writes it: "
                       "field y, per cell and anchor [p_c, b_x, b_y, b_h, b_w, c_1 …] in cell units, shape "
                       "S×S×A×(5 + C) in y_shape (JSON output only; yolo-digits: 12×12×1×15).")


@dataclass
class Detection:
    label: str
    score: float
    box: list[float]
    box_unclipped: list[float] | None = None  # face detections: dlib's box, which may reach past the image


CSV_COLUMNS = ("label", "score", "x1", "y1", "x2", "y2")


@dataclass
class Detections:
    """An image's detections, best first; boxes [x1, y1, x2, y2] in original pixels; for face detectors the
    upsampling used."""

    detections: list[Detection]
    upsample: int | None = None
    y: list | None = None  # --raw: the grid detector's y volume, rows × columns × anchors × (5 + C)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"detections": [{k: v for k, v in asdict(d).items() if v is not None}
                                              for d in self.detections]}
        if self.upsample is not None:
            out["upsample"] = self.upsample
        if self.y is not None:
            import numpy as np

            out["y_shape"], out["y"] = list(np.shape(self.y)), self.y
        return out

    def summary(self) -> str:
        shown = ", ".join(f"{d.label} {d.score:.2f} {[round(v) for v in d.box]}" for d in self.detections[:5])
        more = f" (+{len(self.detections) - 5} more)" if len(self.detections) > 5 else ""
        # dlib's face scores are margins past its threshold (0), not probabilities: say so where one passes 1.
        if self.upsample is not None and any(d.score > 1 for d in self.detections):
            more += "; face scores are dlib's detection margins (0 = its threshold), not probabilities"
        return f"{len(self.detections)}: {shown}{more}" if self.detections else "none"

    def csv_rows(self) -> list[dict[str, Any]]:
        return [{"label": d.label, "score": d.score, **dict(zip(("x1", "y1", "x2", "y2"), d.box))}
                for d in self.detections]


@dataclass(frozen=True)
class PostProcess:
    conf: float = 0.25  # least score kept
    iou: float = 0.45  # NMS: a box overlapping a better one of its class by more than this is dropped
    max_det: int = 100  # most detections per image
    classes: tuple[int, ...] | None = None  # class indices kept (None: all)
    # A box may carry every class whose score clears `conf`, not only its best (Ultralytics' validation,
    # torchvision's detectors): a digit the head half reads as a 9 is also reported as the 2 it may be.
    multi_label: bool = False

    @classmethod
    def from_options(cls, options: Mapping[str, Any], classes: Sequence[str]) -> "PostProcess":
        given = {k: options[k] for k in ("conf", "iou", "max_det", "multi_label") if options.get(k) is not None}
        wanted = options.get("classes")
        return cls(**given, classes=None if not wanted else class_indices(wanted, classes))


def class_indices(wanted: str | Sequence[str], classes: Sequence[str]) -> tuple[int, ...]:
    """--classes "cat,dog" or "3,7" → indices; an unknown name is an error that lists the valid ones."""
    from cnntool.errors import ConfigError

    items = [w.strip() for w in wanted.split(",")] if isinstance(wanted, str) else [str(w) for w in wanted]
    out = []
    for item in filter(None, items):
        if item in classes:
            out.append(classes.index(item))
        elif item.isdigit() and int(item) < len(classes):
            out.append(int(item))
        else:
            valid = ", ".join(c for c in classes if c not in ("__background__", "N/A"))
            raise ConfigError(f"--classes: unknown class {item!r}; valid: {valid}")
    return tuple(out)


def postprocess(candidates: Mapping[str, "torch.Tensor"], p: PostProcess) -> dict[str, "torch.Tensor"]:
    """One image's candidates → kept detections, best first."""
    import torch

    from cnntool.boxes import class_nms

    boxes, scores, labels = (candidates[k].detach().float().cpu() if k != "labels" else candidates[k].detach().cpu()
                             for k in ("boxes", "scores", "labels"))
    if p.multi_label and "class_scores" in candidates:
        per_class = candidates["class_scores"].detach().float().cpu()
        box_index, labels = (per_class >= p.conf).nonzero(as_tuple=True)
        boxes, scores = boxes[box_index], per_class[box_index, labels]
    keep = scores >= p.conf
    if p.classes is not None:
        keep &= torch.isin(labels, torch.tensor(p.classes, dtype=labels.dtype))
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    kept = class_nms(boxes, scores, labels, p.iou)[: p.max_det]
    return {"boxes": boxes[kept], "scores": scores[kept], "labels": labels[kept]}


def decode(outputs: Sequence[Mapping[str, "torch.Tensor"]], geometries: Sequence["Geometry"], *,
           classes: Sequence[str], options: Mapping[str, Any]) -> list[Detections]:
    p = PostProcess.from_options(options, classes)
    out = []
    for candidates, geometry in zip(outputs, geometries):
        kept = postprocess(candidates, p)
        upsample = candidates.get("upsample")
        volume = candidates.get("y")
        out.append(Detections([
            Detection(classes[i] if i < len(classes) else str(i), round(s, 5),
                      [round(v, 2) for v in geometry.box_to_original(b)],
                      None if upsample is None else [round(v, 2) for v in geometry.box_to_original(b, clip=False)])
            for b, s, i in zip(kept["boxes"].tolist(), kept["scores"].tolist(), kept["labels"].tolist())
        ], upsample, None if volume is None else volume.float().cpu().numpy().round(5).tolist()))
    return out


# Test-time augmentation (--tta): every image is also run 17 % and 33 % larger and the candidates of all
# scales are pooled before NMS, as Ultralytics' augment=True does (it also mirrors; a mirrored digit is no
# digit). The scales were chosen on yolo-digits' validation scenes (weights/yolo-digits.md).
TTA_SCALES = (1.0, 1.17, 1.33)


def multi_scale(model: Callable[["torch.Tensor"], list], images: "torch.Tensor", *, stride: int,
                scales: Sequence[float] = TTA_SCALES) -> list[dict[str, "torch.Tensor"]]:
    """Each image's candidates from `images` resized by every scale (the sides of a scale other than 1
    rounded to the model's stride), boxes mapped back to the input frame and pooled per image."""
    import torch
    import torch.nn.functional as F

    height, width = images.shape[-2:]
    pooled: list[dict[str, torch.Tensor]] = []
    for scale in scales:
        size = (height, width) if scale == 1 else tuple(max(stride, round(side * scale / stride) * stride)
                                                        for side in (height, width))
        resized = images if size == (height, width) else F.interpolate(images, size=size, mode="bilinear",
                                                                         align_corners=False)
        back = torch.tensor([width / size[1], height / size[0]] * 2)
        found = [{**d, "boxes": d["boxes"] * back.to(d["boxes"])} for d in model(resized)]
        pooled = pool(pooled, found) if pooled else found
    return pooled


def pool(first: list[dict[str, "torch.Tensor"]], second: list[dict[str, "torch.Tensor"]]) -> list[dict[str, "torch.Tensor"]]:
    """Two candidate lists of the same images joined image by image (what is not a tensor, the face
    detector's upsampling, is the first's: that of the image at its own size)."""
    import torch

    return [{k: torch.cat([a[k], b[k]]) if isinstance(a[k], torch.Tensor) else a[k] for k in a}
            for a, b in zip(first, second)]


def with_lecture_volume(module: "torch.nn.Module", options: Mapping[str, Any]) -> Callable:
    """--raw: the grid detector run on its raw output, each image's candidates carrying the y volume too."""
    from cnntool.errors import ConfigError
    from cnntool.models import yolo

    if not isinstance(module, yolo.GridDetector):
        raise ConfigError("--raw applies to the YOLO grid detector (yolo-digits, or one trained from it) only")
    if options.get("tta"):
        raise ConfigError("--raw shows one forward pass's output: leave out --tta")

    def run(x: "torch.Tensor") -> list[dict[str, "torch.Tensor"]]:
        raw = module.raw(x)
        volumes = yolo.lecture_volume(raw, module.anchors, module.stride)
        return [{**out, "y": y} for out, y in zip(yolo.decode(raw, module.anchors, module.stride), volumes)]

    return run


def stride_of(module: "torch.nn.Module") -> int:
    """What the sides of a rescaled input are rounded to: the grid detector's stride, else 32 (torchvision's
    detectors resize inside their own transform anyway)."""
    return getattr(module, "stride", 32)


def runner(model: Callable, module: "torch.nn.Module", options: Mapping[str, Any]) -> Callable:
    """How the prediction pipeline calls the detector: as it is, or at TTA_SCALES under --tta; a face
    detector at the --upsample asked for."""
    if options.get("upsample") is not None:
        from cnntool.models.faces import set_upsample

        set_upsample(module, options["upsample"])
    if options.get("raw"):
        return with_lecture_volume(module, options)
    return partial(multi_scale, model, stride=stride_of(module)) if options.get("tta") else model


def draw(image: "Image.Image", payload: Detections) -> "Image.Image":
    """Labelled boxes (torchvision.utils.draw_bounding_boxes), one colour per label."""
    import zlib

    import numpy as np
    import torch
    from PIL import Image
    from torchvision.utils import draw_bounding_boxes

    detections = payload.to_dict()["detections"]
    pixels = torch.from_numpy(np.array(image.convert("RGB"))).permute(2, 0, 1).contiguous()  # a writable copy
    if not detections:
        return image.convert("RGB")
    boxes = torch.tensor([d["box"] for d in detections], dtype=torch.float32)
    labels = [f"{d['label']} {d['score']:.2f}" for d in detections]
    palette = ["#e6194b", "#3cb44b", "#ffe119", "#4363d8", "#f58231", "#911eb4", "#46f0f0", "#f032e6", "#bcf60c",
               "#fabebe", "#008080", "#e6beff"]
    colours = [palette[zlib.crc32(d["label"].encode()) % len(palette)] for d in detections]  # stable per label
    width = max(1, round(min(image.size) / 200))
    drawn = draw_bounding_boxes(pixels, boxes, labels=labels, colors=colours, width=width)
    return Image.fromarray(drawn.permute(1, 2, 0).numpy())


OPTIONS = DetectOptions
