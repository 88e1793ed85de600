"""Printed digits: rendered from the fonts a Debian system ships, for training (`printed-digits`), and cut from a
real photograph, for testing only (`sudoku-digits`).

printed-digits: 5,000 digits (500 per class) drawn white on black in 20×20 cells like OpenCV's handwritten
ones, each in a random font of the system's TrueType families (sans, serif, mono; bold, oblique, condensed),
size, stroke, slant and offset, from a fixed seed.

sudoku-digits: the 25 printed digits of OpenCV's sample photo sudoku.png (a newspaper page photographed under
uneven light: dark print on grey paper), cut around the boxes listed below. Never trained on: kept for
checking that a digit reader reads print, not only handwriting.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cnntool.data.builtin import OPENCV_DATA, DataUnavailable

FONT_DIRS = (Path("/usr/share/fonts/truetype"), Path("/usr/share/fonts/opentype"))
# Families whose glyphs are not plain digits.
_NOT_TEXT = ("Math", "Symbol", "ExtraLight")
CELL = 20
PER_CLASS = 500

# sudoku.png's printed digits: (top, left, height, width) of each digit's ink in pixels, and the digit.
SUDOKU_BOXES = (
    ((95, 225, 26, 20), 6), ((95, 317, 26, 21), 4), ((92, 364, 28, 20), 7),
    ((137, 83, 27, 20), 7), ((137, 176, 28, 20), 6), ((126, 462, 30, 21), 9),
    ((180, 318, 28, 20), 5), ((177, 415, 29, 21), 8),
    ((225, 123, 28, 21), 7), ((225, 269, 29, 21), 2), ((223, 416, 31, 21), 9), ((220, 466, 31, 23), 3),
    ((271, 70, 31, 20), 8), ((268, 469, 32, 22), 5),
    ((320, 66, 30, 21), 4), ((320, 117, 32, 21), 3), ((321, 271, 31, 12), 1), ((320, 419, 31, 22), 7),
    ((371, 113, 31, 22), 5), ((371, 216, 31, 22), 2),
    ((421, 57, 33, 22), 3), ((423, 371, 33, 22), 2),
    ((475, 158, 34, 23), 2), ((476, 212, 34, 23), 3), ((476, 321, 35, 13), 1),
)


def font_paths() -> list[Path]:
    found = sorted(p for d in FONT_DIRS if d.is_dir() for p in d.rglob("*.[ot]tf")
                   if not any(word in p.name for word in _NOT_TEXT))
    if not found:
        raise DataUnavailable("no TrueType fonts found to render printed digits: apt-get install fonts-dejavu-core")
    return found


def load_printed_digits(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(5,000 × 20 × 20 uint8 white-on-black digits, their labels)."""
    from PIL import Image, ImageDraw, ImageFont

    fonts = font_paths()
    rng = np.random.default_rng(seed)
    images = np.zeros((10 * PER_CLASS, CELL, CELL), np.uint8)
    labels = np.repeat(np.arange(10), PER_CLASS)
    for i, digit in enumerate(labels):
        font = ImageFont.truetype(str(fonts[int(rng.integers(len(fonts)))]), int(rng.integers(34, 48)))
        stroke = int(rng.integers(0, 3))
        canvas = Image.new("L", (64, 64), 0)
        ImageDraw.Draw(canvas).text((32, 32), str(digit), fill=255, font=font, anchor="mm", stroke_width=stroke,
                                    stroke_fill=255)
        canvas = canvas.rotate(float(rng.uniform(-8, 8)), resample=Image.BILINEAR)
        # Tight to the ink, then into the cell as OpenCV's digits sit: ~16 px tall, a little off centre.
        left, top, right, bottom = canvas.getbbox() or (0, 0, 64, 64)
        ink = canvas.crop((left, top, right, bottom))
        height = int(rng.integers(14, 18))
        width = max(1, round(ink.width * height / ink.height * rng.uniform(0.85, 1.15)))
        ink = ink.resize((min(width, CELL), height), Image.BILINEAR)
        cell = Image.new("L", (CELL, CELL), 0)
        x = (CELL - ink.width) // 2 + int(rng.integers(-1, 2))
        y = (CELL - ink.height) // 2 + int(rng.integers(-1, 2))
        cell.paste(ink, (max(0, x), max(0, y)))
        images[i] = np.asarray(cell)
    return images, labels


def load_sudoku_digits() -> tuple[np.ndarray, np.ndarray]:
    """(25 square grey crops of sudoku.png's printed digits, as photographed: dark on grey, 40×40; labels)."""
    from PIL import Image

    path = OPENCV_DATA / "sudoku.png"
    if not path.is_file():
        raise DataUnavailable("OpenCV's sudoku.png not found: apt-get install opencv-doc")
    page = Image.open(path).convert("L")
    crops = []
    for (top, left, height, width), _ in SUDOKU_BOXES:
        side = round(1.4 * max(height, width))  # the digit's height is ~70 % of the crop, as in OpenCV's cells
        cy, cx = top + height / 2, left + width / 2
        box = (round(cx - side / 2), round(cy - side / 2), round(cx + side / 2), round(cy + side / 2))
        crops.append(np.asarray(page.crop(box).resize((40, 40), Image.BILINEAR)))
    return np.stack(crops), np.array([digit for _, digit in SUDOKU_BOXES])
