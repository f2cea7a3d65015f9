"""The training and measurement of `voc-cls` (tasks/voc/cls.py declares the task, its recipes and
its protocol; this module loads torch, that one does not)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dcbench import distributed, step_meter
from dcbench.data import build_dataset, make_loader, subset
from dcbench.errors import DcbenchError
from dcbench.extract import prepare, to_device
from dcbench.models import Trunk
from dcbench.models.convnet import ConvFcTrunk
from dcbench.progress import bar

from ..inputs import QUICK_SUBSET_SEED
from ..registry import Measurement, RunContext
from .common import (
    crop_transform,
    freeze_conv,
    init_std,
    pct,
    reset_fc_and_head,
    sgd_step,
    train_mode,
    trunk_copy,
)
from .metrics import classification_ap, mean_ap
from .per_setting import measure_each_setting
from .sharding import my_test_rows, rank_seed, summed_count, sync_model, train_loader
from .task import ALL, FC6_8, FROZEN

TEST_BATCH = 128


def forward(model: Trunk, x: torch.Tensor, setting: str) -> torch.Tensor:
    """Logits; what `setting` keeps frozen runs without autograd (no activations kept)."""
    if setting == FROZEN:
        with torch.no_grad():
            x = model.embed(x)
        return model.top_layer(x)
    if not isinstance(model, ConvFcTrunk):          # a ResNet or ViT, ALL
        return model.top_layer(model.embed(x))
    x = model.front(x)
    with torch.set_grad_enabled(setting == ALL and torch.is_grad_enabled()):
        x = model.features(x)
    return model.top_layer(model.classifier(torch.flatten(x, 1)))


def setting_copy(trunk: Trunk, setting: str, n_classes: int) -> tuple[Trunk, list]:
    """The copy `setting` trains and its parameters to train. fc6-8 / all: the original
    surgery (fc6, fc7 and the head re-drawn); frozen: a new head on the trunk as it is."""
    model = trunk_copy(trunk, setting)
    if setting == FROZEN or not isinstance(model, ConvFcTrunk):
        model.set_top_layer(n_classes)
        nn.init.normal_(model.top_layer.weight, 0.0, init_std(model.FC_DIM))
        nn.init.constant_(model.top_layer.bias, 0.1)
    else:
        reset_fc_and_head(model, n_classes)
    if setting == FROZEN:
        for p in model.parameters():
            p.requires_grad = False
        for p in model.top_layer.parameters():
            p.requires_grad = True
        return model, list(model.top_layer.parameters())
    if isinstance(model, ConvFcTrunk):
        return model, freeze_conv(model, frozen=setting == FC6_8)
    return model, [p for name, p in model.named_parameters() if not name.startswith("sobel.")]


def setting_mode(model: Trunk, setting: str) -> None:
    """Train mode as the original script sets it (`model.train(); features.eval()`: dropout
    on, conv BN statistics never updated); a ResNet's BN statistics stay frozen too; at
    frozen everything runs in eval mode."""
    if setting == FROZEN:
        model.eval()
    elif isinstance(model, ConvFcTrunk):
        train_mode(model)
    else:
        model.train()
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()


def masked_bce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits summed over classes, difficult (0) masked, divided by the batch."""
    target = (labels == 1).to(logits.dtype)
    mask = (labels != 0).to(logits.dtype)
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return (loss * mask).sum() / len(labels)


