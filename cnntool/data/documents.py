"""Document-scanner data: a real page or photo placed in perspective on another real photo, annotated with
its four corners (top-left, top-right, bottom-right, bottom-left, in the document's own orientation), and
the inverse: `rectify` warps a found quadrilateral back to a flat rectangle.

Documents are scikit-image's page.png / text.png, OpenCV's text and board images and the bundled photos
(a photo print is a document too). Documents and backgrounds are split like scenes.py's: every fifth of
each list is test-only. Points are continuous pixel coordinates: the document's outer corner, not the
centre of its corner pixel.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from PIL import Image

from cnntool.data.builtin import OPENCV_DATA, photo_paths
from cnntool.data.scenes import SPLITS, background_paths, load_photo, random_crop, split_paths
from cnntool.folders import save_image, write_text
from cnntool.options import option

CORNER_NAMES = ("top_left", "top_right", "bottom_right", "bottom_left")
_SKIMAGE_PAGES = ("page.png", "text.png", "camera.png", "coins.png", "clock_motion.png", "chessboard_RGB.png")
_OPENCV_PAGES = ("sudoku.png", "notes.png", "imageTextN.png", "imageTextR.png", "cards.png", "graf1.png",
                 "graf3.png", "box.png", "pic1.png", "pic3.png", "pic5.png", "smarties.png")


@dataclass(frozen=True)
class DocumentConfig:
    size: int = option(128, "--size", min=16, help="Scene side in pixels (square).")
    height: tuple[float, float] = (0.45, 0.85)  # document height relative to the scene side
    rotation: float = 20.0  # degrees, either way
    perspective: float = 0.05  # corner jitter, share of the scene side (standard deviation)
    margin: float = 0.6  # probability of a white paper margin round the content
    margin_width: tuple[float, float] = (0.03, 0.12)  # share of the document's shorter side
    inset: float = 0.03  # corners stay this share of the side inside the frame


def document_paths() -> list[Path]:
    """Pages and photos usable as documents, in a stable order (so held-out indices are stable)."""
    found: list[Path] = []
    spec = importlib.util.find_spec("skimage")
    if spec is not None and spec.origin is not None:
        base = Path(spec.origin).parent / "data"
        found.extend(base / n for n in _SKIMAGE_PAGES if (base / n).is_file())
    found.extend(OPENCV_DATA / n for n in _OPENCV_PAGES if (OPENCV_DATA / n).is_file())
    return sorted(set(found) | set(photo_paths()), key=lambda p: (p.name, str(p)))


def perspective_coefficients(output_points: Sequence[Sequence[float]],
                             input_points: Sequence[Sequence[float]]) -> list[float]:
    """PIL's PERSPECTIVE data (a..h): the homography taking output_points[i] to input_points[i], as
    u = (a·x + b·y + c) / (g·x + h·y + 1), v = (d·x + e·y + f) / (g·x + h·y + 1). Four point pairs give
    eight linear equations in the eight unknowns."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(output_points, input_points):
        rows.append([x, y, 1, 0, 0, 0, -x * u, -y * u])
        rows.append([0, 0, 0, x, y, 1, -x * v, -y * v])
        rhs.extend([u, v])
    if len(rows) != 8:
        raise ValueError("a perspective needs exactly four point pairs")
    try:
        return np.linalg.solve(np.asarray(rows, dtype=np.float64), np.asarray(rhs, dtype=np.float64)).tolist()
    except np.linalg.LinAlgError:
        raise ValueError("degenerate quadrilateral (three corners on a line)") from None


def rectify(image: Image.Image, quad: Sequence[Sequence[float]], size: tuple[int, int] | None = None) -> Image.Image:
    """The quadrilateral (top-left, top-right, bottom-right, bottom-left) warped to a flat rectangle; its
    size (width, height) defaults to the mean lengths of opposite sides."""
    q = np.asarray(quad, dtype=np.float64)
    if q.shape != (4, 2):
        raise ValueError("rectify needs four [x, y] corners")
    if size is None:
        width = (np.linalg.norm(q[1] - q[0]) + np.linalg.norm(q[2] - q[3])) / 2
        height = (np.linalg.norm(q[3] - q[0]) + np.linalg.norm(q[2] - q[1])) / 2
        size = (max(1, round(width)), max(1, round(height)))
    w, h = size
    coefficients = perspective_coefficients([(0, 0), (w, 0), (w, h), (0, h)], q)
    return image.transform((w, h), Image.PERSPECTIVE, coefficients, Image.BILINEAR)


