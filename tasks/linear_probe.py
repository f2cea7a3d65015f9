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
from typing import TYPE_CHECKING, Any

from dcbench.data import get_dataset_spec
from dcbench.errors import DcbenchError
from dcbench.layer_names import CONVNET_LAYERS, with_modern

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
from .registry import Measurement, RunContext, Task, register_task

if TYPE_CHECKING:       # the declarations load without torch; run() imports the training
    from dcbench.models import Trunk

LAYERS = with_modern(CONVNET_LAYERS)

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


class LinearProbe(Task):
    """A linear classifier per conv layer on frozen, pooled features of `dataset`."""

    dataset = ""
    labels_per_class: int | None = None      # None: every training label
    options: dict[str, Any] = PAPER_RECIPE
    default_settings = CONVNET_LAYERS
    layer_role = "probe"
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
        import torch
        from torch.nn.parallel import DistributedDataParallel

        from dcbench import distributed, step_meter
        from dcbench.progress import progress

        from .pooling import Pooler
        from .probe_training import (
            LinearHeads,
            PooledBatches,
            eval_epoch,
            tencrop_transform,
            train_epoch,
        )

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
        step_meter.begin(f"{self.name} training ({epochs} epochs)", total, "batch")
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
