"""Weights files: resolve a name or path, load safely, save atomically, read metadata without torch.

Format: safetensors. Our metadata (task, architecture + kwargs, classes, input spec, held-out metrics,
the exact training command, version) is one JSON document stored under the header key "cnntool".
Reading the header needs only the stdlib (8-byte little-endian length, then JSON), so `cnntool models`
shows metrics without importing torch. `.pt`/`.pth` files a user brings are read with
`torch.load(weights_only=True)`, which refuses pickled code.
"""

from __future__ import annotations

import json
import os
import re
import struct
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from cnntool.errors import ConfigError, first_line
from cnntool.folders import temporary_beside
from cnntool.meta import WeightsMeta, check

if TYPE_CHECKING:
    import torch

METADATA_KEY = "cnntool"
FORMAT_VERSION = 1
# A header larger than this, or indexing more tensors, is not a weights file we wrote; refused before it
# is parsed (a crafted header of a million entries costs gigabytes to read).
_MAX_HEADER_BYTES = 16 * 1024 * 1024
_MAX_TENSORS = 20_000
# State dicts users bring from torch.save: read with weights_only=True, never unpickled freely.
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def weights_dir() -> Path:
    """Where embedded weights live: $CNNTOOL_WEIGHTS_DIR, else the repository's weights/ folder."""
    env = os.environ.get("CNNTOOL_WEIGHTS_DIR")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "weights"


def resolve(name_or_path: str) -> Path:
    """A path as given if it exists, else a file in weights/ (with or without the .safetensors suffix)."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    for candidate in (weights_dir() / name_or_path, weights_dir() / f"{name_or_path}.safetensors"):
        if candidate.is_file():
            return candidate
    available = sorted(p.stem for p in weights_dir().glob("*.safetensors"))
    raise ConfigError(f"weights {name_or_path!r} not found (not a file; embedded: {', '.join(available) or 'none'})")


def read_header(path: str | os.PathLike) -> dict[str, Any]:
    """The safetensors JSON header (tensor index + "__metadata__"), stdlib only."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read(8)
            if len(raw) != 8:
                raise ConfigError(f"{path}: not a safetensors file (too short)")
            (length,) = struct.unpack("<Q", raw)
            size = path.stat().st_size
            if length > _MAX_HEADER_BYTES or 8 + length > size:
                raise ConfigError(f"{path}: not a safetensors file or truncated (header length {length}, file {size} bytes)")
            header = json.loads(fh.read(length))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read weights: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ConfigError(f"{path}: not a safetensors file (header is not JSON)") from None
    if not isinstance(header, dict):
        raise ConfigError(f"{path}: not a safetensors file (header is not an object)")
    if len(header) > _MAX_TENSORS:
        raise ConfigError(f"{path}: {len(header) - 1} tensors, more than any model here has ({_MAX_TENSORS})")
    # Every tensor's byte range must lie inside the file: catches truncation before torch sees it.
    data_size = size - 8 - length
    for key, entry in header.items():
        if key == "__metadata__":
            continue
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (isinstance(offsets, list) and len(offsets) == 2 and 0 <= offsets[0] <= offsets[1] <= data_size):
            raise ConfigError(f"{path}: truncated or corrupt weights (tensor {key!r} lies outside the file)")
    return header


def read_metadata(path: str | os.PathLike) -> WeightsMeta:
    """Our metadata document from a safetensors file, checked (cnntool.meta); {} when it carries none, as torch
    files never do."""
    if Path(path).suffix in TORCH_SUFFIXES:
        return {}
    meta = read_header(path).get("__metadata__") or {}
    text = meta.get(METADATA_KEY) if isinstance(meta, dict) else None
    if text is None:
        return {}
    try:
        document = json.loads(text)
    except (TypeError, json.JSONDecodeError):
        raise ConfigError(f"{path}: corrupt cnntool metadata (not JSON)") from None
    return check(document, str(path))


