"""Training data for a box reader (cnntool.models.reader): the objects of localize annotation files cut out,
as the reader will see them, into a class-per-folder tree that `cnntool train classify` reads.

Crops are cut by the reader's own `crop_boxes` (a square around the box, RoIAlign-resampled), from the image
as the localizer reads it: stretched to `frame`×`frame`. Training crops are cut around boxes jittered as a
localizer's predictions are off (centre shifted, sides rescaled, by normal errors of `jitter` × the side),
`copies` per object; held-out crops around the annotated boxes themselves. Images without an object give
none. out/train/<class>/ and out/test/<class>/ come from each source's train and test split (a source
without a test split gives training crops only); out/crops.json records how they were cut.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from cnntool.data.annotations import find_split, read_annotations, read_classes
from cnntool.errors import ConfigError
from cnntool.models.reader import CONTEXT

SPLIT_SEED = {"train": 0, "test": 1}


@dataclass(frozen=True)
class CropConfig:
    size: int = 32  # crop side in pixels: the reader's input size
    context: float = CONTEXT
    frame: int = 128  # the localizer's input side: images are stretched to it before cutting
    copies: int = 2  # jittered crops per training object
    jitter: float = 0.07
    seed: int = 0


def jittered(rng: np.random.Generator, box: np.ndarray, jitter: float) -> np.ndarray:
    """A relative [b_x, b_y, b_h, b_w] box moved and resized by normal errors proportional to its sides."""
    bx, by, bh, bw = box
    dx, dy, sh, sw = rng.normal(0.0, jitter, 4)
    return np.array([bx + dx * bw, by + dy * bh, bh * np.exp(sh), bw * np.exp(sw)])


def write_crops(sources: Sequence[Path], out: Path, config: CropConfig = CropConfig()) -> dict[str, int]:
    """Crops of every source's train and test objects under out/; returns the count per split."""
    import torch
    from PIL import Image

    from cnntool.models.reader import crop_boxes

    if not sources:
        raise ConfigError("give at least one annotated data directory (train.json, test.json)")
    classes: tuple[str, ...] | None = None
    counts = {"train": 0, "test": 0}
    for number, source in enumerate(sources):
        if find_split(source, "train") is None:
            raise ConfigError(f"{source}: no train.json or train.csv")
        for split, copies in (("train", config.copies), ("test", 1)):
            path = find_split(source, split)
            if path is None:
                continue
            annotations = read_annotations(path)
            found = read_classes(source, annotations)
            if classes is not None and found != classes:
                raise ConfigError(f"{source}: classes {', '.join(found)} differ from the first source's {', '.join(classes)}")
            classes = found
            rng = np.random.default_rng([config.seed, number, SPLIT_SEED[split]])
            for i, item in enumerate(annotations):
                if item.label is None or item.box is None:
                    continue
                try:
                    with Image.open(item.image) as image:
                        w, h = image.size
                        pixels = image.convert("RGB").resize((config.frame, config.frame), Image.BILINEAR)
                except (OSError, ValueError, Image.DecompressionBombError) as exc:  # missing, truncated, not an image, a bomb
                    raise ConfigError(f"{item.image}: not a readable image ({exc})") from None
                x1, y1, x2, y2 = item.box
                box = np.array([(x1 + x2) / 2 / w, (y1 + y2) / 2 / h, (y2 - y1) / h, (x2 - x1) / w])
                boxes = [jittered(rng, box, config.jitter) for _ in range(copies)] if split == "train" else [box]
                tensor = torch.from_numpy(np.asarray(pixels, dtype=np.float32) / 255).permute(2, 0, 1)
                crops = crop_boxes(tensor.expand(len(boxes), -1, -1, -1),
                                   torch.tensor(np.stack(boxes), dtype=torch.float32),
                                   size=config.size, context=config.context)
                folder = out / split / item.label
                folder.mkdir(parents=True, exist_ok=True)
                for copy, crop in enumerate(crops):
                    array = (crop.permute(1, 2, 0).clamp(0, 1) * 255 + 0.5).to(torch.uint8).numpy()
                    Image.fromarray(array).save(folder / f"{source.name}-{split}-{i:06d}-{copy}.png")
                    counts[split] += 1
    (out / "crops.json").write_text(json.dumps({**asdict(config), "sources": [str(s) for s in sources],
                                                "classes": list(classes or ()), "counts": counts}, indent=1) + "\n")
    return counts
