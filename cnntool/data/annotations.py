"""Annotation files for localize and landmarks (JSON or CSV), read into in-memory training sets.

JSON: a list of objects, image paths relative to the file:
  localize   {"image": "a.png", "label": "7", "box": [x1, y1, x2, y2]}  (label and box null: no object)
             or {"image": "a.png", "objects": [{"label", "box"}, …]}   (at most one object for localize)
  landmarks  {"image": "a.png", "points": [[x, y], …], "point_names": [...], "box": [...] (optional)}
CSV with a header row:
  localize   image,label,x1,y1,x2,y2          (empty label and box: no object)
  landmarks  image,x1,y1,x2,y2,…,xN,yN        (the point columns in order)
Coordinates are pixels of the image file. A dataset directory holds train.json (or .csv), optionally
val and test, and optionally classes.txt (one class per line, in index order).

Every image goes through cnntool.preprocess (the one image → tensor path) once; the cache holds uint8
tensors at the model's input size and the annotations mapped into that frame.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from cnntool.data.batches import ImageTensors
from cnntool.errors import ConfigError
from cnntool.options import option
from cnntool.preprocess import Geometry, ImageError, Preprocessor, rescale_geometry
from cnntool.registry import InputSpec

if TYPE_CHECKING:
    import torch

SPLIT_NAMES = ("train", "val", "test")
EVALUATION_SPLITS = ("test", "val", "train")


def data_option() -> Any:
    return option(dataclasses.MISSING, "--data", "-d", help="A directory with train, val and test annotation files "
                  "(JSON or CSV; see `cnntool data`).")


def split_option() -> Any:
    return option("test", "--split", help="Which split of the data: test (the held-out one training reports), val "
                  "or train.")


def read_split(data: str, split: str) -> tuple[Path, list["Annotation"]]:
    """(path, annotations) of one split of a train/val/test annotation directory, or a one-line error that
    names the splits there are."""
    if split not in EVALUATION_SPLITS:
        raise ConfigError(f"--split must be one of {', '.join(EVALUATION_SPLITS)}, not {split!r}")
    root = Path(data)
    path = find_split(root, split)
    if path is None:
        there = [s for s in EVALUATION_SPLITS if find_split(root, s) is not None]
        has = f"has: {', '.join(there)}" if there else "no test, val or train .json or .csv there"
        raise ConfigError(f"data {data!r} has no {split!r} split ({has})")
    return path, read_annotations(path)


@dataclass
class Annotation:
    image: Path
    label: str | None = None
    box: list[float] | None = None
    points: list[list[float]] | None = None
    point_names: list[str] | None = None


def read_annotations(path: str | Path) -> list[Annotation]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"annotation file {path} not found")
    base = path.parent
    if path.suffix.lower() == ".csv":
        return _read_csv(path, base)
    try:
        entries = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: expected a JSON list of annotations")
    return [_from_json(entry, base, path, i) for i, entry in enumerate(entries)]


def _from_json(entry: Any, base: Path, path: Path, i: int) -> Annotation:
    if not isinstance(entry, dict) or "image" not in entry:
        raise ConfigError(f"{path}: entry {i} has no 'image'")
    label, box = entry.get("label"), entry.get("box")
    if "objects" in entry:
        objects = entry["objects"] or []
        if len(objects) > 1:
            raise ConfigError(f"{path}: entry {i} has {len(objects)} objects; localize takes at most one")
        label, box = (objects[0].get("label"), objects[0].get("box")) if objects else (None, None)
    if box is not None and (len(box) != 4 or not box[0] < box[2] or not box[1] < box[3]):
        raise ConfigError(f"{path}: entry {i}: a box needs 4 numbers [x1, y1, x2, y2] with x1 < x2 and y1 < y2")
    return Annotation(base / entry["image"], None if label is None else str(label),
                      None if box is None else [float(v) for v in box],
                      entry.get("points"), entry.get("point_names"))


def _read_csv(path: Path, base: Path) -> list[Annotation]:
    with open(path, newline="") as fh:
        rows = list(csv.DictReader(fh))
    out = []
    for i, row in enumerate(rows):
        if "image" not in row:
            raise ConfigError(f"{path}: needs an 'image' column")
        try:
            if "label" in row:
                has_box = row.get("x1", "") not in ("", None)
                box = [float(row[k]) for k in ("x1", "y1", "x2", "y2")] if has_box else None
                out.append(Annotation(base / row["image"], row["label"] or None, box))
            else:
                n = sum(1 for k in row if k.startswith("x"))
                points = [[float(row[f"x{j}"]), float(row[f"y{j}"])] for j in range(1, n + 1)]
                out.append(Annotation(base / row["image"], points=points))
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"{path}: row {i + 2}: {exc}") from None
    return out


def find_split(directory: Path, split: str) -> Path | None:
    for suffix in (".json", ".csv"):
        candidate = directory / f"{split}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def read_splits(root: Path) -> dict[str, list[Annotation]]:
    """Every split an annotation folder has, read (training: train.json, val and test optional)."""
    files = {s: find_split(root, s) for s in SPLIT_NAMES}
    if files["train"] is None:
        raise ConfigError(f"{root}: needs train.json (or .csv); val and test are optional")
    return {s: read_annotations(p) for s, p in files.items() if p is not None}


def read_classes(directory: Path, annotations: Sequence[Annotation]) -> tuple[str, ...]:
    listed = directory / "classes.txt"
    if listed.is_file():
        return tuple(line.strip() for line in listed.read_text().splitlines() if line.strip())
    return tuple(sorted({a.label for a in annotations if a.label is not None}))


def cache(annotations: Sequence[Any], spec: InputSpec,
          target: Callable[[Any, Geometry], Sequence[float]]) -> ImageTensors:
    """Preprocess every image once; `target` maps an annotation into the input frame. An image that does not
    read is left out (listed in the result's `skipped`); an annotation outside its image is a ConfigError."""
    import torch

    pre = Preprocessor(spec)
    h, w = spec.size
    images = torch.empty(len(annotations), spec.channels, h, w, dtype=torch.uint8)
    targets, skipped = [], []
    for a in annotations:
        try:
            img, original_size = pre.open(a.image)
            if min(original_size) < 2:
                raise ImageError(f"a {original_size[0]}×{original_size[1]} image holds nothing to learn")
        except ImageError as exc:
            skipped.append((a.image, str(exc)))
            continue
        resized, geometry = pre.geometry_and_resized(img)
        if original_size != (geometry.width, geometry.height):  # JPEG draft mode decoded it smaller
            geometry = rescale_geometry(geometry, original_size)
        arr = np.asarray(resized, dtype=np.uint8)
        images[len(targets)] = torch.from_numpy(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1).copy())
        targets.append(list(target(a, geometry)))
    if annotations and not targets:
        raise ConfigError(f"no readable image among {len(annotations)} (e.g. {skipped[0][0]}: {skipped[0][1]})")
    return ImageTensors(images[:len(targets)], torch.tensor(targets, dtype=torch.float32), skipped)


def check_inside(image: Path, points: Sequence[Sequence[float]], geometry: Geometry) -> None:
    """Annotated coordinates must lie on their image (1 px of slack): one outside is a labelling mistake, told
    before any training."""
    for x, y in points:
        if not (-1 <= x <= geometry.width + 1 and -1 <= y <= geometry.height + 1):
            raise ConfigError(f"{image}: annotated point ({x:g}, {y:g}) lies outside the {geometry.width}×"
                              f"{geometry.height} image")