def _quad(rng: np.random.Generator, aspect: float, config: DocumentConfig) -> np.ndarray:
    """Four corners of a rotated, perspective-jittered rectangle that fit in the frame."""
    s = config.size
    lo, hi = config.inset * s, (1 - config.inset) * s
    for attempt in range(100):
        shrink = 0.97 ** attempt
        h = rng.uniform(*config.height) * s * shrink
        w = min(h * aspect, 0.9 * s)
        h = w / aspect
        theta = np.deg2rad(rng.uniform(-config.rotation, config.rotation))
        rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
        corners = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2 @ rot.T
        corners += rng.normal(0, config.perspective * s, corners.shape)
        span = corners.max(0) - corners.min(0)
        if np.any(span > hi - lo):
            continue
        centre = rng.uniform(lo - corners.min(0), hi - corners.max(0))
        return corners + centre
    raise RuntimeError("could not place a document in the frame")


def _document(rng: np.random.Generator, photo: Image.Image, config: DocumentConfig) -> Image.Image:
    """A crop of the document source, sometimes on a white paper margin."""
    aspect = float(np.exp(rng.uniform(np.log(0.6), np.log(1.6))))
    side = 160
    doc = random_crop(rng, photo, (round(side * min(1.0, aspect)), round(side * min(1.0, 1 / aspect))),
                      fraction=(0.6, 1.0))
    if rng.random() < config.margin:
        m = max(1, round(rng.uniform(*config.margin_width) * min(doc.size)))
        paper = Image.new("RGB", (doc.width + 2 * m, doc.height + 2 * m), tuple(int(v) for v in rng.integers(215, 256, 3)))
        paper.paste(doc, (m, m))
        doc = paper
    return doc


def make_document_scene(rng: np.random.Generator, *, backgrounds: list[Path], documents: list[Path],
                        config: DocumentConfig) -> tuple[Image.Image, list[list[float]]]:
    s = config.size
    background = random_crop(rng, load_photo(backgrounds[int(rng.integers(len(backgrounds)))]), (s, s))
    doc = _document(rng, load_photo(documents[int(rng.integers(len(documents)))]), config)
    quad = _quad(rng, doc.width / doc.height, config)
    dw, dh = doc.size
    coefficients = perspective_coefficients(quad, [(0, 0), (dw, 0), (dw, dh), (0, dh)])
    warped = doc.transform((s, s), Image.PERSPECTIVE, coefficients, Image.BILINEAR)
    mask = Image.new("L", doc.size, 255).transform((s, s), Image.PERSPECTIVE, coefficients, Image.BILINEAR)
    background.paste(warped, (0, 0), mask)
    return background, quad.tolist()


def document_rng(seed: int, split: str, index: int) -> np.random.Generator:
    # 100 keeps these streams apart from scenes.py's for the same seed.
    return np.random.default_rng([seed, 100 + SPLITS.index(split), index])


def write_split(out: Path, split: str, n: int, *, seed: int, config: DocumentConfig) -> Path:
    """n scenes as out/<split>/NNNNNN.png, annotations in out/<split>.json:
    {"image", "points": [[x, y] × 4], "point_names", "box"} (box: the points' bounding box)."""
    backgrounds = background_paths(split)
    documents = split_paths(document_paths(), split)
    (out / split).mkdir(parents=True, exist_ok=True)
    entries: list[dict[str, Any]] = []
    for i in range(n):
        image, quad = make_document_scene(document_rng(seed, split, i), backgrounds=backgrounds,
                                          documents=documents, config=config)
        name = f"{split}/{i:06d}.png"
        save_image(image, out / name, compress_level=1)
        xs, ys = [p[0] for p in quad], [p[1] for p in quad]
        entries.append({"image": name, "points": [[round(x, 3), round(y, 3)] for x, y in quad],
                        "point_names": list(CORNER_NAMES), "box": [min(xs), min(ys), max(xs), max(ys)]})
    path = out / f"{split}.json"
    write_text(path, json.dumps(entries, indent=0) + "\n")
    return path


def write_dataset(out: Path, counts: dict[str, int], *, seed: int, config: DocumentConfig) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    return [write_split(out, split, n, seed=seed, config=config) for split, n in counts.items() if n > 0]
