"""Pooled features of a dataset for the evaluation tasks: every requested layer from ONE frozen
forward per batch, streamed (kNN's memory bank) or collected (k-means, kNN's queries).

Under torchrun each rank reads every world_size-th image (`my_rows`): `iter_pooled` streams
this rank's share only (the caller merges its partial result across ranks), `collect` gathers
every rank's rows back into dataset order, so every rank ends with what one process has."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset

from dcbench import distributed, step_meter
from dcbench.data import make_loader
from dcbench.errors import DcbenchError
from dcbench.extract import iter_taps
from dcbench.models import Trunk
from dcbench.precision import eval_amp_name
from dcbench.progress import say

from .pooling import Pooler
from .registry import RunContext

BATCH_SIZE = 256
MAX_HELD_MB = 4096       # collect() refuses to hold more features than this


def my_rows(n: int) -> list[int] | None:
    """This rank's share of n rows under torchrun (every world_size-th, from its rank); None
    in one process (all rows, no sampler)."""
    if not distributed.is_distributed():
        return None
    return list(range(distributed.rank(), n, distributed.world_size()))


def _batches(trunk: Trunk, pooler: Pooler, data: Dataset, ctx: RunContext, desc: str
             ) -> Iterator[tuple[np.ndarray, torch.Tensor, dict[str, torch.Tensor]]]:
    """(indices, targets, pooled) of this rank's share, batch by batch."""
    loader = make_loader(data, BATCH_SIZE, sampler=my_rows(len(data)), workers=ctx.workers,
                         seed=ctx.seed)
    skipped = 0
    step_meter.begin(f"{desc} features", len(loader), "batch")
    for indices, targets, taps, n_skipped in iter_taps(trunk, loader, pooler.layers,
                                                       ctx.device, desc,
                                                       amp=eval_amp_name(ctx.device)):
        skipped += n_skipped
        step_meter.step(len(indices))
        if taps:
            yield indices, torch.from_numpy(targets).to(ctx.device), pooler(taps)
    skipped = int(distributed.all_reduce_sum(torch.tensor([skipped])).item())
    if skipped:
        say(f"{desc}: {skipped} of {len(data)} images could not be read and were skipped")


def iter_pooled(trunk: Trunk, pooler: Pooler, data: Dataset, ctx: RunContext,
                desc: str) -> Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    """(targets, {layer: (B, D) float32 on ctx.device}) per batch, in dataset order: all
    images in one process, this rank's share under torchrun. Unreadable images are skipped
    and said on screen at the end."""
    for _, targets, pooled in _batches(trunk, pooler, data, ctx, desc):
        yield targets, pooled


def collect(trunk: Trunk, pooler: Pooler, data: Dataset, ctx: RunContext,
            desc: str) -> tuple[dict[str, torch.Tensor], np.ndarray]:
    """All pooled features of `data` held in memory ({layer: (N, D)}), and the targets."""
    need_mb = len(data) * sum(pooler.dims.values()) * 4 / 2**20
    if need_mb > MAX_HELD_MB:
        raise DcbenchError(f"{desc}: {len(data)} images x {sum(pooler.dims.values())} dims "
                           f"would hold {need_mb:.0f} MB of features (limit {MAX_HELD_MB}); "
                           f"use fewer images (the task's max_* options, see dcbench tasks) or "
                           f"fewer --setting")
    feats: dict[str, list[torch.Tensor]] = {k: [] for k in pooler.layers}
    targets: list[torch.Tensor] = []
    indices: list[np.ndarray] = []
    for idx, t, pooled in _batches(trunk, pooler, data, ctx, desc):
        indices.append(idx)
        targets.append(t.cpu())
        for k, v in pooled.items():
            feats[k].append(v.clone())
    if distributed.is_distributed():        # every rank's rows, back in dataset order
        return _gathered(feats, targets, indices, pooler, desc)
    if not targets:
        raise DcbenchError(f"{desc}: no readable image")
    return ({k: torch.cat(v) for k, v in feats.items()},
            torch.cat(targets).numpy())


def _gathered(feats: dict[str, list[torch.Tensor]], targets: list[torch.Tensor],
              indices: list[np.ndarray], pooler: Pooler, desc: str
              ) -> tuple[dict[str, torch.Tensor], np.ndarray]:
    def cat(parts: list[torch.Tensor], width: int | None, dtype: torch.dtype) -> torch.Tensor:
        if parts:
            return torch.cat(parts)
        return torch.zeros((0, width) if width else (0,), dtype=dtype)

    idx = torch.from_numpy(np.concatenate(indices) if indices else np.zeros(0, np.int64))
    order = torch.argsort(distributed.gather_rows(idx))
    if len(order) == 0:
        raise DcbenchError(f"{desc}: no readable image")
    out = {k: distributed.gather_rows(cat(v, pooler.dims[k], torch.float32).cpu())[order]
           for k, v in feats.items()}
    labels = distributed.gather_rows(cat(targets, None, torch.int64))[order]
    return out, labels.numpy()