def save(path: str | os.PathLike, state_dict: Mapping[str, "torch.Tensor"], metadata: Mapping[str, Any]) -> Path:
    """Write state_dict + metadata atomically: a crash leaves the old file or the new one, never half."""
    from safetensors.torch import save as st_save

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in state_dict.items()}
    document = {"format_version": FORMAT_VERSION, **metadata}
    blob = st_save(tensors, metadata={METADATA_KEY: json.dumps(document, sort_keys=True)})
    atomic_write_bytes(path, blob)
    return path


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Written beside `path`, flushed to disk and renamed into place; the temporary file removed on failure."""
    tmp = temporary_beside(path)
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)  # make the rename itself durable
    finally:
        os.close(dir_fd)


def load(path: str | os.PathLike) -> tuple[dict[str, "torch.Tensor"], WeightsMeta]:
    """(state_dict, metadata) from a safetensors file, or from a .pt/.pth a user brings (weights_only)."""
    path = Path(path)
    if path.suffix in TORCH_SUFFIXES:
        return _finite(_load_torch_file(path), path), {}
    metadata = read_metadata(path)  # validates the header first
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot load weights: {first_line(exc)}") from None
    return _finite(state, path), metadata


def _finite(state: dict[str, "torch.Tensor"], path: Path) -> dict[str, "torch.Tensor"]:
    """Weights holding NaN or infinity give NaN scores for every image: refused at load."""
    import torch

    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ConfigError(f"{path}: weights hold NaN or infinite values (tensor {key!r})")
    return state


def _blocked_global(message: str) -> str:
    """' (it asks for posix.system)' from torch's weights-only refusal, whose first lines instead advise
    loading with weights_only=False, which would run the payload."""
    found = re.search(r"GLOBAL ([\w.]+)", message)
    return f" (it asks for {found.group(1)})" if found else ""


def _load_torch_file(path: Path) -> dict[str, "torch.Tensor"]:
    import pickle

    import torch

    try:
        with warnings.catch_warnings():  # e.g. its note on pickle protocols: a stray multi-line warning
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise ConfigError(f"{path}: refused: the file holds pickled objects other than tensors"
                          f"{_blocked_global(str(exc))}; cnntool loads tensors only") from None
    except Exception as exc:  # a corrupt archive fails in many ways (zip, struct, unicode, key errors)
        raise ConfigError(f"{path}: cannot load weights: {first_line(exc) or exc.__class__.__name__}") from None
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        obj = obj["state_dict"]
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    if not (isinstance(obj, dict) and all(isinstance(v, torch.Tensor) for v in obj.values())):
        raise ConfigError(f"{path}: not a state dict of tensors")
    return obj


def check_fits(own: Mapping[str, tuple[int, ...]], given: Mapping[str, tuple[int, ...]], *, source: str) -> None:
    """A ConfigError of one line that says what differs when tensor names or shapes do not match."""
    missing = [k for k in own if k not in given]
    unexpected = [k for k in given if k not in own]
    wrong = [k for k in own if k in given and tuple(own[k]) != tuple(given[k])]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} tensors of another shape (e.g. {k}: file {tuple(given[k])}, model {tuple(own[k])})")
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise ConfigError(f"{source}: weights do not fit this model: " + "; ".join(parts))


def load_into(model: "torch.nn.Module", state_dict: Mapping[str, "torch.Tensor"], *, source: str) -> None:
    """Load strictly, turning torch's long mismatch report into one line that says what differs."""
    check_fits({k: tuple(v.shape) for k, v in model.state_dict().items()},
               {k: tuple(v.shape) for k, v in state_dict.items()}, source=source)
    model.load_state_dict(state_dict, strict=True)


def transfer(model: "torch.nn.Module", state_dict: Mapping[str, "torch.Tensor"], *, source: str) -> list[str]:
    """Fine-tuning's start: copy every tensor whose name and shape match (a new class count keeps its fresh
    head); returns the names left as initialized. Nothing in common means another architecture: an error."""
    own = model.state_dict()
    fits = {k: v for k, v in state_dict.items() if k in own and tuple(own[k].shape) == tuple(v.shape)}
    if not fits:
        raise ConfigError(f"{source}: no tensor fits this model (another architecture?)")
    model.load_state_dict(fits, strict=False)
    return [k for k in own if k not in fits]
