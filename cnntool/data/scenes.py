"""Scenes for localization and detection: real objects pasted onto real photos, with their boxes.

Objects are OpenCV's handwritten digits or Fashion-MNIST items. Their grey intensity becomes an alpha mask
and they are recoloured, so an object is a shape in a colour that stands out from the photo under it.
Backgrounds are random crops of the bundled photos (`photo_paths()`). A scene holds 0..max_objects
objects; the box of each is the tight box of its visible mask, in pixels of the scene image
([x1, y1, x2, y2], pixel i covering [i, i + 1), torchvision's convention).

Held-out split: the test split draws objects from a fixed held-out index range (the last 10% of each
digit class; Fashion-MNIST's official test set) and backgrounds from held-out photos (every fifth photo by
sorted name), so test scores measure objects and photos the model never saw.

With `mix_backgrounds`, training scenes (only) are laid on backgrounds no single photo shows: crops of up
to four photos tiled, turned, flipped and recoloured. A few dozen photos otherwise let a model learn the
photos themselves: the localizer lost 5 points of presence accuracy going from training to held-out photos
with the same digits, and almost none going to held-out digits on training photos.

With `clutter`, training scenes (only) also carry up to three distractors drawn under the object: photo
cut-outs with transparency (fruit, animals, flowers: e.g. Tux Paint's stamps), unlabelled. The localizer's
false alarms on held-out photos sat on such structure (an apple's highlights, a fruit's pith, a striped
shirt), which a few dozen background photos show too rarely.

Scene i of a split is drawn from its own generator seeded by (seed, split, i): any scene can be
regenerated alone and the output does not depend on how many scenes are made.

With `val_photos`, the validation scenes lie on those photos alone, photos no other split shows, so validation
sees a change of photos as the held-out split does (a presence threshold chosen on the training photos is too
low for unseen ones).
"""

from __future__ import annotations

import json
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
from PIL import Image

from cnntool.boxes import iou

from cnntool.data.builtin import (DIGIT_CLASSES, FASHION_CLASSES, load_fashion_mnist, load_opencv_digits,
                                  load_sklearn_digits, photo_paths)
from cnntool.errors import ConfigError
from cnntool.folders import save_image, write_text
from cnntool.options import option

SPLITS = ("train", "val", "test")
OBJECT_SOURCES = ("digits", "fashion", "sklearn-digits")
# Photos are shrunk once to this shorter side: crops stay sharp at scene sizes up to ~256 px.
_PHOTO_SIDE = 384
_HELD_OUT_EVERY = 5  # every fifth photo (by sorted index) is a test-only background
_DIGITS_HELD_OUT_FROM = 450  # per class, digits 450..499 are test-only


def _photos(paths: Sequence[Path]) -> tuple[Path, ...]:
    return photo_files(paths) if paths and not isinstance(paths, tuple) else tuple(paths)


def _cutouts(paths: Sequence[Path]) -> tuple[Path, ...]:
    return cutout_files(paths) if paths and not isinstance(paths, tuple) else tuple(paths)


