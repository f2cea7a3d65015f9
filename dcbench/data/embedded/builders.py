"""Small copies of the real datasets' on-disk layouts, made from Fashion-MNIST.

ImageNet, Places205 and YFCC100M cannot ship with dcbench, but their loaders must still be
exercised end to end (tests, a user checking an install, a dry run of a task). These builders
write Fashion-MNIST images in exactly the layouts those loaders read, so the same code path
runs on a few hundred files in seconds. Selection is deterministic (the first images of each
class in file order), so two builds of the same size are identical.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from PIL import Image

from dcbench.atomic import atomic_write_text
from dcbench.data.idx import FILES, read_idx
from dcbench.data.real.fashion_mnist import CLASSES
from dcbench.data.real.file_list import LIST_NAME
from dcbench.data.registry import resolve_root
from dcbench.errors import DataError


def safe_class_name(name: str) -> str:
    """A folder name for a class ('T-shirt/top' -> 'T-shirt_top'): no separators or spaces,
    so the folder is valid on every filesystem and needs no quoting in a shell."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "class"


CLASS_DIRS = [safe_class_name(c) for c in CLASSES]


def load_split(split: str, fmnist_root: str | os.PathLike | None) -> tuple[np.ndarray, np.ndarray]:
    """(images, labels) of a Fashion-MNIST split, as the idx files hold them."""
    root = resolve_root("fashion-mnist", fmnist_root)
    img_name, lbl_name = FILES[split]
    return read_idx(root / img_name, 2051), read_idx(root / lbl_name, 2049)


def _first_per_class(labels: np.ndarray, per_class: int, split: str) -> list[np.ndarray]:
    """Indices of the first `per_class` images of every class, in file order."""
    out = []
    for ci, name in enumerate(CLASSES):
        idx = np.flatnonzero(labels == ci)[:per_class]
        if len(idx) < per_class:
            raise DataError(f"Fashion-MNIST {split} has only {len(idx)} images of '{name}', "
                            f"{per_class} were asked for")
        out.append(idx)
    return out


def _save_png(pixels: np.ndarray, path: Path) -> None:
    # RGB, as the real datasets are: the loaders' grayscale->RGB step is then not what is tested
    Image.fromarray(pixels).convert("RGB").save(path, format="PNG")


def export_image_folder(out_dir: str | os.PathLike, per_class_train: int, per_class_val: int,
                        fmnist_root: str | os.PathLike | None = None) -> Path:
    """Write the ImageNet/Places205 layout: out/{train,val}/<class>/<index>.png.

    Train images come from Fashion-MNIST's train split, val images from its test split, so
    the two never overlap; <index> is the image's position in its source file. Returns out_dir,
    ready for `validate_dataset('image-folder', root=out_dir)`.
    """
    if per_class_train < 1 or per_class_val < 1:
        raise ValueError("per_class_train and per_class_val must be at least 1")
    out = Path(out_dir)
    for split, src, per_class in (("train", "train", per_class_train),
                                  ("val", "test", per_class_val)):
        images, labels = load_split(src, fmnist_root)
        for folder, idx in zip(CLASS_DIRS, _first_per_class(labels, per_class, src)):
            class_dir = out / split / folder
            class_dir.mkdir(parents=True, exist_ok=True)
            for i in idx:
                _save_png(images[i], class_dir / f"{int(i):05d}.png")
    return out


def export_file_list(out_dir: str | os.PathLike, n: int,
                     fmnist_root: str | os.PathLike | None = None) -> Path:
    """Write the YFCC100M-subset layout: out/images/<index>.png plus out/yfcc1m.txt listing
    them relative to out/ (what the `yfcc1m` loader reads). The first `n` train images, which
    are unlabelled here as they are in YFCC. Returns out_dir."""
    if n < 1:
        raise ValueError("n must be at least 1")
    images, _ = load_split("train", fmnist_root)
    if n > len(images):
        raise DataError(f"Fashion-MNIST train has {len(images)} images, {n} were asked for")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    rel = []
    for i in range(n):
        name = f"images/{i:05d}.png"
        _save_png(images[i], out / name)
        rel.append(name)
    atomic_write_text(out / LIST_NAME, "\n".join(rel) + "\n")
    return out
