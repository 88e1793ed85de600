"""Convert a dlib model file once, keep the arrays as safetensors in the user's cache directory.

The cache key is the source file's name, size and modification time plus this converter's version, so a
reinstalled or edited model file is converted again. Writes go to a temporary file that is renamed into
place, so a crash never leaves a half-written entry and concurrent runs simply race to an identical file.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from cnntool.cache import cache_dir as cnntool_cache

CONVERTER_VERSION = 1


def cache_dir() -> Path:
    return cnntool_cache() / "dlib"


def cache_path(source: Path) -> Path:
    st = source.stat()
    return cache_dir() / f"{source.stem}-{st.st_size}-{st.st_mtime_ns}-v{CONVERTER_VERSION}.safetensors"


def _write_atomic(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    os.close(fd)
    try:
        contiguous = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
        save_file(contiguous, tmp, metadata={"cnntool": json.dumps(meta)})
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_or_convert(source, convert: Callable[[Path], tuple[dict[str, np.ndarray], dict]]):
    """(arrays, metadata) for `source`, from the cache when present, else from `convert(source)` (then cached).

    An unwritable cache directory only costs speed: the converted result is still returned.
    """
    source = Path(source)
    path = cache_path(source)
    if path.exists():
        try:
            with safe_open(str(path), framework="np") as f:
                meta = json.loads(f.metadata()["cnntool"])
            return load_file(str(path)), meta
        except Exception:  # a damaged entry is rebuilt below
            pass
    arrays, meta = convert(source)
    try:
        _write_atomic(path, arrays, meta)
    except OSError:
        pass
    return arrays, meta
