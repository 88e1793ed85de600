"""Classify throughput: cnntool's pipeline vs a naive per-image loop with the same model, side by side.

The naive loop is what a first script looks like: for each file, PIL open + convert, torchvision's
Resize(256) / CenterCrop(224) / ToTensor / Normalize, one eager fp32 forward of batch 1, softmax top-5.
Ours: `cnntool.engine.predict.predict` (the code behind `cnntool classify`) with its defaults plus --workers, the
same with --int8 (cnntool.engine.quantize; its calibration on the first batch is inside the timing), and the same
with the inference optimizations off (BatchNorm folding, channels_last: cnntool.engine.inference), so their worth
shows in the same run. Also printed: the model's pure forward rate on ready tensors, as built
and as cnntool prepares it (the ceilings for the naive loop and for cnntool). --profile adds where one
cnntool pass (workers 0) spends its time.

Images: the real JPEG photos shipped with opencv-doc / scikit-image / scikit-learn, at their native sizes
(≤ 0.5 MP), re-encoded and cycled to N files; or, with --photos, a folder's JPEGs as they are, e.g. the 3-25 MP
camera photos of Debian's ukui-wallpapers, where decoding rather than the forward pass sets the naive loop's
pace. Weights are random (speed does not depend on them).

    python bench/classify_throughput.py                 # resnet18@224 over 256 JPEGs
    python bench/classify_throughput.py --photos /usr/share/backgrounds   # camera photos at full size
    python bench/classify_throughput.py --model lenet5 --n 5000 --digits
    python bench/classify_throughput.py --repeats 1 --workers 0 --profile
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image


def make_jpegs(directory: Path, n: int) -> list[str]:
    from cnntool.data.builtin import photo_paths

    photos = [p for p in photo_paths() if p.suffix.lower() in (".jpg", ".png")]
    paths = []
    for i in range(n):
        src = photos[i % len(photos)]
        out = directory / f"{i:05d}.jpg"
        Image.open(src).convert("RGB").save(out, quality=90)
        paths.append(str(out))
    return paths


def copy_photos(directory: Path, n: int, source: Path) -> list[str]:
    """source's JPEG files as they are (full resolution, EXIF kept), cycled to n files."""
    import shutil

    photos = sorted(p for p in source.iterdir() if p.suffix.lower() in (".jpg", ".jpeg"))
    if not photos:
        raise SystemExit(f"no JPEG files in {source}")
    paths = []
    for i in range(n):
        out = directory / f"{i:05d}.jpg"
        shutil.copyfile(photos[i % len(photos)], out)
        paths.append(str(out))
    return paths


def make_digits(directory: Path, n: int) -> list[str]:
    from cnntool.data.builtin import load_opencv_digits

    images, _ = load_opencv_digits()
    paths = []
    for i in range(n):
        out = directory / f"{i:05d}.png"
        Image.fromarray(images[i % len(images)]).save(out)
        paths.append(str(out))
    return paths


def naive_loop(model, paths, spec) -> float:
    import torchvision.transforms as T

    h, _ = spec.size
    transform = T.Compose([
        T.Resize(round(h / spec.crop_fraction)) if spec.resize == "center-crop" else T.Resize(spec.size),
        T.CenterCrop(spec.size),
        T.ToTensor(),
        T.Normalize(spec.mean, spec.std),
    ])
    mode = "L" if spec.channels == 1 else "RGB"
    start = time.perf_counter()
    with torch.no_grad():
        for path in paths:
            x = transform(Image.open(path).convert(mode)).unsqueeze(0)
            model(x).softmax(1).topk(5)
    return len(paths) / (time.perf_counter() - start)


def ours(weights_path, paths, *, workers: int, batch_size: int, optimize: bool = True, int8: bool = False) -> float:
    from cnntool.engine.predict import RunOptions, predict

    options = RunOptions(weights=str(weights_path), workers=workers, batch_size=batch_size,
                         task_options={"topk": 5}, device="cpu", fold_bn=optimize, channels_last=optimize, int8=int8)
    start = time.perf_counter()
    count = sum(1 for record in predict(tasks.get("classify"), paths, options) if record.ok)
    assert count == len(paths)
    return len(paths) / (time.perf_counter() - start)


def pure_forward(model, spec, batch_size: int) -> float:
    x = torch.randn(batch_size, spec.channels, *spec.size)
    if getattr(model, "channels_last", False):  # a cnntool.engine.inference.InferenceModel converts its input
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        model(x)
        start = time.perf_counter()
        reps = 3
        for _ in range(reps):
            model(x)
    return reps * batch_size / (time.perf_counter() - start)


