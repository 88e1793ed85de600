"""The lecture's detection ladder on one set of held-out scenes: sliding windows, convolutional sliding windows,
R-CNN, Fast R-CNN (all four around the same window classifier, window-digits) and the one-stage yolo-digits.
Prints one markdown table: COCO mAP through `cnntool evaluate detect`'s code on the whole test split, images/s
of each model's forward on the first --images scenes (rounds alternate between the models, median kept),
and the network evaluations each needs per image; then where R-CNN and Fast R-CNN spend their time on the
same proposals.

Data: the held-out split of yolo-digits' recipe (weights/yolo-digits.md). Held-out scenes use neither
--mix-backgrounds nor --extra-photos and scene i depends only on (seed, split, i), so this test split is the
one of the card's sets (runs/photos, the card's extra photos, is not needed for it):

    cnntool data scenes --out runs/detect/ladder-scenes96 --n 8000 --val 500 --test 1000 --size 96 --max-objects 4 --empty 0.1 --min-scale 0.25 --max-scale 0.5 --mix-backgrounds
    python bench/detection_ladder.py --data runs/detect/ladder-scenes96 --threads 1

Sliding windows are scored once: the windowed and the convolutional detector give the same detections
(checked here on the timed scenes, and score for score in tests/test_detect_sliding.py), and the windowed
one would take most of an hour over the 1,000 scenes. Faster R-CNN is faster-rcnn-digits, trained here on the
same scenes' training split (weights/rcnn-digits.md).
"""

from __future__ import annotations

import argparse
import statistics
import time

LADDER = (  # (method, registered model)
    ("sliding windows", "sliding-windows-digits"),
    ("convolutional sliding windows", "conv-sliding-windows-digits"),
    ("R-CNN", "rcnn-digits"),
    ("Fast R-CNN", "fast-rcnn-digits"),
    ("Faster R-CNN", "faster-rcnn-digits"),
    ("YOLO", "yolo-digits"),
)


