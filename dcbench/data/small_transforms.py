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
    """PIL image -> normalised 3x32x32 float tensor, for one recipe.

    cluster / eval: the base view (28 px images padded by 2, others resized and centre-cropped
    to 32); train: base, then RandomResizedCrop(32, scale=(min_scale, 1), ratio=(3/4, 4/3))
    and a horizontal flip; probe: base, then RandomCrop(32, padding=2) and a flip.
    """

    def __init__(self, recipe: str, native: int, mean: tuple[float, ...],
                 std: tuple[float, ...], min_scale: float = 0.08) -> None:
        self.recipe, self.native, self.min_scale = recipe, native, min_scale
        self.mean = np.asarray(mean, dtype=np.float32)
        self.std = np.asarray(std, dtype=np.float32)

    def __repr__(self) -> str:
        return (f"SmallTransform(recipe={self.recipe!r}, native={self.native}, "
                f"min_scale={self.min_scale})")

    def base(self, img: Image.Image) -> Image.Image:
        if self.native == 28 and img.size == (28, 28):
            out = Image.new(img.mode, (32, 32))
            out.paste(img, (2, 2))
            return out
        w, h = img.size
        s = 32 / min(w, h)
        nw, nh = max(32, round(w * s)), max(32, round(h * s))
        img = img.resize((nw, nh), Image.BILINEAR)
        left, top = (nw - 32) // 2, (nh - 32) // 2
        return img.crop((left, top, left + 32, top + 32))

    def crop_box(self, u: list[list[float]]) -> tuple[int, int, int, int]:
        """torchvision's RandomResizedCrop.get_params on a 32x32 image, from uniforms u."""
        area = 32 * 32
        log_lo, log_hi = math.log(3 / 4), math.log(4 / 3)
        for a in range(10):
            target = area * (self.min_scale + (1.0 - self.min_scale) * u[a][0])
            ratio = math.exp(log_lo + (log_hi - log_lo) * u[a][1])
            w = int(round(math.sqrt(target * ratio)))
            h = int(round(math.sqrt(target / ratio)))
            if 0 < w <= 32 and 0 < h <= 32:
                i = int(u[a][2] * (32 - h + 1))
                j = int(u[a][3] * (32 - w + 1))
                return j, i, j + w, i + h
        return 0, 0, 32, 32

    def __call__(self, img: Image.Image) -> torch.Tensor:
        if img.mode not in ("L", "RGB"):
            img = img.convert("RGB")
        img = self.base(img)
        flip = False
        if self.recipe == "train":
            u = torch.rand(11, 4).tolist()
            img = img.resize((32, 32), Image.BILINEAR, box=self.crop_box(u))
            flip = u[10][0] < 0.5
        arr = np.asarray(img, dtype=np.float32) * (1.0 / 255.0)
        if self.recipe == "probe":
            u = torch.rand(3).tolist()
            padded = np.zeros((36, 36) + arr.shape[2:], dtype=np.float32)
            padded[2:34, 2:34] = arr
            i, j = int(u[0] * 5), int(u[1] * 5)
            arr = padded[i:i + 32, j:j + 32]
            flip = u[2] < 0.5
        if flip:
            arr = arr[:, ::-1]
        # (H, W) or (H, W, 3) -> (3, H, W), normalised per channel; gray is repeated to RGB
        chw = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
        out = (chw - self.mean[:, None, None]) / self.std[:, None, None]
        return torch.from_numpy(out)
