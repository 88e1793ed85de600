"""A generated corpus of bad and odd image inputs, for every stage that opens user files.

`build_corpus(directory)` writes every kind into one flat directory and returns a `CorpusItem` per kind:
either "error" (the opener must raise ImageError with a one-line message) or "ok" (the opener must return
the upright pixels in `item.rgb`, or their luma `item.grey` for one channel). It is a pure function of
its directory, needs no network and runs in about a second, so any test (or predict subcommand test)
can call it on a tmp_path:

    items = build_corpus(tmp_path)
    for path in bad_paths(items): ...   # every one must become an error record
    for path in good_paths(items): ...  # every one must be processed

Documented expectations:
- A newline inside a file name cannot be carried by a newline-separated list (`@list.txt`, `-` on stdin):
  the line is split in two, and each half is reported as missing. Pass such files as arguments or as a
  directory instead.
- PIL reads 16-bit RGB PNGs as 8-bit RGB; values that are multiples of 257 map exactly to value / 257.
- Float (mode F) images whose values lie in 0..1 are taken as unit-range data and scaled by 255; NaN
  and inf samples become 0.
- Garbage inside a JPEG's entropy-coded data is not an error: libjpeg resynchronises and decodes wrong
  pixels (as every viewer does) and PIL does not surface libjpeg's warnings. Only the size is checked.
- `unreadable` is skipped when running as root (chmod 000 does not stop root from reading).
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
from PIL import Image

ERROR = "error"
OK = "ok"

# Colours whose luma is unambiguous under integer rounding, so the one-channel expectation is exact.
K, W, R, G, B, Y = (0, 0, 0), (255, 255, 255), (255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)

# An upright 3x2-block picture with no symmetry: every EXIF orientation mistake shows up in it.
ASYMMETRIC = ((R, G, B),
              (Y, W, K))
BLOCK = 16  # pixels per block: JPEG-friendly (a multiple of 8) and wide enough to survive a 32x32 resize


@dataclass(frozen=True, eq=False)
class CorpusItem:
    name: str
    path: str  # non-UTF-8 names carry surrogate escapes, as os.listdir and sources.expand give them
    expected: str  # ERROR or OK
    rgb: np.ndarray | None = None  # OK: the upright (H, W, 3) uint8 pixels the opener must return
    atol: int = 0  # per-pixel tolerance: 0 for lossless formats
    skip: str | None = None  # why this kind cannot be tested here
    note: str = ""
    size_only: tuple[int, int] | None = None  # OK items whose pixels are unspecified: their (w, h)

    @property
    def size(self) -> tuple[int, int]:
        """Upright (width, height) of an OK item."""
        if self.rgb is None:
            return self.size_only
        h, w = self.rgb.shape[:2]
        return w, h

    @property
    def grey(self) -> np.ndarray:
        """The one-channel expectation: ITU-R 601 luma of `rgb`, rounded (exact for greys)."""
        r, g, b = (self.rgb[..., i].astype(np.int64) for i in range(3))
        return ((299 * r + 587 * g + 114 * b + 500) // 1000).astype(np.uint8)


def good_paths(items: list[CorpusItem]) -> list[str]:
    return [i.path for i in items if i.expected == OK and i.skip is None]


def bad_paths(items: list[CorpusItem]) -> list[str]:
    return [i.path for i in items if i.expected == ERROR and i.skip is None]


# ---------------------------------------------------------------- pixels and encoders


def blocks(rows: tuple[tuple[tuple[int, int, int], ...], ...], block: int = BLOCK) -> np.ndarray:
    """A (H, W, 3) uint8 picture of solid colour blocks."""
    small = np.array(rows, dtype=np.uint8)
    return np.repeat(np.repeat(small, block, axis=0), block, axis=1)


def grey_rgb(values: np.ndarray) -> np.ndarray:
    return np.repeat(values.astype(np.uint8)[..., None], 3, axis=2)


def encode(img: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **params)
    return buf.getvalue()


def jpeg(rgb: np.ndarray, **params) -> bytes:
    # 4:4:4 at high quality keeps solid 8-aligned blocks within a few levels of their colour.
    return encode(Image.fromarray(rgb), "JPEG", quality=95, subsampling=0, **params)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png(width: int, height: int, bit_depth: int, colour_type: int, samples: np.ndarray | None) -> bytes:
    """A PNG written by hand (independent of PIL's encoder); samples=None leaves out the pixel data."""
    body = png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0))
    if samples is not None:
        dtype = ">u2" if bit_depth == 16 else "u1"
        rows = samples.astype(dtype).reshape(height, -1)
        raw = b"".join(b"\0" + row.tobytes() for row in rows)  # filter type 0 on every row
        body += png_chunk(b"IDAT", zlib.compress(raw))
    return PNG_SIGNATURE + body + png_chunk(b"IEND", b"")


