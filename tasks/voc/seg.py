"""`voc-seg`: PASCAL VOC semantic segmentation with an FCN built on a pretrained trunk (the
paper's Table 2).

Protocol (FCN's voc-fcn-alexnet, PROTOCOLS.md; DeepCluster did not release its settings): the
trunk's conv layers, fc6 and fc7 as convolutions with the checkpoint's weights, a zero-init
1x1 score layer over the classes + background, fixed bilinear upsampling to the image
(tasks/voc/fcn.py), per-pixel softmax cross-entropy with void (255) ignored. `fc6-8` freezes
every conv layer including its BatchNorm affine parameters; `all` trains everything but the
Sobel filter; in both, conv BN running statistics are never updated (as voc-cls). SGD with
momentum, fixed learning rate, no augmentation, images at full size (padded to a common
size within a batch, the padding void). Train on `train`, measure on `val` (VOC2012 rule).
Metric: mean IoU over the classes + background from one confusion matrix accumulated over
the whole split at the ground truth's own resolution; pixel accuracy and per-class IoU kept
in the record (tasks/voc/metrics.py).

Recipes. `voc`: batch 1, lr 1e-4 on the loss summed over pixels (FCN's unnormalised
softmax loss), momentum 0.9, wd 5e-4, 100,000 iterations (FCN; Zhang et al. use 150k in
three phases). FCN trained on SBD's 8,498 images and measured on seg11valid (736): give a
devkit whose ImageSets/Segmentation lists hold those ids and pass `--set train_split=...
test_split=...`. `fmnist-voc` (under a minute on 2 CPU cores): batch 16, the loss averaged
over labelled pixels, lr 0.02, 300 iterations. Images are scaled by `scale` before the trunk:
1 for real VOC; on fmnist-voc the trunk's input side / 32, because the scenes' items are
drawn at Fashion-MNIST's scale, which alexnet-small reads at 32 px (alexnet and vgg16 see
the scenes 7x larger, as their 224 px crops in voc-cls do). The mIoU is measured `evals`
times; the record holds the final value and the best (the best is read off the reported
split: an optimistic number kept beside the final one, never instead of it).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F

from dcbench.data import get_dataset_spec, make_loader, subset
from dcbench.data.voc import build_voc
from dcbench.errors import DcbenchError
from dcbench.extract import prepare, to_device
from dcbench.models import Trunk
from dcbench.progress import bar

from ..inputs import QUICK_SUBSET_SEED
from ..registry import Measurement, RunContext, register_task
from .cls import draw_order
from .common import VOCTask, freeze_conv, pad_stack, trunk_copy
from .fcn import FCN
from .metrics import confusion_matrix, segmentation_scores

RECIPES: dict[str, dict[str, Any]] = {
    "voc": {"train_split": "train", "test_split": "val", "iterations": 100_000,
            "batch_size": 1, "lr": 1e-4, "loss": "sum", "weight_decay": 5e-4,
            "momentum": 0.9, "scale": 1.0, "evals": 10},
    "fmnist-voc": {"train_split": "train", "test_split": "val", "iterations": 300,
                   "batch_size": 16, "lr": 0.02, "loss": "mean", "weight_decay": 5e-4,
                   "momentum": 0.9, "scale": None, "evals": 2},
}
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
    """The confusion matrix over `data` at the masks' own resolution -> scores; skipped."""
    model.eval()
    hist = np.zeros((n_classes, n_classes), dtype=np.int64)
    skipped = 0
    loader = make_loader(data, TEST_BATCH, workers=ctx.workers, collate=pad_collate)
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
    return segmentation_scores(hist), skipped


