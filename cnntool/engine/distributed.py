"""Multi-process training through torchrun: the process group, rank/world size, and summing tensors.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; without them training is a
single process and every helper here is a no-op.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def sum_(self, tensors: Sequence["torch.Tensor"]) -> None:
        """In-place sum over ranks (CPU tensors; gloo or nccl)."""
        if not self.enabled:
            return
        import torch.distributed as dist

        for t in tensors:
            if t.device.type == "cpu" and dist.get_backend() == "nccl":
                moved = t.cuda()
                dist.all_reduce(moved)
                t.copy_(moved.cpu())
            else:
                dist.all_reduce(t)

    def any(self, flag: bool) -> bool:
        """True on every rank when it is true on any (e.g. a signal reached one process)."""
        if not self.enabled:
            return flag
        import torch

        t = torch.tensor([1 if flag else 0])
        self.sum_([t])
        return bool(t.item())

    def barrier(self) -> None:
        if self.enabled:
            import torch.distributed as dist

            dist.barrier()


def init(device: str) -> Dist:
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.startswith("cuda") else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def shutdown(d: Dist) -> None:
    if d.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
