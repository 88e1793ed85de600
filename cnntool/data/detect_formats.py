"""Detection datasets on disk: the scene generator's JSON, YOLO txt (Ultralytics' data.yaml too) and COCO JSON,
read into one form and written from it (cnntool.data.crops cuts the objects out for the classifiers of R-CNN's
second stage).

The one in-memory form is a list of `Sample(image, objects)`, objects `{"label": str, "box": [x1, y1, x2,
y2]}` in pixels of the image file (torchvision's convention). Layouts, per split (train, val, test; only train
is required):
  scenes       DIR/<split>.json: [{"image": "train/000001.png", "objects": [...]}, …]  (cnntool.data.scenes)
  coco         DIR/<split>.json, DIR/annotations/instances_<split>*.json (images beside the file, in
               DIR/images/ or in DIR/<split>*/), or one COCO file given itself (its images: train only):
               {"images": [{id, file_name, width, height}], "annotations": [{id, image_id, category_id,
               bbox: [x, y, w, h], area, iscrowd}], "categories": [{id, name}]}
  yolo         DIR/images/<split>/NAME.png + DIR/labels/<split>/NAME.txt, lines "class cx cy w h" relative to
               the image size; class names in DIR/classes.txt
  ultralytics  DIR/data.yaml (or the .yaml file itself): path (the root; relative to the yaml's folder),
               train / val / test (folders of images or .txt lists of them, relative to path), names (a list
               or {index: name}); each image's labels at the same path with /images/ → /labels/ and .txt
classes.txt (one name per line, in index order) may sit in DIR for every layout.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from PIL import Image

from cnntool.errors import ConfigError
from cnntool.folders import write_text
from cnntool.options import option

SPLITS = ("train", "val", "test")
FORMATS = ("scenes", "coco", "yolo")  # written by convert; localize's CSV annotations are read too


def data_option(help: str = "A detection dataset directory (scene JSON, COCO JSON or YOLO txt).") -> Any:
    import dataclasses

    return option(dataclasses.MISSING, "--data", "-d", help=help)


@dataclass
class Sample:
    image: Path
    objects: list[dict[str, Any]] = field(default_factory=list)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header."""
    with Image.open(path) as img:
        return img.size


# --- classes -------------------------------------------------------------------------------------------

def read_classes(root: Path) -> tuple[str, ...] | None:
    listed = root / "classes.txt"
    if not listed.is_file():
        return None
    return tuple(line.strip() for line in listed.read_text().splitlines() if line.strip())


