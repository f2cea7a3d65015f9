"""The training and measurement of `voc-det` (tasks/voc/det.py declares the task, its recipes and
its protocol; this module loads torch, that one does not)."""

from __future__ import annotations

import copy
from functools import partial
from typing import Any

import numpy as np
import torch

from dcbench import distributed, step_meter
from dcbench.data import get_dataset_spec, make_loader, subset
from dcbench.data.voc.devkit import VOC_YEARS, build_voc
from dcbench.data.voc.proposals import proposals_for
from dcbench.errors import DcbenchError
from dcbench.extract import prepare, to_device
from dcbench.models import Trunk
from dcbench.progress import bar

from ..inputs import QUICK_SUBSET_SEED
from ..registry import Measurement, RunContext
from .cls_train import draw_order
from .common import pct, sgd_step, trunk_copy
from .det_inputs import DetectionInputs, detection_collate
from .fast_rcnn import FastRCNN, from_extent, trainable
from .metrics import detection_ap, mean_ap
from .per_setting import measure_each_setting
from .sharding import my_test_rows, summed_count, sync_model, train_loader
from .task import ALL, EMBEDDED

TEST_BATCH = 8


def param_groups(params: list[torch.nn.Parameter], model: torch.nn.Module, lr: float,
                 weight_decay: float) -> list[dict[str, Any]]:
    """Caffe's convention in Fast R-CNN's prototxts: biases at 2x lr, no weight decay."""
    bias_ids = {id(p) for n, p in model.named_parameters() if n.endswith(".bias")}
    weights = [p for p in params if id(p) not in bias_ids]
    biases = [p for p in params if id(p) in bias_ids]
    return [{"params": weights, "lr": lr, "weight_decay": weight_decay, "lr_mult": 1.0},
            {"params": biases, "lr": 2 * lr, "weight_decay": 0.0, "lr_mult": 2.0}]


def detect(model: FastRCNN, data: DetectionInputs, ctx: RunContext) -> tuple[list, int]:
    """Per test image: (boxes in the VOC file's 1-based coordinates, labels 0-based, scores);
    how many could not be read. Under torchrun each rank detects on every W-th batch and
    every rank ends with all of them."""
    model.eval()
    out: list[Any] = [None] * len(data)
    skipped = 0
    loader = make_loader(data, TEST_BATCH, sampler=my_test_rows(len(data), TEST_BATCH),
                         workers=ctx.workers, collate=detection_collate)
    with torch.inference_mode():
        for images, targets, indices, n_skipped in loader:
            skipped += n_skipped
            if images is None:
                continue
            found, _ = model(to_device(images, ctx.device),
                             [t["proposals"].to(ctx.device) for t in targets],
                             [t["shape"] for t in targets])
            for i, t, f in zip(indices.tolist(), targets, found):
                out[i] = (from_extent(f["boxes"].cpu(), t["scale"]).numpy(),
                          f["labels"].cpu().numpy() - 1, f["scores"].cpu().numpy())
    if distributed.is_distributed():
        parts = distributed.all_gather_object(
            ({i: f for i, f in enumerate(out) if f is not None}, skipped))
        for part, _ in parts:
            for i, f in part.items():
                out[i] = f
        skipped = sum(n for _, n in parts)
    return out, skipped


def score(found: list, data: DetectionInputs, n_classes: int, use_07: bool) -> np.ndarray:
    """Per-class AP over the images that were read (VOC devkit rules)."""
    anns = [data.data.annotations[i] for i in range(len(data))]
    aps = np.full(n_classes, np.nan)
    names = list(data.class_index)
    for c, name in enumerate(names):
        gt_boxes, gt_hard, det_img, det_score, det_box = [], [], [], [], []
        for i, (ann, f) in enumerate(zip(anns, found)):
            objs = [o for o in ann.objects if o.name == name]
            gt_boxes.append(np.array([o.box for o in objs], dtype=np.float64).reshape(-1, 4))
            gt_hard.append(np.array([o.difficult for o in objs], dtype=bool))
            if f is not None:
                keep = f[1] == c
                det_img.append(np.full(int(keep.sum()), i))
                det_score.append(f[2][keep])
                det_box.append(f[0][keep])
        seen = [f is not None for f in found]
        gt_boxes = [b if s else b[:0] for b, s in zip(gt_boxes, seen)]   # unread: not scored
        gt_hard = [h if s else h[:0] for h, s in zip(gt_hard, seen)]
        aps[c] = detection_ap(np.concatenate(det_img).astype(np.int64) if det_img else
                              np.zeros(0, np.int64),
                              np.concatenate(det_score) if det_score else np.zeros(0),
                              np.concatenate(det_box) if det_box else np.zeros((0, 4)),
                              gt_boxes, gt_hard, use_07)
    return aps


