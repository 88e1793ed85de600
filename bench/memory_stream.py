"""Peak memory while streaming: `cnntool classify` over 10,000 images vs 1,000 (goal: ratio <= 1.1).

Each run is a fresh process (`python -m cnntool classify DIR --format jsonl > /dev/null`); its peak RSS
is read from the kernel (ru_maxrss of the waited child), so decode workers are counted too.

    python bench/memory_stream.py                  # the embedded digit model, 1k vs 10k PNGs
    python bench/memory_stream.py --workers 2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image


def peak_rss_mib(args: list[str]) -> tuple[float, float]:
    """(peak RSS of the largest process in the run, wall seconds) for one fresh child process tree."""
    start = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        with open(os.devnull, "wb") as devnull:
            os.dup2(devnull.fileno(), 1)
        os.execv(sys.executable, [sys.executable, "-m", "cnntool", *args])
    _, status, usage = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"cnntool {' '.join(args)} failed")
    return usage.ru_maxrss / 1024, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--small", type=int, default=1000)
    parser.add_argument("--large", type=int, default=10000)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()

    from cnntool.data.builtin import load_opencv_digits

    images, _ = load_opencv_digits()
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for n in (args.small, args.large):
            directory = Path(tmp) / str(n)
            directory.mkdir()
            for i in range(n):
                Image.fromarray(images[i % len(images)]).save(directory / f"{i:05d}.png")
            results[n] = peak_rss_mib(["classify", str(directory), "--format", "jsonl", "--workers",
                                       str(args.workers), "-q"])
    (small_rss, small_s), (large_rss, large_s) = results[args.small], results[args.large]
    print(f"classify, embedded default model, workers={args.workers}")
    print(f"{args.small:6d} images: peak RSS {small_rss:7.1f} MiB, {small_s:6.1f} s")
    print(f"{args.large:6d} images: peak RSS {large_rss:7.1f} MiB, {large_s:6.1f} s")
    print(f"ratio RSS {args.large}/{args.small} = {large_rss / small_rss:.3f} (goal <= 1.1)")


if __name__ == "__main__":
    main()