def write_classes(root: Path, classes: Sequence[str]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    write_text(root / "classes.txt", "".join(f"{c}\n" for c in classes))


# --- scenes JSON ---------------------------------------------------------------------------------------

def read_scenes(path: Path) -> list[Sample]:
    entries = _json(path)
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: expected a JSON list of scenes")
    out = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "image" not in entry:
            raise ConfigError(f"{path}: entry {i} has no 'image'")
        objects = entry.get("objects")
        if objects is None:  # the single-object form: label/box, null when empty
            objects = [] if entry.get("box") is None else [{"label": entry["label"], "box": entry["box"]}]
        out.append(Sample(path.parent / entry["image"], [_object(o, path, i) for o in objects]))
    return out


def write_scenes(path: Path, samples: Sequence[Sample]) -> None:
    base = path.parent
    entries = [{"image": os.path.relpath(s.image, base), "objects": s.objects} for s in samples]
    write_text(path, json.dumps(entries, indent=0) + "\n")


def _object(o: Any, path: Path, i: int) -> dict[str, Any]:
    if not isinstance(o, dict) or "box" not in o or len(o["box"]) != 4:
        raise ConfigError(f"{path}: entry {i}: an object needs a label and a box [x1, y1, x2, y2]")
    box = [float(v) for v in o["box"]]
    if not (box[0] < box[2] and box[1] < box[3]):
        raise ConfigError(f"{path}: entry {i}: box {box} needs x1 < x2 and y1 < y2")
    return {"label": str(o["label"]), "box": box}


# --- COCO JSON -----------------------------------------------------------------------------------------

def write_coco(path: Path, samples: Sequence[Sample], classes: Sequence[str]) -> None:
    """Category ids are 1-based class indices (0 is COCO's customary background)."""
    images, annotations = [], []
    for image_id, s in enumerate(samples, start=1):
        w, h = image_size(s.image)
        images.append({"id": image_id, "file_name": os.path.relpath(s.image, path.parent), "width": w, "height": h})
        for o in s.objects:
            x1, y1, x2, y2 = o["box"]
            annotations.append({"id": len(annotations) + 1, "image_id": image_id,
                                "category_id": classes.index(o["label"]) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                                "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    categories = [{"id": i + 1, "name": c} for i, c in enumerate(classes)]
    write_text(path, json.dumps({"images": images, "annotations": annotations, "categories": categories}) + "\n")


def read_coco(path: Path) -> tuple[list[Sample], tuple[str, ...]]:
    doc = _json(path)
    try:
        names = {c["id"]: str(c["name"]) for c in doc["categories"]}
        samples = {im["id"]: Sample(path.parent / im["file_name"]) for im in doc["images"]}
        for a in doc["annotations"]:
            if a.get("iscrowd"):
                continue
            x, y, w, h = (float(v) for v in a["bbox"])
            samples[a["image_id"]].objects.append({"label": names[a["category_id"]], "box": [x, y, x + w, y + h]})
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: not a COCO detection file ({exc.__class__.__name__}: {exc})") from None
    return list(samples.values()), tuple(names[k] for k in sorted(names))


# --- YOLO txt ------------------------------------------------------------------------------------------

def write_yolo(root: Path, split: str, samples: Sequence[Sample], classes: Sequence[str]) -> None:
    """Copies the images into DIR/images/<split>/ and writes one label file per image."""
    images, labels = root / "images" / split, root / "labels" / split
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    for s in samples:
        target = images / s.image.name
        if target.resolve() != s.image.resolve():
            shutil.copyfile(s.image, target)
        w, h = image_size(s.image)
        lines = []
        for o in s.objects:
            x1, y1, x2, y2 = o["box"]
            lines.append(f"{classes.index(o['label'])} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} "
                         f"{(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}\n")
        write_text(labels / f"{s.image.stem}.txt", "".join(lines))


def read_yolo(root: Path, split: str, classes: Sequence[str]) -> list[Sample]:
    """An image without a label file has no objects (YOLO's convention)."""
    images = [p for p in sorted((root / "images" / split).iterdir()) if not p.name.startswith(".")]
    return [yolo_sample(image, root / "labels" / split / f"{image.stem}.txt", classes) for image in images]


def yolo_sample(image: Path, label_file: Path, classes: Sequence[str]) -> Sample:
    """One image and its YOLO label file (absent: no objects). Normalised coordinates outside 0..1 are a
    labelling mistake, told in one line."""
    sample = Sample(image)
    if not label_file.is_file():
        return sample
    w, h = image_size(image)
    for n, line in enumerate(label_file.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            c, *values = line.split()
            cx, cy, bw, bh = (float(v) for v in values)
            label = classes[int(c)]
        except (ValueError, IndexError):
            raise ConfigError(f"{label_file}:{n}: expected 'class cx cy w h' with a class below {len(classes)}") from None
        box = [cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2]
        if not (bw > 0 and bh > 0 and all(-0.001 <= v <= 1.001 for v in box)):
            raise ConfigError(f"{label_file}:{n}: box {cx:g} {cy:g} {bw:g} {bh:g} lies outside the image (YOLO "
                              "coordinates are shares of its width and height, 0..1)")
        sample.objects.append({"label": label, "box": [box[0] * w, box[1] * h, box[2] * w, box[3] * h]})
    return sample


# --- Ultralytics' data.yaml ----------------------------------------------------------------------------

YAML_NAMES = ("data.yaml", "dataset.yaml", "data.yml")


def read_ultralytics(path: Path) -> tuple[dict[str, list[Sample]], tuple[str, ...]]:
    import yaml

    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read YAML ({' '.join(str(exc).split())[:200]})") from None
    if not isinstance(doc, dict) or "train" not in doc or "names" not in doc:
        raise ConfigError(f"{path}: a dataset YAML needs train and names (and usually path and val)")
    names = doc["names"]
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names, key=int)]
    if not isinstance(names, list) or not names:
        raise ConfigError(f"{path}: names must be a list of class names or {{index: name}}")
    classes = tuple(str(n) for n in names)
    root = path.parent / str(doc.get("path") or ".")
    splits = {}
    for split in SPLITS:
        if doc.get(split):
            images = _listed_images(root, doc[split], path)
            splits[split] = [yolo_sample(image, _label_path(image), classes) for image in images]
    return splits, classes


def _listed_images(root: Path, entry: Any, source: Path) -> list[Path]:
    """A split's images: folders (searched recursively) or .txt lists of image paths, one or several."""
    from cnntool.sources import IMAGE_SUFFIXES

    found: list[Path] = []
    for item in entry if isinstance(entry, list) else [entry]:
        where = root / str(item)
        if where.is_dir():
            found += sorted(p for p in where.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif where.is_file() and where.suffix == ".txt":
            found += [where.parent / line.strip() for line in where.read_text().splitlines() if line.strip()]
        else:
            raise ConfigError(f"{source}: {item!r} is neither a folder of images nor a .txt list under {root}")
    return found


def _label_path(image: Path) -> Path:
    """Ultralytics' rule: the last /images/ of the path becomes /labels/, the suffix .txt."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


# --- COCO as labelling tools export it -----------------------------------------------------------------

def _coco_files(root: Path) -> dict[str, Path]:
    """DIR/annotations/instances_<split>*.json by split (COCO's own naming, e.g. instances_val2017.json)."""
    found = {}
    for split in SPLITS:
        matches = sorted((root / "annotations").glob(f"instances_{split}*.json"))
        if matches:
            found[split] = matches[0]
    if not found and (root / "annotations").is_dir():
        others = sorted((root / "annotations").glob("*.json"))
        if len(others) == 1:  # a tool's single export (e.g. instances_default.json): the training split
            found["train"] = others[0]
    return found


def _find_images(samples: list[Sample], path: Path, split: str) -> list[Sample]:
    """COCO's file_name is relative to where the tool put the images: beside the file, in the root's images/,
    or in a folder named after the split (train2017/)."""
    root = path.parent.parent if path.parent.name == "annotations" else path.parent
    bases = [path.parent, root / "images", root, *sorted(root.glob(f"{split}*/")), *sorted(root.glob(f"images/{split}*/"))]
    for s in samples:
        relative = s.image.relative_to(path.parent)
        s.image = next((b / relative for b in bases if (b / relative).is_file()), s.image)
    return samples


# --- any layout ----------------------------------------------------------------------------------------

def detect_format(root: Path) -> str:
    root = Path(root)
    if root.suffix.lower() in (".yaml", ".yml") or any((root / name).is_file() for name in YAML_NAMES):
        return "ultralytics"
    if root.suffix.lower() == ".json" or _coco_files(root):
        return "coco"
    if (root / "images").is_dir() and (root / "labels").is_dir():
        return "yolo"
    for split in SPLITS:
        path = root / f"{split}.json"
        if path.is_file():
            return "coco" if isinstance(_json(path), dict) else "scenes"
        if (root / f"{split}.csv").is_file():
            return "csv"
    raise ConfigError(f"{root}: no detection data (train.json, data.yaml, annotations/instances_train*.json, or "
                      "images/ + labels/ in YOLO's layout; see `cnntool data example detect`)")


def read_dataset(root: str | Path) -> tuple[dict[str, list[Sample]], tuple[str, ...]]:
    """Every split present, in any layout, and the class names (the YAML's names, classes.txt, COCO's
    categories, else the sorted labels)."""
    root = Path(root)
    if root.is_file() and root.suffix.lower() in (".yaml", ".yml"):
        return read_ultralytics(root)
    if root.is_file() and root.suffix.lower() == ".json":
        samples, classes = read_coco(root)
        return {"train": _find_images(samples, root, "train")}, classes
    if not root.is_dir():
        raise ConfigError(f"--data {root}: not a directory, a data.yaml or a COCO .json file")
    fmt = detect_format(root)
    if fmt == "ultralytics":
        return read_ultralytics(next(root / n for n in YAML_NAMES if (root / n).is_file()))
    coco_files = _coco_files(root)
    if coco_files:
        splits, classes = {}, read_classes(root)
        for split, path in coco_files.items():
            samples, found = read_coco(path)
            splits[split], classes = _find_images(samples, path, split), classes or found
        return splits, classes
    classes = read_classes(root)
    splits: dict[str, list[Sample]] = {}
    for split in SPLITS:
        if fmt == "yolo":
            if (root / "images" / split).is_dir():
                if classes is None:
                    raise ConfigError(f"{root}: YOLO layout needs classes.txt (one class name per line)")
                splits[split] = read_yolo(root, split, classes)
        elif fmt == "csv" and (root / f"{split}.csv").is_file():
            splits[split] = _read_csv(root / f"{split}.csv")
        elif (root / f"{split}.json").is_file():
            if fmt == "coco":
                splits[split], coco_classes = read_coco(root / f"{split}.json")
                classes = classes or coco_classes
            else:
                splits[split] = read_scenes(root / f"{split}.json")
    if classes is None:
        classes = tuple(sorted({o["label"] for samples in splits.values() for s in samples for o in s.objects}))
    return splits, classes


def _read_csv(path: Path) -> list[Sample]:
    """localize's CSV annotations (cnntool.data.annotations): one object or none per image."""
    from cnntool.data.annotations import read_annotations

    return [Sample(a.image, [] if a.box is None else [{"label": a.label, "box": a.box}]) for a in read_annotations(path)]


def convert(source: str | Path, out: str | Path, fmt: str) -> Path:
    """Rewrite a dataset (any layout) in another; images are referenced (scenes, coco) or copied (yolo)."""
    if fmt not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    splits, classes = read_dataset(source)
    out = Path(out)
    write_classes(out, classes)
    for split, samples in splits.items():
        if fmt == "yolo":
            write_yolo(out, split, samples, classes)
        elif fmt == "coco":
            write_coco(out / f"{split}.json", samples, classes)
        else:
            write_scenes(out / f"{split}.json", samples)
    return out


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read JSON ({exc})") from None
