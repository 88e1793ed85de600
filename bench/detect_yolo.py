"""Our YOLO-style grid detector vs Ultralytics YOLOv8n (built from yolov8n.yaml, random weights, offline),
same input size, same threads, images/s of the model's forward (each one's own box decoding included,
NMS excluded for both). Runs alternate between the two models so a busy machine slows both alike.

    YOLO_OFFLINE=1 python bench/detect_yolo.py --size 96 --batch 16 --threads 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("YOLO_OFFLINE", "1")


def images_per_second(model, x, repeats: int) -> float:
    import torch

    with torch.inference_mode():
        model(x)  # warm-up
        start = time.perf_counter()
        for _ in range(repeats):
            model(x)
    return repeats * len(x) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=96, help="input side (a multiple of 32 for YOLOv8n)")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    import torch
    from ultralytics.nn.tasks import DetectionModel

    from cnntool.models import catalog

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    ours = catalog.get("yolo-digits").build().eval()
    theirs = DetectionModel("yolov8n.yaml", nc=10, verbose=False).fuse(verbose=False).eval()
    x = torch.rand(args.batch, 3, args.size, args.size)
    params = {name: sum(p.numel() for p in m.parameters()) for name, m in (("ours", ours), ("yolov8n", theirs))}
    speeds: dict[str, list[float]] = {"ours": [], "yolov8n": []}
    for _ in range(args.rounds):
        speeds["ours"].append(images_per_second(ours, x, args.repeats))
        speeds["yolov8n"].append(images_per_second(theirs, x, args.repeats))
    median = {k: statistics.median(v) for k, v in speeds.items()}
    print(f"input {args.size}x{args.size}, batch {args.batch}, {args.threads} threads, median of {args.rounds} rounds")
    for name in ("ours", "yolov8n"):
        print(f"  {name:8s} {params[name] / 1e6:6.2f} M params  {median[name]:8.1f} images/s")
    print(f"  ratio ours / yolov8n: {median['ours'] / median['yolov8n']:.2f}x")


if __name__ == "__main__":
    main()
