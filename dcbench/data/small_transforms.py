"""The 'small' (32 px) recipes of transforms.py, written for speed.

torchvision's per-image pipeline (Pad, RandomResizedCrop, flip, ToTensor, Normalize) costs
about 0.6 ms per 28-px image on this machine, as much as the convnet's forward pass: for
Fashion-MNIST the data pipeline, not the model, bounded the clustering pass. These recipes do
the same operations with one PIL resize (crop box + bilinear resize in one C call) and numpy
(bench/bench_small_transforms.py measures both). Randomness comes from torch's generator,
as in torchvision, so seeding and DataLoader worker seeding behave the same.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image


class SmallTransform:
    """PIL image -> normalised 3 x side x side float tensor, for one recipe (side 32 unless a
    trunk takes another: JULE's nets take 16, 28 and 128 px).

    cluster / eval: the base view (at side 32, 28 px images padded by 2; images already at
    the side as they are; others resized and centre-cropped to the side); train: base, then
    RandomResizedCrop(side, scale=(min_scale, 1), ratio=(3/4, 4/3)) and a horizontal flip;
    probe: base, then RandomCrop(side, padding=2) and a flip.
    """

    def __init__(self, recipe: str, native: int, mean: tuple[float, ...],
                 std: tuple[float, ...], min_scale: float = 0.08, side: int = 32) -> None:
        self.recipe, self.native, self.min_scale, self.side = recipe, native, min_scale, side
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)

    def __repr__(self) -> str:
        return (f"SmallTransform(recipe={self.recipe!r}, native={self.native}, "
                f"min_scale={self.min_scale}, side={self.side})")

    def base(self, img: Image.Image) -> Image.Image:
        side = self.side
        if side == 32 and self.native == 28 and img.size == (28, 28):
            out = Image.new(img.mode, (32, 32))
            out.paste(img, (2, 2))
            return out
        if img.size == (side, side):
            return img
        w, h = img.size
        s = side / min(w, h)
        nw, nh = max(side, round(w * s)), max(side, round(h * s))
        img = img.resize((nw, nh), Image.BILINEAR)
        left, top = (nw - side) // 2, (nh - side) // 2
        return img.crop((left, top, left + side, top + side))

    def crop_box(self, u: list[list[float]]) -> tuple[int, int, int, int]:
        """torchvision's RandomResizedCrop.get_params on a side x side image, from uniforms u."""
        side = self.side
        area = side * side
        log_lo, log_hi = math.log(3 / 4), math.log(4 / 3)
        for a in range(10):
            target = area * (self.min_scale + (1.0 - self.min_scale) * u[a][0])
            ratio = math.exp(log_lo + (log_hi - log_lo) * u[a][1])
            w = int(round(math.sqrt(target * ratio)))
            h = int(round(math.sqrt(target / ratio)))
            if 0 < w <= side and 0 < h <= side:
                i = int(u[a][2] * (side - h + 1))
                j = int(u[a][3] * (side - w + 1))
                return j, i, j + w, i + h
        return 0, 0, side, side

    def __call__(self, img: Image.Image) -> torch.Tensor:
        if img.mode not in ("L", "RGB"):
            img = img.convert("RGB")
        img = self.base(img)
        flip = False
        if self.recipe == "train":
            u = torch.rand(11, 4).tolist()
            img = img.resize((self.side, self.side), Image.BILINEAR, box=self.crop_box(u))
            flip = u[10][0] < 0.5
        arr = np.asarray(img, dtype=np.float32) * (1.0 / 255.0)
        if self.recipe == "probe":
            u = torch.rand(3).tolist()
            side = self.side
            padded = np.zeros((side + 4, side + 4) + arr.shape[2:], dtype=np.float32)
            padded[2:side + 2, 2:side + 2] = arr
            i, j = int(u[0] * 5), int(u[1] * 5)
            arr = padded[i:i + side, j:j + side]
            flip = u[2] < 0.5
        if flip:
            arr = arr[:, ::-1]
        # (H, W) or (H, W, 3) -> (3, H, W), normalised per channel; gray is repeated to RGB
        chw = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        out = (chw - self.mean[:, None, None]) / self.std[:, None, None]
        return torch.from_numpy(out)
