"""Crops of annotated objects, for the classifiers of R-CNN's second stage: a localizer's box reader
(cnntool.models.reader) and the sliding-window detectors' window classifier, into a class-per-folder tree that
`cnntool train classify` reads.

A crop is a square of `context` × the box's longer side around the box, RoIAlign-resampled to size×size
(`crop_boxes`), cut from the image as the model that will use it reads it: stretched to frame×frame (a
localizer's input), or as it is with frame 0 (windows of a photo). Training crops are cut around boxes
jittered as a localizer's predictions are off (centre shifted, sides rescaled, by normal errors of `jitter`
× the side), `copies` per object; held-out crops around the annotated boxes themselves. Any detection layout
(cnntool.data.detect_formats: scene JSON with one object or many, COCO JSON, YOLO txt) is read;
out/train/<class>/ and out/test/<class>/ come from each source's train and test split (a source without a
test split gives training crops only); out/crops.json records how they were cut.

With `background` > 0 both splits also get R-CNN's background class (folder BACKGROUND): that many crops per
image on average, of boxes sized as a random object of the split and placed at random where their crop
touches no object, so a reader learns to say "no digit here" and a window classifier what is no object.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from cnntool.errors import ConfigError
from cnntool.folders import save_image, write_text
from cnntool.console import quiet_option
from cnntool.options import argument, option
from cnntool.models.yvector import BACKGROUND, CONTEXT
from cnntool.preprocess import ImageError, open_sized

SPLIT_SEED = {"train": 0, "test": 1}


@dataclass
class CropSources:
    sources: list[Path] = argument(help="Annotated localize data directories (train.json, test.json), e.g. from "
                                   "`cnntool data scenes`.")
    out: Path = option(dataclasses.MISSING, "--out", "-o", help="Directory to write: train/<class>/ and "
                       "test/<class>/ crops, crops.json.")
    quiet: bool = quiet_option()


@dataclass(frozen=True)
class CropConfig:
    size: int = option(32, "--size", min=8, help="Crop side in pixels (the reader's input size).")
    context: float = option(CONTEXT, "--context", min=1.0, help="Crop side / the box's longer side.")
    frame: int = option(128, "--frame", min=0, help="The localizer's input side: images are stretched to it before "
                        "cutting (0: cut from the image as it is, as sliding windows see it).")
    copies: int = option(2, "--copies", min=1, help="Jittered crops per training object.")
    jitter: float = option(0.07, "--jitter", min=0.0, max=0.5, help="Training boxes: centre and log-size errors drawn "
                           "with this deviation (share of the side).")
    seed: int = option(0, "--seed", help="Seeds the jitter and the background boxes.")
    background: float = option(0.0, "--background", min=0.0, help="Also crops of R-CNN's background class "
                               "(background), this many per image on average, away from every object: a reader "
                               "trained on them can veto false alarms, a window classifier learns what is no object.")


def jittered(rng: np.random.Generator, box: np.ndarray, jitter: float) -> np.ndarray:
    """A relative [b_x, b_y, b_h, b_w] box moved and resized by normal errors proportional to its sides."""
    bx, by, bh, bw = box
    dx, dy, sh, sw = rng.normal(0.0, jitter, 4)
    return np.array([bx + dx * bw, by + dy * bh, bh * np.exp(sh), bw * np.exp(sw)])


def background_boxes(rng: np.random.Generator, count: float, sizes: np.ndarray, avoid: Sequence[np.ndarray],
                     context: float, tries: int = 20) -> list[np.ndarray]:
    """About `count` relative boxes (the fraction drawn by chance), each sized as a random row of `sizes`
    ([b_h, b_w]) and placed inside the frame where its square crop misses every box of `avoid`; a box that
    finds no such place in `tries` draws is left out."""
    wanted = int(count) + int(rng.random() < count % 1)
    boxes = []
    for _ in range(wanted):
        for _ in range(tries):
            bh, bw = sizes[rng.integers(len(sizes))]
            bx, by = rng.uniform(bw / 2, 1 - bw / 2), rng.uniform(bh / 2, 1 - bh / 2)
            if not any(_touches(np.array([bx, by, bh, bw]), other, context) for other in avoid):
                boxes.append(np.array([bx, by, bh, bw]))
                break
    return boxes


def _touches(box: np.ndarray, other: np.ndarray, context: float) -> bool:
    """Whether the square crop around relative `box` overlaps relative box `other` (both [b_x, b_y, b_h, b_w]; the
    crops are cut from a square frame, so a relative half side is the same across and down)."""
    half = max(box[2], box[3]) * context / 2
    return abs(box[0] - other[0]) < half + other[3] / 2 and abs(box[1] - other[1]) < half + other[2] / 2


def _read(path: Path) -> tuple[Image.Image, tuple[int, int]]:
    """The image at `path` as RGB and upright, and its size, as localize training reads it (preprocess.open_sized),
    or a one-line error: missing, truncated, not an image, a decompression bomb."""
    try:
        return open_sized(path, channels=3)
    except ImageError as exc:
        raise ConfigError(f"{path}: not a readable image ({exc})") from None


def _relative(box: Sequence[float], width: int, height: int) -> np.ndarray:
    """[x1, y1, x2, y2] in pixels → relative [b_x, b_y, b_h, b_w]."""
    x1, y1, x2, y2 = box
    return np.array([(x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (y2 - y1) / height, (x2 - x1) / width])


def _object_sizes(samples, source: Path, split: str) -> np.ndarray:
    """Relative [b_h, b_w] of every object of the split: what background boxes are sized as."""
    sizes = [_relative(o["box"], *_read(s.image)[1])[2:] for s in samples for o in s.objects]
    if not sizes:
        raise ConfigError(f"{source}: the {split} split has no object to size background crops as")
    return np.array(sizes)


def write_crops(sources: Sequence[Path], out: Path, config: CropConfig = CropConfig()) -> dict[str, int]:
    """Crops of every source's train and test objects (and background, if asked) under out/; returns the count
    per split."""
    import torch

    from cnntool.data.detect_formats import read_dataset
    from cnntool.models.reader import crop_boxes

    if not sources:
        raise ConfigError("give at least one annotated data directory (train.json, test.json)")
    classes: tuple[str, ...] | None = None
    counts = {"train": 0, "test": 0}
    for number, source in enumerate(map(Path, sources)):
        splits, found = read_dataset(source)
        if "train" not in splits:
            raise ConfigError(f"{source}: no train split (train.json, train.csv or images/train)")
        if classes is not None and found != classes:
            raise ConfigError(f"{source}: classes {', '.join(found)} differ from the first source's {', '.join(classes)}")
        classes = found
        for split, copies in (("train", config.copies), ("test", 1)):
            if split not in splits:
                continue
            samples = splits[split]
            rng = np.random.default_rng([config.seed, number, SPLIT_SEED[split]])
            sizes = _object_sizes(samples, source, split) if config.background else None
            for i, sample in enumerate(samples):
                if not sample.objects and not config.background:
                    continue
                image, size = _read(sample.image)
                objects = [_relative(o["box"], *size) for o in sample.objects]
                boxes, labels = [], []
                for o, box in zip(sample.objects, objects):
                    drawn = [jittered(rng, box, config.jitter) for _ in range(copies)] if split == "train" else [box]
                    boxes, labels = boxes + drawn, labels + [o["label"]] * len(drawn)
                if config.background:
                    empty = background_boxes(rng, config.background, sizes, objects, config.context)
                    boxes, labels = boxes + empty, labels + [BACKGROUND] * len(empty)
                if not boxes:
                    continue
                pixels = image.resize((config.frame, config.frame), Image.BILINEAR) if config.frame else image
                tensor = torch.from_numpy(np.asarray(pixels, dtype=np.float32) / 255).permute(2, 0, 1)
                crops = crop_boxes(tensor.expand(len(boxes), -1, -1, -1),
                                   torch.tensor(np.stack(boxes), dtype=torch.float32),
                                   size=config.size, context=config.context)
                for copy, (crop, label) in enumerate(zip(crops, labels)):
                    folder = out / split / label.replace("/", "_")
                    folder.mkdir(parents=True, exist_ok=True)
                    array = (crop.permute(1, 2, 0).clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
                    save_image(Image.fromarray(array), folder / f"{source.name}-{split}-{i:06d}-{copy}.png")
                    counts[split] += 1
    write_text(out / "crops.json", json.dumps({**asdict(config), "sources": [str(s) for s in sources],
                                                "classes": list(classes or ()) + [BACKGROUND] * bool(config.background),
                                                "counts": counts}, indent=1) + "\n")
    return counts
