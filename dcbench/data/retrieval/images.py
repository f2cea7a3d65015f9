"""Items for retrieval feature extraction, prepared as DC's eval_retrieval.py ImageHelper does
(PROTOCOLS.md, Retrieval); oxford_paris.retrieval_images picks them from a set's ground truth."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from dcbench.data.real.image_folder import load_rgb


def _crop(img: Image.Image, box: np.ndarray) -> Image.Image:
    """Crop to a box rounded to pixels and clipped to the image (at least 1 x 1)."""
    w, h = img.size
    x1, y1, x2, y2 = (int(v) for v in np.round(box))
    x1, y1 = min(max(x1, 0), w - 1), min(max(y1, 0), h - 1)
    return img.crop((x1, y1, min(max(x2, x1 + 1), w), min(max(y2, y1 + 1), h)))


class RetrievalImages:
    """Items (image, -1) for feature extraction. As DC's ImageHelper: the image resized
    (bilinear) so its longest side is `max_side` (None: as stored), then, with `boxes`, cropped
    to the box scaled by the same ratio. `crop_first` (the revisited protocol, cirtorch): crop
    to the box, then resize the crop. None for an unreadable image."""

    def __init__(self, paths: list[Path], boxes: np.ndarray | None = None,
                 max_side: int | None = None, transform: Callable | None = None,
                 crop_first: bool = False) -> None:
        self.paths, self.boxes, self.max_side = paths, boxes, max_side
        self.transform, self.crop_first = transform, crop_first

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        img = load_rgb(self.paths[i])
        if img is None:
            return None
        box = None if self.boxes is None else np.asarray(self.boxes[i], dtype=np.float64)
        if box is not None and self.crop_first:
            img, box = _crop(img, box), None
        if self.max_side is not None:
            ratio = self.max_side / max(img.size)
            img = img.resize((int(np.round(img.size[0] * ratio)),
                              int(np.round(img.size[1] * ratio))), Image.BILINEAR)
            box = None if box is None else box * ratio
        if box is not None:
            img = _crop(img, box)
        if self.transform is not None:
            img = self.transform(img)
        return img, -1
