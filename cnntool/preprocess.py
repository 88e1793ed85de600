"""The one image → tensor path, and the way back from model coordinates to original pixels.

open_image: EXIF orientation applied, first frame of animations, any PIL mode brought to L or RGB, a
decompression-bomb guard read from the header before any pixel is decoded.
Preprocessor: resize / letterbox / center-crop as the model's InputSpec says, then normalize. It
returns, with each tensor, the Geometry that maps boxes and points in the model's input frame back to
the original image.
"""

from __future__ import annotations

import io
import os
import stat
import struct
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from PIL import Image, ImageOps, UnidentifiedImageError

from cnntool import sources
from cnntool.options import option
from cnntool.registry import InputSpec

if TYPE_CHECKING:
    import numpy as np
    import torch

# 50 megapixels: a 8000x6000 photo passes, a 50k×50k header does not. Overridable per call.
DEFAULT_MAX_PIXELS = 50_000_000


def max_pixels_option() -> object:
    return option(DEFAULT_MAX_PIXELS, "--max-pixels", min=1, help="Refuse images with more pixels than this "
                  "(decompression-bomb guard).")

# Modes whose pixels carry more than 8 bits per channel; scaled down by their real range.
_WIDE_MODES = {"I", "I;16", "I;16B", "I;16L", "I;16N", "F"}

# The PIL formats behind cnntool.sources.IMAGE_SUFFIXES ("JPEG" also opens multi-picture MPO files). Left
# to itself Image.open tries every format PIL knows on any file, EPS included, which runs Ghostscript.
IMAGE_FORMATS = ("JPEG", "PNG", "GIF", "BMP", "DIB", "TIFF", "WEBP", "PPM", "ICO", "TGA")


class ImageError(ValueError):
    """An input that is not a usable image; the message is one line for the user."""


def open_image(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS, channels: int = 3,
               fill: int = 0) -> Image.Image:
    """Open an image file as an 8-bit L (channels=1) or RGB (channels=3) image, upright."""
    return open_sized(path, max_pixels=max_pixels, channels=channels, fill=fill)[0]


def open_sized(path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS, channels: int = 3,
               fill: int = 0, draft_size: tuple[int, int] | None = None) -> tuple[Image.Image, tuple[int, int]]:
    """open_image, also returning the full upright size (width, height) of the file.

    draft_size lets JPEG decoding skip resolution the model would throw away (PIL's draft mode decodes
    at 1/2, 1/4 or 1/8 scale), never going below draft_size; the returned size is still the full one.
    """
    source: Any = path
    if isinstance(path, str) and sources.is_url(path):
        try:
            source = io.BytesIO(sources.fetch(path))
        except sources.DownloadError as exc:
            raise ImageError(str(exc)) from None
    else:
        _check_file(path)
    try:
        with warnings.catch_warnings():
            # Every outcome is an image or an ImageError; PIL's warnings (corrupt EXIF, its own bomb
            # warning, which max_pixels supersedes) would only be stray lines on stderr.
            warnings.filterwarnings("ignore", module=r"PIL\.")
            with Image.open(source, formats=IMAGE_FORMATS) as img:
                return _decode(img, max_pixels=max_pixels, channels=channels, fill=fill, draft_size=draft_size)
    except ImageError:
        raise
    except _DECODE_FAILURES as exc:
        raise _as_image_error(exc, max_pixels) from None


