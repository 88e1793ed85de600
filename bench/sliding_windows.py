"""Sliding windows vs the convolutional implementation of sliding windows: the same trained window
classifier (window-digits) over the same image pyramid of the same held-out scenes. Checks that both give
the same detections, then prints images/s of each and the ratio. Runs alternate between the two.

    python bench/sliding_windows.py --data runs/detect/digit-scenes96 --images 32 --threads 2
"""

from __future__ import annotations

import argparse
import statistics
import time


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a detection dataset directory (its test split is used)")
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import torch

    from cnntool.models import catalog
    from cnntool.data import detect_formats
    from cnntool.loader import load_model
    from cnntool.preprocess import Preprocessor, open_image
    from cnntool.tasks.detect import predict as detect

    torch.set_num_threads(args.threads)
    windowed = load_model("sliding-windows-digits", None, task="detect").module
    conv = load_model("conv-sliding-windows-digits", None, task="detect").module
    pre = Preprocessor(catalog.get("conv-sliding-windows-digits").input)
    samples = detect_formats.read_dataset(args.data)[0]["test"][: args.images]
    x = torch.stack([pre(open_image(s.image))[0] for s in samples])

    post = detect.PostProcess(conf=0.5, iou=0.3)
    with torch.inference_mode():
        a = [detect.postprocess(d, post) for d in windowed(x)]
        b = [detect.postprocess(d, post) for d in conv(x)]
    same = all(torch.equal(p["labels"], q["labels"]) and torch.allclose(p["boxes"], q["boxes"])
               and torch.allclose(p["scores"], q["scores"], atol=1e-5) for p, q in zip(a, b))
    found = sum(len(p["boxes"]) for p in a)

    def speed(model) -> float:
        with torch.inference_mode():
            start = time.perf_counter()
            model(x)
            return len(x) / (time.perf_counter() - start)

    speeds: dict[str, list[float]] = {"windowed": [], "convolutional": []}
    for _ in range(args.rounds):
        speeds["windowed"].append(speed(windowed))
        speeds["convolutional"].append(speed(conv))
    median = {k: statistics.median(v) for k, v in speeds.items()}
    windows = sum(((round(96 * s) - 32) // 4 + 1) ** 2 for s in windowed.scales if round(96 * s) >= 32)
    print(f"{len(x)} held-out scenes 96x96, pyramid scales {windowed.scales}, {windows} windows per image, "
          f"{args.threads} threads, median of {args.rounds} rounds")
    print(f"  same detections (conf 0.5, NMS 0.3): {same} ({found} detections)")
    for name, value in median.items():
        print(f"  {name:14s} {value:8.1f} images/s")
    print(f"  ratio convolutional / windowed: {median['convolutional'] / median['windowed']:.1f}x")


if __name__ == "__main__":
    main()
