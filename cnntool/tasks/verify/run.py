"""verify-face's driver: 1:1 comparison, 1:N identification against a gallery, calibration.

Pair- and gallery-shaped, so it has its own small loop instead of cnntool.engine.predict, but the same parts:
sources.expand for inputs, preprocess for images, loading for models, records/writers for output, and
the same exit codes (0 all done, 1 some inputs failed with error records, 2 usage).

An image becomes an embedding as: open → (detect faces, take the largest or the K-th largest, 5 points,
dlib's aligned 150×150 chip) → the model's own preprocessing → the embedding network. `detect=False`
skips the face steps for images that already are crops (or are not faces at all).

Thresholds, first found wins: --threshold; a --calibration FILE; the calibration in the weights' own
metadata (our safetensors files); the sidecar calibration JSON in the cache directory (models that are not
a safetensors of ours, such as dlib's: `cnntool verify-face calibrate` writes it there); dlib's published
0.6 for its Euclidean distance.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

from cnntool import sources, weights
from cnntool.cache import cache_dir
from cnntool.console import quiet_option, warn
from cnntool.device import device_option, threads_option
from cnntool.engine.evaluate import report_format_option
from cnntool.errors import ConfigError, first_line
from cnntool.faces import upsample_option
from cnntool.folders import writable_folder
from cnntool.loader import model_option, weights_option
from cnntool.meta import VERIFICATION_SHAPE, check_verification
from cnntool.options import option
from cnntool.preprocess import Preprocessor, max_pixels_option, open_image
from cnntool.records import OutputFormat, Record, format_option, make_writer
from cnntool.tasks.verify.losses import METRICS
from cnntool.tasks.verify.predict import CSV_COLUMNS, Identification, Verification

if TYPE_CHECKING:
    import torch

    from cnntool.loader import LoadedModel

TASK = "verify-face"
# A calibration from fewer same or different pairs than this is warned about: its threshold is noise-bound.
MIN_PAIRS = 100
DLIB_MODEL = "dlib-face-resnet"
CALIBRATION_VERSION = 1


class NoFaceError(ValueError):
    """The face detector found no face (or fewer than --face asks for) in an image."""


def metric_option() -> Any:
    return option(None, "--metric", help="euclidean, cosine, or learned (models trained with the similarity head). "
                  "Default: the model's calibrated metric, else euclidean.")


@dataclass
class VerifyOptions:
    """How images become embeddings and are compared; each verify-face command offers the part it uses."""

    gallery: Path | None = option(None, "--gallery", "-g", help="1:N: name each input by its nearest identity in "
                                  "this folder (a folder per person, or files person_1.jpg), or unknown.")
    gallery_cache: Path | None = option(None, "--gallery-cache", help="Where the gallery's embeddings are cached "
                                        "(default: in the cache directory).")
    model: str | None = model_option("Embedding model (see `cnntool models --task verify-face`). Default: dlib's "
                                     "face ResNet.")
    weights: str | None = weights_option()
    # default: the one the model was trained/calibrated for, else euclidean
    metric: str | None = metric_option()
    threshold: float | None = option(None, "--threshold", "-t", help="Same when distance <= this (default: the "
                                     "calibrated one).")
    calibration: Path | None = option(None, "--calibration", help="A calibration written by `verify-face calibrate "
                                      "--out` (JSON, or the weights file it wrote).")
    detect: bool | None = option(None, "--detect/--no-detect", help="Find and align the face first. Default: on for "
                                 "models of aligned face chips (dlib's), off for models trained on plain crops.")
    face: int = option(1, "--face", min=1, help="Which face when there are several: 1 = the largest, K = the K-th "
                       "largest.")
    upsample: int | None = upsample_option()
    format: OutputFormat | None = format_option()
    device: str = device_option("cpu")
    threads: int | None = threads_option()
    recursive: bool = sources.recursive_option()
    max_pixels: int = max_pixels_option()
    quiet: bool = quiet_option()


@dataclass
class CalibrationConfig:
    pairs: Path | None = option(None, "--pairs", help="Labelled pairs, one a line: A B same|different (or 1|0).")
    data: Path | None = option(None, "--data", "-d", help="A folder of identities (as for --gallery): every pair is "
                               "used.")
    far: float = option(0.01, "--far", min=0.0, max=1.0, help="Report TAR at this FAR (and choose the threshold there "
                        "with --choose far).")
    choose: str = option("eer", "--choose", help="eer (equal error rate) or far (the --far operating point).")
    out: Path | None = option(None, "--out", "-o", help="Write the calibration here: FILE.json (use it with "
                              "--calibration FILE.json), or FILE.safetensors, a copy of the model's weights with the "
                              "calibration in its metadata (use it with --weights). Without --out nothing is written: "
                              "no command changes another's defaults.")
    format: str = report_format_option()


# --- images → embeddings ------------------------------------------------------------------------------

class InputFailure(ValueError):
    """Something other than a bad image or a missing face went wrong on one input."""


def largest_first(found: list) -> list:
    """Face detections ordered as --face counts them: 1 = the largest box."""
    return sorted(found, key=lambda d: (d.box[2] - d.box[0]) * (d.box[3] - d.box[1]), reverse=True)


class Embedder:
    """One image file → one embedding (1-D tensor), through the face steps unless detect is off."""

    def __init__(self, loaded: "LoadedModel", opts: VerifyOptions) -> None:
        from cnntool.device import resolve_device

        self.loaded, self.opts = loaded, opts
        self.device = resolve_device(opts.device)
        self.pre = Preprocessor(loaded.input)
        self.head = getattr(loaded.module, "head", None)
        self.sizes: dict[str, tuple[int, int]] = {}  # path → (width, height), for the records

    def image_to_input(self, path: str) -> "torch.Tensor":
        img = open_image(path, max_pixels=self.opts.max_pixels, channels=3)
        self.sizes[path] = img.size
        if self.opts.detect:
            img = self._face_chip(img, path)
        tensor, _ = self.pre(img)
        return tensor

    def _face_chip(self, img, path: str):
        from cnntool.faces.api import FaceDetector, ShapePredictor, align_chip, as_rgb_array

        img = as_rgb_array(img)  # once: each stage would convert the photo again
        found = largest_first(FaceDetector(upsample=self.opts.upsample).detect(img))
        if len(found) < self.opts.face:
            if not found:
                raise NoFaceError(f"no face found in {sources.display_name(path)}")
            raise NoFaceError(f"only {len(found)} face(s) found in {sources.display_name(path)}; --face {self.opts.face} asked for")
        box = found[self.opts.face - 1].box
        return align_chip(img, ShapePredictor("5").predict(img, box))

    def embed_inputs(self, inputs: "torch.Tensor") -> "torch.Tensor":
        import torch

        with torch.inference_mode():
            return self.loaded.module(inputs.to(self.device)).float().cpu()

    def __call__(self, path: str) -> "torch.Tensor":
        """The embedding; any failure on this one file is a ValueError (ImageError, NoFaceError, or
        InputFailure for what the model raises), which callers turn into its error record."""
        try:
            return self.embed_inputs(self.image_to_input(path)[None])[0]
        except (ValueError, OSError):
            raise
        except Exception as exc:  # a model or decoder bug must cost one record, not the run
            reason = first_line(exc)
            raise InputFailure(f"cannot process this image ({reason})") from exc

    def distances(self, a: "torch.Tensor", b: "torch.Tensor", metric: str) -> "torch.Tensor":
        """Row-wise distances of embeddings a[i], b[i] (the learned metric runs on the model's device)."""
        import torch

        from cnntool.tasks.verify.losses import pair_distances

        if metric == "learned" and self.head is not None:
            device = next(self.head.parameters()).device
            a, b = a.to(device), b.to(device)
        with torch.inference_mode():
            return pair_distances(a, b, metric, self.head).float().cpu()


def load(opts: VerifyOptions) -> "LoadedModel":
    import torch

    from cnntool.loader import load_model
    from cnntool.device import resolve_device

    if opts.threads:
        torch.set_num_threads(opts.threads)
    if opts.face < 1:
        raise ConfigError("--face counts from 1 (the largest face)")
    loaded = load_model(opts.model, opts.weights, task="verify-face", device=resolve_device(opts.device))
    if opts.detect is None:  # the model says whether it reads aligned face chips (the catalog's decode options)
        opts.detect = bool(loaded.spec.decode.get("detect", False))
    return loaded


# --- thresholds and calibration -----------------------------------------------------------------------

def weights_file(loaded: "LoadedModel") -> Path | None:
    """The safetensors file the model came from, when it is one of ours."""
    return loaded.path if loaded.path is not None and loaded.path.suffix == ".safetensors" else None


def stored_calibration(loaded: "LoadedModel", opts: VerifyOptions) -> tuple[dict[str, Any], str]:
    """(calibration document {"metric", "thresholds": {metric: {...}}}, where it came from): --calibration, else
    the weights' own metadata. Nothing else: a calibration applies only where it is passed."""
    if opts.calibration is not None:
        return _calibration_file(opts.calibration), str(opts.calibration)
    if "verification" in loaded.metadata:
        return loaded.metadata["verification"], "the weights' metadata"
    return {}, ""


def _calibration_file(path: Path) -> dict[str, Any]:
    """A calibration JSON, or the calibration in the metadata of a weights file `calibrate --out` wrote."""
    if Path(path).suffix == ".safetensors":
        return weights.read_metadata(path).get("verification") or {}
    return _read_json(path)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        document = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read the calibration: {exc}") from None
    check_verification(document, ConfigError(f"{path}: not a calibration document: it {VERIFICATION_SHAPE}"))
    return document


def resolve_metric_threshold(loaded: "LoadedModel", opts: VerifyOptions, *, missing_ok: bool = False,
                             stored: tuple[dict[str, Any], str] | None = None) -> tuple[str, float | None, str]:
    """(metric, threshold, where the threshold came from); with missing_ok, (metric, None, "none") rather than an
    error when the model has no threshold for the metric. stored: stored_calibration's answer, if already read."""
    calibration, where = stored or stored_calibration(loaded, opts)
    metric = opts.metric or calibration.get("metric") or "euclidean"
    if metric not in METRICS:
        raise ConfigError(f"--metric must be one of {', '.join(METRICS)}, not {metric!r}")
    if metric not in usable_metrics(loaded):
        raise ConfigError(f"--metric learned needs a model trained with the similarity head; {loaded.name} has none")
    if opts.threshold is not None:
        return metric, opts.threshold, "--threshold"
    entry = calibration.get("thresholds", {}).get(metric)
    if entry is not None:
        return metric, float(entry["threshold"]), where
    if loaded.spec.name == DLIB_MODEL and metric == "euclidean":
        from cnntool.faces.api import SAME_PERSON_DISTANCE

        return metric, SAME_PERSON_DISTANCE, "dlib's published threshold"
    if missing_ok:
        return metric, None, "none"
    raise ConfigError(f"no {metric} threshold for {loaded.name}: run `cnntool verify-face calibrate` or pass --threshold")


def threshold_and_fit(loaded: "LoadedModel", opts: VerifyOptions) -> tuple[str, float, dict[str, Any] | None]:
    """(metric, threshold, the metric's p_same fit or None), from one reading of the calibration in use."""
    stored = stored_calibration(loaded, opts)
    metric, threshold, _ = resolve_metric_threshold(loaded, opts, stored=stored)
    return metric, threshold, (stored[0].get("thresholds", {}).get(metric) or {}).get("probability")


def p_same(fit: dict[str, Any] | None, distance: float) -> float | None:
    from cnntool.tasks.verify.metrics import same_probability

    return None if fit is None else float(same_probability(fit, distance))


def write_calibration(loaded: "LoadedModel", metric: str, entry: dict[str, Any], out: Path) -> Path:
    """One metric's calibration written to `out` only: a JSON document (`--calibration FILE` uses it), or for a
    model of ours a copy of its weights with the calibration in the metadata (use it with --weights)."""
    writable_folder(out.parent, "--out")
    if out.suffix == ".safetensors":
        source = weights_file(loaded)
        if source is None:
            raise ConfigError(f"--out {out}: {loaded.name} has no weights file of ours to copy; write a .json "
                              "calibration and pass it with --calibration")
        state, meta = weights.load(source)
        meta.pop("format_version", None)
        document = dict(meta.get("verification", {}))
    else:
        document = _read_json(out) if out.is_file() else {"model": loaded.name, "version": CALIBRATION_VERSION}
    document.setdefault("thresholds", {})[metric] = entry
    document["metric"] = metric
    if out.suffix == ".safetensors":
        weights.save(out, state, {**meta, "verification": document})
    else:
        weights.atomic_write_bytes(out, (json.dumps(document, indent=2, sort_keys=True) + "\n").encode())
    return out


def _size(embedder: Embedder, path: str) -> dict[str, int]:
    width, height = embedder.sizes[path]
    return {"width": width, "height": height}


# --- 1:1 ---------------------------------------------------------------------------------------------

class _Memo:
    """Each distinct path embedded once; a failure is remembered as its exception."""

    def __init__(self, embed: Callable[[str], "torch.Tensor"]) -> None:
        self.embed, self.done = embed, {}

    def __call__(self, path: str):
        if path not in self.done:
            try:
                self.done[path] = self.embed(path)
            except (ValueError, OSError) as exc:  # ImageError and NoFaceError are ValueErrors
                self.done[path] = exc
        return self.done[path]


def compare(inputs: Iterable[str], opts: VerifyOptions, loaded: "LoadedModel") -> Iterator[Record]:
    """The first input against each of the others: one record per pair."""
    metric, threshold, fit = threshold_and_fit(loaded, opts)
    embedder = Embedder(loaded, opts)
    memo = _Memo(embedder)
    # Streamed: with `-` the probes arrive one by one on stdin and each record goes out as soon as it is done.
    items = iter(sources.expand(inputs, recursive=opts.recursive))
    reference = next(items, None)
    probe = next(items, None)
    if probe is None:
        raise ConfigError("verify-face compares two or more images (the first against each other), or pass --gallery")
    for probe in itertools.chain([probe], items):
        failed = next((p for p in (reference, probe) if isinstance(p, sources.MissingSource)), None)
        if failed is not None:
            yield Record(source=sources.display_name(failed.source), task=TASK, model=loaded.name,
                         error={"type": "MissingSource", "message": failed.reason})
            continue
        a, b = memo(reference), memo(probe)
        bad = next(((p, e) for p, e in ((reference, a), (probe, b)) if isinstance(e, Exception)), None)
        if bad is not None:
            yield Record.failure(sources.display_name(bad[0]), TASK, loaded.name, bad[1])
            continue
        d = float(embedder.distances(a[None], b[None], metric)[0])
        yield Record(source=sources.display_name(probe), task=TASK, model=loaded.name, **_size(embedder, probe),
                     payload=Verification(sources.display_name(reference), sources.display_name(probe), metric, d,
                                          threshold, d <= threshold, p_same(fit, d)))


# --- 1:N: the gallery ---------------------------------------------------------------------------------

def gallery_files(root: Path) -> list[tuple[Path, str]]:
    """(path, identity): a folder per person (images anywhere inside it), or files named person_N.ext
    (the identity is the name before the last underscore, or the whole stem)."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"--gallery {root}: not a directory")
    out: list[tuple[Path, str]] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            out += [(Path(p), entry.name) for p in sources.expand([str(entry)], recursive=True)
                    if not isinstance(p, sources.MissingSource)]
        elif entry.suffix.lower() in sources.IMAGE_SUFFIXES:
            stem = entry.stem
            out.append((entry, stem.rsplit("_", 1)[0] if "_" in stem else stem))
    if not out:
        raise ConfigError(f"--gallery {root}: no images (a folder per person, or files named person_1.jpg)")
    return out


@dataclass
class Gallery:
    identities: list[str]
    paths: list[str]
    embeddings: "torch.Tensor"  # (N, D)
    embedded_now: int  # how many files this build had to embed (the rest came from the cache)


def gallery_cache_path(root: Path, key: dict[str, Any]) -> Path:
    digest = hashlib.sha1(json.dumps([str(Path(root).resolve()), key], sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir() / "verify-face" / f"gallery-{digest}.safetensors"


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _row_digest(vector: "torch.Tensor") -> str:
    return hashlib.sha256(vector.detach().float().contiguous().numpy().tobytes()).hexdigest()[:16]


def _cached(cache: Path, key: dict[str, Any]) -> tuple[dict[str, Any], "torch.Tensor | None"]:
    """The cache's entries (by content digest) and embedding rows, or nothing at the least doubt: another key,
    rows that are not a finite 2-D table, an entry pointing outside it or at a row that is not the one it
    was written with (each entry carries its row's digest)."""
    if not cache.is_file():
        return {}, None
    try:
        state, meta = weights.load(cache)  # refuses non-finite values
    except ConfigError:
        return {}, None
    rows, files = state.get("embeddings"), meta.get("files")
    if (meta.get("key") != key or rows is None or rows.dim() != 2 or not rows.is_floating_point()
            or not isinstance(files, dict)):
        return {}, None
    for entry in files.values():
        row = entry.get("row") if isinstance(entry, dict) else None
        if row is None and isinstance(entry, dict) and isinstance(entry.get("error"), str):
            continue
        if not (type(row) is int and 0 <= row < len(rows) and entry.get("vector") == _row_digest(rows[row])):
            return {}, None
    return files, rows


def build_gallery(root: Path, embed: Callable[[str], "torch.Tensor"], key: dict[str, Any], cache: Path,
                  warn: Callable[[str], None] = lambda message: None, *, use_cache: bool = True) -> Gallery:
    """Gallery embeddings, re-embedding only files whose content changed since the cached build (entries are
    keyed by SHA-256, so renamed or swapped files keep the right vector) and all of them when `key`, the
    model and face settings, changed. Files that fail are reported through `warn` and remembered, so they are
    retried only once they change."""
    import torch

    files, rows = _cached(cache, key) if use_cache else ({}, None)
    new_files: dict[str, Any] = {}
    vectors: list["torch.Tensor"] = []  # one per distinct content
    identities, paths, file_rows, embedded_now = [], [], [], 0
    for path, identity in gallery_files(root):
        try:
            digest = file_digest(path)
        except OSError as exc:
            warn(f"gallery: {sources.display_name(path)} skipped: {exc.strerror or exc}")
            continue
        old = files.get(digest)
        if old is not None:
            vector, error = (rows[old["row"]] if "row" in old else None), old.get("error")
        else:
            embedded_now += 1
            try:
                vector, error = embed(str(path)), None
            except (ValueError, OSError) as exc:
                vector, error = None, first_line(exc)
        if vector is None:
            new_files[digest] = {"error": error}
            warn(f"gallery: {sources.display_name(path)} skipped: {error}")
            continue
        if digest not in new_files:
            new_files[digest] = {"row": len(vectors), "vector": _row_digest(vector)}
            vectors.append(vector)
        file_rows.append(new_files[digest]["row"])
        identities.append(identity)
        paths.append(sources.display_name(path))
    if not vectors:
        raise ConfigError(f"--gallery {root}: no usable image (every one failed)")
    if len({tuple(v.shape) for v in vectors}) > 1:
        if rows is None:
            raise ConfigError(f"--gallery {root}: the model gave embeddings of different sizes")
        return build_gallery(root, embed, key, cache, warn, use_cache=False)  # cached rows of another model
    table = torch.stack(vectors)
    if embedded_now or set(new_files) != set(files):
        weights.save(cache, {"embeddings": table}, {"key": key, "files": new_files})
    return Gallery(identities, paths, table[torch.tensor(file_rows)], embedded_now)


def identify(inputs: Iterable[str], opts: VerifyOptions, loaded: "LoadedModel",
             warn: Callable[[str], None]) -> Iterator[Record]:
    """Each input named as its nearest gallery identity, or "unknown" beyond the threshold."""
    import torch

    metric, threshold, fit = threshold_and_fit(loaded, opts)
    embedder = Embedder(loaded, opts)
    key = {"model": loaded.name, "weights": str(weights_file(loaded) or loaded.spec.weights),
           "detect": opts.detect, "face": opts.face, "upsample": opts.upsample}
    cache = opts.gallery_cache or gallery_cache_path(opts.gallery, key)
    gallery = build_gallery(opts.gallery, embedder, key, cache, warn)
    names = sorted(set(gallery.identities))
    member = torch.tensor([names.index(i) for i in gallery.identities])
    for item in sources.expand(inputs, recursive=opts.recursive):
        if isinstance(item, sources.MissingSource):
            yield Record(source=sources.display_name(item.source), task=TASK, model=loaded.name,
                         error={"type": "MissingSource", "message": item.reason})
            continue
        try:
            emb = embedder(item)
        except (ValueError, OSError) as exc:
            yield Record.failure(sources.display_name(item), TASK, loaded.name, exc)
            continue
        d = embedder.distances(emb[None].expand(len(gallery.embeddings), -1), gallery.embeddings, metric)
        # Per identity its closest gallery photo (one-shot: one photo is enough).
        best = torch.full((len(names),), float("inf")).scatter_reduce(0, member, d, reduce="amin")
        order = best.argsort()
        nearest, distance = names[int(order[0])], float(best[order[0]])
        yield Record(source=sources.display_name(item), task=TASK, model=loaded.name, **_size(embedder, item),
                     payload=Identification(nearest if distance <= threshold else "unknown", nearest, distance,
                                            threshold, metric, [{"identity": names[int(i)], "distance": float(best[i])}
                                                                for i in order[:3]], p_same(fit, distance)))


# --- the command -----------------------------------------------------------------------------------------

def run(inputs: list[str], opts: VerifyOptions) -> int:
    """Write the records; 0 when every input was done, 1 when some failed (their error records written)."""
    loaded = load(opts)

    def warning(message: str) -> None:
        warn(message, quiet=opts.quiet)

    from cnntool.engine.report import RunProgress

    records = identify(inputs, opts, loaded, warning) if opts.gallery else compare(inputs, opts, loaded)
    total = sources.count(inputs, recursive=opts.recursive)
    if total is not None and not opts.gallery:
        total -= 1  # the first input is the reference every other is compared with
    failed = 0
    with RunProgress(total, quiet=opts.quiet, what="faces" if opts.detect else "images") as progress:
        writer = make_writer(opts.format, columns=CSV_COLUMNS)
        try:
            for record in records:
                writer.write(record)
                failed += not record.ok
                progress.advance()
        finally:
            writer.close()
    return 1 if failed else 0


# --- calibration and evaluation -----------------------------------------------------------------------------

def read_pairs(path: Path) -> list[tuple[str, str, bool]]:
    """Labelled pairs, one a line: `A B 1|0|same|different` (whitespace or commas); paths relative to the
    file's folder; # comments."""
    out = []
    truth = {"1": True, "same": True, "true": True, "0": False, "different": False, "false": False}
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as exc:
        raise ConfigError(f"--pairs {path}: {exc.strerror or exc}") from None
    for n, line in enumerate(lines, 1):
        words = line.split("#", 1)[0].replace(",", " ").split()
        if not words:
            continue
        if len(words) != 3 or words[2].lower() not in truth:
            raise ConfigError(f"{path}:{n}: expected `A B same|different`, got {line.strip()!r}")
        a, b = (w if os.path.isabs(w) else str(Path(path).parent / w) for w in words[:2])
        out.append((a, b, truth[words[2].lower()]))
    if not out:
        raise ConfigError(f"--pairs {path}: no pairs")
    return out


@dataclass
class PairScores:
    distances: dict[str, list[float]]  # metric → one distance per usable pair
    same: list[bool]
    failed: list[str]  # inputs that could not be embedded
    description: str


def score_pairs(pairs: list[tuple[str, str, bool]], embedder: Embedder, metrics: Iterable[str]) -> PairScores:
    import torch

    memo = _Memo(embedder)
    usable = [(a, b, s) for a, b, s in pairs if not isinstance(memo(a), Exception) and not isinstance(memo(b), Exception)]
    failed = sorted(p for p, e in memo.done.items() if isinstance(e, Exception))
    if not usable:
        raise ConfigError("no pair could be embedded")
    a = torch.stack([memo(p) for p, _, _ in usable])
    b = torch.stack([memo(p) for _, p, _ in usable])
    distances = {m: embedder.distances(a, b, m).tolist() for m in metrics}
    return PairScores(distances, [s for _, _, s in usable], failed, f"{len(usable)} labelled pairs")


def score_identity_folder(root: Path, embedder: Embedder, metrics: Iterable[str]) -> PairScores:
    """Every pair of the images of a folder of identities (as for --gallery)."""
    import torch

    from cnntool.tasks.verify.losses import all_pair_distances

    vectors, identities, failed = [], [], []
    for path, identity in gallery_files(root):
        try:
            vectors.append(embedder(str(path)))
            identities.append(identity)
        except (ValueError, OSError):
            failed.append(sources.display_name(path))
    if len(set(identities)) < 2:
        raise ConfigError(f"{root}: calibration needs at least two identities with usable images")
    emb = torch.stack(vectors)
    i, j = torch.triu_indices(len(emb), len(emb), 1)
    same = [identities[x] == identities[y] for x, y in zip(i.tolist(), j.tolist())]
    distances = {}
    for m in metrics:
        with torch.inference_mode():
            distances[m] = all_pair_distances(emb, m, embedder.head)[i, j].tolist()
    return PairScores(distances, same, failed, f"every pair of {len(emb)} images of {len(set(identities))} identities in {root}")


def usable_metrics(loaded: "LoadedModel") -> list[str]:
    return [m for m in METRICS if m != "learned" or getattr(loaded.module, "head", None) is not None]


def calibrate(opts: VerifyOptions, config: CalibrationConfig, *, write: bool = True) -> dict[str, Any]:
    """ROC, EER and TAR@FAR per metric from labelled pairs or an identity folder; the threshold of the
    chosen metric (at the EER, or at --far) is written where later runs find it."""
    from cnntool.tasks.verify.metrics import fit_same_probability, roc_report

    pairs, data, far, choose, out = config.pairs, config.data, config.far, config.choose, config.out
    if (pairs is None) == (data is None):
        raise ConfigError("calibrate needs exactly one of --pairs FILE or --data DIR (a folder per identity)")
    if choose not in ("eer", "far"):
        raise ConfigError(f"--choose must be eer or far, not {choose!r}")
    if write and out is not None:
        writable_folder(Path(out).parent, "--out")  # before the embedding work, not after it
    loaded = load(opts)
    before = resolve_metric_threshold(loaded, replace(opts, threshold=None), missing_ok=True)
    embedder = Embedder(loaded, opts)
    metrics = [opts.metric] if opts.metric else usable_metrics(loaded)
    scores = (score_pairs(read_pairs(pairs), embedder, metrics) if pairs is not None
              else score_identity_folder(data, embedder, metrics))
    fars = sorted({1e-3, 1e-2, 1e-1, far})
    try:
        reports = {m: roc_report(scores.distances[m], scores.same, fars) for m in metrics}
    except ValueError as exc:
        raise ConfigError(f"cannot calibrate: {exc}") from None
    metric = opts.metric or max(reports, key=lambda m: reports[m]["auc"])
    chosen = reports[metric]
    threshold = chosen["eer_threshold"] if choose == "eer" else chosen["tar_at_far"][f"{far:g}"]["threshold"]
    entry = {"threshold": threshold, "chosen_at": "eer" if choose == "eer" else f"far {far:g}",
             "auc": chosen["auc"], "eer": chosen["eer"], "data": scores.description,
             "detect": opts.detect, "probability": fit_same_probability(scores.distances[metric], scores.same)}
    same = sum(scores.same)
    report = {"model": loaded.name, "data": scores.description, "failed_inputs": scores.failed,
              "metric": metric, "threshold": threshold, "chosen_at": entry["chosen_at"], "metrics": reports,
              "probability": entry["probability"],
              "before": {"metric": before[0], "threshold": before[1], "from": before[2]},
              "pairs": {"same": same, "different": len(scores.same) - same}}
    if min(same, len(scores.same) - same) < MIN_PAIRS:
        warn(f"only {same} same and {len(scores.same) - same} different pairs: a threshold from fewer than "
             f"{MIN_PAIRS} of either is noisy; calibrate on more identities and photos", quiet=opts.quiet)
    if write and out is not None:
        report["written_to"] = str(write_calibration(loaded, metric, entry, Path(out)))
    return report