def median_ms(function, repeats: int) -> float:
    """Median over `repeats` calls of function(), in milliseconds."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def same_detections(a, b) -> bool:
    import torch

    from cnntool.tasks.detect import predict as detect

    post = detect.PostProcess(conf=0.5, iou=0.3)
    pairs = [(detect.postprocess(p, post), detect.postprocess(q, post)) for p, q in zip(a, b)]
    return all(torch.equal(p["labels"], q["labels"]) and torch.allclose(p["boxes"], q["boxes"])
               and torch.allclose(p["scores"], q["scores"], atol=1e-5) for p, q in pairs)


def accuracy(data: str, model: str, threads: int) -> dict:
    from cnntool.engine.evaluate import EvalOptions
    from cnntool.tasks.detect.evaluate import DetectEvaluation, evaluate

    # 50 images a batch: R-CNN's proposals of 500 scenes would hold ~300,000 crops at once.
    return evaluate(DetectEvaluation(data=data, common=EvalOptions(model=model, threads=threads, batch_size=50)))


def stage_times(x, repeats: int) -> dict[str, float]:
    """Milliseconds per image of each stage of R-CNN and Fast R-CNN, on the same proposals."""
    import torch

    from cnntool.loader import load_model

    slow = load_model("rcnn-digits", None, task="detect").module
    fast = load_model("fast-rcnn-digits", None, task="detect").module
    with torch.inference_mode():
        start = time.perf_counter()
        proposals = slow.propose(x)
        propose = 1000 * (time.perf_counter() - start)
        rois = torch.cat([torch.nn.functional.pad(b, (1, 0), value=i) for i, b in enumerate(proposals)])
        pixels = slow.pixels(x)
        crops = slow.warped_crops(pixels, rois)
        features = fast.classifier.features(x)
        pooled = fast.pooled_features(features, rois)
        times = {
            "proposals": propose,
            "rcnn_network": median_ms(lambda: slow.score(x, proposals), repeats),
            "fast_network": median_ms(lambda: fast.score(x, proposals), repeats),
            "rcnn_warp": median_ms(lambda: slow.warped_crops(pixels, rois), repeats),
            "rcnn_classify": median_ms(lambda: [slow.classifier(c) for c in crops.split(slow.chunk)], repeats),
            "fast_conv": median_ms(lambda: fast.classifier.features(x), repeats),
            "fast_pool": median_ms(lambda: fast.pooled_features(features, rois), repeats),
            "fast_fc": median_ms(lambda: [fast.head(p) for p in pooled.split(fast.chunk)], repeats),
        }
    counts = [len(b) for b in proposals]
    return {**{k: v / len(x) for k, v in times.items()}, "mean": statistics.mean(counts), "min": min(counts),
            "max": max(counts)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="a detection dataset directory (its test split is used)")
    parser.add_argument("--images", type=int, default=32, help="scenes timed (the first of the test split)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    import torch

    from cnntool.data import detect_formats
    from cnntool.loader import load_model
    from cnntool.preprocess import Preprocessor, open_image

    torch.set_num_threads(args.threads)
    loaded = {name: load_model(name, None, task="detect") for _, name in LADDER}
    models = {name: model.module for name, model in loaded.items()}
    samples = detect_formats.read_dataset(args.data)[0]["test"][: args.images]
    # Every detector of the ladder reads the 96×96 scenes letterboxed; torchvision's normalizes them itself.
    inputs = {name: torch.stack([Preprocessor(model.input)(open_image(s.image))[0] for s in samples])
              for name, model in loaded.items()}
    x = inputs["rcnn-digits"]

    with torch.inference_mode():
        same = same_detections(models["sliding-windows-digits"](x), models["conv-sliding-windows-digits"](x))
    seconds: dict[str, list[float]] = {name: [] for _, name in LADDER}
    for _ in range(args.rounds):
        for name, model in models.items():
            with torch.inference_mode():
                start = time.perf_counter()
                model(inputs[name])
                seconds[name].append(time.perf_counter() - start)
    stages = stage_times(x, args.rounds)

    scored = {name: accuracy(args.data, name, args.threads) for _, name in LADDER if name != "sliding-windows-digits"}
    scored["sliding-windows-digits"] = scored["conv-sliding-windows-digits"]
    windows = sum(((round(96 * s) - 32) // 4 + 1) ** 2 for s in models["sliding-windows-digits"].scales
                  if round(96 * s) >= 32)
    levels = len(models["conv-sliding-windows-digits"].scales)
    passes = {
        "sliding-windows-digits": f"{windows} (one per window)",
        "conv-sliding-windows-digits": f"{levels} (one per pyramid level)",
        "rcnn-digits": f"{stages['mean']:.0f} (one per proposal)",
        "fast-rcnn-digits": f"1 conv pass + {stages['mean']:.0f} fc heads",
        "faster-rcnn-digits": "1 conv pass + RPN + 100 fc heads",
        "yolo-digits": "1",
    }

    print(f"{scored['yolo-digits']['data']}; images/s: {len(x)} scenes, {args.threads} thread(s), median of "
          f"{args.rounds} rounds")
    print("| method | model | mAP50 | mAP50-95 | mAP50, one label per box | mAP50-95, one label per box | images/s "
          "| network evaluations per image |")
    print("|---|---|---|---|---|---|---|---|")
    for method, name in LADDER:
        report, one = scored[name], scored[name]["one_label_per_box"]
        speed = len(x) / statistics.median(seconds[name])
        print(f"| {method} | {name} | {report['map50']:.4f} | {report['map50_95']:.4f} | {one['map50']:.4f} | "
              f"{one['map50_95']:.4f} | {speed:.1f} | {passes[name]} |")
    print(f"sliding windows = convolutional sliding windows (same detections on the timed scenes): {same}")
    print(f"proposals per image: mean {stages['mean']:.0f}, min {stages['min']}, max {stages['max']}; "
          f"selective search {stages['proposals']:.1f} ms/image")
    print(f"R-CNN network stage {stages['rcnn_network']:.2f} ms/image: warping {stages['rcnn_warp']:.2f}, "
          f"classifying the crops {stages['rcnn_classify']:.2f}")
    print(f"Fast R-CNN network stage {stages['fast_network']:.2f} ms/image: conv pass {stages['fast_conv']:.2f}, "
          f"RoIAlign {stages['fast_pool']:.2f}, fc1/fc2 {stages['fast_fc']:.2f}")
    print(f"Fast R-CNN / R-CNN on the same proposals: {stages['rcnn_network'] / stages['fast_network']:.1f}x "
          f"(network stages); end to end with selective search "
          f"{statistics.median(seconds['rcnn-digits']) / statistics.median(seconds['fast-rcnn-digits']):.1f}x")


if __name__ == "__main__":
    main()
