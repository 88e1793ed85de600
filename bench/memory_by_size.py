"""Peak memory against image size: every predict subcommand with its default model (and landmarks with the
face model), on one JPEG photo of 1 to 50 megapixels (the default --max-pixels), each run a fresh process.

The photo is scikit-image's astronaut (one face) pasted at a quarter of the frame's height onto a textured
3:2 frame, saved as JPEG quality 90. Peak RSS is the kernel's ru_maxrss of the waited child. The baseline
row is the same command on the 0.26 MP astronaut itself: the rest is what the image size adds.

    python bench/memory_by_size.py                      # 1, 4, 12, 24, 36, 50 MP
    python bench/memory_by_size.py --sizes 1 36 --commands detect
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

COMMANDS = {
    "classify": ["classify"],
    "localize": ["localize"],
    "landmarks": ["landmarks"],
    "landmarks-face5": ["landmarks", "--model", "face5"],  # the face detector, then 5 points per face
    "detect": ["detect"],
    "verify-face": ["verify-face"],  # compares the photo with itself: two decodes, two detections
}


def peak_rss_mib(args: list[str]) -> tuple[int, float, float]:
    """(exit status, peak RSS in MiB, wall seconds) of `python -m cnntool ARGS` in a fresh process."""
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 1)
            os.dup2(devnull.fileno(), 2)
        os.execv(sys.executable, [sys.executable, "-m", "cnntool", *args])
    _, status, usage = os.wait4(pid, 0)
    return os.waitstatus_to_exitcode(status), usage.ru_maxrss / 1024, time.perf_counter() - start


def photo(megapixels: float, folder: Path, face: np.ndarray) -> Path:
    height = int((megapixels * 1e6 / 1.5) ** 0.5)
    width = int(height * 1.5)  # at most the size asked for: 50 MP stays within --max-pixels
    y, x = np.mgrid[0:height, 0:width]
    frame = np.stack([(x // 7) % 256, (y // 5) % 256, ((x + y) // 11) % 256], -1).astype(np.uint8)
    side = max(64, height // 4)
    pasted = np.asarray(Image.fromarray(face).resize((side, side), Image.BILINEAR))
    frame[height // 3:height // 3 + side, width // 2:width // 2 + side] = pasted
    path = folder / f"{megapixels:g}mp.jpg"
    Image.fromarray(frame).save(path, quality=90)
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1, 4, 12, 24, 36, 50])
    parser.add_argument("--commands", nargs="+", default=list(COMMANDS), choices=list(COMMANDS))
    args = parser.parse_args()
    from skimage import data

    face = data.astronaut()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        base = folder / "astronaut.jpg"
        Image.fromarray(face).save(base, quality=90)
        photos = [(0.26, base)] + [(mp, photo(mp, folder, face)) for mp in args.sizes]
        print(f"{'command':12} " + " ".join(f"{mp:>9g} MP" for mp, _ in photos))
        for name in args.commands:
            cells = []
            for _, path in photos:
                inputs = [str(path), str(path)] if name == "verify-face" else [str(path)]
                status, peak, seconds = peak_rss_mib([*COMMANDS[name], *inputs, "-q"])
                cells.append(f"{peak:6.0f} MiB" + ("" if status == 0 else f"!{status}"))
                print(f"  {name} {path.name}: {peak:.0f} MiB, {seconds:.1f} s, exit {status}", file=sys.stderr)
            print(f"{name:12} " + " ".join(f"{c:>12}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
