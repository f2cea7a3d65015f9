"""Pooled features of a dataset for the evaluation tasks: every requested layer from ONE frozen
forward per batch, streamed (kNN's memory bank) or collected (k-means, kNN's queries)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset

from dcbench.data import make_loader
from dcbench.errors import DcbenchError
from dcbench.extract import iter_taps
from dcbench.models import Trunk
from dcbench.progress import say

from .pooling import Pooler
from .registry import RunContext

BATCH_SIZE = 256
MAX_HELD_MB = 4096       # collect() refuses to hold more features than this


def iter_pooled(trunk: Trunk, pooler: Pooler, data: Dataset, ctx: RunContext,
                desc: str) -> Iterator[tuple[torch.Tensor, dict[str, torch.Tensor]]]:
    """(targets, {layer: (B, D) float32 on ctx.device}) per batch, in dataset order.
    Unreadable images are skipped and said on screen at the end."""
    loader = make_loader(data, BATCH_SIZE, workers=ctx.workers, seed=ctx.seed)
    skipped = 0
    for _, targets, taps, n_skipped in iter_taps(trunk, loader, pooler.layers, ctx.device,
                                                 desc):
        skipped += n_skipped
        if taps:
            yield torch.from_numpy(targets).to(ctx.device), pooler(taps)
    if skipped:
        say(f"{desc}: {skipped} of {len(data)} images could not be read and were skipped")


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
    for t, pooled in iter_pooled(trunk, pooler, data, ctx, desc):
        targets.append(t.cpu())
        for k, v in pooled.items():
            feats[k].append(v.clone())
    if not targets:
        raise DcbenchError(f"{desc}: no readable image")
    return ({k: torch.cat(v) for k, v in feats.items()},
            torch.cat(targets).numpy())
