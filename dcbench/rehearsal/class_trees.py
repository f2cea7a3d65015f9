"""ImageNet, Places205 and YFCC1M trees in the layouts they are distributed in, with images
of their real sizes, for rehearsing the 224-px recipes: ImageNet's train/<wnid>/ folders
with 1,000 classes and its flat val/ labelled by torchvision's meta.bin (what the devkit
parses into), Places205's images256/ tree (256 x 256) with its CSV splits, and YFCC1M's
image list. An image is a Fashion-MNIST item scaled up and tinted by its class.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from PIL import Image

from dcbench.data.embedded.builders import load_split

IMAGENET_CLASSES = 1000
PLACES_CLASSES = 205


class _Items:
    """Fashion-MNIST training items, drawn by class."""

    def __init__(self, fmnist_root: str | os.PathLike) -> None:
        pixels, labels = load_split("train", fmnist_root)
        self.pixels, self.labels = pixels[:6000], labels[:6000]

    def image(self, rng: np.random.Generator, label: int, size: tuple[int, int]) -> Image.Image:
        """An RGB image of `size` (w, h): item of class label % 10 in a class tint."""
        item = self.pixels[rng.choice(np.flatnonzero(self.labels == label % 10))]
        alpha = np.asarray(Image.fromarray(item).resize(size, Image.BILINEAR), np.float32)
        alpha = alpha[..., None] / 255.0
        tint = np.array([(label * 37) % 256, (label * 91) % 256, (label * 173) % 256],
                        np.float32)
        back = rng.uniform(60, 160, 3).astype(np.float32)
        noise = rng.normal(0, 6, (size[1], size[0], 3))
        pixels = back * (1 - alpha) + tint * alpha + noise
        return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


def _photo_size(rng: np.random.Generator) -> tuple[int, int]:
    """ImageNet-like sizes: the long side 400-500, the short 300-400."""
    long, short = int(rng.integers(400, 501)), int(rng.integers(300, 401))
    return (long, short) if rng.random() < 0.75 else (short, long)


def wnids(n: int) -> list[str]:
    return [f"n{1440000 + 7 * i:08d}" for i in range(n)]


def build_imagenet_tree(out: Path, fmnist_root: str | os.PathLike, n_train: int, n_val: int,
                        seed: int = 0, classes: int = IMAGENET_CLASSES) -> Path:
    """<out>/train/<wnid>/<wnid>_<k>.JPEG over `classes` classes (round robin) and a flat
    <out>/val/ILSVRC2012_val_<k>.JPEG labelled by <out>/meta.bin."""
    import torch

    items, rng, names = _Items(fmnist_root), np.random.default_rng(seed), wnids(classes)
    for k in range(n_train):
        label = k % classes
        folder = out / "train" / names[label]
        folder.mkdir(parents=True, exist_ok=True)
        items.image(rng, label, _photo_size(rng)).save(folder / f"{names[label]}_{k}.JPEG",
                                                       quality=90)
    (out / "val").mkdir(parents=True, exist_ok=True)
    val_labels = rng.integers(0, classes, n_val)
    for k, label in enumerate(val_labels, 1):
        items.image(rng, int(label), _photo_size(rng)).save(
            out / "val" / f"ILSVRC2012_val_{k:08d}.JPEG", quality=90)
    torch.save(({w: (f"class {i}",) for i, w in enumerate(names)},
                [names[int(v)] for v in val_labels]), out / "meta.bin")
    return out


def build_places_tree(out: Path, fmnist_root: str | os.PathLike, n_train: int, n_val: int,
                      seed: int = 0, classes: int = PLACES_CLASSES) -> Path:
    """Places205 as distributed: data/vision/torralba/deeplearning/images256/<l>/<class>/
    256 x 256 JPEGs and trainvalsplit_places205/{train,val}_places205.csv."""
    items, rng = _Items(fmnist_root), np.random.default_rng(seed)
    images = out / "data/vision/torralba/deeplearning/images256"
    names = [f"{chr(97 + i % 26)}/scene_{i:03d}" for i in range(classes)]
    (out / "trainvalsplit_places205").mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("val", n_val)):
        rows = []
        for k in range(n):
            label = k % classes
            rel = f"{names[label]}/{split}_{k:08d}.jpg"
            (images / rel).parent.mkdir(parents=True, exist_ok=True)
            items.image(rng, label, (256, 256)).save(images / rel, quality=90)
            rows.append(f"{rel} {label}\n")
        (out / "trainvalsplit_places205" / f"{split}_places205.csv").write_text("".join(rows))
    return out


def build_yfcc_tree(out: Path, fmnist_root: str | os.PathLike, n: int, seed: int = 0) -> Path:
    """<out>/images/<k>.jpg (photo sizes) listed in <out>/yfcc1m.txt."""
    items, rng = _Items(fmnist_root), np.random.default_rng(seed)
    (out / "images").mkdir(parents=True, exist_ok=True)
    for k in range(n):
        items.image(rng, int(rng.integers(10)), _photo_size(rng)).save(
            out / "images" / f"{k:08d}.jpg", quality=90)
    (out / "yfcc1m.txt").write_text("".join(f"images/{k:08d}.jpg\n" for k in range(n)))
    return out
