"""Landmarks at prediction time, the lecture's l-vector: N points per image in original pixels; for models that
find several objects first (faces), the points of each."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from cnntool.faces import upsample_option
from cnntool.options import option

if TYPE_CHECKING:
    import torch
    from PIL import Image

    from cnntool.preprocess import Geometry
    from cnntool.records import Record


@dataclass
class LandmarksOptions:
    rectify: Path | None = option(None, "--rectify", help="Write each image's found quadrilateral (4 points) warped "
                                  "flat into this directory.")
    upsample: int | None = upsample_option(" (face5, face68 only)")


CSV_COLUMNS = ("instance", "point", "name", "x", "y", "in_domain", "domain_score")


@dataclass
class Points:
    """An image's points and their bounding box; with `faces`, every face found (largest first), whose first
    one's points and box are the top-level ones (empty and None when nothing was found), and the face
    detector's upsampling. With a domain check (cnntool.models.domain), whether the image shows what the
    model finds points on at all (a document for the corner model): when it does not, the points are
    still given, marked by in_domain false, and --rectify leaves the image alone."""

    points: list[list[float]]
    box: list[float] | None
    point_names: list[str] | None = None
    faces: list[dict[str, Any]] | None = None
    upsample: int | None = None
    in_domain: bool | None = None
    domain_score: float | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"points": self.points}
        if self.point_names is not None:
            out["point_names"] = self.point_names
        out["box"] = self.box
        if self.faces is not None:
            out["faces"] = self.faces
        if self.upsample is not None:
            out["upsample"] = self.upsample
        if self.in_domain is not None:
            out.update(in_domain=self.in_domain, domain_score=self.domain_score)
        return out

    def summary(self) -> str:
        if self.in_domain is False:
            return f"nothing like its training images here (domain {self.domain_score:.2f})"
        text = f"{len(self.points)} points" + (f" in {[round(v) for v in self.box]}" if self.box else "")
        return text + (f" ({len(self.faces)} faces)" if self.faces and len(self.faces) > 1 else "")

    def csv_rows(self) -> list[dict[str, Any]]:
        instances = [f["points"] for f in self.faces] if self.faces is not None else [self.points]
        names = self.point_names or []
        return [{"instance": i, "point": j, "name": names[j] if j < len(names) else None, "x": x, "y": y,
                 "in_domain": self.in_domain, "domain_score": self.domain_score}
                for i, points in enumerate(instances) for j, (x, y) in enumerate(points)]


def decode(outputs: Any, geometries: Sequence["Geometry"], *, classes: Sequence[str],
           options: Mapping[str, Any]) -> list[Points]:
    """The model's points, or (points, domain logits) from a model with a domain check."""
    if isinstance(outputs, tuple):
        from cnntool.models.domain import verdicts

        points, domain = outputs
        out = decode(points, geometries, classes=classes, options=options)
        for found, (inside, score) in zip(out, verdicts(domain, options.get("domain_threshold", 0.0))):
            found.in_domain, found.domain_score = inside, score
        return out
    if isinstance(outputs, list):
        return [_decode_instances(found, geometry, classes) for found, geometry in zip(outputs, geometries)]
    rows = outputs.detach().float().cpu().view(len(outputs), -1, 2).tolist()
    out = []
    for points, geometry in zip(rows, geometries):
        w, h = geometry.frame_size()
        original = geometry.points_to_original([[x * w, y * h] for x, y in points])
        xs, ys = [p[0] for p in original], [p[1] for p in original]
        names = list(classes) if len(classes) == len(points) else None
        out.append(Points(original, [min(xs), min(ys), max(xs), max(ys)], names))
    return out


def _decode_instances(found: Mapping[str, Any], geometry: "Geometry", classes: Sequence[str]) -> Points:
    """Models that find several objects (faces) and place points on each: {"boxes", "scores", "points"
    (F, P, 2)} in input pixels, and the face detector's "upsample", whose boxes (dlib's) may reach past the
    image: each face keeps that box beside the clipped one."""
    instances = []
    for box, score, points in zip(found["boxes"].tolist(), found["scores"].tolist(), found["points"].tolist()):
        instances.append({"box": geometry.box_to_original(box),
                          "box_unclipped": geometry.box_to_original(box, clip=False), "score": score,
                          "points": geometry.points_to_original(points)})
    instances.sort(key=lambda f: (f["box"][2] - f["box"][0]) * (f["box"][3] - f["box"][1]), reverse=True)
    first = instances[0] if instances else {"points": [], "box": None}
    return Points(first["points"], first["box"], list(classes) if classes else None, instances, found.get("upsample"))


def runner(model: Callable, module: "torch.nn.Module", options: Mapping[str, Any]) -> Callable:
    """The model as it is; a face model at the --upsample asked for."""
    if options.get("upsample") is not None:
        from cnntool.models.faces import set_upsample

        set_upsample(module, options["upsample"])
    return model


def draw(image: "Image.Image", payload: Points) -> "Image.Image":
    """Numbered points; four points are joined as a quadrilateral (the document outline); faces get
    their box and unnumbered points when there are many."""
    from PIL import ImageDraw

    image = image.convert("RGB")
    pen = ImageDraw.Draw(image)
    r = max(2, round(min(image.size) / 100))
    fields = payload.to_dict()
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

    def __init__(self, directory: Path, *, quiet: bool = False) -> None:
        from cnntool.folders import ImageDirectory

        self.output = ImageDirectory(directory, "--rectify")
        self.quiet = quiet

    def __call__(self, record: "Record") -> None:
        from cnntool.console import warn
        from cnntool.data.documents import rectify
        from cnntool.preprocess import open_image

        points = record.payload.points if record.ok and record.payload.in_domain is not False else None
        if not points or len(points) != 4:
            if record.ok and record.payload.in_domain is not False:
                warn(f"{record.source}: --rectify needs 4 points", quiet=self.quiet)
            return
        self.output.write(record.source, rectify(open_image(record.source, channels=3), points))


OPTIONS = LandmarksOptions