def stored_for_orientation(upright: np.ndarray, orientation: int) -> np.ndarray:
    """The pixels a camera stores for an upright picture under EXIF orientation 1..8 (TIFF 6.0 tag 274:
    where the stored 0th row and 0th column lie in the visual picture)."""
    return {
        1: lambda u: u,
        2: lambda u: u[:, ::-1],  # row 0 top, column 0 right
        3: lambda u: u[::-1, ::-1],  # row 0 bottom, column 0 right
        4: lambda u: u[::-1, :],  # row 0 bottom, column 0 left
        5: lambda u: u.transpose(1, 0, 2),  # row 0 left, column 0 top
        6: lambda u: np.rot90(u, 1),  # row 0 right, column 0 top
        7: lambda u: u[::-1, ::-1].transpose(1, 0, 2),  # row 0 right, column 0 bottom
        8: lambda u: np.rot90(u, -1),  # row 0 left, column 0 bottom
    }[orientation](upright).copy()


def exif_bytes(orientation: int, description: str | None = None) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    if description is not None:
        exif[0x010E] = description
    return exif.tobytes()


def truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def overwrite_middle(data: bytes, garbage: bytes) -> bytes:
    mid = len(data) // 2
    return data[:mid] + garbage + data[mid + len(garbage):]


# ---------------------------------------------------------------- the corpus


class _Builder:
    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.items: list[CorpusItem] = []

    def path(self, file_name: str) -> str:
        return os.path.join(self.directory, file_name)

    def file(self, name: str, file_name: str, data: bytes, expected: str, rgb: np.ndarray | None = None,
             **details) -> str:
        path = self.path(file_name)
        with open(path, "wb") as fh:
            fh.write(data)
        self.add(name, path, expected, rgb, **details)
        return path

    def add(self, name: str, path: str, expected: str, rgb: np.ndarray | None = None, **details) -> None:
        self.items.append(CorpusItem(name, path, expected, rgb, **details))


def build_corpus(directory: str | os.PathLike) -> list[CorpusItem]:
    """Write every kind into `directory` (which must exist) and describe each one."""
    b = _Builder(os.fspath(directory))
    for add_kinds in _KINDS:
        add_kinds(b)
    return b.items


def _broken_files(b: _Builder) -> None:
    picture = blocks(ASYMMETRIC)
    pil = Image.fromarray(picture)
    b.file("truncated_jpeg", "truncated.jpg", truncated(jpeg(picture)), ERROR)
    b.file("truncated_png", "truncated.png", truncated(encode(pil, "PNG")), ERROR)
    b.file("truncated_gif", "truncated.gif", truncated(encode(pil, "GIF")), ERROR)
    b.file("truncated_webp", "truncated.webp", truncated(encode(pil, "WEBP", lossless=True)), ERROR)
    data = jpeg(picture)
    counts = data.index(b"\xff\xc4") + 5  # the 16 code-length counts of the first Huffman table
    b.file("corrupt_huffman_jpeg", "corrupt-huffman.jpg", data[:counts] + b"\xff" * 16 + data[counts + 16:], ERROR)
    scan = data.index(b"\xff\xda")  # garbage goes past the 14-byte scan header, into the entropy data
    b.file("corrupt_scan_jpeg", "corrupt-scan.jpg", data[:scan + 40] + b"\x13\x77\xff\x00\xab" * 4 + data[scan + 60:],
           OK, size_only=(48, 32), note="decodes with unspecified pixels")
    b.file("corrupt_middle_png", "corrupt-middle.png",
           overwrite_middle(png(48, 32, 8, 2, picture), b"\x55" * 16), ERROR)
    good = png(48, 32, 8, 2, picture)
    ihdr_crc = len(PNG_SIGNATURE) + 8 + 13  # length + type + 13 data bytes, then the CRC
    b.file("png_bad_crc", "bad-crc.png", good[:ihdr_crc] + b"\0\0\0\0" + good[ihdr_crc + 4:], ERROR)