def train_and_measure(trunk: Trunk, setting: str, train, test, cfg: dict[str, Any],
                      ctx: RunContext) -> dict[str, Any]:
    """Train an FCN on a copy of the trunk in `setting`; the scores at each evaluation."""
    n_classes = len(train.classes) + 1
    model = FCN(trunk_copy(trunk, setting), n_classes)
    model = prepare(model, ctx.device)
    params = freeze_conv(model, frozen=setting == "fc6-8")
    opt = torch.optim.SGD(params, lr=cfg["lr"], momentum=cfg["momentum"],
                          weight_decay=cfg["weight_decay"])
    iters, batch = cfg["iterations"], cfg["batch_size"]
    order = draw_order(len(train), iters * batch, ctx.seed)
    torch.manual_seed(ctx.seed)
    loader = make_loader(train, batch, sampler=order, workers=ctx.workers, seed=ctx.seed,
                         collate=pad_collate)
    eval_at = sorted({max(1, round(iters * (e + 1) / cfg["evals"])) for e in range(cfg["evals"])})
    history: list[dict[str, Any]] = []
    progress = bar(f"voc-seg {setting}", total=iters, unit="it")
    model.train()
    model.features.eval()
    it, loss_sum, skipped = 0, 0.0, 0
    for images, targets, _, n_skipped in loader:
        skipped += n_skipped
        it += 1
        progress.update(1)
        if images is not None:
            scores = model(to_device(images, ctx.device), train_conv=setting == "all")
            loss = pixel_loss(model.upsample(scores, images.shape[2:]),
                              targets[0].to(ctx.device), cfg["loss"])
            if not torch.isfinite(loss):
                progress.close()
                raise DcbenchError(f"voc-seg {setting}: the loss became {loss.item()} at "
                                   f"iteration {it}; lower --set lr=...")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach())
        if it in eval_at:
            scores_at, skipped_test = measure(model, test, n_classes, ctx)
            history.append({"iteration": it, "loss": loss_sum / it, **scores_at})
            progress.set_postfix(mIoU=f"{100 * scores_at['miou']:.1f}")
            model.train()
            model.features.eval()
    progress.close()
    return {"history": history, "model": model, "skipped_train": skipped,
            "skipped_test": skipped_test,
            "classes": ["background", *train.classes]}


@register_task("voc-seg", settings=("fc6-8", "all"), datasets=("fmnist-voc", "voc2007", "voc2012"))
class VOCSegmentationTask(VOCTask):
    """VOC semantic segmentation mIoU, FCN on FC6-8 (conv frozen incl. BN) or ALL trained."""

    description = ("PASCAL VOC segmentation mIoU (FC6-8 / ALL), FCN-AlexNet protocol; options "
                   "left None take the dataset's recipe (voc or fmnist-voc)")
    recipes = RECIPES
    counts = ("iterations", "batch_size", "evals")
    options = VOCTask.recipe_options(RECIPES)

    def check_options(self, cfg: dict[str, Any]) -> None:
        if cfg["loss"] not in ("sum", "mean"):
            raise DcbenchError(f"voc-seg option loss must be 'sum' (FCN: summed over pixels) "
                               f"or 'mean' (over labelled pixels), got {cfg['loss']!r}")
        if cfg["scale"] is not None and not 0 < float(cfg["scale"]) <= 16:
            raise DcbenchError(f"voc-seg option scale must be in (0, 16], got {cfg['scale']}")

    def run(self, trunk: Trunk, settings: list[str], ctx: RunContext) -> list[Measurement]:
        cfg = self.config(ctx)
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
        out = []
        for setting in settings:
            res = train_and_measure(trunk, setting, train, test, cfg, ctx)
            hist = res["history"]
            best = max(hist, key=lambda h: h["miou"])
            final = hist[-1]
            out.append(Measurement(
                setting=setting, dataset=ds, split=cfg["test_split"], metric="miou",
                value=100.0 * final["miou"], best=100.0 * best["miou"],
                best_epoch=best["iteration"], epochs=cfg["iterations"],
                extra={"per_class_iou": {c: _pct(v) for c, v in zip(res["classes"],
                                                                   final["iou"])},
                       "pixel_acc": round(100.0 * final["pixel_acc"], 3),
                       "curve": [{"iteration": h["iteration"], "miou": 100.0 * h["miou"],
                                  "pixel_acc": 100.0 * h["pixel_acc"], "train_loss": h["loss"]}
                                 for h in hist],
                       "epoch_unit": "iteration", "best_selected_on": cfg["test_split"],
                       "n_train": len(train), "n_test": len(test), "n_classes": len(classes) + 1,
                       "image_scale": scale, "upsampling": "fixed bilinear",
                       "skipped_train": res["skipped_train"],
                       "skipped_test": res["skipped_test"]}))
        return out


def _pct(v: float) -> float | None:
    return None if np.isnan(v) else round(100.0 * float(v), 3)
