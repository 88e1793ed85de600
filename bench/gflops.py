"""Achieved GFLOP/s of each model's forward pass next to this machine's measured peak, and what each
inference option (cnntool.engine.inference) is worth, all measured in one run.

Peak: a large fp32 matmul and a large 3×3 convolution (NCHW and channels_last), timed here.
FLOPs per image: torch.utils.flop_counter (2 × multiply-accumulates of conv/linear/matmul), checked against
`cnntool shape-calc --model NAME` where the model has a layer string.
Configurations, each a pure forward on ready tensors (random weights; speed does not depend on them):
  eager      the module as built: NCHW, BatchNorm separate (what a plain script runs)
  fold       + BatchNorm folded into the convs
  cl         + channels_last (no folding)
  fold+cl    both: what `cnntool classify/detect/…` now does by default on a CPU
  +bf16      fold+cl under bf16 autocast (--bf16)
  +compile   fold+cl through torch.compile (--compile); compile time reported separately
Configurations are timed round-robin, one forward each per round, so drifting machine load hits all
alike; figures are medians over the rounds.

Also: JPEG decoding of the 256-photo set (bench/classify_throughput.py's), PIL vs torchvision.io.decode_jpeg,
and cnntool's own load (PIL draft-mode decode + resize + crop to 224).

    python bench/gflops.py --threads 1                      # all six models, compile included
    python bench/gflops.py --threads 1 --no-compile --models resnet18
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

# model, batch size: batches large enough that per-call overhead is small, small enough for a round to
# take seconds on a loaded 2-core machine.
MODELS = {
    "resnet18": 16,
    "lenet5-digits": 256,
    "fashion-resnet-small": 128,
    "yolo-digits": 32,
    "localizer-digits": 64,
    "landmarker-corners": 64,
}
CONFIGS = ("eager", "fold", "cl", "fold+cl", "+bf16", "+compile")


def timed(fn, *, warmup: int = 1) -> float:
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def peak_matmul(n: int, rounds: int) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    seconds = statistics.median(timed(lambda: a @ b) for _ in range(rounds))
    return 2 * n ** 3 / seconds / 1e9


def peak_conv(rounds: int, channels_last: bool) -> float:
    """A VGG/ResNet-sized 3×3 convolution: 4 × 256 × 56 × 56 → 256 channels (14.8 GFLOP)."""
    conv = torch.nn.Conv2d(256, 256, 3, padding=1, bias=False).eval()
    x = torch.randn(4, 256, 56, 56)
    if channels_last:
        conv, x = conv.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
    flops = 2 * 4 * 256 * 256 * 9 * 56 * 56
    with torch.inference_mode():
        seconds = statistics.median(timed(lambda: conv(x)) for _ in range(rounds))
    return flops / seconds / 1e9


def flops_per_image(model, spec) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        model(torch.randn(1, spec.channels, *spec.size))
    return counter.get_total_flops()


def shape_calc_flops(spec) -> int | None:
    from cnntool.shapecalc import layers as layerspec

    if not spec.layers:
        return None
    return 2 * layerspec.describe(spec.layers, (spec.input.channels, *spec.input.size)).total_macs


def prepared(model, **options):
    from cnntool.engine.inference import InferenceOptions, prepare

    return prepare(copy.deepcopy(model), "cpu", InferenceOptions(**options), quiet=True)


def bench_model(name: str, batch: int, rounds: int, compile_: bool) -> dict:
    from cnntool.models import catalog

    spec = catalog.get(name)
    torch.manual_seed(0)
    model = spec.build().eval()
    flops = flops_per_image(model, spec.input)
    x = torch.randn(batch, spec.input.channels, *spec.input.size)
    runners = {
        "eager": model,
        "fold": prepared(model, fold_bn=True, channels_last=False),
        "cl": prepared(model, fold_bn=False, channels_last=True),
        "fold+cl": prepared(model),
        "+bf16": prepared(model, bf16=True),
    }
    compile_seconds = None
    if compile_:
        runners["+compile"] = prepared(model, compile=True)
        with torch.inference_mode():
            compile_seconds = timed(lambda: runners["+compile"](x), warmup=0)  # the first call compiles
    times: dict[str, list[float]] = {key: [] for key in runners}
    with torch.inference_mode():
        for run in runners.values():
            run(x)  # warm up (oneDNN primitive caches, allocator)
        for _ in range(rounds):
            for key, run in runners.items():
                start = time.perf_counter()
                run(x)
                times[key].append(time.perf_counter() - start)
    rates = {key: batch / statistics.median(values) for key, values in times.items()}
    return {"name": name, "input": spec.input.describe(), "batch": batch, "flops": flops,
            "shape_calc_flops": shape_calc_flops(spec), "rates": rates, "compile_seconds": compile_seconds}


def bench_decode(n: int, rounds: int) -> dict:
    import numpy as np
    import torchvision.io
    from PIL import Image

    sys.path.insert(0, str(Path(__file__).parent))
    from classify_throughput import make_jpegs

    from cnntool.models import catalog
    from cnntool.preprocess import Preprocessor

    preprocessor = Preprocessor(catalog.get("resnet18").input)
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_jpegs(Path(tmp), n)
        megapixels = sum(Image.open(p).size[0] * Image.open(p).size[1] for p in paths) / 1e6

        def pil():
            for p in paths:
                np.asarray(Image.open(p).convert("RGB"))

        def tv():
            for p in paths:
                torchvision.io.decode_jpeg(torchvision.io.read_file(p))

        def ours():
            for p in paths:
                preprocessor.load_uint8(p)

        contenders = {"PIL open+decode (full size)": pil, "torchvision.io.decode_jpeg (full size)": tv,
                      "cnntool load_uint8 (PIL draft decode + resize + crop 224)": ours}
        times: dict[str, list[float]] = {key: [] for key in contenders}
        for fn in contenders.values():
            fn()  # page cache, libjpeg tables
        for _ in range(rounds):
            for key, fn in contenders.items():
                start = time.perf_counter()
                fn()
                times[key].append(time.perf_counter() - start)
    return {"n": n, "megapixels": megapixels, "rates": {k: n / statistics.median(v) for k, v in times.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5, help="timed forwards per configuration")
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile (minutes of compiling)")
    parser.add_argument("--no-decode", action="store_true", help="skip the JPEG decoding comparison")
    parser.add_argument("--jpegs", type=int, default=256)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    mm = peak_matmul(2048, args.rounds)
    conv_nchw, conv_cl = peak_conv(args.rounds, False), peak_conv(args.rounds, True)
    conv_peak = max(conv_nchw, conv_cl)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPUs, "
          f"ISA {torch.backends.cpu.get_cpu_capability()}")
    print(f"peak: fp32 matmul 2048³ {mm:.1f} GFLOP/s; conv3x3 4×256×56×56→256 {conv_nchw:.1f} GFLOP/s NCHW, "
          f"{conv_cl:.1f} GFLOP/s channels_last")

    configs = [c for c in CONFIGS if c != "+compile" or not args.no_compile]
    header = f"{'model':20s} {'input':10s} {'batch':>5s} {'MFLOP/img':>10s} " + " ".join(f"{c:>9s}" for c in configs)
    results = []
    for name in args.models:
        r = bench_model(name, MODELS[name], args.rounds, not args.no_compile)
        results.append(r)
        check = "" if r["shape_calc_flops"] is None else f" (shape-calc {r['shape_calc_flops'] / 1e6:.1f})"
        compiled = "" if r["compile_seconds"] is None else f", first compiled call {r['compile_seconds']:.1f} s"
        print(f"  {name}: {r['flops'] / 1e6:.1f} MFLOP/img{check}{compiled}", flush=True)

    print("\nimages/s (pure forward)\n" + header)
    for r in results:
        print(f"{r['name']:20s} {r['input']:10s} {r['batch']:5d} {r['flops'] / 1e6:10.1f} "
              + " ".join(f"{r['rates'][c]:9.1f}" for c in configs))
    print("\nratio to eager\n" + header)
    for r in results:
        print(f"{r['name']:20s} {r['input']:10s} {r['batch']:5d} {r['flops'] / 1e6:10.1f} "
              + " ".join(f"{r['rates'][c] / r['rates']['eager']:9.2f}" for c in configs))
    print(f"\nachieved GFLOP/s (% of the conv peak {conv_peak:.1f}; matmul peak {mm:.1f})\n" + header)
    for r in results:
        cells = []
        for c in configs:
            g = r["rates"][c] * r["flops"] / 1e9
            cells.append(f"{g:5.1f} {100 * g / conv_peak:2.0f}%")
        print(f"{r['name']:20s} {r['input']:10s} {r['batch']:5d} {r['flops'] / 1e6:10.1f} " + " ".join(f"{c:>9s}" for c in cells))

    if not args.no_decode:
        d = bench_decode(args.jpegs, max(1, args.rounds // 2))
        print(f"\nJPEG decoding, {d['n']} photo JPEGs ({d['megapixels'] / d['n']:.2f} MP each on average), 1 process")
        base = d["rates"]["PIL open+decode (full size)"]
        for key, rate in d["rates"].items():
            print(f"  {key:58s} {rate:7.1f} img/s  ({rate / base:.2f}× PIL)")


if __name__ == "__main__":
    main()
