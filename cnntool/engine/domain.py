"""`cnntool train domain`: give a trained classifier a domain check (cnntool.models.domain.DomainGate).

The gate learns the model's training images (its training split and --extra-train sets, augmented as given)
against crops of real photos (those scikit-image, scikit-learn and opencv-doc ship: whole photos and pieces
of 3–100 % of their shorter side, any aspect), both through the model's own preprocessing and augmented
alike, so only what they show tells them apart. Its threshold flags --flagged of the validation split (the
split the model's metadata records, or the data's val part); the share it flags on the held-out split and,
with --ood, on photos nothing was trained on, go into the metadata with the command.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from cnntool.augment import AugmentConfig, degrade, warp
from cnntool.console import quiet_option, warn
from cnntool.device import threads_option
from cnntool.errors import ConfigError
from cnntool.options import option
from cnntool.registry import CONTRASTS

if TYPE_CHECKING:
    import torch

    from cnntool.engine.task import Task
    from cnntool.preprocess import Preprocessor

CROPS_PER_OOD_PHOTO = 20


@dataclass
class DomainConfig:
    weights: str = option(dataclasses.MISSING, "--weights", "-w", help="The classifier to give a domain check (a "
                          "weights file or an embedded name).")
    data: str = option(dataclasses.MISSING, "--data", "-d", help="What the model was trained on (its --data: a "
                       "classify data set, or a landmarks folder): the training split is what the gate learns as "
                       "in-domain, the recorded validation split chooses its threshold.")
    out: Path = option(dataclasses.MISSING, "--out", "-o", help="The weights file to write: the classifier's "
                       "tensors and metadata, the gate and its figures.")
    extra_train: list[str] = option((), "--extra-train", parse=list, cli_type=list[str], cli_default=[],
                                    help="More in-domain training images (as the classifier's --extra-train), "
                                         "repeatable.")
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    contrast: str | None = option(None, "--contrast", help="Set the classifier's input contrast (stretch or none, "
                                  "as `train classify --contrast`) in the file written; the gate learns through it. "
                                  "Default: the classifier's.")
    photos: int = option(8000, "--photos", min=100, help="Photo crops the gate learns as out of domain.")
    steps: int = option(2000, "--steps", min=1, help="Training steps of 64 in-domain and 64 photo images.")
    texture: float = option(0.5, "--texture", min=0.0, max=1.0, help="Share of the in-domain images laid over a "
                            "faint photo crop (10–60 % of its level): print on paper, ruled lines, shadows, so "
                            "the gate tells images apart by what they show, not by how clean they are.")
    flagged: float = option(0.005, "--flagged", min=0.0, max=0.5, help="Share of the validation images the "
                            "threshold may call out of domain.")
    ood: Path | None = option(None, "--ood", help="A folder of photos nothing here was trained on: the share of them "
                              f"(each whole and {CROPS_PER_OOD_PHOTO} random crops) the gate flags goes into the "
                              "metadata, e.g. /usr/share/backgrounds/mate/nature (apt-get install mate-backgrounds).")
    seed: int = option(0, "--seed", help="Seeds the crops, the gate's initial weights and its batches.")
    threads: int | None = threads_option()
    quiet: bool = quiet_option()


def photo_crops(pre: "Preprocessor", paths: list[Path], count: int, rng: np.random.Generator) -> "torch.Tensor":
    """`count` uint8 crops (N, C, H, W) of the photos at the model's input, through its preprocessing."""
    import torch

    from cnntool.preprocess import open_image

    photos = [open_image(p, channels=3) for p in paths]
    out = []
    for _ in range(count):
        photo = photos[int(rng.integers(len(photos)))]
        short = min(photo.size)
        side = max(4, int(short * rng.uniform(0.03, 1.0)))
        w = min(photo.width, max(4, int(side * rng.uniform(0.6, 1.6))))
        x, y = int(rng.integers(0, photo.width - w + 1)), int(rng.integers(0, photo.height - side + 1))
        resized, _ = pre.geometry_and_resized(photo.crop((x, y, x + w, y + side)))
        out.append(torch.from_numpy(pre.to_uint8(resized)))
    return torch.stack(out)


def ood_images(pre: "Preprocessor", folder: Path, rng: np.random.Generator) -> "torch.Tensor":
    """Every photo of the folder whole, and CROPS_PER_OOD_PHOTO random crops of each."""
    import torch

    from cnntool import sources
    from cnntool.preprocess import open_image

    paths = [Path(p) for p in sources.expand([str(folder)]) if not isinstance(p, sources.MissingSource)]
    if not paths:
        raise ConfigError(f"--ood {folder}: no images there")
    whole = [torch.from_numpy(pre.to_uint8(pre.geometry_and_resized(open_image(p, channels=3))[0])) for p in paths]
    return torch.cat([torch.stack(whole), photo_crops(pre, paths, CROPS_PER_OOD_PHOTO * len(paths), rng)])


