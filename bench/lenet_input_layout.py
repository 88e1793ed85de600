"""LeNet-5 on OpenCV's digits with the digit stretched to the 32×32 field (cnntool's DIGITS_32) or placed
inside a margin as in LeCun et al. 1998, and the seed-to-seed spread of the recipe. A plain PyTorch loop
mirroring lenet5-digits' run-3 recipe (weights/README.md), scored on the same 1,000 held-out digits.

    python bench/lenet_input_layout.py --layout stretch --seed 0    # also: --layout pad6 (20×20 in 32), pad2 (28×28)
"""

from __future__ import annotations

import argparse
import copy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layout", choices=("stretch", "pad2", "pad4", "pad6"), default="stretch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=60)
    args = parser.parse_args()

    import numpy as np
    import torch
    import torch.nn.functional as F
    from PIL import Image

    from cnntool import registry
    from cnntool.augment import AugmentConfig, warp
    from cnntool.data.builtin import load_opencv_digits
    from cnntool.data.splits import stratified_split

    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    images, labels = load_opencv_digits()

    def place(img: np.ndarray) -> np.ndarray:
        digit = Image.fromarray(img)
        if args.layout == "stretch":
            return np.asarray(digit.resize((32, 32), Image.BILINEAR))
        inner = 32 - 2 * int(args.layout[3:])
        field = np.zeros((32, 32), np.uint8)
        offset = (32 - inner) // 2
        field[offset:offset + inner, offset:offset + inner] = np.asarray(digit.resize((inner, inner), Image.BILINEAR))
        return field

    x = torch.tensor(np.stack([place(i) for i in images]), dtype=torch.float32)[:, None]
    y = torch.as_tensor(labels).long()
    train, heldout = (torch.as_tensor(i) for i in stratified_split(labels, 0.2, 0))
    model = registry.get("lenet5-relu").build()
    ema = copy.deepcopy(model)
    batch = 32
    steps_per_epoch = len(train) // batch
    opt = torch.optim.SGD(model.parameters(), lr=0.03, momentum=0.9, nesterov=True, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 0.03, total_steps=args.epochs * steps_per_epoch)
    augment = AugmentConfig(shift=0.12, rotate=12, scale=0.12)
    order = torch.Generator().manual_seed(args.seed)
    normalize = lambda pixels: (pixels / 255 - 0.5) / 0.5  # noqa: E731  DIGITS_32's mean/std
    for epoch in range(args.epochs):
        model.train()
        perm = train[torch.randperm(len(train), generator=order)]
        for step in range(steps_per_epoch):
            idx = perm[step * batch:(step + 1) * batch]
            loss = F.cross_entropy(model(normalize(warp(x[idx], augment))), y[idx], label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            with torch.no_grad():
                for averaged, live in zip(ema.parameters(), model.parameters()):
                    averaged.lerp_(live, 0.001)
    ema.eval()
    with torch.no_grad():
        accuracy = (ema(normalize(x[heldout])).argmax(1) == y[heldout]).float().mean().item()
    print(f"layout {args.layout}, seed {args.seed}, {args.epochs} epochs: held-out accuracy {accuracy:.4f}")


if __name__ == "__main__":
    main()
