"""Process-group setup for data-parallel training under ``torchrun`` (one process per device).

Without ``WORLD_SIZE > 1`` in the environment everything runs in one process.  Under ``torchrun`` the
process group uses NCCL on CUDA and Gloo on the CPU; every process draws the same GLOBAL batch from the
same per-step generator and keeps its own contiguous shard (:meth:`DistContext.shard`), so ``N`` processes
see exactly the samples one process would, and rank 0 alone writes checkpoints and logs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from ..errors import DemoInputError

__all__ = ["DistContext", "setup_distributed", "cleanup_distributed"]


@dataclass
class DistContext:
    """Where this process sits.

    Attributes:
        rank: global rank.
        world: number of processes.
        local_rank: rank on this machine (selects the CUDA device).
        device: this process's device.
        enabled: a process group is initialised.
    """

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    enabled: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, batch: int) -> tuple[int, int]:
        """``(start, stop)`` rows of a global batch owned by this process."""
        if batch % self.world:
            raise DemoInputError(f"the global batch ({batch}) must be divisible by the number of processes ({self.world})")
        per = batch // self.world
        return self.rank * per, (self.rank + 1) * per

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def mean(self, values: dict[str, float]) -> dict[str, float]:
        """Average scalar metrics over processes (identity in one process)."""
        if not self.enabled or not values:
            return values
        keys = sorted(values)
        t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64,
                         device=self.device if self.device.type == "cuda" else "cpu")
        dist.all_reduce(t)
        return {k: float(v) / self.world for k, v in zip(keys, t.tolist())}


def setup_distributed(device: str = "cpu") -> DistContext:
    """Initialise the process group when launched by ``torchrun`` (``WORLD_SIZE > 1``).

    Args:
        device: ``"cpu"`` or ``"cuda"``/``"cuda:N"`` (under torchrun each process takes ``cuda:LOCAL_RANK``).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise DemoInputError("device 'cuda' was requested but CUDA is not available")
        dev = torch.device("cuda", local_rank if world > 1 else (dev.index or 0))
        torch.cuda.set_device(dev)
    if world <= 1:
        return DistContext(device=dev)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo", rank=rank, world_size=world)
    return DistContext(rank=rank, world=world, local_rank=local_rank, device=dev, enabled=True)


def cleanup_distributed(ctx: DistContext) -> None:
    """Destroy the process group created by :func:`setup_distributed`."""
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
