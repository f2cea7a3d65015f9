"""Linear probes on the frozen conv1..conv5 of a trunk (the paper's Table 1).

All requested layers train in ONE pass over the data: each batch goes through the frozen trunk
once (eval mode, BN statistics frozen) and its pooled taps (tasks/pooling.py) feed one linear
head per layer. The heads share nothing, so one SGD over their union is the same as one SGD
per layer. Top-1 and top-5 on the held-out split are measured after every epoch; the records
carry the final epoch's value and the best epoch's (the paper reports the best).

ImageNet / Places205 recipe, as the released eval_linear.sh runs eval_linear.py: SGD momentum
0.9, lr 0.01, weight decay 1e-7 (the script's `--wd -7`, a power of ten; eval_linear.py's own
default -4 is not what was run), batch 256, 90 epochs, lr decayed per iteration as
lr0 / sqrt(1 + lr0 * wd * t) (its util.learning_rate_decay: with wd 1e-7 nearly constant),
train augmentation Resize(256) + CenterCrop(256) + RandomCrop(224) + flip, test ten-crop with
the softmax averaged over crops (its --tencrops).

Fashion-MNIST recipe, chosen to converge in minutes on 2 CPU cores: no augmentation, so the
pooled features met in the first epoch are cached in float16 (7680 dims per image for
alexnet-small, 1.1 GB for the 70k images, bounded by `cache_mb`; above the bound every epoch
streams through the trunk instead) and later epochs train the heads on the cache; a
BatchNorm1d without affine parameters in front of each head (as MAE's linear probe) puts
every layer on the same scale so one lr fits all five; SGD momentum 0.9, lr 0.1, wd 1e-4,
cosine schedule, 10 epochs, batch 256.
Measured on random:alexnet-small, 60k train / 10k test, seed 0, 2 CPU cores shared with
other jobs: 218 s in all with OMP_WAIT_POLICY=PASSIVE (without it OpenMP's spinning waits
starve on shared cores and the same run took 521 s or more), most of it the one frozen pass
over the 70k images. Top-1 (final = best, epoch 10): conv1 90.9, conv2 90.3, conv3 89.3,
conv4 89.2, conv5 88.5; top-5 99.8-99.9. On the same cached features, 30 epochs gain at most
0.2 points (conv5 -0.5), lr 0.01 or 0.5 does no better, and the paper's recipe without the
BatchNorm (lr 0.01, sqrt decay) is still climbing after 30 epochs (85.5-87.5).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset, DistributedSampler

from dcbench import distributed
from dcbench.data import get_dataset_spec, make_loader
from dcbench.errors import DcbenchError
from dcbench.extract import to_device
from dcbench.models import Trunk
from dcbench.progress import progress, say

from .features import my_rows
from .inputs import (
    QUICK_TEST,
    QUICK_TRAIN,
    balanced_subset,
    check_input,
    eval_split,
    input_side,
    labelled_split,
    num_classes,
    train_split,
    transform_for,
)
from .pooling import Pooler
from .registry import Measurement, RunContext, Task, register_task

LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")

PAPER_RECIPE: dict[str, Any] = {
    "epochs": 90, "batch_size": 256, "lr": 0.01, "momentum": 0.9, "weight_decay": 1e-7,
    "schedule": "sqrt", "augment": True, "tencrop": True, "head_bn": False, "cache_mb": 0,
    "max_train": None, "max_test": None,
}
FMNIST_RECIPE: dict[str, Any] = {
    "epochs": 10, "batch_size": 256, "lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4,
    "schedule": "cosine", "augment": False, "tencrop": False, "head_bn": True, "cache_mb": 1536,
    "max_train": None, "max_test": None,
}
SCHEDULES = ("sqrt", "cosine", "constant")
QUICK_EPOCHS = 2


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
        loss_sum += float(loss.detach()) * len(targets)
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


class LinearProbe(Task):
    """A linear classifier per conv layer on frozen, pooled features of `dataset`."""

    dataset = ""
    labels_per_class: int | None = None      # None: every training label
    options: dict[str, Any] = PAPER_RECIPE
    default_settings = LAYERS
    frozen = True
    eval_only = True
    shards = True

    def config(self, ctx: RunContext) -> dict[str, Any]:
        cfg = {**self.options, **ctx.options}
        if cfg["schedule"] not in SCHEDULES:
            raise DcbenchError(f"schedule '{cfg['schedule']}' is not one of "
                               f"{', '.join(SCHEDULES)}")
        if cfg["epochs"] < 1:
            raise DcbenchError(f"epochs must be at least 1, got {cfg['epochs']}")
        if cfg["tencrop"] and get_dataset_spec(self.dataset).size != "large":
            raise DcbenchError(f"tencrop applies to 224 px datasets, not {self.dataset}; "
                               f"drop --set tencrop=true")
        if ctx.quick:
            cfg["epochs"] = min(cfg["epochs"], QUICK_EPOCHS)
            cfg["max_train"] = min(cfg["max_train"] or QUICK_TRAIN, QUICK_TRAIN)
            cfg["max_test"] = min(cfg["max_test"] or QUICK_TEST, QUICK_TEST)
        return {"dataset": self.dataset, "train_split": train_split(self.dataset),
                "test_split": eval_split(self.dataset), **cfg}

    def check(self, trunk: Trunk, ctx: RunContext) -> None:
        check_input(trunk, self.dataset, self.name)

    def run(self, trunk: Trunk, settings: list[str], ctx: RunContext) -> list[Measurement]:
        cfg = self.config(ctx)
        ds = self.dataset
        trunk.eval()                      # BN statistics stay frozen (eval_linear.py does so)
        side = input_side(ds, trunk)
        train_tf = transform_for(ds, "probe" if cfg["augment"] else "eval", side)
        test_tf = tencrop_transform(ds) if cfg["tencrop"] else transform_for(ds, "eval", side)
        if self.labels_per_class:         # another labelled draw per seed (max_train n/a)
            train = balanced_subset(labelled_split(ds, cfg["train_split"], train_tf,
                                                   ctx.data_root, None),
                                    self.labels_per_class, ctx.seed)
        else:
            train = labelled_split(ds, cfg["train_split"], train_tf, ctx.data_root,
                                   cfg["max_train"])
        test = labelled_split(ds, cfg["test_split"], test_tf, ctx.data_root, cfg["max_test"])
        n_classes = num_classes(train)
        pooler = Pooler(trunk, settings, ctx.device)
        heads = LinearHeads(pooler.dims, n_classes, cfg["head_bn"]).to(ctx.device)
        opt = torch.optim.SGD(heads.parameters(), lr=cfg["lr"], momentum=cfg["momentum"],
                              weight_decay=cfg["weight_decay"])
        # a float16 cache of the train + test features, when no augmentation and it fits
        views = 10 if cfg["tencrop"] else 1
        need_mb = sum(pooler.dims.values()) * 2 * (len(train) + views * len(test)) / 2**20
        cache = not cfg["augment"] and need_mb <= cfg["cache_mb"]
        train_batches = PooledBatches(trunk, pooler, train, cfg["batch_size"], True, cache,
                                      ctx, f"{self.name} train")
        test_batches = PooledBatches(trunk, pooler, test, max(1, cfg["batch_size"] // 2),
                                     False, cache, ctx, f"{self.name} test")
        epochs, step = cfg["epochs"], 0
        total = epochs * math.ceil(len(train) / cfg["batch_size"])
        curves: dict[str, dict[str, list[float]]] = {k: {"top1": [], "top5": []}
                                                    for k in settings}
        losses = []
        net = (DistributedDataParallel(heads, device_ids=[ctx.device] if ctx.device.type ==
                                       "cuda" else None)
               if distributed.is_distributed() else heads)
        for _ in progress(range(epochs), f"{self.name} epochs", total=epochs, unit="epoch"):
            step, loss = train_epoch(net, train_batches, opt, cfg, step, total)
            losses.append(loss)
            for k, acc in eval_epoch(heads, test_batches, min(5, n_classes)).items():
                curves[k]["top1"].append(acc["top1"])
                curves[k]["top5"].append(acc["top5"])
        out = []
        for k in settings:
            for metric, curve in curves[k].items():
                best_epoch = max(range(epochs), key=lambda e, c=curve: (c[e], -e))
                out.append(Measurement(
                    setting=k, dataset=ds, split=cfg["test_split"], metric=metric,
                    value=curve[-1], best=curve[best_epoch], best_epoch=best_epoch + 1,
                    epochs=epochs,
                    extra={"curve": curve, "train_loss": losses, "dim": pooler.dims[k],
                           "n_train": train_batches.readable,
                           "n_test": test_batches.readable,
                           "n_classes": n_classes, "cached_features": cache}))
        return out


@register_task("linear-imagenet", settings=LAYERS, datasets=("imagenet",))
class LinearImageNet(LinearProbe):
    """Paper Table 1, ImageNet columns."""

    dataset = "imagenet"
    description = "linear probe per conv layer on ImageNet (paper Table 1)"


@register_task("linear-places", settings=LAYERS, datasets=("places205",))
class LinearPlaces(LinearProbe):
    """Paper Table 1, Places columns."""

    dataset = "places205"
    description = "linear probe per conv layer on Places205 (paper Table 1)"


@register_task("linear-fmnist", settings=LAYERS, datasets=("fashion-mnist",))
class LinearFashionMNIST(LinearProbe):
    """The embedded default: Table 1's protocol on Fashion-MNIST, minutes on a CPU."""

    dataset = "fashion-mnist"
    options = FMNIST_RECIPE
    description = "linear probe per conv layer on Fashion-MNIST (minutes on CPU)"


