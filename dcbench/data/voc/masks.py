"""VOC segmentation masks: read as class indices, and checked against their images.

A mask of the wrong size, or holding an index that is neither a class, background nor void,
would otherwise pass `data validate` and fail mid-training inside the loss ("Target 77 is
out of bounds") or a DataLoader worker; checked up front, it is named in one line.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dcbench.data.image_file import image_size, open_image
from dcbench.errors import DataError

VOID = 255          # the devkit's "ignore" label (object borders, difficult regions)


def read_mask(path: Path) -> np.ndarray:
    """A SegmentationClass PNG as (H, W) uint8 class indices."""
    m = open_image(path, hint="regenerate the mask or re-extract the devkit")
    return np.asarray(m if m.mode in ("P", "L") else m.convert("L"), dtype=np.uint8)


def check_masks(root: Path, ids: list[str], n_classes: int) -> None:
    """Each mask must have its image's size and hold only 0 (background), 1..n_classes and
    255 (void): checked up front, or a bad one fails mid-training inside the loss."""
    valid = np.zeros(256, bool)
    valid[:n_classes + 1] = valid[VOID] = True
    for i in ids:
        path, image = root / "SegmentationClass" / f"{i}.png", root / "JPEGImages" / f"{i}.jpg"
        mask = read_mask(path)
        w, h = image_size(image, hint="re-extract the devkit or rebuild the set")
        if mask.shape != (h, w):
            raise DataError(f"{path} is {mask.shape[1]}x{mask.shape[0]}, its image {image} "
                            f"is {w}x{h}; a mask must have its image's size: fix or "
                            f"regenerate the mask")
        counts = np.bincount(mask.ravel(), minlength=256)
        bad = np.flatnonzero((counts > 0) & ~valid)
        if bad.size:
            n = int(counts[bad[0]])
            raise DataError(f"{path} holds class index {bad[0]} ({n} pixel{'s' * (n > 1)}); "
                            f"valid: 0 (background), 1-{n_classes} (the classes), {VOID} "
                            f"(void): fix or regenerate the mask")
