"""What Fast R-CNN reads per image: the image at a drawn scale (optionally flipped), its
proposals and ground truth moved with it, padded into batches.

Scales follow Fast R-CNN: the shorter side is set to one of `sizes` (drawn per image in
training, the single test size otherwise), capped so the longer side stays within
`max_size`. Training drops `difficult` objects (Fast R-CNN's use_diff = False) and flips
half of the images; images without a non-difficult object are skipped in training, as
Fast R-CNN's filter_roidb drops them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from dcbench.data.voc.devkit import VOCDetection

from .common import pad_stack
from .fast_rcnn import to_extent


def image_scale(width: int, height: int, short_side: float, max_size: float) -> float:
    """Fast R-CNN's prep_im_for_blob: shorter side -> short_side, longer side <= max_size."""
    scale = short_side / min(width, height)
    if round(scale * max(width, height)) > max_size:
        scale = max_size / max(width, height)
    return scale


class DetectionInputs(Dataset):
    """Items (image tensor, target dict) for a split of VOCDetection and its proposals."""

    def __init__(self, data: VOCDetection, proposals: dict[str, np.ndarray], classes: list[str],
                 sizes: tuple[float, ...], max_size: float, mean: tuple[float, ...],
                 std: tuple[float, ...], train: bool) -> None:
        missing = [i for i in data.ids if i not in proposals]
        if missing:
            raise ValueError(f"{len(missing)} images have no proposals (first: {missing[0]})")
        self.data, self.proposals, self.train = data, proposals, train
        self.class_index = {c: k for k, c in enumerate(classes)}
        self.sizes, self.max_size = tuple(sizes), max_size
        self.mean = np.asarray(mean, dtype=np.float32)[:, None, None]
        self.std = np.asarray(std, dtype=np.float32)[:, None, None]

    def __len__(self) -> int:
        return len(self.data)

    def usable(self, i: int) -> bool:
        """Has a non-difficult object (what a training image needs)."""
        return any(not o.difficult for o in self.data.annotations[i].objects)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, Any]] | None:
        if self.train and not self.usable(i):
            return None
        img = self.data.image(i)
        if img is None:
            return None
        ann = self.data.annotations[i]
        pick = int(torch.randint(len(self.sizes), ())) if self.train else 0
        flip = self.train and bool(torch.rand(()) < 0.5)
        scale = image_scale(img.width, img.height, self.sizes[pick], self.max_size)
        size = (max(1, round(img.width * scale)), max(1, round(img.height * scale)))
        img = img.resize(size, Image.BILINEAR)
        arr = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) * (1.0 / 255.0)
        objs = [o for o in ann.objects if not (self.train and o.difficult)]
        boxes = to_extent(torch.tensor([o.box for o in objs], dtype=torch.float32)
                          .reshape(-1, 4), scale)
        props = to_extent(torch.from_numpy(self.proposals[self.data.ids[i]]).float()
                          .reshape(-1, 4), scale)
        if flip:
            arr = arr[:, :, ::-1]
            boxes, props = mirror(boxes, size[0]), mirror(props, size[0])
        image = torch.from_numpy(np.ascontiguousarray((arr - self.mean) / self.std))
        target = {"boxes": boxes, "proposals": props, "scale": scale,
                  "labels": torch.tensor([self.class_index[o.name] + 1 for o in objs],
                                         dtype=torch.int64),
                  "shape": (size[1], size[0])}
        return image, target


def mirror(boxes: torch.Tensor, width: int) -> torch.Tensor:
    """Horizontal flip of continuous extents in an image `width` wide."""
    out = boxes.clone()
    out[:, 0], out[:, 2] = width - boxes[:, 2], width - boxes[:, 0]
    return out


def detection_collate(items: list) -> tuple:
    """Images padded with zeros (the mean) to the batch's largest size; targets a list."""
    kept = [b for b in items if b is not None]
    skipped = len(items) - len(kept)
    if not kept:
        return None, None, None, skipped
    images = pad_stack([b[0] for b in kept], 0.0)
    indices = torch.tensor([b[2] for b in kept], dtype=torch.long)
    return images, [b[1] for b in kept], indices, skipped