def fit(config: DomainConfig, task: "Task", *, command: str = "") -> dict[str, Any]:
    """Train the gate, choose its threshold, measure it, write config.out; returns the new metadata."""
    import torch
    import torch.nn.functional as F

    from cnntool import weights
    from cnntool.data.builtin import DataUnavailable, photo_paths
    from cnntool.device import set_threads
    from cnntool.loader import load_model
    from cnntool.models.domain import DomainGate, PREFIX
    from cnntool.preprocess import Preprocessor

    set_threads(config.threads)
    loaded = load_model(None, config.weights, task=task.name)
    if loaded.path is None:
        raise ConfigError(f"{config.weights}: a cnntool weights file is needed (the gate is written into a copy)")
    if config.contrast is not None:
        if config.contrast not in CONTRASTS:
            raise ConfigError(f"--contrast must be one of {', '.join(CONTRASTS)}, not {config.contrast!r}")
        loaded.spec = dataclasses.replace(loaded.spec, input=dataclasses.replace(loaded.input, contrast=config.contrast))
    pre = Preprocessor(loaded.input)
    train, val, heldout, described = task.domain_splits(loaded, config.data, config.extra_train)
    paths = photo_paths()
    if not paths:
        raise DataUnavailable("no photos found for the gate's out-of-domain side: pip install scikit-image")
    rng = np.random.default_rng(config.seed)
    negatives = photo_crops(pre, paths, config.photos, rng)
    torch.manual_seed(config.seed)
    gate = DomainGate(loaded.input.channels)
    optimizer = torch.optim.AdamW(gate.parameters(), lr=3e-3, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 3e-3, total_steps=config.steps)
    labels = torch.cat([torch.ones(64), torch.zeros(64)])
    fill = float(loaded.input.fill)
    gate.train()
    for _ in range(config.steps):
        inside = train.images[torch.randint(len(train), (64,))].float()
        textured = torch.rand(64, 1, 1, 1) < config.texture
        faint = negatives[torch.randint(len(negatives), (64,))].float() * torch.empty(64, 1, 1, 1).uniform_(0.1, 0.6)
        inside = torch.where(textured, torch.maximum(inside, faint), inside)
        batch = torch.cat([inside, negatives[torch.randint(len(negatives), (64,))].float()])
        if config.augment.geometric:
            batch = warp(batch, config.augment, fill=fill)
        if config.augment.degrading:
            batch = degrade(batch, config.augment)
        loss = F.binary_cross_entropy_with_logits(gate(pre.normalize(batch)), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
    gate.eval()

    def scores(images: "torch.Tensor") -> "torch.Tensor":
        with torch.no_grad():
            return torch.cat([gate(pre.normalize(images[s:s + 1000])) for s in range(0, len(images), 1000)])

    threshold = float(torch.quantile(scores(val.images).double(), config.flagged))
    flagged = {"validation": float((scores(val.images) < threshold).float().mean()),
               "held-out": float((scores(heldout.images) < threshold).float().mean())}
    if config.ood is not None:
        flagged["ood_photos"] = float((scores(ood_images(pre, config.ood, rng)) < threshold).float().mean())
    state, meta = weights.load(loaded.path)
    meta.pop("format_version", None)
    state = {k: v for k, v in state.items() if not k.startswith(PREFIX)}
    state.update({PREFIX + k: v for k, v in gate.state_dict().items()})
    meta["input"] = loaded.input.document()
    meta["decode"] = {**meta.get("decode", {}), "domain_threshold": round(threshold, 6)}
    meta["domain"] = {
        "flagged": {k: round(v, 4) for k, v in flagged.items()},
        "in_domain": f"{described}: the training split" + "".join(f" + {s}" for s in config.extra_train)
                     + f"; augmented {config.augment.describe()}; {config.texture:g} of them over faint photo crops",
        "out_of_domain": f"{len(negatives)} crops of the {len(paths)} photos of scikit-image, scikit-learn and "
                         "opencv-doc",
        "threshold_rule": f"flags {config.flagged:g} of the validation split ({len(val)} images)",
        **({"ood_photos": f"{config.ood}: each photo whole and {CROPS_PER_OOD_PHOTO} random crops"}
           if config.ood is not None else {}),
        "command": command,
    }
    weights.save(config.out, state, meta)
    if not config.quiet:
        shown = ", ".join(f"{k} {v:.4f}" for k, v in flagged.items())
        warn(f"domain check written to {config.out}: share flagged: {shown}")
    return meta