@dataclass(frozen=True)
class SceneConfig:
    size: int = option(128, "--size", min=16, help="Scene side in pixels (square).")
    objects: str = option("digits", "--objects", help="digits (OpenCV's handwritten digits), fashion (Fashion-MNIST) "
                          "or sklearn-digits (scikit-learn's 8×8 digits: always installed, coarse).")
    max_objects: int = option(1, "--max-objects", min=1, help="Objects per scene at most; above 1 each entry holds an "
                              "\"objects\" list (for detect).")
    empty_fraction: float = option(0.2, "--empty", min=0.0, max=1.0, help="Share of scenes without any object.")
    # the object's longer side relative to the scene side
    min_scale: float = option(0.3, "--min-scale", min=0.01, max=1.0, help="Smallest object (longer side / scene side).")
    max_scale: float = option(0.7, "--max-scale", min=0.01, max=1.0, help="Largest object.")
    mix_backgrounds: bool = option(False, "--mix-backgrounds", help="Training scenes only: tile, turn and recolour "
                                   "photo crops so a few photos give many backgrounds.")
    extra_photos: tuple[Path, ...] = option((), "--extra-photos", help="More background photos (a file, or a folder of "
                                            "them), repeatable: training and validation scenes only; the held-out "
                                            "photos stay the bundled ones.", parse=_photos, cli_type=list[Path],
                                            cli_default=[])
    val_photos: tuple[Path, ...] = option((), "--val-photos", help="Validation scenes on these photos alone (a file, "
                                          "or a folder of them), repeatable: photos no other split shows, so "
                                          "validation measures unseen photos as the held-out split does (e.g. to "
                                          "choose a presence threshold with `cnntool ensemble --calibrate`).",
                                          parse=_photos, cli_type=list[Path], cli_default=[])
    clutter: tuple[Path, ...] = option((), "--clutter", help="A folder of PNG cut-outs with transparency (searched "
                                       "through), repeatable: training scenes get up to three as unlabelled "
                                       "distractors under the object, e.g. /usr/share/tuxpaint/stamps/food.",
                                       parse=_cutouts, cli_type=list[Path], cli_default=[])
    aspect_jitter: float = 0.2  # width/height stretched by up to ±20%
    opacity: tuple[float, float] = (0.8, 1.0)
    min_contrast: float = 120.0  # least RGB distance between object colour and the photo under it
    max_overlap: float = 0.1  # multi-object scenes: largest IoU allowed between two objects
    clutter_scale: tuple[float, float] = (0.2, 0.8)  # a distractor's longer side relative to the scene side

    def __post_init__(self) -> None:
        if self.objects not in OBJECT_SOURCES:
            raise ConfigError(f"--objects must be one of {', '.join(OBJECT_SOURCES)}, not {self.objects!r}")
        if not 0 < self.min_scale <= self.max_scale <= 1:
            raise ConfigError("--min-scale and --max-scale must satisfy 0 < min <= max <= 1")
        both = self.val_photos and ({p.resolve() for p in self.val_photos} &
                                    {p.resolve() for p in (*self.extra_photos, *photo_paths())})
        if both:
            raise ConfigError(f"{sorted(both)[0]}: already a training or held-out photo; validation photos "
                              "(--val-photos) must be ones no other split shows")


@dataclass
class Workers:
    workers: int = option(0, "--workers", "-j", min=0, help="Processes drawing scenes (the files do not depend on it).")


@dataclass
class Scene:
    image: Image.Image
    objects: list[dict[str, Any]] = field(default_factory=list)  # {"label": str, "box": [x1, y1, x2, y2]}
    background: str = ""  # the photo's file name, or "mixed" (tiles of several photos)


# --- pools ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ObjectPool:
    images: np.ndarray  # (N, h, w) uint8, bright object on black
    labels: np.ndarray  # (N,) int64
    classes: tuple[str, ...]


