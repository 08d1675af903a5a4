"""One process or many (torchrun): the same code path, with DDP when WORLD_SIZE > 1.

`torchrun --nproc_per_node N -m taxoclip train CONFIG.yaml` (or several nodes with
`--nnodes/--rdzv-endpoint`) sets RANK, WORLD_SIZE and LOCAL_RANK; this module reads them,
picks gloo on CPU and nccl on GPUs, and offers the few collectives the loop needs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from ..errors import TaxoclipError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: str = "cpu"

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def pick_device(requested: str, local_rank: int) -> str:
    """`auto`: this process's GPU when there is one, else the CPU."""
    if requested == "auto":
        return f"cuda:{local_rank}" if torch.cuda.is_available() else "cpu"
    if requested == "cuda":
        requested = f"cuda:{local_rank}"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise TaxoclipError(f"run.device={requested}, but no CUDA GPU is available here")
    return requested


def setup(requested_device: str = "auto") -> Dist:
    """Join the process group torchrun describes in the environment (if any); pick the device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = pick_device(requested_device, local_rank)
    if device.startswith("cuda"):
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.startswith("cuda") else "gloo"
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size,
                                device_id=torch.device(device) if backend == "nccl" else None)
    return Dist(rank, world_size, local_rank, device)


def teardown(ctx: Dist) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def wrap_ddp(module: torch.nn.Module, ctx: Dist) -> torch.nn.Module:
    if not ctx.enabled:
        return module
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [torch.device(ctx.device).index] if ctx.device.startswith("cuda") else None
    return DistributedDataParallel(module, device_ids=device_ids)


def all_reduce_sum(values: list[float], ctx: Dist) -> list[float]:
    """Sum floats over all processes (returned everywhere)."""
    if not ctx.enabled:
        return list(values)
    tensor = torch.tensor(values, dtype=torch.float64, device=ctx.device)
    dist.all_reduce(tensor)
    return tensor.tolist()


def all_gather_objects(value: Any, ctx: Dist) -> list[Any]:
    if not ctx.enabled:
        return [value]
    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, value)
    return out


def broadcast_object(value: Any, ctx: Dist) -> Any:
    if not ctx.enabled:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ctx: Dist) -> None:
    if ctx.enabled:
        dist.barrier()
