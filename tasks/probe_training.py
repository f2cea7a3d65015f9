"""The linear probe's training: one head per layer (LinearHeads), the pooled features of a
split batch by batch, from the frozen trunk or from a float16 cache (PooledBatches), one SGD
epoch over every head at once and one evaluation epoch. tasks/linear_probe.py declares the
tasks and their recipes."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import Dataset, DistributedSampler

from dcbench import distributed, step_meter
from dcbench.data import get_dataset_spec, make_loader
from dcbench.errors import DcbenchError
from dcbench.extract import to_device
from dcbench.models import Trunk
from dcbench.progress import progress, say

from .features import my_rows
from .pooling import Pooler
from .registry import RunContext


class StackCrops:
    """TenCrop's tuple of PIL crops -> one (10, 3, H, W) tensor, each crop normalised."""

    def __init__(self, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        from torchvision import transforms as T  # seconds to import: only where used

        self.norm = T.Compose([T.ToTensor(), T.Normalize(mean, std)])

    def __call__(self, crops) -> torch.Tensor:
        return torch.stack([self.norm(c.convert("RGB")) for c in crops])


def tencrop_transform(dataset: str) -> Callable:
    from torchvision import transforms as T

    spec = get_dataset_spec(dataset)
    return T.Compose([T.Resize(256), T.TenCrop(224), StackCrops(spec.mean, spec.std)])


def lr_at(cfg: dict[str, Any], step: int, total: int) -> float:
    lr0 = cfg["lr"]
    if cfg["schedule"] == "sqrt":
        return lr0 / math.sqrt(1 + lr0 * cfg["weight_decay"] * step)
    if cfg["schedule"] == "cosine":
        return lr0 * 0.5 * (1 + math.cos(math.pi * step / max(1, total)))
    return lr0


class LinearHeads(nn.Module):
    """One linear classifier per layer (optionally behind a non-affine BatchNorm1d)."""

    def __init__(self, dims: dict[str, int], n_classes: int, bn: bool) -> None:
        super().__init__()
        self.heads = nn.ModuleDict({
            k: nn.Sequential(nn.BatchNorm1d(d, affine=False), nn.Linear(d, n_classes)) if bn
            else nn.Linear(d, n_classes) for k, d in dims.items()})

    def forward(self, feats: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: self.heads[k](feats[k]) for k in self.heads}


class PooledBatches:
    """(pooled features {layer: (B, views, D)}, targets) batches of one split.

    Streamed through the frozen trunk; when `cache` is on, the first pass also stores the
    features in float16 and every later pass reads them back (reshuffled when `shuffle`).
    Under torchrun each rank reads its share with batch_size / world_size per rank (the
    global batch stays batch_size): training through DistributedSampler (a fresh shared
    shuffle per epoch, padded to equal shares), evaluation every world_size-th image.
    """

    def __init__(self, trunk: Trunk, pooler: Pooler, data: Dataset, batch_size: int,
                 shuffle: bool, cache: bool, ctx: RunContext, desc: str) -> None:
        self.trunk, self.pooler, self.device, self.desc = trunk, pooler, ctx.device, desc
        world = distributed.world_size()
        self.batch_size, self.shuffle = max(1, batch_size // world), shuffle
        self.sampler: Any = None
        if world > 1:
            self.sampler = (DistributedSampler(data, world, distributed.rank(), shuffle=True,
                                               seed=ctx.seed) if shuffle
                            else my_rows(len(data)))
        self.loader = make_loader(data, self.batch_size, sampler=self.sampler,
                                  shuffle=shuffle and world == 1, workers=ctx.workers,
                                  seed=ctx.seed)
        self.generator = torch.Generator().manual_seed(ctx.seed)
        self.cache: dict[str, torch.Tensor] | None = None
        self.cache_targets: torch.Tensor | None = None
        self.want_cache = cache
        self.n = len(data) if self.sampler is None else len(self.sampler)   # this rank's
        self.total = len(data)
        self.readable = len(data)           # set to the rows read by the first pass
        self.readable_said = False
        self.epoch = 0

    def _stream(self):
        if isinstance(self.sampler, DistributedSampler):
            self.sampler.set_epoch(self.epoch)
        self.epoch += 1
        rows, skipped = 0, 0
        for images, targets, _, n_skipped in progress(self.loader, self.desc,
                                                      total=len(self.loader), unit="batch"):
            skipped += n_skipped
            if images is None:
                continue
            views = images.shape[1] if images.dim() == 5 else 1
            with torch.no_grad():
                x = to_device(images.flatten(0, 1) if views > 1 else images, self.device)
                pooled = self.pooler(self.trunk.extract(x, self.pooler.layers))
            feats = {k: v.reshape(len(targets), views, -1) for k, v in pooled.items()}
            targets = targets.to(self.device)
            if self.want_cache:
                self._store(rows, feats, targets)
            rows += len(targets)
            yield feats, targets
        # the images actually used, over all ranks (DistributedSampler's padding repeats at
        # most world_size - 1 of them: capped at the split's size)
        total = distributed.all_reduce_sum(torch.tensor([rows, skipped]))
        self.readable = min(int(total[0]), self.total - int(total[1]))
        if int(total[1]) and self.readable_said is False:
            say(f"{self.desc}: {int(total[1])} of {self.total} images could not be read and "
                f"were skipped")
            self.readable_said = True
        if self.want_cache and self.cache is not None:
            self.cache = {k: v[:rows] for k, v in self.cache.items()}
            self.cache_targets = self.cache_targets[:rows]

    def _store(self, row: int, feats: dict[str, torch.Tensor], targets: torch.Tensor) -> None:
        if self.cache is None:
            self.cache = {k: torch.empty((self.n, *v.shape[1:]), dtype=torch.float16,
                                         device=self.device) for k, v in feats.items()}
            self.cache_targets = torch.empty(self.n, dtype=torch.long, device=self.device)
        for k, v in feats.items():
            self.cache[k][row:row + len(targets)] = v.half()
        self.cache_targets[row:row + len(targets)] = targets

    def _replay(self):
        n = len(self.cache_targets)
        order = (torch.randperm(n, generator=self.generator) if self.shuffle
                 else torch.arange(n)).to(self.device)
        for i in range(0, n, self.batch_size):
            idx = order[i:i + self.batch_size]
            yield ({k: v[idx].float() for k, v in self.cache.items()},
                   self.cache_targets[idx])

    def __iter__(self):
        if self.cache_targets is not None:
            return self._replay()
        return self._stream()


def train_epoch(heads: nn.Module, batches: PooledBatches, opt: torch.optim.Optimizer,
                cfg: dict[str, Any], step: int, total: int) -> tuple[int, float]:
    """One epoch of SGD on the heads (`heads` is DDP-wrapped under torchrun: gradients are
    averaged over ranks, i.e. one step on the global batch); the mean loss over all ranks."""
    heads.train()
    loss_sum, n = 0.0, 0
    for feats, targets in batches:
        if len(targets) < 2 and cfg["head_bn"]:       # BatchNorm needs two rows
            continue
        for group in opt.param_groups:
            group["lr"] = lr_at(cfg, step, total)
        logits = heads({k: v[:, 0] for k, v in feats.items()})
        loss = sum(F.cross_entropy(out, targets) for out in logits.values())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        value = float(loss.detach())
        step_meter.step(len(targets), value)
        loss_sum += value * len(targets)
        n += len(targets)
    both = distributed.all_reduce_sum(torch.tensor([loss_sum, float(n)], dtype=torch.float64))
    return step, float(both[0]) / max(1.0, float(both[1]))


def eval_epoch(heads: LinearHeads, batches: PooledBatches, topk: int) -> dict[str, dict]:
    """Top-1 and top-k accuracy (percent) per layer; several views are softmax-averaged."""
    heads.eval()
    hits = {k: [0, 0] for k in heads.heads}
    n = 0
    with torch.no_grad():
        for feats, targets in batches:
            b, views = next(iter(feats.values())).shape[:2]
            logits = heads({k: v.flatten(0, 1) for k, v in feats.items()})
            for k, out in logits.items():
                scores = out.reshape(b, views, -1)
                scores = scores.softmax(-1).mean(1) if views > 1 else scores[:, 0]
                pred = scores.topk(topk, dim=1).indices
                correct = pred == targets[:, None]
                hits[k][0] += int(correct[:, 0].sum())
                hits[k][1] += int(correct.any(1).sum())
            n += b
    names = list(hits)
    counts = distributed.all_reduce_sum(torch.tensor(
        [float(n)] + [float(c) for k in names for c in hits[k]], dtype=torch.float64))
    n = int(counts[0])
    if n == 0:
        raise DcbenchError("the test split yielded no readable image")
    return {k: {"top1": 100.0 * float(counts[1 + 2 * i]) / n,
                "top5": 100.0 * float(counts[2 + 2 * i]) / n} for i, k in enumerate(names)}
