"""The supervised baseline (the paper's "ImageNet labels" row): the same trunk, recipe and
training loop as DeepCluster, trained on the true labels instead of cluster assignments."""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from dcbench.methods.session import Session
from dcbench.methods.train_epoch import rank_pass, train_epoch


def run_epoch(s: Session, epoch: int) -> dict[str, Any]:
    cfg = s.cfg
    t0 = time.time()
    seeds = s.epoch_seeds(epoch)
    order = np.random.default_rng(seeds["sampler"]).permutation(len(s.train_set))
    net, loader = rank_pass(s, order, seeds["augment"])
    lr = s.set_epoch_lr(epoch)
    train = train_epoch(net, loader, [s.trunk_opt], s.device, epoch, labels=None,
                        desc="train (labels)", amp=cfg["amp"])
    return {"epoch": epoch, "method": "supervised", "clustering": None, "lr": lr,
            "loss": train["loss"],
            "train_acc": train["train_acc"], "nmi_prev": None, "nmi_labels": None,
            "nmi_labels_arithmetic": None, "acc_labels": None, "ari_labels": None,
            "clusters": None, "empty_reseeded": None,
            "skipped_images": train["skipped_images"],
            "images_trained": int(train["images"]),
            "images_per_second": train["images_per_second"],
            "seconds": {"train": train["seconds"], "epoch": time.time() - t0}}
