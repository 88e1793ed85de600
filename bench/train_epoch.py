"""One training epoch on the 60,000 Fashion-MNIST training images: cnntool's engine against a plain
PyTorch loop (torchvision dataset, per-sample PIL transforms, DataLoader), same model, input size, batch
size and threads, in the same run. Prints both times and the ratio (goal: ours ≤ 0.5× the plain loop).

    python bench/train_epoch.py [--threads 2] [--batch-size 64] [--workers 0]   # LeNet-5 (ReLU) at 32×32
    python bench/train_epoch.py --model fashion-resnet-small --batch-size 128    # the embedded Fashion model
"""

from __future__ import annotations

import argparse
import gzip
import tempfile
import time
from pathlib import Path


def build(model_name: str):
    """The registry's architecture with the registry's kwargs, 1 grey channel, 10 classes, random weights."""
    from cnntool.models import catalog

    spec = catalog.get(model_name, task="classify")
    return spec.build(num_classes=10, in_channels=1), tuple(spec.input.size)


def plain_epoch(model_name: str, batch_size: int, workers: int) -> float:
    """The textbook loop: torchvision.datasets.FashionMNIST + transforms, CrossEntropyLoss, SGD."""
    import torch
    import torchvision
    from torchvision import transforms

    from cnntool.data.builtin import FASHION_DIRS

    root = Path(tempfile.mkdtemp()) / "FashionMNIST" / "raw"
    root.mkdir(parents=True)
    for f in FASHION_DIRS[0].glob("*.gz"):  # torchvision reads the decompressed files
        (root / f.stem).write_bytes(gzip.decompress(f.read_bytes()))
    torch.manual_seed(0)
    model, size = build(model_name)
    resize = [transforms.Resize(size)] if size != (28, 28) else []
    ds = torchvision.datasets.FashionMNIST(str(root.parent.parent), train=True, transform=transforms.Compose([
        *resize, transforms.ToTensor(), transforms.Normalize((0.2860,), (0.3530,))]))
    loader = torch.utils.data.DataLoader(ds, batch_size=batch_size, shuffle=True, num_workers=workers)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    loss_fn = torch.nn.CrossEntropyLoss()
    start = time.perf_counter()
    for x, y in loader:
        opt.zero_grad()
        loss_fn(model(x), y).backward()
        opt.step()
    return time.perf_counter() - start


def engine_epoch(model_name: str, batch_size: int, workers: int, threads: int) -> tuple[float, float]:
    """cnntool's engine, one epoch over all 60,000 images; returns (epoch seconds, cache build seconds)."""
    from cnntool.data.classify import open_classify_data
    from cnntool.tasks.classify.train import ClassifyConfig, ClassifyTask, TaskData
    from cnntool.engine.train import TrainConfig, train

    task = ClassifyTask(ClassifyConfig(data="fashion-mnist", model=model_name, mean=(0.2860,), std=(0.3530,)))
    start = time.perf_counter()
    data = open_classify_data("fashion-mnist", task.input)  # the one-off uint8 cache (PIL resize to the input)
    cache_seconds = time.perf_counter() - start
    task.classes = data.classes
    probe = data.test.subset(range(500))
    task.prepare = lambda seed: TaskData(data.train, probe, probe, "bench probe", True)
    out = Path(tempfile.mkdtemp()) / "bench.safetensors"
    train(task, TrainConfig(out=out, run_dir=out.parent / "run", epochs=1, batch_size=batch_size,
                            lr=0.05, schedule="constant", workers=workers, threads=threads, quiet=True))
    history = __import__("json").loads(out.with_name("bench.metrics.json").read_text())["history"]
    return history[0]["train_seconds"], cache_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="lenet5-relu", help="a registered classify model (its kwargs, random weights)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    print(f"{args.model}, 60,000 Fashion-MNIST images, batch {args.batch_size}, {args.threads} threads, "
          f"{args.workers} workers", flush=True)
    plain = plain_epoch(args.model, args.batch_size, args.workers)
    print(f"plain PyTorch loop : {plain:7.1f} s/epoch ({60000 / plain:,.0f} img/s)", flush=True)
    ours, cache = engine_epoch(args.model, args.batch_size, args.workers, args.threads)
    print(f"cnntool engine     : {ours:7.1f} s/epoch ({60000 / ours:,.0f} img/s)  "
          f"+ {cache:.1f} s once to build the uint8 cache")
    print(f"ratio ours/plain   : {ours / plain:.2f}")


if __name__ == "__main__":
    main()