def _not_images(b: _Builder) -> None:
    b.file("zero_bytes", "empty.jpg", b"", ERROR)
    b.file("text_named_jpg", "text.jpg", b"this is not a picture\n" * 4, ERROR)
    b.file("html_named_png", "page.png", b"<!DOCTYPE html>\n<html><body><img src=x.png></body></html>\n", ERROR)
    b.file("unknown_format_xcf", "drawing.xcf", b"gimp xcf v011\0" + bytes(range(256)) * 4, ERROR)
    # PIL could render this with Ghostscript where installed; a photo tool has no business running it.
    b.file("postscript_named_jpg", "drawing.jpg", b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 8 8\n"
           b"0 0 moveto 8 8 lineto stroke showpage\n%%EOF\n", ERROR)
    os.mkdir(b.path("folder.jpg"))
    b.add("directory_named_jpg", b.path("folder.jpg"), ERROR)
    os.mkfifo(b.path("fifo.jpg"))
    b.add("fifo_named_jpg", b.path("fifo.jpg"), ERROR, note="opening it for reading would block forever")
    os.symlink("/dev/zero", b.path("device.png"))
    b.add("device_named_png", b.path("device.png"), ERROR, note="an endless stream of zero bytes")
    os.symlink("no-such-target.png", b.path("broken-link.png"))
    b.add("broken_symlink", b.path("broken-link.png"), ERROR)
    os.symlink("loop-b.png", b.path("loop-a.png"))
    os.symlink("loop-a.png", b.path("loop-b.png"))
    b.add("symlink_loop", b.path("loop-a.png"), ERROR)
    b.add("missing_file", b.path("never-written.png"), ERROR)
    _unreadable(b)


def _unreadable(b: _Builder) -> None:
    path = b.path("unreadable.png")
    with open(path, "wb") as fh:
        fh.write(encode(Image.new("RGB", (2, 2)), "PNG"))  # a valid image: only the permission is wrong
    os.chmod(path, 0)
    skip = None if _reads_blocked(path) else "chmod 000 does not block reads here (root)"
    b.add("unreadable", path, ERROR, skip=skip)


def _reads_blocked(path: str) -> bool:
    try:
        with open(path, "rb"):
            return False
    except PermissionError:
        return True


def _bombs(b: _Builder) -> None:
    # Only a header: a decoder that trusted it would allocate 2.5 G pixels.
    b.file("bomb_png_header_50k", "bomb-50k.png", png(50_000, 50_000, 8, 2, None), ERROR)
    # Over cnntool's 50 MP default but under PIL's own limits: our guard has to be the one that refuses.
    b.file("bomb_png_header_60mp", "bomb-60mp.png", png(10_000, 6_000, 8, 2, None), ERROR)


def _sizes(b: _Builder) -> None:
    one = np.array([[[10, 200, 30]]], dtype=np.uint8)
    b.file("tiny_1x1", "tiny-1x1.png", encode(Image.fromarray(one), "PNG"), OK, one)
    tall = grey_rgb(np.arange(10_000, dtype=np.int64).reshape(10_000, 1) % 256)
    b.file("tall_1x10000", "tall-1x10000.png", encode(Image.fromarray(tall), "PNG"), OK, tall)
    wide = tall.transpose(1, 0, 2).copy()
    b.file("wide_10000x1", "wide-10000x1.png", encode(Image.fromarray(wide), "PNG"), OK, wide)


