"""Faces, cnntool's dlib-free port vs dlib's Python API, side by side on the parity photos.

    python bench/faces.py [--repeat 3] [--threads N]

Per photo: detection (with the photo's upsampling), 5-point landmarks, chip + 128-d embedding. Prints a
markdown table: median seconds for each side, their ratio, and how far the outputs are apart. dlib is
optional; without it only cnntool's timings are printed, with a note.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("photos", ROOT / "tests" / "fixtures" / "dlib" / "photos.py")
photos = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = photos  # dataclasses look their module up there
_spec.loader.exec_module(photos)


def timed(fn, repeat: int):
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def ours(img, upsample):
    from cnntool.faces.api import FaceDetector, FaceEmbedder, ShapePredictor, align_chip
    dets = FaceDetector(upsample=upsample).detect(img)
    pts = [ShapePredictor("5").predict(img, d.box) for d in dets]
    emb = FaceEmbedder().embed([align_chip(img, p) for p in pts]).numpy() if pts else np.zeros((0, 128))
    return [d.box for d in dets], pts, emb


def make_dlib():
    try:
        import dlib
    except ImportError:
        return None
    from cnntool.dlib import model_path
    det = dlib.cnn_face_detection_model_v1(str(model_path("detector")))
    sp = dlib.shape_predictor(str(model_path("face5")))
    rec = dlib.face_recognition_model_v1(str(model_path("embedding")))

    def run(img, upsample):
        dets = det(img, upsample)
        shapes = [sp(img, d.rect) for d in dets]
        emb = np.array([list(rec.compute_face_descriptor(img, s, 0, 0.25)) for s in shapes]).reshape(-1, 128)
        boxes = [[d.rect.left(), d.rect.top(), d.rect.right() + 1, d.rect.bottom() + 1] for d in dets]
        return boxes, [[[p.x, p.y] for p in s.parts()] for s in shapes], emb
    return run, dlib.__version__


def iou(a, b):
    ix = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    peer = make_dlib()
    ours(photos.load("astronaut"), 0)  # load models and caches outside the timings
    if peer:
        peer[0](photos.load("astronaut"), 0)
        print(f"dlib {peer[1]} vs cnntool, torch {torch.__version__}, {torch.get_num_threads()} threads, "
              f"median of {args.repeat}\n")
        print("| photo | size | faces (ours/dlib) | cnntool s | dlib s | ratio | min IoU | max Δ landmark px "
              "| max Δ embedding |")
        print("|---|---|---|---|---|---|---|---|---|")
    else:
        print("note: dlib is not installed, so only cnntool's timings are shown\n")
        print("| photo | size | faces | cnntool s |")
        print("|---|---|---|---|")
    for photo in photos.PHOTOS:
        try:
            img = photos.load(photo.name)
        except photos.MissingPhoto as e:
            print(f"| {photo.name} | skipped: {e} |")
            continue
        size = f"{img.shape[1]}×{img.shape[0]}" + (" up×2" if photo.upsample else "")
        t_ours, (boxes, pts, emb) = timed(lambda: ours(img, photo.upsample), args.repeat)
        if not peer:
            print(f"| {photo.name} | {size} | {len(boxes)} | {t_ours:.2f} |")
            continue
        t_dlib, (dboxes, dpts, demb) = timed(lambda: peer[0](img, photo.upsample), args.repeat)
        same = len(boxes) == len(dboxes)
        order = [max(range(len(boxes)), key=lambda j: iou(boxes[j], b)) for b in dboxes] if same and boxes else []
        ious = [iou(boxes[j], b) for j, b in zip(order, dboxes)]
        dpt = [np.abs(np.array(pts[j]) - np.array(p)).max() for j, p in zip(order, dpts)]
        demb_ = [np.abs(emb[j] - e).max() for j, e in zip(order, demb)]
        fmt = lambda xs, f: (f.format(max(xs) if f != "{:.3f}" else min(xs)) if xs else "–")
        print(f"| {photo.name} | {size} | {len(boxes)}/{len(dboxes)} | {t_ours:.2f} | {t_dlib:.2f} | "
              f"{t_ours / t_dlib:.2f} | {fmt(ious, '{:.3f}')} | {fmt(dpt, '{:.0f}')} | {fmt(demb_, '{:.1e}')} |")


if __name__ == "__main__":
    main()
