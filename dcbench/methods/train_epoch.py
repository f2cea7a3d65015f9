"""One pass of SGD on (pseudo-)labels and the per-rank loader it reads, shared by DeepCluster
and the supervised baseline."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from dcbench import distributed as dist
from dcbench import step_meter
from dcbench.data import make_loader
from dcbench.errors import DcbenchError
from dcbench.extract import to_device
from dcbench.faults import fault_active, fault_point
from dcbench.precision import autocast
from dcbench.progress import bar

if TYPE_CHECKING:
    from dcbench.methods.session import Session


def rank_pass(s: Session, order: np.ndarray, augment_seed: int) -> tuple[nn.Module, DataLoader]:
    """The model to train (DDP-wrapped under torchrun) and a loader over this rank's share of
    an epoch's image `order`: cut to a multiple of the world size, every world_size-th image
    from this rank, batch_size / world_size per rank; dropout and augmentation are seeded
    with `augment_seed` * 1009 + rank, so they differ per rank and replay on resume."""
    w = dist.world_size()
    mine = order[: len(order) // w * w][dist.rank()::w]
    augment = augment_seed * 1009 + dist.rank()
    torch.manual_seed(augment)
    loader = make_loader(s.train_set, max(1, s.cfg["batch_size"] // w), sampler=mine.tolist(),
                         workers=s.cfg["workers"], seed=augment)
    net = (DistributedDataParallel(s.model, device_ids=[s.device] if s.device.type == "cuda"
                                   else None) if dist.is_distributed() else s.model)
    return net, loader


def train_epoch(model: nn.Module, loader: DataLoader, optimizers: Sequence[torch.optim.Optimizer],
                device: torch.device, epoch: int, labels: torch.Tensor | None = None,
                desc: str = "train", *, amp: str) -> dict[str, float]:
    """Train `model` (possibly DDP-wrapped) for one pass of `loader`.

    `labels[i]` is the target of dataset index i (pseudo-labels); None uses the dataset's own
    targets; `amp` is the run's precision (dcbench.precision). A non-finite loss stops the
    run with a clear error before any optimizer step is taken with it, so the last checkpoint
    on disk stays the last good one.
    """
    model.train()
    criterion = nn.CrossEntropyLoss()
    loss_sum = torch.zeros((), dtype=torch.float64)
    correct = torch.zeros((), dtype=torch.float64)
    seen = torch.zeros((), dtype=torch.float64)
    skipped = 0
    start = time.time()
    progress = bar(f"{desc} epoch {epoch}", total=len(loader), unit="batch")
    step_meter.begin(f"{desc} pass", len(loader), "batch")
    for step, (images, targets, indices, n_skipped) in enumerate(loader):
        skipped += n_skipped
        progress.update(1)
        if step == len(loader) // 2:
            fault_point("mid-train", epoch)
        if images is None:
            continue
        target = (labels[indices] if labels is not None else targets).to(device)
        with autocast(device, amp):
            output = model(to_device(images, device))
        loss = criterion(output.float(), target)
        if fault_active("nan-loss", epoch):
            loss = loss * float("nan")
        if not torch.isfinite(loss):
            progress.close()
            raise DcbenchError(f"the loss became {loss.item()} at epoch {epoch}, batch {step}; "
                               f"stopped, the last good checkpoint is kept; lower --lr or "
                               f"check the data")
        for opt in optimizers:
            opt.zero_grad(set_to_none=True)
        loss.backward()
        for opt in optimizers:
            opt.step()
        n = images.shape[0]
        step_meter.step(n, loss.detach())
        loss_sum += loss.detach().double().cpu() * n
        correct += (output.detach().argmax(1) == target).sum().double().cpu()
        seen += n
        if step % 20 == 0:
            progress.set_postfix(loss=f"{(loss_sum / seen.clamp(min=1)).item():.3f}")
    progress.close()
    totals = dist.all_reduce_sum(torch.stack([loss_sum, correct, seen,
                                              torch.tensor(float(skipped), dtype=torch.float64)]))
    seconds = time.time() - start
    images_seen = float(totals[2])
    return {"loss": float(totals[0] / max(images_seen, 1.0)),
            "train_acc": float(100.0 * totals[1] / max(images_seen, 1.0)),
            "images": images_seen, "skipped_images": int(totals[3]),
            "seconds": seconds, "images_per_second": images_seen / max(seconds, 1e-9)}
