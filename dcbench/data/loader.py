"""DataLoaders that keep each image's dataset index and skip unreadable images.

Every batch is (images, targets, indices, n_skipped): indices let features land in the right
row whatever the order, and images that could not be decoded (a dataset item of None) are
dropped from the batch and counted instead of killing a run.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, Subset

if TYPE_CHECKING:
    from dcbench.data.batch_loader import InMemoryLoader


class Indexed(Dataset):
    """Wrap a dataset so that items become (image, target, index), or None if unreadable."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        item = self.dataset[i]
        if item is None:
            return None
        return item[0], item[1], i


def collate_targets(targets: list):
    """Class indices -> a long tensor; label vectors (VOC's multi-labels) -> stacked; anything
    else (annotations with boxes) stays a list."""
    if isinstance(targets[0], torch.Tensor):
        return torch.stack(targets)
    if isinstance(targets[0], (int, np.integer)):
        return torch.tensor(targets, dtype=torch.long)
    return list(targets)


def collate_skipping(batch: list):
    kept = [b for b in batch if b is not None]
    skipped = len(batch) - len(kept)
    if not kept:
        return None, None, None, skipped
    images = torch.stack([b[0] for b in kept])
    targets = collate_targets([b[1] for b in kept])
    indices = torch.tensor([b[2] for b in kept], dtype=torch.long)
    return images, targets, indices, skipped


def default_workers() -> int:
    """Leave the compute threads a core: on 2 cores one worker decodes while one computes."""
    return max(0, min(8, (os.cpu_count() or 1) - 1))


def make_loader(dataset: Dataset, batch_size: int, *,
                sampler: Sampler | Sequence[int] | None = None, shuffle: bool = False,
                workers: int | None = None, drop_last: bool = False,
                seed: int = 0, collate=None) -> DataLoader | InMemoryLoader:
    """A DataLoader over Indexed(dataset) with the skipping collate; seeded when shuffling.
    A dataset held in memory as decoded images (Fashion-MNIST) gets the in-memory batch
    loader instead (dcbench/data/batch_loader.py): same batches, no worker processes.
    `collate` replaces the skipping collate (images of different sizes: VOC segmentation);
    it gets the (image, target, index) items, None for unreadable ones."""
    from dcbench.data.batch_loader import InMemoryLoader, in_memory_view

    view = in_memory_view(dataset)
    if view is not None and collate is None and os.environ.get("DCBENCH_PER_IMAGE_LOADER") != "1":
        return InMemoryLoader(view, len(dataset), batch_size, sampler, shuffle, drop_last, seed)
    workers = default_workers() if workers is None else workers
    generator = torch.Generator()
    generator.manual_seed(seed)
    return DataLoader(
        Indexed(dataset), batch_size=batch_size, sampler=sampler,
        shuffle=shuffle if sampler is None else False, num_workers=workers,
        collate_fn=collate or collate_skipping, drop_last=drop_last, generator=generator,
        pin_memory=torch.cuda.is_available(), persistent_workers=False,
        worker_init_fn=_seed_worker if workers else None,
    )


def _seed_worker(worker_id: int) -> None:
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    import random
    random.seed(seed)


def subset(dataset: Dataset, max_images: int | None, seed: int) -> Dataset:
    """A seeded random subset of at most `max_images` images, kept in dataset order."""
    n = len(dataset)
    if max_images is None or max_images >= n:
        return dataset
    rng = np.random.default_rng(seed)
    keep = np.sort(rng.choice(n, size=max_images, replace=False))
    sub = Subset(dataset, keep.tolist())
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        sub.targets = [int(targets[i]) for i in keep]   # type: ignore[attr-defined]
    sub.classes = getattr(dataset, "classes", [])      # type: ignore[attr-defined]
    return sub


def targets_of(dataset: Dataset) -> np.ndarray | None:
    """The labels of every item as an int array (-1 = unlabelled), or None if unknown."""
    t = getattr(dataset, "targets", None)
    if t is None:
        return None
    arr = np.asarray(t, dtype=np.int64)
    return None if (arr < 0).all() else arr
