"""A labelled set of small grayscale images held in memory as one uint8 array.

Fashion-MNIST and digits are both this: the batch loader (dcbench/data/batch_loader.py) reads
`images` and `targets` directly for whole-batch augmentation; items are (PIL image after
`transform`, label) for everything else.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image


def to_28(images: list[Image.Image]) -> np.ndarray:
    """Grey 28x28 uint8 array of PIL images (bilinear): how digits' 8x8 images join
    Fashion-MNIST's format."""
    return to_gray(images, 28)


def to_gray(images: list[Image.Image], side: int) -> np.ndarray:
    """Grey side x side uint8 array of PIL images (bilinear where the size differs)."""
    def one(im: Image.Image) -> np.ndarray:
        im = im.convert("L")
        return np.asarray(im if im.size == (side, side) else
                          im.resize((side, side), Image.BILINEAR))
    return np.stack([one(im) for im in images])


class GrayImages:
    classes: list[str] = []

    def __init__(self, images: np.ndarray, targets: np.ndarray,
                 transform: Callable | None = None) -> None:
        self.images = images                        # (N, H, W) uint8
        self.targets = targets.astype(np.int64)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, i: int):
        img = Image.fromarray(self.images[i])
        if self.transform is not None:
            img = self.transform(img)
        return img, int(self.targets[i])