# Low-label probes: where the full-label probe saturates (a random trunk already reaches
# 88-91 % on Fashion-MNIST), a few labels per class separate good features from random ones.
# Each seed draws another labelled subset (tasks.inputs.balanced_subset); run several with
# --seeds and the report shows mean +- std. 100 epochs over 100 or 1,000 cached feature rows
# (a few hundred SGD steps); the test split is a fixed seeded 2,000-image subset, so one run
# costs seconds.
FEW_LABELS_RECIPE: dict[str, Any] = {**FMNIST_RECIPE, "epochs": 100, "max_test": 2000}


@register_task("linear-fmnist-10", settings=LAYERS, datasets=("fashion-mnist",))
class LinearFashionMNIST10(LinearFashionMNIST):
    """The Fashion-MNIST probe with 10 labelled training images per class."""

    labels_per_class = 10
    options = FEW_LABELS_RECIPE
    description = "linear probe per conv layer, 10 labels per class (Fashion-MNIST)"


@register_task("linear-fmnist-100", settings=LAYERS, datasets=("fashion-mnist",))
class LinearFashionMNIST100(LinearFashionMNIST):
    """The Fashion-MNIST probe with 100 labelled training images per class."""

    labels_per_class = 100
    options = FEW_LABELS_RECIPE
    description = "linear probe per conv layer, 100 labels per class (Fashion-MNIST)"
