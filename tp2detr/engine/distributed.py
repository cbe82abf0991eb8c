"""Distributed data parallel through ``torchrun``: process-group setup, sharding, gathering.

``torchrun --nproc_per_node=N train.py ...`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``;
without them everything runs in one process and these helpers are no-ops.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistributedContext:
    """Where this process stands: ``rank`` of ``world_size``; ``is_main`` writes files and logs."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device_type: str) -> DistributedContext:
    """Join the process group torchrun describes (NCCL on GPU, gloo on CPU), if any."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistributedContext()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device_type == "cuda" else "gloo")
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    return DistributedContext(rank, world, local_rank)


def shutdown_distributed(ctx: DistributedContext) -> None:
    """Leave the process group."""
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def shard(n: int, ctx: DistributedContext) -> range:
    """This rank's contiguous share of ``n`` items (no padding, no duplicates)."""
    per_rank, extra = divmod(n, ctx.world_size)
    start = ctx.rank * per_rank + min(ctx.rank, extra)
    return range(start, start + per_rank + (1 if ctx.rank < extra else 0))


def gather_to_all(obj: Any, ctx: DistributedContext) -> list[Any]:
    """Every rank's ``obj``, in rank order (``[obj]`` without distribution)."""
    if not ctx.enabled:
        return [obj]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(ctx: DistributedContext) -> None:
    """Wait for every rank."""
    if ctx.enabled:
        dist.barrier()


def broadcast_flag(flag: bool, ctx: DistributedContext) -> bool:
    """True on every rank if it is True on any rank (e.g. an interruption request)."""
    if not ctx.enabled:
        return flag
    tensor = torch.tensor([1 if flag else 0])
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item())