def _check_file(path: str | os.PathLike) -> None:
    """Refuse what no decoder should be handed: missing files, directories, FIFOs and devices (reading
    those can block forever or never end) and empty files."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ImageError("broken symbolic link" if os.path.islink(path) else "no such file") from None
    except PermissionError:
        raise ImageError("permission denied") from None
    except OSError as exc:
        raise ImageError(f"cannot read: {exc.strerror or exc}") from None
    except ValueError:  # a NUL byte in the path
        raise ImageError("invalid file name") from None
    if stat.S_ISDIR(st.st_mode):
        raise ImageError("is a directory, not an image")
    if not stat.S_ISREG(st.st_mode):
        raise ImageError("not a regular file (a FIFO, device or socket)")
    if st.st_size == 0:
        raise ImageError("empty file")


# What PIL's parsers and decoders raise on malformed data (Image.open swallows only some of them, so the
# rest reach us); each one means "this file is not a usable image". UnidentifiedImageError and
# PermissionError are OSErrors. tests/robustness fuzzes this boundary.
_DECODE_FAILURES = (OSError, ValueError, SyntaxError, EOFError, IndexError, KeyError, TypeError, struct.error,
                    ZeroDivisionError, OverflowError, MemoryError, Image.DecompressionBombError)


def _as_image_error(exc: Exception, max_pixels: int) -> ImageError:
    if isinstance(exc, UnidentifiedImageError):
        return ImageError("not an image file (unknown or corrupt format)")
    if isinstance(exc, PermissionError):
        return ImageError("permission denied")
    if isinstance(exc, Image.DecompressionBombError):
        # PIL refuses sizes over 2 × Image.MAX_IMAGE_PIXELS itself, from the header, before our guard runs.
        pil_limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        if max_pixels < pil_limit:
            return _over_limit(f"over {_megapixels(pil_limit)} MP", max_pixels)
        return ImageError(f"image is over PIL's own limit of {_megapixels(pil_limit)} MP (PIL.Image.MAX_IMAGE_PIXELS)")
    if isinstance(exc, MemoryError):
        return ImageError("not enough memory to decode this image")
    text = " ".join(str(exc).split())[:200] or exc.__class__.__name__  # one line, bounded
    if isinstance(exc, EOFError) or "truncated" in text.lower() or "broken data stream" in text:
        return ImageError(f"truncated or corrupt image data ({text})")
    return ImageError(f"cannot decode: {text}")


def _over_limit(size: str, max_pixels: int) -> ImageError:
    return ImageError(f"image is {size}, over the {_megapixels(max_pixels)} MP limit "
                      "(decompression-bomb guard; raise it with --max-pixels)")


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.0f}" if pixels >= 1e6 else f"{pixels / 1e6:.2g}"


def _decode(img: Image.Image, *, max_pixels: int, channels: int, fill: int,
            draft_size: tuple[int, int] | None) -> tuple[Image.Image, tuple[int, int]]:
    w, h = img.size
    if w <= 0 or h <= 0:
        raise ImageError(f"invalid size {w}x{h}")
    if w * h > max_pixels:
        raise _over_limit(f"{w}x{h} = {_megapixels(w * h)} MP", max_pixels)
    if draft_size is not None and img.format == "JPEG" and img.mode in ("RGB", "L", "CMYK"):
        # Orientation may swap the axes; ask for the larger side on both so the result is big enough.
        side = max(draft_size)
        img.draft(img.mode, (side, side))
    img.seek(0)
    img.load()
    orientation = img.getexif().get(0x0112, 1)
    upright_size = (h, w) if orientation in (5, 6, 7, 8) else (w, h)
    if img.format == "PPM" and img.mode == "I":
        # PIL scales 16-bit PGM samples to 0..65535 in mode I; say so, or a dark one passes for 8-bit data.
        img = img.convert("I;16")
    img = ImageOps.exif_transpose(img)
    return to_channels(img, channels, fill=fill), upright_size


def to_channels(img: Image.Image, channels: int, *, fill: int = 0) -> Image.Image:
    """Any PIL mode to 8-bit L or RGB. Transparency is flattened onto `fill` grey; 16-bit and float
    images are scaled by their actual range rather than clipped."""
    mode = img.mode
    if mode in _WIDE_MODES:
        img = _wide_to_l(img)
    elif mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif mode in ("1", "CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        img = img.convert("RGB" if channels == 3 or mode != "1" else "L")
    elif mode == "PA":
        img = img.convert("RGBA")
    elif mode == "La":
        img = img.convert("LA")
    elif mode == "RGBa":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA"):
        background = Image.new(img.mode[:-1], img.size, (fill,) * (len(img.mode) - 1))
        background.paste(img, mask=img.getchannel("A"))
        img = background
    target = "L" if channels == 1 else "RGB"
    if img.mode != target:
        img = img.convert(target)
    return img


def _wide_to_l(img: Image.Image) -> Image.Image:
    import numpy as np

    raw = np.asarray(img)
    rows = max(1, (1 << 20) // max(img.width, 1))  # a megapixel at a time: a 49 MP 16-bit scan stays small
    lo, hi = np.inf, -np.inf
    for r in range(0, raw.shape[0], rows):
        part = raw[r:r + rows].astype(np.float64)
        finite = part[np.isfinite(part)]  # NaN and inf samples (float images) carry no intensity: they become 0
        if finite.size:
            lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
    if lo > hi:
        lo = hi = 0.0
    if img.mode.startswith("I;16") or (img.mode == "I" and lo >= 0 and 255 < hi <= 65535):
        scale, offset = 255.0 / 65535.0, 0.0  # real 16-bit data: a dark image stays dark
    elif img.mode == "F" and lo >= 0 and hi <= 1:
        scale, offset = 255.0, 0.0  # unit-range float data, the usual convention for float images
    elif lo >= 0 and hi <= 255:
        scale, offset = 1.0, 0.0  # 8-bit values in a wide container
    else:
        scale, offset = 255.0 / max(hi - lo, 1e-12), lo  # anything else by its own range
    out = np.empty(raw.shape, np.uint8)
    for r in range(0, raw.shape[0], rows):
        part = raw[r:r + rows].astype(np.float64)
        scaled = np.where(np.isfinite(part), (part - offset) * scale, 0.0)
        out[r:r + rows] = np.clip(np.rint(scaled), 0, 255)
    return Image.fromarray(out, mode="L")


@dataclass(frozen=True)
class Geometry:
    """Maps the model's input frame back to the original image: x_orig = (x_in - pad_x) / scale_x + crop_x."""

    width: int  # original (upright) image size
    height: int
    scale_x: float
    scale_y: float
    pad_x: float = 0.0
    pad_y: float = 0.0
    crop_x: float = 0.0
    crop_y: float = 0.0
    # The model's input frame (width, height). Decoders that output coordinates relative to the frame
    # need it; it cannot be recovered from the mapping alone (center-crop, odd letterbox padding).
    frame: tuple[int, int] | None = None

    def frame_size(self) -> tuple[float, float]:
        """(width, height) of the input frame; for a Geometry made without one, what the mapping implies
        (the resized image plus equal padding on both sides)."""
        if self.frame is not None:
            return self.frame
        return self.width * self.scale_x + 2 * self.pad_x, self.height * self.scale_y + 2 * self.pad_y

    def point_to_original(self, x: float, y: float) -> tuple[float, float]:
        return ((x - self.pad_x) / self.scale_x + self.crop_x, (y - self.pad_y) / self.scale_y + self.crop_y)

    def points_to_original(self, points: Sequence[Sequence[float]], *, clip: bool = False) -> list[list[float]]:
        out = []
        for x, y in points:
            ox, oy = self.point_to_original(float(x), float(y))
            if clip:
                ox, oy = min(max(ox, 0.0), self.width), min(max(oy, 0.0), self.height)
            out.append([ox, oy])
        return out

    def box_to_original(self, box: Sequence[float], *, clip: bool = True) -> list[float]:
        (x1, y1), (x2, y2) = self.points_to_original([box[:2], box[2:4]], clip=clip)
        return [x1, y1, x2, y2]

    def point_to_input(self, x: float, y: float) -> tuple[float, float]:
        return ((x - self.crop_x) * self.scale_x + self.pad_x, (y - self.crop_y) * self.scale_y + self.pad_y)


