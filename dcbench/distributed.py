"""One process or many, same code: rank, world size and the few collectives dcbench needs.

A single process (no WORLD_SIZE in the environment) never touches torch.distributed. Under
`torchrun` the process group is created on first use: nccl when CUDA is present, gloo on CPU.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import numpy as np
import torch
import torch.distributed as dist

T = TypeVar("T")


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    return rank() == 0


def is_distributed() -> bool:
    return world_size() > 1


def pick_device() -> torch.device:
    """CUDA when present (the local rank's GPU under torchrun), else CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return torch.device("cpu")


def init() -> torch.device:
    """Create the process group when running under torchrun; return this rank's device."""
    device = pick_device()
    if is_distributed() and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend, timeout=timedelta(minutes=60))
    return device


def shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def main_first(compute: Callable[[], T]) -> T:
    """Rank 0 computes first (and fills a disk cache), the other ranks after it (reading that
    cache instead of writing it at the same time); one process just computes."""
    if not dist.is_initialized():
        return compute()
    if is_main():
        try:
            return compute()
        finally:          # released also when it fails: the others then meet the same error
            dist.barrier()
    dist.barrier()
    return compute()


def _comm_device() -> torch.device:
    return pick_device() if dist.get_backend() == "nccl" else torch.device("cpu")


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over ranks (returns a new tensor on t's device)."""
    if not dist.is_initialized():
        return t
    buf = t.to(_comm_device()).clone()
    dist.all_reduce(buf, op=dist.ReduceOp.SUM)
    return buf.to(t.device)


def gather_rows(t: torch.Tensor) -> torch.Tensor:
    """Concatenate each rank's rows (row counts may differ) in rank order, on every rank."""
    if not dist.is_initialized():
        return t
    dev = _comm_device()
    n = torch.tensor([t.shape[0]], device=dev)
    sizes = [torch.zeros_like(n) for _ in range(world_size())]
    dist.all_gather(sizes, n)
    sizes_i = [int(s.item()) for s in sizes]
    most = max(sizes_i)
    padded = torch.zeros((most, *t.shape[1:]), dtype=t.dtype, device=dev)
    padded[: t.shape[0]] = t.to(dev)
    parts = [torch.empty_like(padded) for _ in range(world_size())]
    dist.all_gather(parts, padded)
    return torch.cat([p[:s] for p, s in zip(parts, sizes_i)]).to(t.device)


def broadcast_array(arr: np.ndarray | None, dtype: np.dtype, src: int = 0) -> np.ndarray:
    """Send rank `src`'s 1-D numpy array to every rank (others pass None)."""
    if not dist.is_initialized():
        assert arr is not None
        return arr
    dev = _comm_device()
    n = torch.tensor([0 if arr is None else len(arr)], device=dev)
    dist.broadcast(n, src)
    buf = (torch.from_numpy(np.ascontiguousarray(arr)).to(dev) if rank() == src
           else torch.empty(int(n.item()), dtype=torch.from_numpy(np.zeros(0, dtype)).dtype,
                            device=dev))
    dist.broadcast(buf, src)
    return buf.cpu().numpy().astype(dtype, copy=False)


def broadcast_object(obj: object, src: int = 0) -> object:
    if not dist.is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]


def all_gather_object(obj: object) -> list[object]:
    """Every rank's object, in rank order (a one-element list in a single process)."""
    if not dist.is_initialized():
        return [obj]
    out: list[object] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out