def train_and_test(trunk: Trunk, setting: str, train: DetectionInputs, test: DetectionInputs,
                   cfg: dict[str, Any], ctx: RunContext, use_07: bool) -> dict[str, Any]:
    """Train Fast R-CNN on a copy of the trunk in `setting`; the test AP at each evaluation."""
    n_classes = len(train.class_index)
    model = prepare(FastRCNN(trunk_copy(trunk, setting), n_classes, cfg["rois_per_image"]),
                    ctx.device)
    sync_model(model)
    params = trainable(model, trunk.ARCH, setting)
    groups = param_groups(params, model, cfg["lr"], cfg["weight_decay"])
    opt = torch.optim.SGD(groups, lr=cfg["lr"], momentum=cfg["momentum"])
    iters, batch = cfg["iterations"], cfg["images_per_batch"]
    usable = [i for i in range(len(train)) if train.usable(i)]
    if not usable:
        raise DcbenchError(f"{cfg['dataset']} {cfg['train_split']}: no image has a "
                           f"non-difficult object to train on")
    order = [usable[k] for k in draw_order(len(usable), iters * batch, ctx.seed)]
    loader = train_loader(train, order, batch, ctx, collate=detection_collate)
    eval_at = sorted({max(1, round(iters * (e + 1) / cfg["evals"])) for e in range(cfg["evals"])})
    history: list[dict[str, Any]] = []
    progress = bar(f"voc-det {setting}", total=iters, unit="it")
    step_meter.begin(f"voc-det {setting} training", iters)
    model.train()
    model.features.eval()
    it, loss_sum, skipped, skipped_test = 0, 0.0, 0, 0
    for images, targets, _, n_skipped in loader:
        skipped += n_skipped
        it += 1
        progress.update(1)
        for g in opt.param_groups:
            g["lr"] = cfg["lr"] * g["lr_mult"] * 0.1 ** ((it - 1) // cfg["lr_step"])
        loss = None
        if images is not None:
            dev = [{"boxes": t["boxes"].to(ctx.device), "labels": t["labels"].to(ctx.device)}
                   for t in targets]
            _, losses = model(to_device(images, ctx.device),
                              [t["proposals"].to(ctx.device) for t in targets],
                              [t["shape"] for t in targets], dev, train_conv=setting == ALL)
            loss = losses["loss_classifier"] + losses["loss_box_reg"]
        step = sgd_step(opt, loss, 0 if images is None else len(targets), "voc-det", setting,
                        it, progress)
        loss_sum += step or 0.0
        if it in eval_at:
            found, skipped_test = detect(model, test, ctx)
            aps = score(found, test, n_classes, use_07)
            history.append({"iteration": it, "mAP": 100.0 * mean_ap(aps), "ap": aps,
                            "loss": loss_sum / it})
            progress.set_postfix(mAP=f"{history[-1]['mAP']:.1f}")
            model.train()
            model.features.eval()
    progress.close()
    skipped = summed_count(skipped)
    return {"history": history, "model": model, "skipped_train": skipped,
            "skipped_test": skipped_test, "n_train_usable": len(usable)}


def restrict(data, max_images: int | None):
    """The same seeded subset as the other tasks' `subset`, kept as a VOCDetection (the
    detection inputs read `ids` and `annotations` by position)."""
    sub = subset(data, max_images, QUICK_SUBSET_SEED)
    if sub is data:
        return data
    out = copy.copy(data)
    out.ids = [data.ids[i] for i in sub.indices]
    out.annotations = [data.annotations[i] for i in sub.indices]
    return out


def run_task(trunk: Trunk, settings: list[str], cfg: dict[str, Any], ctx: RunContext
             ) -> list[Measurement]:
    """`VOCDetectionTask.run` with its checked config:
    proposals, the detection inputs, Fast R-CNN per setting, mAP@0.5."""
    ds = cfg["dataset"]
    spec = get_dataset_spec(ds)
    factor = float(cfg["size_factor"] or trunk.INPUT_SIZE / 32)
    splits = {}
    for role in ("train", "test"):
        data = build_voc(ds, "det", cfg[f"{role}_split"], None, data_root=ctx.data_root)
        splits[role] = restrict(data, cfg[f"max_{role}"])
    if splits["train"].classes != splits["test"].classes:
        raise DcbenchError(f"{ds}: {cfg['train_split']} and {cfg['test_split']} name "
                           f"different classes")
    classes = list(splits["train"].classes)
    inputs, info = {}, {}
    for role, data in splits.items():
        sizes = [(a.width, a.height) for a in data.annotations]
        props, info[role] = distributed.main_first(partial(   # rank 0 fills the cache
            proposals_for, data.root, cfg[f"{role}_split"], data.ids, sizes,
            cfg["proposals"], set_name=ds, year=VOC_YEARS[ds]))
        train = role == "train"
        inputs[role] = DetectionInputs(
            data, props, classes,
            tuple(s * factor for s in cfg["train_sizes"]) if train
            else (cfg["test_size"] * factor,),
            cfg["train_max_size" if train else "test_max_size"] * factor,
            spec.mean, spec.std, train)
    use_07 = ds in EMBEDDED or ds == "voc2007"
    return measure_each_setting(
        settings, lambda setting: train_and_test(trunk, setting, inputs["train"],
                                                 inputs["test"], cfg, ctx, use_07),
        metric="map", key="mAP", percent=False, curve={"mAP": "mAP"}, dataset=ds,
        split=cfg["test_split"], iterations=cfg["iterations"],
        sizes={"n_train": len(splits["train"]), "n_test": len(splits["test"])},
        extra=lambda res, final: {
            "per_class_ap": {c: pct(a) for c, a in zip(classes, final["ap"])},
            "ap_rule": "11-point (VOC2007)" if use_07 else "area (VOC2010+)",
            "proposals": info, "n_train_usable": res["n_train_usable"],
            "size_factor": factor})
