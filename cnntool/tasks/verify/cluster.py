"""verify-face cluster: the faces of a folder of photos grouped by person.

Every face of every photo is found (not only the largest), aligned and embedded as verify-face does. Faces
closer than the model's threshold (the calibrated one; dlib's 0.6 for its ResNet) are joined by an edge, and
dlib's Chinese whispers (Biemann 2006) labels the graph: every face starts as a cluster of its own, then faces
picked at random (a fixed seed: the same photos give the same clusters) take the label most frequent among
their neighbours and themselves.

Records: one per face (its photo, which face of the photo it is, its box and score, its cluster); a photo
with no face is one record whose face, box, score and cluster are null, since a photo without a person is an
ordinary member of a photo folder, not a failure; a photo that cannot be read is an error record (exit 1).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from cnntool import sources
from cnntool.errors import ConfigError, first_line
from cnntool.options import option
from cnntool.records import Record, make_writer

from .run import TASK, Embedder, InputFailure, VerifyOptions, largest_first, load, resolve_metric_threshold

if TYPE_CHECKING:
    import numpy as np
    import torch
    from PIL import Image

DOC = ("Group the faces of photos by person: every face of every photo, one record per face with its cluster; "
       "--save DIR writes each face's aligned chip into a folder per cluster.\n\n"
       "Example: cnntool verify-face cluster photos/ --save people/")
# verify-face's options that name one face, a gallery or a crop; cluster takes every face of every photo.
SKIP = ("gallery", "gallery_cache", "detect", "face")
ITERATIONS = 100  # visits per face, as dlib's chinese_whispers
SEED = 0


@dataclass
class ClusterConfig:
    save: Path | None = option(None, "--save", help="Write each face's aligned 150×150 chip as "
                               "DIR/cluster-N/PHOTO_faceK.png (never over an existing file).")


CSV_COLUMNS = ("face", "cluster", "score", "x1", "y1", "x2", "y2")


@dataclass
class FaceCluster:
    """One face of a photo and the person (cluster) it belongs to; all None for a photo without a face.
    `face` counts from 1, the photo's largest face, as --face does; `box` is clipped to the photo."""

    face: int | None
    box: list[float] | None
    score: float | None
    cluster: int | None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        return f"face {self.face}: cluster {self.cluster}" if self.face is not None else "no face"

    def csv_rows(self) -> list[dict[str, Any]]:
        corners = dict(zip(("x1", "y1", "x2", "y2"), self.box or ()))
        return [{"face": self.face, "cluster": self.cluster, "score": self.score, **corners}]


@dataclass
class Face:
    index: int  # 1 = the photo's largest face
    box: list[float]
    score: float
    chip: "Image.Image | None"  # kept for --save only


@dataclass
class Photo:
    source: str
    size: tuple[int, int]  # (width, height)
    faces: list[Face] = field(default_factory=list)  # largest first


# --- photos → faces and embeddings ---------------------------------------------------------------------

def photo_faces(embedder: Embedder, path: str, keep_chips: bool) -> tuple[Photo, "torch.Tensor | None"]:
    """The photo with its faces, and their embeddings (F, D), None when it has no face."""
    import torch

    from cnntool.faces.api import FaceDetector, ShapePredictor, align_chip, as_rgb_array
    from cnntool.preprocess import open_image

    rgb = as_rgb_array(open_image(path, max_pixels=embedder.opts.max_pixels, channels=3))  # once, not per face
    h, w = rgb.shape[:2]
    found = largest_first(FaceDetector(upsample=embedder.opts.upsample).detect(rgb))
    chips = [align_chip(rgb, ShapePredictor("5").predict(rgb, d.box)) for d in found]
    faces = [Face(i, clipped(d.box, w, h), d.score, chip if keep_chips else None)
             for i, (d, chip) in enumerate(zip(found, chips), 1)]
    photo = Photo(sources.display_name(path), (w, h), faces)
    return photo, embedder.embed_inputs(torch.stack([embedder.pre(c)[0] for c in chips])) if chips else None


def clipped(box: list[float], width: int, height: int) -> list[float]:
    x1, y1, x2, y2 = box
    return [max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))]


# --- the graph and Chinese whispers ----------------------------------------------------------------------

def distances(embedder: Embedder, vectors: "torch.Tensor", metric: str) -> "torch.Tensor":
    """(N, N) distances of every pair of faces (a learned metric runs on the model's device)."""
    import torch

    from cnntool.tasks.verify.losses import all_pair_distances

    with torch.inference_mode():
        return all_pair_distances(vectors.to(embedder.device), metric, embedder.head).cpu()


def neighbours(distances: "torch.Tensor", threshold: float) -> list["np.ndarray"]:
    """Each face's neighbours: the faces closer than the threshold, itself included (dlib's graph has the
    self-edge too, so a face's own label counts in its vote)."""
    import torch

    close = distances < threshold
    close.fill_diagonal_(True)
    return [torch.nonzero(row).flatten().numpy() for row in close]