def _deep_and_float(b: _Builder) -> None:
    # 16-bit grey: full scale maps to 255, multiples of 257 map exactly, and a dark image stays dark
    # (a 16-bit 255 is 1/257 of full scale, not white).
    values16 = np.array([[0, 255, 257, 1000], [32896, 51400, 65278, 65535]], dtype=np.uint16)
    expect16 = np.array([[0, 1, 1, 4], [128, 200, 254, 255]], dtype=np.uint8)
    b.file("grey16_png", "grey16.png", png(4, 2, 16, 0, values16), OK, grey_rgb(expect16))
    # PGM keeps 16-bit samples big-endian under a maxval; PIL opens it as mode I, not I;16.
    pgm = b"P5\n4 1\n65535\n" + np.array([0, 255, 25700, 65535], dtype=">u2").tobytes()
    b.file("grey16_pgm_dark", "grey16.pgm", pgm, OK, grey_rgb(np.array([[0, 1, 100, 255]])))
    rgb16 = np.array([[[0, 257 * 10, 65535], [257 * 100, 257 * 200, 257 * 255]]], dtype=np.uint16)
    b.file("rgb16_png", "rgb16.png", png(2, 1, 16, 2, rgb16), OK, (rgb16 // 257).astype(np.uint8))
    unit = np.array([[0.0, 0.25, 0.5], [0.75, 1.0, 0.1]], dtype=np.float32)
    b.file("float_tiff_unit_range", "float-unit.tiff", encode(Image.fromarray(unit, "F"), "TIFF"), OK,
           grey_rgb(np.rint(unit.astype(np.float64) * 255)))
    wide_range = np.array([[-100.0, 0.0], [60.0, 300.0]], dtype=np.float32)  # scaled by its own range
    b.file("float_tiff_wide_range", "float-wide.tiff", encode(Image.fromarray(wide_range, "F"), "TIFF"), OK,
           grey_rgb(np.array([[0, 64], [102, 255]])))
    with_nan = np.array([[np.nan, 0.0], [0.5, np.inf]], dtype=np.float32)  # non-finite samples become 0
    b.file("float_tiff_nan", "float-nan.tiff", encode(Image.fromarray(with_nan, "F"), "TIFF"), OK,
           grey_rgb(np.array([[0, 0], [128, 0]])))


def _modes(b: _Builder) -> None:
    cmyk = Image.new("CMYK", (32, 16), (0, 255, 255, 0))  # left: red
    cmyk.paste((0, 0, 0, 255), (16, 0, 32, 16))  # right: black
    b.file("cmyk_jpeg", "cmyk.jpg", encode(cmyk, "JPEG", quality=95), OK, blocks(((R, K),)), atol=4)
    # Grey + alpha: opaque pixels keep their value, transparent ones take the fill (0).
    la = Image.fromarray(np.array([[[200, 255], [90, 0]], [[30, 255], [255, 255]]], dtype=np.uint8), "LA")
    b.file("la_png", "la.png", encode(la, "PNG"), OK, grey_rgb(np.array([[200, 0], [30, 255]])))
    pal = Image.new("P", (3, 1))
    pal.putpalette([*R, *G, *B])
    pal.putdata([0, 1, 2])
    b.file("p_transparency_png", "p-transparent.png", encode(pal, "PNG", transparency=1), OK,
           np.array([[R, K, B]], dtype=np.uint8))
    bits = Image.fromarray(np.array([[0, 255, 0], [255, 255, 0]], dtype=np.uint8)).convert("1")
    b.file("bilevel_1bit_png", "bilevel.png", encode(bits, "PNG"), OK, grey_rgb(np.array([[0, 255, 0], [255, 255, 0]])))


def _orientations(b: _Builder) -> None:
    upright = blocks(ASYMMETRIC)
    for orientation in range(1, 9):
        stored = stored_for_orientation(upright, orientation)
        b.file(f"exif_orientation_{orientation}", f"orientation-{orientation}.jpg",
               jpeg(stored, exif=exif_bytes(orientation)), OK, upright, atol=4)
    # Nearly all of a JPEG's 64 KB APP1 segment filled with EXIF text; the image itself is fine.
    b.file("jpeg_huge_exif", "huge-exif.jpg", jpeg(stored_for_orientation(upright, 6),
                                                    exif=exif_bytes(6, "x" * 65_000)), OK, upright, atol=4)


def _multi_frame(b: _Builder) -> None:
    first, second = blocks(((R, G),)), blocks(((B, Y),))

    def save_all(fmt: str, **params) -> bytes:  # fresh images each time: a save leaves encoder state on them
        return encode(Image.fromarray(first), fmt, save_all=True, append_images=[Image.fromarray(second)],
                      **params)

    b.file("animated_gif", "animated.gif", save_all("GIF", duration=100, loop=0), OK, first)
    b.file("multiframe_tiff", "multiframe.tiff", save_all("TIFF"), OK, first)
    # A camera's multi-picture JPEG (PIL format MPO): the first picture is the photo.
    b.file("mpo_jpeg", "multi-picture.jpg", save_all("MPO", quality=95, subsampling=0), OK, first, atol=4)


def _odd_names(b: _Builder) -> None:
    picture = blocks(ASYMMETRIC)
    data = encode(Image.fromarray(picture), "PNG")
    b.file("name_with_spaces", "with  two spaces.png", data, OK, picture)
    b.file("name_with_newline", "new\nline.png", data, OK, picture,
           note="cannot travel in a newline-separated list: it splits into two missing paths")
    b.file("name_not_utf8", os.fsdecode(b"caf\xe9-latin1.png"), data, OK, picture)
    b.file("name_with_glob_characters", "photo [1] *?.png", data, OK, picture)  # taken literally, not as a pattern


_KINDS: tuple[Callable[[_Builder], None], ...] = (
    _broken_files, _not_images, _bombs, _sizes, _deep_and_float, _modes, _orientations, _multi_frame, _odd_names,
)
