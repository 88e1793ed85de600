"""`cnntool data example TASK --out DIR`: a tiny data set in the layout `cnntool train TASK` reads, made from what
the install ships (scikit-learn's 1,797 8×8 digits; scikit-learn's and scikit-image's photos as backgrounds), so
the README's "Train on your own data" commands run anywhere in seconds. Copy its layout for your own data.

  classify     DIR/train/<class>/*.png, DIR/val/<class>/, DIR/test/<class>/   (val and test optional)
  verify-face  DIR/<identity>/*.png                                           (a folder per person)
  localize     DIR/{train,val,test}.json + images: {"image", "label", "box": [x1, y1, x2, y2]}, null for none
  landmarks    DIR/{train,val,test}.json + images: {"image", "points": [[x, y], …], "point_names"}
  detect       Ultralytics' layout: DIR/data.yaml, DIR/images/{train,val,test}/, DIR/labels/{…}/NAME.txt
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnntool.console import quiet_option
from cnntool.errors import ConfigError
from cnntool.folders import save_image, write_text
from cnntool.options import argument, option

TASKS = ("classify", "localize", "landmarks", "detect", "verify-face")
COUNTS = {"train": 48, "val": 12, "test": 12}


@dataclass
class ExampleConfig:
    task: str = argument(help=f"The task whose layout to write: {', '.join(TASKS)}.")
    out: Path = option(dataclasses.MISSING, "--out", "-o", help="Directory to write (created; must be empty or new).")
    seed: int = option(0, "--seed", help="Seeds which digits and photos are drawn.")
    quiet: bool = quiet_option()

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ConfigError(f"task must be one of {', '.join(TASKS)}, not {self.task!r}")


def write_example(config: ExampleConfig) -> str:
    """Write the example; return a line that says what is where."""
    out = Path(config.out)
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"--out {out}: not empty (the example is written into a new or empty folder)")
    out.mkdir(parents=True, exist_ok=True)
    return WRITERS[config.task](out, config.seed)


def _digit_images(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits at 28×28, light on dark (as MNIST), in a seeded order."""
    from PIL import Image

    from cnntool.data.builtin import load_sklearn_digits

    images, labels = load_sklearn_digits()
    order = np.random.default_rng(seed).permutation(len(labels))
    big = np.stack([np.asarray(Image.fromarray(images[i]).resize((28, 28), Image.BILINEAR)) for i in order])
    return big, labels[order]


def _folders(out: Path, images: np.ndarray, labels: np.ndarray, per_class: dict[str, int], classes: range) -> None:
    from PIL import Image

    for c in classes:
        mine = images[labels == c]
        start = 0
        for split, n in per_class.items():
            folder = out / split / str(c) if split else out / str(c)
            folder.mkdir(parents=True, exist_ok=True)
            for i, pixels in enumerate(mine[start:start + n]):
                save_image(Image.fromarray(pixels), folder / f"{c}-{i:03d}.png")
            start += n


def _classify(out: Path, seed: int) -> str:
    _folders(out, *_digit_images(seed), {"train": 24, "val": 6, "test": 6}, range(4))
    return f"{out}/train/<class>/ (4 classes × 24 images), val/ (× 6) and test/ (× 6)"


def _verify(out: Path, seed: int) -> str:
    _folders(out, *_digit_images(seed), {"": 12}, range(8))
    return f"{out}/<identity>/ (8 identities × 12 images; the digits stand in for people)"


def _scenes(out: Path, seed: int, *, size: int, most: int) -> None:
    from cnntool.data import scenes

    config = scenes.SceneConfig(size=size, objects="sklearn-digits", max_objects=most, min_scale=0.35,
                                max_scale=0.6)
    try:
        scenes.write_dataset(out, COUNTS, seed=seed, config=config)
    except ValueError as exc:  # too few bundled photos for a held-out one
        raise ConfigError(f"{exc}; pip install scikit-image") from None


def _localize(out: Path, seed: int) -> str:
    _scenes(out, seed, size=64, most=1)
    return f"{out}/train.json, val.json, test.json (+ images, classes.txt): one digit or none per 64×64 scene"


def _landmarks(out: Path, seed: int) -> str:
    from cnntool.data import documents

    try:
        documents.write_dataset(out, COUNTS, seed=seed, config=documents.DocumentConfig(size=96))
    except ValueError as exc:
        raise ConfigError(f"{exc}; pip install scikit-image") from None
    return f"{out}/train.json, val.json, test.json (+ images): a page's 4 corners in each 96×96 photo"


def _detect(out: Path, seed: int) -> str:
    from cnntool.data import detect_formats

    with tempfile.TemporaryDirectory() as tmp:
        _scenes(Path(tmp), seed, size=96, most=3)
        splits, classes = detect_formats.read_dataset(tmp)
        for split, samples in splits.items():
            detect_formats.write_yolo(out, split, samples, classes)
    names = "".join(f"  {i}: '{name}'\n" for i, name in enumerate(classes))
    write_text(out / "data.yaml", f"path: .\ntrain: images/train\nval: images/val\ntest: images/test\nnames:\n{names}")
    return f"{out}/data.yaml, images/{{train,val,test}}/, labels/{{…}}/: up to 3 digits per 96×96 scene"


WRITERS = {"classify": _classify, "verify-face": _verify, "localize": _localize, "landmarks": _landmarks,
           "detect": _detect}
