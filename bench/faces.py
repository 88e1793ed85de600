"""Faces stage by stage: cnntool's dlib-free port vs dlib's Python API, interleaved in one process.

    python bench/faces.py [--repeat 5] [--threads N] [--calls 20]

Photos: scikit-image's astronaut at its own 512 px and resized (bilinear) to 2000 px. Stages, each run by
both sides on the same input (the face's rectangle and 5 points, the same on both sides as the detect rows
show, feed the later stages): detection per
photo at each upsampling (512 px: 0 and 1, face_recognition's default; 2000 px: 0, which is also cnntool's
automatic choice above 2 MP), then per face 5- and 68-point landmarks, the aligned 150×150 chip and the
128-d embedding of that chip. The two sides alternate within every repeat (a per-face stage runs --calls
times a round, so that each round lasts long enough to time); the table shows each side's median in
milliseconds per call, the ratio cnntool / dlib, and whether the outputs agree (same rectangles and scores
within 1e-4, same landmark pixels, same chip bytes, descriptors within 1e-5). The header says whether
cnntool's landmarks and chips ran compiled (cnntool.faces._native, built at install) or in numpy.

Needs dlib (pip install --no-build-isolation dlib); it is not a dependency of cnntool.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from typing import Any, Callable

import numpy as np
from PIL import Image

SIZES = {512: (0, 1), 2000: (0,)}  # photo side → detector upsamplings timed


def photo(side: int) -> np.ndarray:
    import skimage.data

    img = Image.fromarray(skimage.data.astronaut())
    return np.asarray(img if img.size == (side, side) else img.resize((side, side), Image.Resampling.BILINEAR))


def timed(fn: Callable[[], Any], times: list[float], calls: int = 1) -> Any:
    """fn()'s result; its time per call in milliseconds, over `calls` calls, appended to `times`."""
    start = time.perf_counter()
    for _ in range(calls):
        out = fn()
    times.append((time.perf_counter() - start) * 1000 / calls)
    return out


class Dlib:
    def __init__(self) -> None:
        import dlib

        from cnntool.dlib import model_path

        self.dlib = dlib
        self.detector = dlib.cnn_face_detection_model_v1(str(model_path("detector")))
        self.sp = {k: dlib.shape_predictor(str(model_path("face" + k))) for k in ("5", "68")}
        self.facerec = dlib.face_recognition_model_v1(str(model_path("embedding")))

    def detect(self, img, upsample):
        return [([d.rect.left(), d.rect.top(), d.rect.right() + 1, d.rect.bottom() + 1], d.confidence)
                for d in self.detector(img, upsample)]

    def rect(self, box):
        return self.dlib.rectangle(*(int(v) for v in (box[0], box[1], box[2] - 1, box[3] - 1)))

    def landmarks(self, kind, img, box):
        return [[p.x, p.y] for p in self.sp[kind](img, self.rect(box)).parts()]

    def shape5(self, img, box):
        return self.sp["5"](img, self.rect(box))

    def chip(self, img, shape5):
        return self.dlib.get_face_chip(img, shape5, size=150, padding=0.25)

    def embed(self, chip):
        return np.array(self.facerec.compute_face_descriptor(chip))


class Ours:
    def detect(self, img, upsample):
        from cnntool.faces.api import FaceDetector

        return [(d.box, d.score) for d in FaceDetector(upsample=upsample).detect(img)]

    def landmarks(self, kind, img, box):
        from cnntool.faces.api import ShapePredictor

        return ShapePredictor(kind).predict(img, box)

    def chip(self, img, points5):
        from cnntool.faces.api import align_chip

        return np.asarray(align_chip(img, points5))

    def embed(self, chip):
        from cnntool.faces.api import FaceEmbedder

        return FaceEmbedder().embed([chip])[0].numpy()


def same_detections(a, b) -> bool:
    return [x for x, _ in a] == [x for x, _ in b] and all(abs(s - t) <= 1e-4 for (_, s), (_, t) in zip(a, b))


def stages(img: np.ndarray, side: int, ours: Ours, theirs: Dlib):
    """(stage, per, our call, dlib's call, do the outputs agree) for one photo and its first face."""
    for up in SIZES[side]:
        yield f"detect, upsample {up}", "photo", (lambda u=up: ours.detect(img, u)), \
            (lambda u=up: theirs.detect(img, u)), same_detections
    box = ours.detect(img, 0)[0][0]
    shape5 = theirs.shape5(img, box)
    points5 = [[p.x, p.y] for p in shape5.parts()]
    chip = theirs.chip(img, shape5)
    for kind in ("5", "68"):
        yield f"{kind}-point landmarks", "face", (lambda k=kind: ours.landmarks(k, img, box)), \
            (lambda k=kind: theirs.landmarks(k, img, box)), lambda a, b: a == b
    yield "aligned chip", "face", lambda: ours.chip(img, points5), lambda: theirs.chip(img, shape5), \
        lambda a, b: np.array_equal(a, b)
    yield "embedding (from the chip)", "face", lambda: ours.embed(chip), lambda: theirs.embed(chip), \
        lambda a, b: float(np.abs(a - b).max()) <= 1e-5


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--calls", type=int, default=20, help="calls of a per-face stage in one timed round")
    args = ap.parse_args()
    import torch

    from cnntool.faces import shape

    if args.threads:
        torch.set_num_threads(args.threads)
    ours, theirs = Ours(), Dlib()
    threads = torch.get_num_threads()
    print(f"dlib {theirs.dlib.__version__} vs cnntool on torch {torch.__version__} ({threads} thread"
          f"{'s' if threads > 1 else ''}), {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.2f} at the start; median of {args.repeat}, the two sides interleaved; "
          f"landmarks and chips {'compiled' if shape._native else 'in numpy (cnntool.faces._native not built)'}\n")
    print("| photo | stage | per | cnntool ms | dlib ms | cnntool / dlib | outputs agree |")
    print("|---|---|---|---|---|---|---|")
    for side in SIZES:
        img = photo(side)
        for stage, per, mine, peer, agree in stages(img, side, ours, theirs):
            mine(), peer()  # models loaded and caches filled outside the timings
            t_ours, t_dlib = [], []
            calls = args.calls if per == "face" else 1
            for _ in range(args.repeat):
                a = timed(mine, t_ours, calls)
                b = timed(peer, t_dlib, calls)
            m_ours, m_dlib = statistics.median(t_ours), statistics.median(t_dlib)
            print(f"| {side}×{side} | {stage} | {per} | {m_ours:.2f} | {m_dlib:.2f} | {m_ours / m_dlib:.2f} | "
                  f"{'yes' if agree(a, b) else 'NO'} |", flush=True)
    print(f"\nload average {os.getloadavg()[0]:.2f} at the end")


if __name__ == "__main__":
    main()