def _split_rows(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
    return "test" if split == "test" else "train"  # val shares the training pools; test is held out


@lru_cache(maxsize=4)
def object_pool(source: str, split: str) -> ObjectPool:
    part = _split_rows(split)
    if source == "digits":
        images, labels = load_opencv_digits()
        held_out = (np.arange(len(labels)) % 500) >= _DIGITS_HELD_OUT_FROM  # 500 per class, in order
        keep = held_out if part == "test" else ~held_out
        return ObjectPool(images[keep], labels[keep], DIGIT_CLASSES)
    if source == "fashion":
        images, labels = load_fashion_mnist(part)
        return ObjectPool(images, labels, FASHION_CLASSES)
    if source == "sklearn-digits":
        images, labels = load_sklearn_digits()
        rank = np.array([np.sum(labels[:i] == label) for i, label in enumerate(labels)])
        held_out = rank >= np.bincount(labels)[labels] * 0.8  # the last fifth of each class is test-only
        keep = held_out if part == "test" else ~held_out
        return ObjectPool(images[keep], labels[keep], DIGIT_CLASSES)
    raise ValueError(f"objects must be one of {', '.join(OBJECT_SOURCES)}, not {source!r}")


def scene_pool(config: SceneConfig, split: str) -> ObjectPool:
    """The objects a split's scenes draw from."""
    return object_pool(config.objects, split)


def split_paths(paths: list[Path], split: str) -> list[Path]:
    """The photos a split may use: every fifth one is held out for test."""
    part = _split_rows(split)
    return [p for i, p in enumerate(paths) if (i % _HELD_OUT_EVERY == _HELD_OUT_EVERY - 1) == (part == "test")]


PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


def photo_files(paths: Sequence[Path]) -> tuple[Path, ...]:
    """Files as given, folders as the photos directly in them (sorted): the value of --extra-photos."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES and p.is_file())
            if not inside:
                raise ConfigError(f"{path}: no photos ({', '.join(PHOTO_SUFFIXES)}) in this folder")
            found += inside
        elif path.is_file():
            found.append(path)
        else:
            raise ConfigError(f"{path}: no such file or folder")
    for path in found:  # fail before thousands of scenes are written, not in the middle
        try:
            with Image.open(path) as img:
                img.verify()
        except Exception as exc:
            raise ConfigError(f"{path}: not a readable photo ({exc})") from None
    return tuple(found)


def cutout_files(folders: Sequence[Path]) -> tuple[Path, ...]:
    """PNGs with an alpha channel anywhere under the folders (sorted): the value of --clutter. Stamp
    collections nest their pictures by theme, so folders are searched through."""
    found: list[Path] = []
    for folder in folders:
        if not folder.is_dir():
            raise ConfigError(f"{folder}: no such folder")
        inside = []
        for path in sorted(folder.rglob("*.png")):
            try:
                with Image.open(path) as img:
                    if "A" in img.getbands() or "transparency" in img.info:
                        inside.append(path)
            except Exception as exc:  # as --extra-photos: fail before thousands of scenes are written
                raise ConfigError(f"{path}: not a readable picture ({exc})") from None
        if not inside:
            raise ConfigError(f"{folder}: no PNG cut-outs with transparency under this folder")
        found += inside
    return tuple(found)


@lru_cache(maxsize=512)
def load_cutout(path: Path) -> Image.Image:
    img = Image.open(path).convert("RGBA")
    img.thumbnail((256, 256), Image.BILINEAR)  # distractors are at most a scene wide
    return img


def paste_clutter(rng: np.random.Generator, canvas: np.ndarray, cutouts: Sequence[Path],
                  scale: tuple[float, float]) -> None:
    """Paste 0..3 random cut-outs into the float RGB canvas in place, each scaled, flipped and placed at
    random (partly outside the frame allowed: clutter is cut by the edges in real photos too)."""
    size = canvas.shape[0]
    for _ in range(int(rng.integers(0, 4))):
        cutout = load_cutout(cutouts[int(rng.integers(len(cutouts)))])
        factor = rng.uniform(*scale) * size / max(cutout.size)
        w, h = max(2, round(cutout.width * factor)), max(2, round(cutout.height * factor))
        rgba = np.asarray(cutout.resize((w, h), Image.BILINEAR), dtype=np.float64)
        if rng.random() < 0.5:
            rgba = rgba[:, ::-1]
        x, y = int(rng.integers(-w // 2, size - w // 2)), int(rng.integers(-h // 2, size - h // 2))
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, size), min(y + h, size)
        piece = rgba[y0 - y:y1 - y, x0 - x:x1 - x]
        alpha = piece[..., 3:] / 255.0
        region = canvas[y0:y1, x0:x1]
        region[:] = region * (1 - alpha) + piece[..., :3] * alpha


@lru_cache(maxsize=256)
def load_photo(path: Path) -> Image.Image:
    img = Image.open(path)
    img = img.convert("RGB")
    scale = _PHOTO_SIDE / min(img.size)
    if scale < 1:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.BILINEAR)
    return img


def background_paths(split: str, extra: Sequence[Path] = (), val_only: Sequence[Path] = ()) -> list[Path]:
    """The bundled photos of a split; `extra` photos join the training and validation pools only, so the
    held-out photos stay the same whatever is added. `val_only` photos, when given, are the validation pool
    alone: it then measures a change of photos, as the held-out split does, while the digits are still
    training digits."""
    if split == "val" and val_only:
        return list(val_only)
    paths = split_paths(photo_paths(), split) + (list(extra) if _split_rows(split) == "train" else [])
    if not paths:
        raise ValueError("no background photos found (scikit-image, scikit-learn or opencv-doc provide them)")
    return paths


def random_crop(rng: np.random.Generator, photo: Image.Image, size: tuple[int, int],
                fraction: tuple[float, float] = (0.35, 1.0)) -> Image.Image:
    """A random window of the photo (a share `fraction` of its shorter side, the output's aspect), resized."""
    w, h = size
    side = rng.uniform(*fraction) * min(photo.width / w, photo.height / h)
    cw, ch = max(1, int(side * w)), max(1, int(side * h))
    x = int(rng.integers(0, photo.width - cw + 1))
    y = int(rng.integers(0, photo.height - ch + 1))
    crop = photo.crop((x, y, x + cw, y + ch)).resize((w, h), Image.BILINEAR)
    return crop.transpose(Image.FLIP_LEFT_RIGHT) if rng.random() < 0.5 else crop


def _recolour(rng: np.random.Generator, tile: np.ndarray) -> np.ndarray:
    """Channel order, grey, inversion, contrast and brightness drawn at random (float RGB in, out)."""
    tile = tile[..., rng.permutation(3)]
    if rng.random() < 0.2:
        tile = np.repeat(tile.mean(-1, keepdims=True), 3, axis=-1)
    if rng.random() < 0.1:
        tile = 255.0 - tile
    mean = tile.mean()
    return np.clip(mean + (tile - mean) * rng.uniform(0.6, 1.4) + rng.uniform(-30, 30), 0, 255)


def mixed_background(rng: np.random.Generator, photos: list[Path], size: int) -> np.ndarray:
    """A size×size float RGB background cut at a random point into up to four tiles, each a crop of a
    random photo turned by a multiple of 90°, flipped and recoloured."""
    canvas = np.empty((size, size, 3))
    cuts = []
    for _ in range(2):  # rows, then columns: cut in two at a random point half the time
        mid = int(rng.uniform(0.25, 0.75) * size)
        cuts.append([0, mid, size] if rng.random() < 0.5 else [0, size])
    for y0, y1 in zip(cuts[0], cuts[0][1:]):
        for x0, x1 in zip(cuts[1], cuts[1][1:]):
            turns = int(rng.integers(4))
            h, w = (y1 - y0, x1 - x0) if turns % 2 == 0 else (x1 - x0, y1 - y0)
            photo = load_photo(photos[int(rng.integers(len(photos)))])
            tile = np.rot90(np.asarray(random_crop(rng, photo, (w, h)), dtype=np.float64), turns)
            if rng.random() < 0.5:
                tile = tile[::-1]
            canvas[y0:y1, x0:x1] = _recolour(rng, tile)
    return canvas


# --- one scene -----------------------------------------------------------------------------------

def _pick_colour(rng: np.random.Generator, under: np.ndarray, min_contrast: float) -> np.ndarray:
    """A random colour at least min_contrast away from the mean colour under the object."""
    mean = under.reshape(-1, 3).mean(0)
    for _ in range(32):
        colour = rng.integers(0, 256, 3).astype(np.float64)
        if np.linalg.norm(colour - mean) >= min_contrast:
            return colour
    return np.zeros(3) if mean.mean() > 127 else np.full(3, 255.0)


def paste_object(rng: np.random.Generator, canvas: np.ndarray, patch: np.ndarray, config: SceneConfig,
                 avoid: list[list[float]]) -> list[float] | None:
    """Paste one grey patch (bright = object) into the float RGB canvas in place; returns its tight box,
    or None when no place free of `avoid` boxes was found."""
    size = canvas.shape[0]
    side = rng.uniform(config.min_scale, config.max_scale) * size
    aspect = np.exp(rng.uniform(-1, 1) * np.log1p(config.aspect_jitter))
    ph, pw = patch.shape
    longer = max(ph, pw)
    h = max(4, min(size, round(side / longer * ph / np.sqrt(aspect))))
    w = max(4, min(size, round(side / longer * pw * np.sqrt(aspect))))
    alpha = np.asarray(Image.fromarray(patch).resize((w, h), Image.BILINEAR), dtype=np.float64) / 255.0
    rows, cols = np.nonzero(alpha > 0.1)
    if rows.size == 0:
        return None
    for _ in range(20):
        x, y = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
        box = [float(x + cols.min()), float(y + rows.min()), float(x + cols.max() + 1), float(y + rows.max() + 1)]
        if all(iou(box, other) <= config.max_overlap for other in avoid):
            break
    else:
        return None
    region = canvas[y:y + h, x:x + w]
    colour = _pick_colour(rng, region, config.min_contrast)
    a = (alpha * rng.uniform(*config.opacity))[..., None]
    region[:] = region * (1 - a) + colour * a
    return box


def make_scene(rng: np.random.Generator, *, backgrounds: list[Path], pool: ObjectPool,
               config: SceneConfig) -> Scene:
    if config.mix_backgrounds:
        canvas, background = mixed_background(rng, backgrounds, config.size), "mixed"
    else:
        path = backgrounds[int(rng.integers(len(backgrounds)))]
        canvas = np.asarray(random_crop(rng, load_photo(path), (config.size, config.size)), dtype=np.float64).copy()
        background = path.name
    if config.clutter:
        paste_clutter(rng, canvas, config.clutter, config.clutter_scale)
    count = 0 if rng.random() < config.empty_fraction else int(rng.integers(1, config.max_objects + 1))
    objects: list[dict[str, Any]] = []
    for _ in range(count):
        index = int(rng.integers(len(pool.labels)))
        box = paste_object(rng, canvas, pool.images[index], config, [o["box"] for o in objects])
        if box is not None:
            objects.append({"label": pool.classes[int(pool.labels[index])], "box": box})
    image = Image.fromarray(np.clip(np.rint(canvas), 0, 255).astype(np.uint8), "RGB")
    return Scene(image, objects, background)


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    return np.random.default_rng([seed, SPLITS.index(split), index])


# --- writing a dataset ---------------------------------------------------------------------------

def annotation_entry(image: str, objects: list[dict[str, Any]], *, single: bool) -> dict[str, Any]:
    """One annotation: {"image", "label", "box"} (label/box null when empty) for single-object data,
    {"image", "objects": [...]} otherwise."""
    if single:
        first = objects[0] if objects else {"label": None, "box": None}
        return {"image": image, "label": first["label"], "box": first["box"]}
    return {"image": image, "objects": objects}


def _split_config(config: SceneConfig, split: str) -> SceneConfig:
    """The options a split is drawn with: validation and test scenes stay plain photos, like the images a user
    brings."""
    return config if split == "train" else replace(config, mix_backgrounds=False, clutter=())


def _drawn(split: str, indices: Sequence[int], seed: int, config: SceneConfig) -> Iterator[tuple[int, Scene]]:
    """Scene i of the split for each i, as the split's files hold it (config already _split_config'd)."""
    pool = scene_pool(config, split)
    backgrounds = background_paths(split, config.extra_photos, config.val_photos)
    for i in indices:
        yield i, make_scene(scene_rng(seed, split, i), backgrounds=backgrounds, pool=pool, config=config)


def _write_scenes(out: Path, split: str, indices: range, seed: int, config: SceneConfig) -> list[dict[str, Any]]:
    entries = []
    for i, scene in _drawn(split, indices, seed, config):
        name = f"{split}/{i:06d}.png"
        save_image(scene.image, out / name, compress_level=1)  # fast; files stay small at this size
        entries.append(annotation_entry(name, scene.objects, single=config.max_objects == 1))
    return entries


def write_split(out: Path, split: str, n: int, *, seed: int, config: SceneConfig, workers: int = 0) -> Path:
    """Write n scenes as out/<split>/NNNNNN.png and their annotations as out/<split>.json; with workers > 1,
    that many processes draw them (the same files: each scene has its own generator)."""
    config = _split_config(config, split)
    (out / split).mkdir(parents=True, exist_ok=True)
    scene_pool(config, split)  # loads the objects once, here, not in every worker
    if workers > 1:
        step = max(1, -(-n // (workers * 4)))  # several chunks per process evens out slow ones
        chunks = [range(start, min(n, start + step)) for start in range(0, n, step)]
        with ProcessPoolExecutor(workers) as executor:
            parts = executor.map(_write_scenes, *zip(*[(out, split, c, seed, config) for c in chunks]))
            entries = [entry for part in parts for entry in part]
    else:
        entries = _write_scenes(out, split, range(n), seed, config)
    path = out / f"{split}.json"
    write_text(path, json.dumps(entries, indent=0) + "\n")
    return path


def write_dataset(out: Path, counts: dict[str, int], *, seed: int, config: SceneConfig,
                  workers: int = 0) -> list[Path]:
    """All splits plus classes.txt (one class name per line, in index order)."""
    out.mkdir(parents=True, exist_ok=True)
    classes = object_pool(config.objects, "train").classes
    write_text(out / "classes.txt", "".join(f"{c}\n" for c in classes))
    return [write_split(out, split, n, seed=seed, config=config, workers=workers)
            for split, n in counts.items() if n > 0]
