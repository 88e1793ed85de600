"""Landmarks, the lecture's l-vector: N points (l_1x, l_1y, … l_Nx, l_Ny), relative to the model's input
frame (0..1). Targets are (N, 2P) float tensors in the same layout.

NME (normalized mean error) here is the mean point-to-point distance divided by the image diagonal,
measured in the model's input frame (for stretched square scenes that is the same as in the original
image). "within tolerance" is the share of points closer than `tolerance` × diagonal (default 2%).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping, Sequence


if TYPE_CHECKING:
    from pathlib import Path

    import torch
    from PIL import Image

    from cnntool.preprocess import Geometry

TASK = "landmarks"
LOSSES = ("l1", "mse")
DEFAULT_TOLERANCE = 0.02


def loss(outputs: "torch.Tensor", targets: "torch.Tensor", kind: str = "l1") -> "torch.Tensor":
    """L1 (robust, the usual choice for coordinates) or the lecture's squared error, averaged over all
    coordinates."""
    import torch.nn.functional as F

    if kind == "l1":
        return F.l1_loss(outputs.float(), targets.float())
    if kind == "mse":
        return F.mse_loss(outputs.float(), targets.float())
    raise ValueError(f"loss must be one of {', '.join(LOSSES)}, not {kind!r}")


def point_errors(outputs: "torch.Tensor", targets: "torch.Tensor", size: tuple[int, int]) -> "torch.Tensor":
    """(N, P) distances in units of the frame's diagonal, for relative coordinates in a (height, width)
    frame."""
    import torch

    h, w = size
    scale = torch.tensor([w, h], dtype=torch.float64)
    diff = (outputs.detach().double().cpu() - targets.detach().double().cpu()).view(len(outputs), -1, 2) * scale
    return diff.norm(dim=2) / float((w * w + h * h) ** 0.5)


class LandmarkMetrics:
    """NME (lower is better) and the share of points within tolerance. `primary` is `score` = 1 − NME so
    that the engine's "higher is better" selection applies."""

    primary = "score"

    def __init__(self, size: tuple[int, int], tolerance: float = DEFAULT_TOLERANCE) -> None:
        import torch

        self.size, self.tolerance = size, tolerance
        self.sums = torch.zeros(4, dtype=torch.float64)  # images, points, error sum, points within tolerance

    def update(self, outputs: "torch.Tensor", targets: "torch.Tensor") -> None:
        import torch

        errors = point_errors(outputs, targets, self.size)
        self.sums += torch.tensor([len(errors), errors.numel(), float(errors.sum()),
                                   float((errors <= self.tolerance).sum())], dtype=torch.float64)

    def tensors(self) -> list["torch.Tensor"]:
        return [self.sums]

    def load_tensors(self, values: Sequence[Any]) -> None:
        import torch

        self.sums.copy_(torch.as_tensor(values[0], dtype=torch.float64))

    def summary(self) -> dict[str, float]:
        points = max(float(self.sums[1]), 1.0)
        nme = float(self.sums[2]) / points
        return {"nme": nme, "within_tolerance": float(self.sums[3]) / points, "score": 1.0 - nme}

    def compute(self) -> dict[str, Any]:
        return {"images": int(self.sums[0]), "points": int(self.sums[1]), **self.summary(),
                "nme_normalized_by": "image diagonal", "tolerance": self.tolerance}


def decode(outputs: "torch.Tensor", geometries: Sequence["Geometry"], *, classes: Sequence[str],
           options: Mapping[str, Any]) -> list[dict[str, Any]]:
    """{"points": [[x, y], …] in original pixels, "point_names": the model's names, "box": the points'
    bounding box}."""
    if isinstance(outputs, list):
        return [_decode_instances(found, geometry, classes) for found, geometry in zip(outputs, geometries)]
    rows = outputs.detach().float().cpu().view(len(outputs), -1, 2).tolist()
    out = []
    for points, geometry in zip(rows, geometries):
        w, h = geometry.frame_size()
        original = geometry.points_to_original([[x * w, y * h] for x, y in points])
        xs, ys = [p[0] for p in original], [p[1] for p in original]
        fields: dict[str, Any] = {"points": original}
        if len(classes) == len(points):
            fields["point_names"] = list(classes)
        fields["box"] = [min(xs), min(ys), max(xs), max(ys)]
        out.append(fields)
    return out


def _decode_instances(found: Mapping[str, "torch.Tensor"], geometry: "Geometry",
                      classes: Sequence[str]) -> dict[str, Any]:
    """Models that find several objects (faces) and place points on each: {"boxes", "scores",
    "points" (F, P, 2)} in input pixels → every instance under "faces", and the largest one's points and
    box at the top level like any landmarks record (empty when nothing was found)."""
    instances = []
    for box, score, points in zip(found["boxes"].tolist(), found["scores"].tolist(), found["points"].tolist()):
        instances.append({"box": geometry.box_to_original(box), "score": score,
                          "points": geometry.points_to_original(points)})
    instances.sort(key=lambda f: (f["box"][2] - f["box"][0]) * (f["box"][3] - f["box"][1]), reverse=True)
    fields: dict[str, Any] = {"points": instances[0]["points"] if instances else [],
                              "box": instances[0]["box"] if instances else None, "faces": instances}
    if classes:
        fields["point_names"] = list(classes)
    return fields


def draw(image: "Image.Image", fields: Mapping[str, Any]) -> "Image.Image":
    """Numbered points; four points are joined as a quadrilateral (the document outline); faces get
    their box and unnumbered points when there are many."""
    from PIL import ImageDraw

    image = image.convert("RGB")
    pen = ImageDraw.Draw(image)
    r = max(2, round(min(image.size) / 100))
    instances = fields["faces"] if "faces" in fields else [fields]
    for instance in instances:
        points = [tuple(p) for p in instance.get("points", [])]
        if "faces" in fields:
            pen.rectangle(instance["box"], outline=(40, 160, 255), width=max(1, r // 2))
            r = max(1, round((instance["box"][2] - instance["box"][0]) / 60))
        if len(points) == 4:
            pen.line(points + points[:1], fill=(40, 255, 40), width=max(1, r // 2))
        for i, (x, y) in enumerate(points):
            pen.ellipse((x - r, y - r, x + r, y + r), outline=(255, 40, 40), width=max(1, r // 2))
            if len(points) <= 10:  # numbers on 68 points would hide the face
                pen.text((x + r + 1, y - r), str(i + 1), fill=(255, 255, 0))
    return image


class Rectifier:
    """`landmarks --rectify DIR`: called with each record, warps the image's four found points to a flat
    rectangle and writes it as DIR/<stem>.png (a later input of the same stem gets -2, -3 …)."""

    def __init__(self, directory: "Path", *, quiet: bool = False) -> None:
        from cnntool.engine.predict import ImageDirectory

        self.output = ImageDirectory(directory, "--rectify")
        self.quiet = quiet

    def __call__(self, record: Any) -> None:
        import sys

        from cnntool.data.documents import rectify
        from cnntool.preprocess import open_image

        points = record.fields.get("points") if record.ok else None
        if not points or len(points) != 4:
            if record.ok and not self.quiet:
                print(f"cnntool: {record.source}: --rectify needs 4 points", file=sys.stderr)
            return
        self.output.write(record.source, rectify(open_image(record.source, channels=3), points))
