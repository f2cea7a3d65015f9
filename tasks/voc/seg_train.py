"""The training and measurement of `voc-seg` (tasks/voc/seg.py declares the task, its recipes and
its protocol; this module loads torch, that one does not)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from dcbench import distributed, step_meter
from dcbench.data import get_dataset_spec, make_loader, subset
from dcbench.data.voc.devkit import build_voc
from dcbench.errors import DcbenchError
from dcbench.extract import prepare, to_device
from dcbench.models import Trunk
from dcbench.progress import bar

from ..inputs import QUICK_SUBSET_SEED
from ..registry import Measurement, RunContext
from .cls_train import draw_order
from .common import freeze_conv, pad_stack, pct, sgd_step, trunk_copy
from .fcn import FCN
from .metrics import confusion_matrix, segmentation_scores
from .per_setting import measure_each_setting
from .sharding import my_test_rows, summed_count, sync_model, train_loader
from .task import ALL, FC6_8

TEST_BATCH = 16


VOID = 255


class SegmentationInput:
    """Joint transform: the image scaled by `scale` (bilinear) and normalised; the mask
    scaled with it (nearest) for training, left at its own size for measuring."""

    def __init__(self, scale: float, mean: tuple[float, ...], std: tuple[float, ...],
                 scale_mask: bool) -> None:
        self.scale, self.scale_mask = scale, scale_mask
        self.mean = np.asarray(mean, dtype=np.float32)[:, None, None]
        self.std = np.asarray(std, dtype=np.float32)[:, None, None]

    def __call__(self, img: Image.Image, mask: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        if mask.shape != (img.height, img.width):
            raise DcbenchError(f"a mask of {mask.shape[1]}x{mask.shape[0]} belongs to an image "
                               f"of {img.width}x{img.height}; SegmentationClass PNGs must match "
                               f"their JPEGImages in size")
        size = (max(1, round(img.width * self.scale)), max(1, round(img.height * self.scale)))
        if size != img.size:
            img = img.resize(size, Image.BILINEAR)
            if self.scale_mask:
                mask = np.asarray(Image.fromarray(mask).resize(size, Image.NEAREST))
        arr = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) * (1.0 / 255.0)
        return (torch.from_numpy(np.ascontiguousarray((arr - self.mean) / self.std)),
                torch.from_numpy(np.array(mask, dtype=np.uint8)))


def pad_collate(items: list) -> tuple:
    """Images padded with zeros (the mean) and masks with void to the batch's largest size;
    targets are (masks, [(image h, w, mask h, w)])."""
    kept = [b for b in items if b is not None]
    skipped = len(items) - len(kept)
    if not kept:
        return None, None, None, skipped
    images = pad_stack([b[0] for b in kept], 0.0)
    masks = pad_stack([b[1] for b in kept], VOID, torch.long)
    sizes = [(img.shape[1], img.shape[2], mask.shape[0], mask.shape[1])
             for img, mask, _ in kept]
    indices = torch.tensor([b[2] for b in kept], dtype=torch.long)
    return images, (masks, sizes), indices, skipped


def pixel_loss(logits: torch.Tensor, masks: torch.Tensor, reduction: str) -> torch.Tensor:
    """Cross-entropy over labelled pixels: their mean, or (FCN) their sum per image."""
    if reduction == "mean":
        if not (masks != VOID).any():
            return logits.sum() * 0.0           # an all-void batch: no signal, no NaN
        return F.cross_entropy(logits, masks, ignore_index=VOID)
    return F.cross_entropy(logits, masks, ignore_index=VOID, reduction="sum") / len(masks)


def measure(model: FCN, data, n_classes: int, ctx: RunContext) -> tuple[dict[str, Any], int]:
    """The confusion matrix over `data` at the masks' own resolution -> scores; skipped.
    Under torchrun each rank measures every W-th batch and the matrices are summed."""
    model.eval()
    hist = np.zeros((n_classes, n_classes), dtype=np.int64)
    skipped = 0
    loader = make_loader(data, TEST_BATCH, sampler=my_test_rows(len(data), TEST_BATCH),
                         workers=ctx.workers, collate=pad_collate)
    with torch.inference_mode():
        for images, targets, _, n_skipped in loader:
            skipped += n_skipped
            if images is None:
                continue
            masks, sizes = targets
            scores = model.upsample(model(to_device(images, ctx.device)), images.shape[2:])
            for j, (ih, iw, mh, mw) in enumerate(sizes):
                s = scores[j:j + 1, :, :ih, :iw]
                if (ih, iw) != (mh, mw):
                    s = F.interpolate(s, size=(mh, mw), mode="bilinear", align_corners=False)
                pred = s[0].argmax(0).cpu().numpy()
                hist += confusion_matrix(masks[j, :mh, :mw].numpy(), pred, n_classes)
    if distributed.is_distributed():
        both = distributed.all_reduce_sum(torch.from_numpy(
            np.append(hist.ravel(), skipped)))
        hist, skipped = both[:-1].numpy().reshape(hist.shape), int(both[-1])
    return segmentation_scores(hist), skipped


def train_and_measure(trunk: Trunk, setting: str, train, test, cfg: dict[str, Any],
                      ctx: RunContext) -> dict[str, Any]:
    """Train an FCN on a copy of the trunk in `setting`; the scores at each evaluation."""
    n_classes = len(train.classes) + 1
    model = FCN(trunk_copy(trunk, setting), n_classes)
    model = prepare(model, ctx.device)
    sync_model(model)
    params = freeze_conv(model, frozen=setting == FC6_8)
    opt = torch.optim.SGD(params, lr=cfg["lr"], momentum=cfg["momentum"],
                          weight_decay=cfg["weight_decay"])
    iters, batch = cfg["iterations"], cfg["batch_size"]
    loader = train_loader(train, draw_order(len(train), iters * batch, ctx.seed), batch, ctx,
                          collate=pad_collate)
    eval_at = sorted({max(1, round(iters * (e + 1) / cfg["evals"])) for e in range(cfg["evals"])})
    history: list[dict[str, Any]] = []
    progress = bar(f"voc-seg {setting}", total=iters, unit="it")
    step_meter.begin(f"voc-seg {setting} training", iters)
    model.train()
    model.features.eval()
    it, loss_sum, skipped = 0, 0.0, 0
    for images, targets, _, n_skipped in loader:
        skipped += n_skipped
        it += 1
        progress.update(1)
        loss = None
        if images is not None:
            scores = model(to_device(images, ctx.device), train_conv=setting == ALL)
            loss = pixel_loss(model.upsample(scores, images.shape[2:]),
                              targets[0].to(ctx.device), cfg["loss"])
        step = sgd_step(opt, loss, 0 if images is None else len(images), "voc-seg", setting,
                        it, progress)
        loss_sum += step or 0.0
        if it in eval_at:
            scores_at, skipped_test = measure(model, test, n_classes, ctx)
            history.append({"iteration": it, "loss": loss_sum / it, **scores_at})
            progress.set_postfix(mIoU=f"{100 * scores_at['miou']:.1f}")
            model.train()
            model.features.eval()
    progress.close()
    skipped = summed_count(skipped)
    return {"history": history, "model": model, "skipped_train": skipped,
            "skipped_test": skipped_test,
            "classes": ["background", *train.classes]}


def run_task(trunk: Trunk, settings: list[str], cfg: dict[str, Any], ctx: RunContext
             ) -> list[Measurement]:
    """`VOCSegmentationTask.run` with its checked config:
    the FCN per setting, the test mIoU `evals` times."""
    ds = cfg["dataset"]
    spec = get_dataset_spec(ds)
    scale = float(cfg["scale"] or trunk.INPUT_SIZE / 32)
    train = build_voc(ds, "seg", cfg["train_split"], None, data_root=ctx.data_root)
    test = build_voc(ds, "seg", cfg["test_split"], None, data_root=ctx.data_root)
    if train.classes != test.classes:
        raise DcbenchError(f"{ds}: {cfg['train_split']} and {cfg['test_split']} name "
                           f"different classes ({train.classes} vs {test.classes})")
    train.transform = SegmentationInput(scale, spec.mean, spec.std, scale_mask=True)
    test.transform = SegmentationInput(scale, spec.mean, spec.std, scale_mask=False)
    classes = train.classes
    train = subset(train, cfg["max_train"], QUICK_SUBSET_SEED)
    test = subset(test, cfg["max_test"], QUICK_SUBSET_SEED)
    return measure_each_setting(
        settings, lambda setting: train_and_measure(trunk, setting, train, test, cfg, ctx),
        metric="miou", key="miou", percent=True,
        curve={"miou": "miou", "pixel_acc": "pixel_acc"}, dataset=ds,
        split=cfg["test_split"], iterations=cfg["iterations"],
        sizes={"n_train": len(train), "n_test": len(test), "n_classes": len(classes) + 1},
        extra=lambda res, final: {
            "per_class_iou": {c: pct(v) for c, v in zip(res["classes"], final["iou"])},
            "pixel_acc": round(100.0 * final["pixel_acc"], 3), "image_scale": scale,
            "upsampling": "fixed bilinear"})