def draw_order(n: int, count: int, seed: int) -> list[int]:
    """`count` indices: reshuffled passes over range(n), seeded."""
    rng = np.random.default_rng(seed)
    passes = -(-count // n)
    return np.concatenate([rng.permutation(n) for _ in range(passes)])[:count].tolist()


def summed_test_logits(model: Trunk, data, cfg: dict[str, Any], ctx: RunContext,
                       seed: int, setting: str) -> tuple[np.ndarray, np.ndarray]:
    """Logits summed over `test_crops` random-crop passes, and which rows were read (under
    torchrun each rank reads every W-th batch; the sums are summed over ranks)."""
    model.eval()
    n_classes = model.top_layer.out_features
    total = torch.zeros(len(data), n_classes, dtype=torch.float64)
    seen = torch.zeros(len(data), dtype=torch.int64)
    with torch.inference_mode():
        for p in range(cfg["test_crops"]):
            torch.manual_seed(rank_seed(seed * 1000 + p))
            loader = make_loader(data, TEST_BATCH, sampler=my_test_rows(len(data), TEST_BATCH),
                                 workers=ctx.workers, seed=rank_seed(seed * 1000 + p))
            for images, _, indices, _ in loader:
                if images is None:
                    continue
                logits = forward(model, to_device(images, ctx.device), setting)
                total[indices] += logits.double().cpu()
                seen[indices] = 1
    total = distributed.all_reduce_sum(total)
    seen = distributed.all_reduce_sum(seen)
    return total.numpy(), seen.numpy() > 0


def train_and_test(trunk: Trunk, setting: str, train, test, cfg: dict[str, Any],
                   ctx: RunContext) -> dict[str, Any]:
    """Train a copy of the trunk on `train` in `setting`; the test mAP at each evaluation."""
    model, params = setting_copy(trunk, setting, len(train.classes))
    model = prepare(model, ctx.device)
    sync_model(model)
    opt = torch.optim.SGD(params, lr=cfg["lr"], momentum=cfg["momentum"],
                          weight_decay=cfg["weight_decay"])
    iters, batch = cfg["iterations"], cfg["batch_size"]
    loader = train_loader(train, draw_order(len(train), iters * batch, ctx.seed), batch, ctx)
    eval_at = sorted({max(1, round(iters * (e + 1) / cfg["evals"])) for e in range(cfg["evals"])})
    labels_test = test.labels
    history: list[dict[str, Any]] = []
    progress = bar(f"voc-cls {setting}", total=iters, unit="it")
    step_meter.begin(f"voc-cls {setting} training", iters)
    setting_mode(model, setting)
    it, loss_sum, skipped = 0, 0.0, 0
    for images, labels, _, n_skipped in loader:
        skipped += n_skipped
        it += 1
        progress.update(1)
        for group in opt.param_groups:
            group["lr"] = cfg["lr"] * cfg["lr_gamma"] ** ((it - 1) // cfg["lr_step"])
        loss = None if images is None else masked_bce(
            forward(model, to_device(images, ctx.device), setting),
            labels.to(ctx.device))
        step = sgd_step(opt, loss, 0 if images is None else len(labels), "voc-cls", setting,
                        it, progress, clip=(params, cfg["clip"]))
        loss_sum += step or 0.0
        if it in eval_at:
            scores, seen = summed_test_logits(model, test, cfg, ctx, ctx.seed, setting)
            aps = classification_ap(scores[seen], labels_test[seen])
            history.append({"iteration": it, "mAP": 100.0 * mean_ap(aps),   # loss: mean so far
                            "ap": aps, "loss": loss_sum / it})
            progress.set_postfix(mAP=f"{history[-1]['mAP']:.1f}")
            setting_mode(model, setting)
    progress.close()
    skipped = summed_count(skipped)
    return {"history": history, "model": model, "skipped_train": skipped,
            "skipped_test": int((~seen).sum()), "classes": list(train.classes)}


def _subset(data, max_images: int | None):
    """A seeded subset that keeps `classes` and the label matrix reachable."""
    sub = subset(data, max_images, QUICK_SUBSET_SEED)
    if sub is not data:
        sub.labels = data.labels[sub.indices]
    return sub


def run_task(trunk: Trunk, settings: list[str], cfg: dict[str, Any], ctx: RunContext
             ) -> list[Measurement]:
    """`VOCClassificationTask.run` with its checked config:
    train a copy per setting, measure the test mAP `evals` times."""
    ds = cfg["dataset"]
    tf = crop_transform(ds, trunk.INPUT_SIZE, (cfg["scale_min"], cfg["scale_max"]))
    train = build_dataset(ds, cfg["train_split"], tf, data_root=ctx.data_root)
    test = build_dataset(ds, cfg["test_split"], tf, data_root=ctx.data_root)
    if train.classes != test.classes:
        raise DcbenchError(f"{ds}: {cfg['train_split']} and {cfg['test_split']} name "
                           f"different classes ({train.classes} vs {test.classes})")
    train = _subset(train, cfg["max_train"])
    test = _subset(test, cfg["max_test"])
    return measure_each_setting(
        settings, lambda setting: train_and_test(trunk, setting, train, test, cfg, ctx),
        metric="map", key="mAP", percent=False, curve={"mAP": "mAP"}, dataset=ds,
        split=cfg["test_split"], iterations=cfg["iterations"],
        sizes={"n_train": len(train), "n_test": len(test)},
        extra=lambda res, final: {
            "per_class_ap": {c: pct(a) for c, a in zip(res["classes"], final["ap"])},
            "input_side": trunk.INPUT_SIZE})
