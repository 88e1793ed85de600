"""Training checkpoints without pickle: every tensor in a safetensors file, everything else as JSON in
its header (through cnntool.weights, so writes are atomic).

Tensor keys: "model/<param>" for the model, "optim/<param index>/<state key>" for optimizer state.
The RNG needs no saving: the engine reseeds from (seed, epoch, step) at every step.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any, Mapping

from cnntool import weights
from cnntool.errors import ConfigError

if TYPE_CHECKING:
    import torch

KIND = "cnntool-train-checkpoint"


def save(path: str | os.PathLike, model_state: Mapping[str, "torch.Tensor"], optimizer: "torch.optim.Optimizer",
         progress: Mapping[str, Any], *, extra: Mapping[str, Mapping[str, "torch.Tensor"]] = {}) -> None:
    """extra: other named state dicts (e.g. "ema"), stored as "<name>/<key>"."""
    import torch

    tensors = {f"model/{k}": v for k, v in model_state.items()}
    for name, state_dict in extra.items():
        tensors.update({f"{name}/{k}": v for k, v in state_dict.items()})
    opt = optimizer.state_dict()
    scalars: dict[str, dict[str, Any]] = {}
    for index, state in opt["state"].items():
        for key, value in state.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{index}/{key}"] = value
            else:
                scalars.setdefault(str(index), {})[key] = value
    weights.save(path, tensors, {"kind": KIND, "progress": dict(progress),
                                 "optimizer": {"param_groups": opt["param_groups"], "scalars": scalars}})


def load(path: str | os.PathLike) -> tuple[dict[str, "torch.Tensor"], dict[str, Any], dict[str, Any], dict[str, dict]]:
    """(model state, optimizer state_dict, progress, extra state dicts) from a checkpoint written by `save`."""
    tensors, meta = weights.load(path)
    if meta.get("kind") != KIND:
        raise ConfigError(f"{path}: not a cnntool training checkpoint")
    model_state = {k[len("model/"):]: v for k, v in tensors.items() if k.startswith("model/")}
    state: dict[int, dict[str, Any]] = {}
    extra: dict[str, dict[str, "torch.Tensor"]] = {}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            _, index, name = key.split("/", 2)
            state.setdefault(int(index), {})[name] = value
        elif not key.startswith("model/"):
            group, name = key.split("/", 1)
            extra.setdefault(group, {})[name] = value
    for index, values in meta["optimizer"]["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    optimizer_state = {"state": state, "param_groups": meta["optimizer"]["param_groups"]}
    return model_state, optimizer_state, meta["progress"], extra