def profile_pass(weights_path, paths, *, batch_size: int) -> None:
    """One cnntool pass in this process under cProfile: the share of decoding, the forward pass and the
    task's decoding in the wall time."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.runcall(ours, weights_path, paths, workers=0, batch_size=batch_size)
    total = time.perf_counter() - start
    stats = pstats.Stats(profiler).stats
    parts = {  # (file suffix, function name) → label
        ("cnntool/preprocess.py", "load_uint8"): "decode + resize (Preprocessor.load_uint8)",
        ("cnntool/inference.py", "__call__"): "forward pass (InferenceModel.__call__)",
        ("cnntool/preprocess.py", "normalize"): "normalize (Preprocessor.normalize)",
        ("cnntool/tasks/classify.py", "decode"): "softmax + top-k + records (classify.decode)",
    }
    print(f"profile of one cnntool pass, workers 0 ({len(paths)} images, {total:.1f} s incl. profiling overhead):")
    for (filename, line, function), row in stats.items():
        for (suffix, name), label in parts.items():
            if filename.endswith(suffix) and function == name:
                print(f"  {label:48s} {row[3]:7.2f} s  {100 * row[3] / total:5.1f}%")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--digits", action="store_true", help="small PNG digits instead of JPEG photos")
    parser.add_argument("--photos", type=Path, help="full-resolution JPEG photos from this folder, as they are "
                        "(e.g. /usr/share/backgrounds: ukui-wallpapers' 3-25 MP camera photos)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="also profile one cnntool pass (workers 0)")
    args = parser.parse_args()

    from cnntool import weights

    from cnntool.models import catalog
    from cnntool.engine.inference import InferenceOptions, prepare

    torch.set_num_threads(args.threads)
    spec = catalog.get(args.model)
    torch.manual_seed(0)
    model = spec.build().eval()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.photos is not None:
            paths = copy_photos(tmp, args.n, args.photos)
        else:
            paths = (make_digits if args.digits else make_jpegs)(tmp, args.n)
        input_doc = {k: getattr(spec.input, k) for k in ("size", "channels", "mean", "std", "resize", "crop_fraction", "fill")}
        num_classes = model(torch.zeros(1, spec.input.channels, *spec.input.size)).shape[1]
        weights_path = weights.save(tmp / "model.safetensors", model.state_dict(), {
            "task": "classify", "model": spec.name, "classes": [str(i) for i in range(num_classes)],
            "input": input_doc})
        # Untimed warm-up: the first call of each pays one-off imports (torchvision transforms, the task).
        naive_loop(model, paths[:4], spec.input)
        ours(weights_path, paths[:4], workers=0, batch_size=args.batch_size)
        naive_rates, our_rates, int8_rates, unoptimized_rates = [], [], [], []
        for _ in range(args.repeats):  # interleaved, so drifting machine load hits all alike
            naive_rates.append(naive_loop(model, paths, spec.input))
            our_rates.append(ours(weights_path, paths, workers=args.workers, batch_size=args.batch_size))
            int8_rates.append(ours(weights_path, paths, workers=args.workers, batch_size=args.batch_size, int8=True))
            unoptimized_rates.append(ours(weights_path, paths, workers=args.workers, batch_size=args.batch_size,
                                          optimize=False))
        forward = pure_forward(model, spec.input, args.batch_size)
        prepared = prepare(copy.deepcopy(model), "cpu")
        forward_prepared = pure_forward(prepared, spec.input, args.batch_size)
        forward_int8 = pure_forward(prepare(copy.deepcopy(model), "cpu", InferenceOptions(int8=True)), spec.input,
                                    args.batch_size)
        if args.profile:
            profile_pass(weights_path, paths, batch_size=args.batch_size)
    naive, mine = statistics.median(naive_rates), statistics.median(our_rates)
    unoptimized, int8 = statistics.median(unoptimized_rates), statistics.median(int8_rates)
    images = ("digit PNGs" if args.digits else f"full-resolution JPEGs from {args.photos}" if args.photos
              else "photo JPEGs")
    print(f"model {spec.name} @ {spec.input.describe()}, {args.n} {images}, "
          f"{args.threads} threads, cnntool workers={args.workers} batch={args.batch_size}")
    print(f"naive per-image loop                  : {naive:8.1f} img/s")
    print(f"cnntool pipeline                      : {mine:8.1f} img/s")
    print(f"cnntool pipeline, --int8              : {int8:8.1f} img/s")
    print(f"cnntool pipeline, no BN fold / NHWC   : {unoptimized:8.1f} img/s")
    print(f"pure forward as built (batch {args.batch_size:3d})    : {forward:8.1f} img/s")
    print(f"pure forward as cnntool runs it       : {forward_prepared:8.1f} img/s")
    print(f"pure forward as cnntool runs --int8   : {forward_int8:8.1f} img/s")
    print(f"ratio cnntool / naive        = {mine / naive:.2f}x (goal >= 2); with --int8 {int8 / naive:.2f}x")
    print(f"ratio cnntool / pure forward = {mine / forward_prepared:.2f} (goal >= 0.85; against cnntool's own forward)")
    print(f"ratio optimizations on / off = {mine / unoptimized:.2f}x (pipeline), "
          f"{forward_prepared / forward:.2f}x (pure forward)")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    main()
