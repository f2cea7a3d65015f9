"""The in-memory fast path of `make_loader`: for a dataset held as decoded uint8 images
(Fashion-MNIST), whole batches are sliced from memory and augmented at once, in the main
process, with no worker processes and no per-image PIL calls.

Per-image loading costs a worker process that competes with the compute threads for the two
cores, and one PIL call per image per recipe; on a batch the same recipes are a few tensor
operations (bench/bench_train_loop.py measures both). The recipes are SmallTransform's
(dcbench/data/small_transforms.py), with the same crop parameters drawn from the same
distribution; the resampling is torchvision's `roi_align` (bilinear, 2x2 samples per output
pixel) rather than PIL's filter, so pixels differ slightly between the two paths, never the
recipe. Randomness comes from the loader's own seeded generator: a run is reproducible, and
iterating again draws new crops and (when shuffling) a new order, as a DataLoader does.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, Subset

from dcbench.data.small_transforms import SmallTransform


def in_memory_view(dataset: Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray,
                                               SmallTransform] | None:
    """(uint8 images (M, 28, 28), targets (M,), row of each dataset index, transform) for a
    dataset (or Subset of one) held in memory with a 28 px -> 32 px SmallTransform; else None."""
    rows = None
    base = dataset
    while isinstance(base, Subset):
        idx = np.asarray(base.indices, dtype=np.int64)
        rows = idx if rows is None else idx[rows]
        base = base.dataset
    images = getattr(base, "images", None)
    transform = getattr(base, "transform", None)
    if not (isinstance(images, np.ndarray) and images.dtype == np.uint8 and images.ndim == 3
            and images.shape[1:] == (28, 28) and isinstance(transform, SmallTransform)
            and transform.side == 32):
        return None
    targets = np.asarray(base.targets, dtype=np.int64)
    if rows is None:
        rows = np.arange(len(images))
    return images, targets, rows, transform


def crop_boxes(t: SmallTransform, n: int, gen: torch.Generator) -> torch.Tensor:
    """RandomResizedCrop boxes (x1, y1, x2, y2) on the 32 px base, as SmallTransform draws
    them (torchvision's get_params)."""
    u = torch.rand(n, 11, 4, generator=gen).tolist()
    return torch.tensor([t.crop_box(ui) for ui in u], dtype=torch.float32)


def augment(t: SmallTransform, raw: np.ndarray, gen: torch.Generator) -> torch.Tensor:
    """A batch of uint8 (B, 28, 28) -> normalised (B, 3, 32, 32) float32, recipe of `t`."""
    from torchvision.ops import roi_align

    b = len(raw)
    x = torch.zeros(b, 1, 32, 32)
    x[:, 0, 2:30, 2:30] = torch.from_numpy(raw).float().mul_(1.0 / 255.0)
    flip = None
    if t.recipe == "train":
        boxes = torch.cat([torch.arange(b, dtype=torch.float32)[:, None],
                           crop_boxes(t, b, gen)], dim=1)
        x = roi_align(x, boxes, output_size=32, spatial_scale=1.0, sampling_ratio=2,
                      aligned=True)
        flip = torch.rand(b, generator=gen) < 0.5
    elif t.recipe == "probe":
        padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
        offsets = torch.randint(0, 5, (b, 2), generator=gen).tolist()
        x = torch.stack([padded[k, :, i:i + 32, j:j + 32] for k, (i, j) in enumerate(offsets)])
        flip = torch.rand(b, generator=gen) < 0.5
    if flip is not None and flip.any():
        x[flip] = x[flip].flip(-1)
    mean, std = float(t.mean[0]), float(t.std[0])
    return x.sub_(mean).div_(std).expand(b, 3, 32, 32).contiguous()


class InMemoryLoader:
    """Batches (images, targets, indices, 0) like make_loader's DataLoader, from memory."""

    def __init__(self, view: tuple, n: int, batch_size: int,
                 sampler: Sampler | Sequence[int] | None, shuffle: bool, drop_last: bool,
                 seed: int) -> None:
        self.images, self.targets, self.rows, self.transform = view
        self.n, self.batch_size, self.sampler = n, batch_size, sampler
        self.shuffle, self.drop_last = shuffle, drop_last
        self.gen = torch.Generator()
        self.gen.manual_seed(seed)

    def _order(self) -> np.ndarray:
        if self.sampler is not None:
            return np.fromiter(iter(self.sampler), dtype=np.int64)
        if self.shuffle:
            return torch.randperm(self.n, generator=self.gen).numpy()
        return np.arange(self.n)

    def __len__(self) -> int:
        total = len(self.sampler) if self.sampler is not None else self.n
        return total // self.batch_size if self.drop_last else -(-total // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]]:
        order = self._order()
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            if self.drop_last and len(idx) < self.batch_size:
                return
            rows = self.rows[idx]
            yield (augment(self.transform, self.images[rows], self.gen),
                   torch.from_numpy(self.targets[rows]), torch.from_numpy(idx), 0)
