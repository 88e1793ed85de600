"""Fuzzing the opener: random bytes, and valid small files of every common format mutated by truncation,
byte flips and inserted garbage, must either open as 8-bit L/RGB or raise ImageError — nothing else,
and quickly.

max_pixels is 1 MP here: a mutated header may legitimately claim up to the limit, and decoding a 50 MP
picture of garbage takes seconds by design (that is what the limit budgets for). The examples are
derandomized so a run is repeatable; widen max_examples locally to search further.
"""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from cnntool.preprocess import ImageError, open_sized

from .corpus import ASYMMETRIC, blocks, encode, exif_bytes
from .deadline import time_limit

MAX_PIXELS = 1_000_000
LIMIT_S = 2.0  # each open takes milliseconds; the slack is for a busy shared machine


def _seeds() -> dict[str, bytes]:
    picture = Image.fromarray(blocks(ASYMMETRIC, block=4))
    grey = Image.fromarray(np.arange(96, dtype=np.uint8).reshape(8, 12))
    return {
        "jpg": encode(picture, "JPEG", quality=90, exif=exif_bytes(6)),
        "png": encode(picture, "PNG"),
        "gif": encode(picture, "GIF", save_all=True, append_images=[grey.convert("P")]),
        "webp": encode(picture, "WEBP", quality=80),
        "bmp": encode(grey, "BMP"),
        "tif": encode(picture, "TIFF", compression="tiff_deflate"),
    }


SEEDS = _seeds()
# File signatures, so random tails reach each format's parser rather than all failing identification.
MAGICS = [b"", b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"GIF89a", b"RIFF\0\0\0\0WEBPVP8 ", b"RIFF\0\0\0\0WEBPVP8L",
          b"BM", b"II*\0", b"MM\0*", b"8BPS", b"P6\n", b"\0\0\1\0", b"DDS ", b"icns"]
SETTINGS = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


def check_open(path: str, channels: int, draft: bool) -> None:
    """Opens as 8-bit upright pixels of a sane size, or raises a one-line ImageError; nothing else."""
    with time_limit(LIMIT_S):
        try:
            img, size = open_sized(path, max_pixels=MAX_PIXELS, channels=channels,
                                   draft_size=(8, 8) if draft else None)
        except ImageError as exc:
            assert type(exc) is ImageError and str(exc) and "\n" not in str(exc)
            return
    assert img.mode == ("L" if channels == 1 else "RGB")
    assert 0 < size[0] * size[1] <= MAX_PIXELS
    if draft:  # JPEG draft mode may decode smaller, never larger
        assert img.width <= size[0] and img.height <= size[1]
    else:
        assert img.size == size


@st.composite
def mutated(draw) -> tuple[str, bytes]:
    fmt = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[fmt])
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        kind = draw(st.sampled_from(["truncate", "flip", "insert"]))
        if kind == "truncate":
            data = data[:at]
        elif kind == "flip" and at < len(data):
            data[at] ^= draw(st.integers(1, 255))
        else:
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
    return fmt, bytes(data)


@SETTINGS
@given(sample=mutated(), channels=st.sampled_from([1, 3]), draft=st.booleans())
def test_mutated_valid_files(scratch, sample, channels, draft):
    fmt, data = sample
    path = os.path.join(scratch, f"mutated.{fmt}")  # the suffix steers PIL's first guess, as in real use
    with open(path, "wb") as fh:
        fh.write(data)
    check_open(path, channels, draft)


@SETTINGS
@given(magic=st.sampled_from(MAGICS), tail=st.binary(max_size=512), suffix=st.sampled_from(["jpg", "png", "bin"]),
       channels=st.sampled_from([1, 3]))
def test_random_bytes(scratch, magic, tail, suffix, channels):
    path = os.path.join(scratch, f"random.{suffix}")
    with open(path, "wb") as fh:
        fh.write(magic + tail)
    check_open(path, channels, draft=False)


def test_seeds_are_valid_before_mutation(scratch):
    for fmt, data in SEEDS.items():
        assert Image.open(io.BytesIO(data)).format is not None, fmt
        path = os.path.join(scratch, f"seed.{fmt}")
        with open(path, "wb") as fh:
            fh.write(data)
        img, size = open_sized(path)
        assert img.mode == "RGB" and size == ((8, 12) if fmt == "jpg" else (12, 8)), fmt