def chinese_whispers(adjacency: list["np.ndarray"], iterations: int = ITERATIONS, seed: int = SEED) -> list[int]:
    """Cluster ids 0, 1, … in order of first appearance. len(adjacency) × iterations visits of a random face,
    which takes the label most frequent among its neighbours (ties: the smallest label, as dlib's ordered map)."""
    import numpy as np

    labels = np.arange(len(adjacency))
    rng = np.random.default_rng(seed)
    for node in rng.integers(0, len(adjacency), len(adjacency) * iterations):
        values, counts = np.unique(labels[adjacency[node]], return_counts=True)
        labels[node] = values[np.argmax(counts)]
    first_seen: dict[int, int] = {}
    return [first_seen.setdefault(int(label), len(first_seen)) for label in labels]


# --- the command -------------------------------------------------------------------------------------------

class ChipFolders:
    """--save DIR: DIR/cluster-N/ for each cluster, chips named after their photo and face."""

    def __init__(self, root: Path) -> None:
        from cnntool.folders import writable_folder

        self.root, self.folders = writable_folder(root, "--save"), {}

    def save(self, photo: Photo, face: Face, record: Record) -> None:
        """The chip's path as the record's "saved"; a failure to write it (a full disk) is its "save_error",
        and the run goes on, as predict's --save."""
        from cnntool.folders import ImageDirectory

        cluster = record.payload.cluster
        try:
            if cluster not in self.folders:
                self.folders[cluster] = ImageDirectory(self.root / f"cluster-{cluster}", "--save")
            name = f"{Path(photo.source).stem}_face{face.index}"
            record.extra["saved"] = str(self.folders[cluster].write(name, face.chip))
        except (OSError, ConfigError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else first_line(exc)
            record.extra["save_error"] = f"face chip not written: {reason}"


def embed_photos(items: Iterable[Any], embedder: Embedder, progress: Any,
                 keep_chips: bool) -> tuple[list[Photo | Record], "torch.Tensor | None"]:
    """Per input, in order, the photo with its faces or its error Record; and all the faces' embeddings."""
    import torch

    photos, vectors = [], []
    for item in items:
        if isinstance(item, sources.MissingSource):
            photos.append(Record(source=sources.display_name(item.source), task=TASK, model=embedder.loaded.name,
                                 error={"type": "MissingSource", "message": item.reason}))
        else:
            photos.append(_one_photo(item, embedder, vectors, keep_chips))
        progress.advance()
    return photos, torch.cat(vectors) if vectors else None


def _one_photo(path: str, embedder: Embedder, vectors: list, keep_chips: bool) -> Photo | Record:
    try:
        photo, embeddings = photo_faces(embedder, path, keep_chips)
    except (ValueError, OSError) as exc:
        return Record.failure(sources.display_name(path), TASK, embedder.loaded.name, exc)
    except Exception as exc:  # a model or decoder bug must cost one record, not the run
        failure = InputFailure(f"cannot process this image ({first_line(exc)})")
        return Record.failure(sources.display_name(path), TASK, embedder.loaded.name, failure)
    if embeddings is not None:
        vectors.append(embeddings)
    return photo


def records(photos: list[Photo | Record], labels: list[int], model: str,
            saver: ChipFolders | None) -> Iterator[Record]:
    """The photos' records in input order: one per face, with the cluster of its label, or one with no face."""
    labels_left = iter(labels)
    for photo in photos:
        if isinstance(photo, Record):
            yield photo
            continue
        size = {"width": photo.size[0], "height": photo.size[1]}
        if not photo.faces:
            yield Record(source=photo.source, task=TASK, model=model, **size,
                         payload=FaceCluster(None, None, None, None))
        for face in photo.faces:
            cluster = next(labels_left)
            record = Record(source=photo.source, task=TASK, model=model, **size,
                            payload=FaceCluster(face.index, face.box, face.score, cluster))
            if saver is not None:
                saver.save(photo, face, record)
            yield record


def run(inputs: list[str], opts: VerifyOptions, config: ClusterConfig) -> int:
    """Write one record per face (per photo without one); 0 when every photo was read (and every chip asked
    for written), 1 otherwise."""
    from cnntool.engine.report import RunProgress

    saver = ChipFolders(config.save) if config.save is not None else None  # refused before any work
    loaded = load(opts)
    metric, threshold, _ = resolve_metric_threshold(loaded, opts)
    embedder = Embedder(loaded, opts)
    with RunProgress(sources.count(inputs, recursive=opts.recursive), quiet=opts.quiet, what="photos") as progress:
        photos, vectors = embed_photos(sources.expand(inputs, recursive=opts.recursive), embedder, progress,
                                       keep_chips=saver is not None)
    labels = [] if vectors is None else chinese_whispers(neighbours(distances(embedder, vectors, metric), threshold))
    writer = make_writer(opts.format, columns=CSV_COLUMNS)
    failed = 0
    try:
        for record in records(photos, labels, loaded.name, saver):
            writer.write(record)
            failed += not record.ok or "save_error" in record.extra
    finally:
        writer.close()
    return 1 if failed else 0