def border_means(images: "np.ndarray") -> "np.ndarray":
    """Mean value of each image's one-pixel frame, all channels: uint8 (N, C, H, W) → (N,). The colour of
    an image's ground, read the same way at inference (one image) and in training (a whole data set)."""
    import numpy as np

    frames = [images[..., 0, :], images[..., -1, :], images[..., 1:-1, 0], images[..., 1:-1, -1]]
    return np.concatenate(frames, axis=-1).reshape(len(images), -1).mean(1)


def ground_is_light(image: "np.ndarray") -> bool:
    """Whether an image's ground (what its one-pixel frame mostly shows) is the lighter of its two tones: the
    frame's median against the image's Otsu threshold. Grey paper under dark print is light ground, a white
    stroke on black is not, whatever their absolute levels; an image of one tone falls back to mid-grey."""
    import numpy as np

    grey = image.mean(0) if image.ndim == 3 else image
    frame = np.concatenate([grey[0], grey[-1], grey[1:-1, 0], grey[1:-1, -1]])
    if grey.max() - grey.min() < 16:
        return float(np.median(frame)) > 127.5
    return float(np.median(frame)) > otsu_threshold(grey)


def otsu_threshold(grey: "np.ndarray") -> float:
    """The level that best splits an image's values in two (Otsu's between-class variance)."""
    import numpy as np

    counts = np.bincount(np.clip(grey, 0, 255).astype(np.uint8).ravel(), minlength=256).astype(np.float64)
    levels = np.arange(256, dtype=np.float64)
    weight = np.cumsum(counts)
    mass = np.cumsum(counts * levels)
    total, total_mass = weight[-1], mass[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (total_mass * weight - total * mass) ** 2 / (weight * (total - weight))
    return float(np.nanargmax(np.where(np.isfinite(between), between, np.nan))) + 0.5


# An image whose levels (1st to 99th percentile) span at least this much keeps them: a scan or a rendered
# digit already has its contrast; a print photographed on grey paper does not.
FULL_RANGE = 200


def stretched(img: Image.Image) -> Image.Image:
    """A low-contrast image's levels spread so its darkest 1 % and brightest 1 % of pixels reach 0 and 255: a
    faint print on grey paper gets the contrast of the training digits."""
    import numpy as np

    arr = np.asarray(img, dtype=np.float32)
    lo, hi = np.percentile(arr, (1, 99))
    if hi - lo >= FULL_RANGE or hi - lo < 1:
        return img
    return Image.fromarray(np.clip((arr - lo) * (255.0 / (hi - lo)), 0, 255).round().astype(np.uint8), mode=img.mode)


class Preprocessor:
    """Image → normalized float tensor (C, H, W) for one InputSpec, plus its Geometry."""

    def __init__(self, spec: InputSpec) -> None:
        self.spec = spec

    @property
    def draft_size(self) -> tuple[int, int] | None:
        if self.spec.resize == "none":
            return None
        h, w = self.spec.size
        if self.spec.resize == "center-crop":
            return (round(w / self.spec.crop_fraction), round(h / self.spec.crop_fraction))
        return (w, h)

    def open(self, path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple[Image.Image, tuple[int, int]]:
        return open_sized(path, max_pixels=max_pixels, channels=self.spec.channels, fill=self.spec.fill,
                          draft_size=self.draft_size)

    def geometry_and_resized(self, img: Image.Image) -> tuple[Image.Image, Geometry]:
        """Resize per spec on the PIL image; the original size is the image's size as given. A model that
        reads light objects on a dark ground gets dark-on-light images inverted (and the other way round),
        and with contrast "stretch" the result spans the whole 0..255 range."""
        out, geometry = self._resized(img)
        if self.spec.foreground != "any" and ground_is_light(self.to_uint8(out)) == (self.spec.foreground == "light"):
            out = ImageOps.invert(out)
        if self.spec.contrast == "stretch":
            out = stretched(out)
        return out, geometry

    def _resized(self, img: Image.Image) -> tuple[Image.Image, Geometry]:
        spec = self.spec
        img = to_channels(img, spec.channels, fill=spec.fill)
        W, H = img.size
        th, tw = spec.size
        if spec.resize == "none":
            return img, Geometry(W, H, 1.0, 1.0, frame=(W, H))
        if spec.resize == "stretch":
            out = img.resize((tw, th), Image.BILINEAR, reducing_gap=None)
            return out, Geometry(W, H, tw / W, th / H, frame=(tw, th))
        if spec.resize == "letterbox":
            scale = min(tw / W, th / H)
            nw, nh = max(1, round(W * scale)), max(1, round(H * scale))
            resized = img.resize((nw, nh), Image.BILINEAR)
            canvas = Image.new(img.mode, (tw, th), (spec.fill,) * spec.channels if spec.channels > 1 else spec.fill)
            px, py = (tw - nw) // 2, (th - nh) // 2
            canvas.paste(resized, (px, py))
            return canvas, Geometry(W, H, nw / W, nh / H, pad_x=px, pad_y=py, frame=(tw, th))
        # center-crop: shorter side to size/crop_fraction, then the central size window.
        short = round(min(th, tw) / spec.crop_fraction)
        scale = short / min(W, H)
        nw, nh = max(tw, round(W * scale)), max(th, round(H * scale))
        resized = img.resize((nw, nh), Image.BILINEAR)
        left, top = (nw - tw) // 2, (nh - th) // 2
        out = resized.crop((left, top, left + tw, top + th))
        return out, Geometry(W, H, nw / W, nh / H, crop_x=left * W / nw, crop_y=top * H / nh, frame=(tw, th))

    @staticmethod
    def to_uint8(img: Image.Image) -> "np.ndarray":
        """A PIL image already at the input size → uint8 array (C, H, W); cheap to pass between processes."""
        import numpy as np

        arr = np.array(img, dtype=np.uint8)  # a writable copy: torch.from_numpy refuses read-only views
        if arr.ndim == 2:
            return arr[None]
        return np.ascontiguousarray(arr.transpose(2, 0, 1))

    def to_tensor(self, img: Image.Image) -> "torch.Tensor":
        """A PIL image already at the input size → normalized float32 tensor (C, H, W)."""
        import torch

        return self.normalize(torch.from_numpy(self.to_uint8(img)))

    def normalize(self, uint8: "torch.Tensor") -> "torch.Tensor":
        """uint8 (or float) (…, C, H, W) in 0..255 → float32 normalized with the spec's mean/std, on the
        input's device."""
        import torch

        mean = torch.tensor(self.spec.mean, dtype=torch.float32, device=uint8.device).view(-1, 1, 1) * 255.0
        std = torch.tensor(self.spec.std, dtype=torch.float32, device=uint8.device).view(-1, 1, 1) * 255.0
        return (uint8.float() - mean) / std

    def __call__(self, img: Image.Image) -> tuple["torch.Tensor", Geometry]:
        resized, geometry = self.geometry_and_resized(img)
        return self.to_tensor(resized), geometry

    def load_uint8(self, path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple["np.ndarray", Geometry]:
        """Open, orient and resize one file to a uint8 (C, H, W) array. The Geometry maps back to the
        full-resolution upright image even when JPEG draft mode decoded it smaller."""
        img, original_size = self.open(path, max_pixels=max_pixels)
        resized, geometry = self.geometry_and_resized(img)
        if original_size != (geometry.width, geometry.height):
            geometry = rescale_geometry(geometry, original_size)
        return self.to_uint8(resized), geometry

    def load(self, path: str | os.PathLike, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> tuple["torch.Tensor", Geometry]:
        """load_uint8, normalized to a float tensor."""
        import torch

        arr, geometry = self.load_uint8(path, max_pixels=max_pixels)
        return self.normalize(torch.from_numpy(arr)), geometry


def rescale_geometry(g: Geometry, original_size: tuple[int, int]) -> Geometry:
    """The same mapping for an image that was decoded at a reduced size (JPEG draft mode)."""
    W, H = original_size
    fx, fy = W / g.width, H / g.height
    return Geometry(W, H, g.scale_x / fx, g.scale_y / fy, g.pad_x, g.pad_y, g.crop_x * fx, g.crop_y * fy, g.frame)
