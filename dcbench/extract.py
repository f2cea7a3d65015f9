"""Frozen forward passes: stream a trunk's named taps over a loader, batch by batch.

Shared by the pretraining methods (the features that get clustered) and the tasks (probes,
kNN, clustering); it never holds more than one batch of activations.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from dcbench.models import Trunk
from dcbench.precision import autocast
from dcbench.progress import progress


def to_device(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """Move a batch of images, channels_last (faster convolutions on CPU and GPU)."""
    return x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)


def prepare(trunk: Trunk, device: torch.device) -> Trunk:
    return trunk.to(device).to(memory_format=torch.channels_last)


def iter_taps(trunk: Trunk, loader: DataLoader, taps: Sequence[str], device: torch.device,
              desc: str = "features", *, amp: str) -> Iterator[tuple[np.ndarray, np.ndarray,
                                                                  dict[str, torch.Tensor], int]]:
    """Yield (indices, targets, {tap: float32 activations on `device`}, n_skipped) per batch,
    the trunk in eval mode without gradients; `amp` 'bf16' runs it under bf16 autocast (the
    pretraining's precision, or precision.eval_amp_name for the tasks), cast back to float32."""
    trunk.eval()
    with torch.inference_mode():
        for images, targets, indices, skipped in progress(loader, desc, total=len(loader),
                                                          unit="batch"):
            if images is None:
                yield np.zeros(0, np.int64), np.zeros(0, np.int64), {}, skipped
                continue
            with autocast(device, amp):
                out = trunk.extract(to_device(images, device), taps)
            yield indices.numpy(), targets.numpy(), {k: v.float() for k, v in out.items()}, \
                skipped
