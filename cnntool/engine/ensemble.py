"""`cnntool train classify --ensemble K`: the lecture's ensembling — K networks trained independently, their
outputs averaged.

The members are trained one after another by the one engine (cnntool.engine.train) on one split (`--seed`), each
with its own initial weights, data order and augmentation (model seed `seed + i`, so member 0 is exactly the
run without --ensemble). Each lands in the run directory as an ordinary weights file with its own metrics
and curve (`member<i>.safetensors`); then the ensemble (cnntool.models.ensemble) is evaluated as any trained
model is and written to --out, its metadata listing every member's figures. `--resume` keeps finished
members and resumes the one that was interrupted.
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import Any

from cnntool import weights
from cnntool.errors import ConfigError
from cnntool.folders import writable_folder
from cnntool.engine.train import TrainConfig, evaluate_trained, train, trained_metadata
from cnntool.engine.report import files_sidecars, write_ensemble_reports


def member_config(cfg: TrainConfig, i: int) -> TrainConfig:
    folder = cfg.checkpoint_dir
    last = folder / f"member{i}" / "last.safetensors"
    return replace(cfg, out=folder / f"member{i}.safetensors", run_dir=folder / f"member{i}", model_seed=cfg.seed + i,
                   resume=cfg.resume and last.is_file(),
                   command=f"{cfg.command}  # member {i}" if cfg.command else "")


def train_ensemble(task, cfg: TrainConfig, size: int) -> dict[str, Any]:
    """Train `size` members, then write their ensemble to cfg.out; returns its metadata."""
    if size < 2:
        raise ConfigError(f"--ensemble wants 2 or more members, not {size}")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1:
        raise ConfigError("--ensemble trains its members one after another in one process; run it without torchrun")
    writable_folder(cfg.out.parent, "--out")
    members = []
    for i in range(size):
        member = member_config(cfg, i)
        if cfg.resume and member.out.is_file():
            members.append(member.out)
            continue
        train(task, member)
        members.append(member.out)
    return _write(task, cfg, members)


def _write(task, cfg: TrainConfig, members: list[Path]) -> dict[str, Any]:
    import torch

    from cnntool.models.ensemble import Ensemble
    from cnntool.device import resolve_device

    device = resolve_device(cfg.device)
    data = task.prepare(cfg.seed)
    modules, summaries = [], []
    for path in members:
        state, meta = weights.load(path)
        module = task.build_model()
        weights.load_into(module, state, source=str(path))
        modules.append(module)
        summaries.append({"file": path.name, "model_seed": meta.get("model_seed"), "metrics": meta.get("metrics", {})})
    ensemble = Ensemble(modules, task=task.name).to(device).eval()
    with torch.no_grad():
        heldout, metrics = evaluate_trained(ensemble, task, data, cfg, device=device)
    metrics["weights_from"] = f"the mean class probabilities of {len(members)} members (see members)"
    meta = {**trained_metadata(task, cfg, metrics, heldout.images_per_second, device=device),
            "ensemble": len(members), "members": summaries}
    weights.save(cfg.out, ensemble.state_dict(), meta)
    write_ensemble_reports(cfg.out, *files_sidecars(members),
                           {"command": cfg.command, "final": {k: meta[k] for k in ("metrics", "images_per_second", "created")}})
    if not cfg.quiet:
        import sys

        primary = task.new_metrics().primary
        sys.stderr.write(f"ensemble of {len(members)}: held-out {primary} {heldout.summary[primary]:.4f} on "
                         f"{heldout.images} images → {cfg.out}\n")
    return meta
