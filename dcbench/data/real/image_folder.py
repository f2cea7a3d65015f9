"""Folders of class folders (root/train/<class>/*, root/val/<class>/*): the layout ImageNet,
Places205 and users' own `image-folder` sets share (their dataset entries:
class_folder_sets.py), and the RGB image reading the other loaders use."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from dcbench.data.image_file import UnreadableImage, open_image
from dcbench.data.spec import ValidationReport
from dcbench.errors import DataError

if TYPE_CHECKING:
    pass

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")


def load_rgb(path: str | os.PathLike) -> Image.Image | None:
    """Open an image as RGB, or None when it cannot be decoded (callers skip and count).
    A decompression bomb is not skipped: it stops the run, named (image_file.ImageTooLarge)."""
    try:
        return open_image(path, "RGB")
    except UnreadableImage:
        return None


def scan_split(split_dir: Path) -> tuple[list[str], list[tuple[str, int]]]:
    """Sorted class folders and (path, class index) pairs, with os.scandir for speed."""
    if not split_dir.is_dir():
        raise DataError(f"missing folder {split_dir} (expected <root>/<split>/<class>/<image>)")
    classes = sorted(e.name for e in os.scandir(split_dir) if e.is_dir())
    if not classes:
        raise DataError(f"{split_dir} holds no class folders (expected <split>/<class>/<image>)")
    samples: list[tuple[str, int]] = []
    for ci, c in enumerate(classes):
        files = sorted(e.path for e in os.scandir(split_dir / c)
                       if e.is_file() and e.name.lower().endswith(IMG_EXTENSIONS))
        samples.extend((p, ci) for p in files)
    if not samples:
        raise DataError(f"{split_dir} holds class folders but no images "
                        f"(extensions: {', '.join(IMG_EXTENSIONS)})")
    return classes, samples


class ListedImages:
    """(path, label) pairs read on demand; None for an image that cannot be decoded (the
    loader skips and counts it)."""

    def __init__(self, samples: list[tuple[str, int]], classes: list[str],
                 transform: Callable | None) -> None:
        self.samples, self.classes, self.transform = samples, classes, transform
        self.targets = [t for _, t in samples]

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        path, target = self.samples[i]
        img = load_rgb(path)
        if img is None:
            return None
        return (self.transform(img) if self.transform is not None else img), target


class ImageFolder(ListedImages):
    def __init__(self, root: Path, split: str, transform: Callable | None = None) -> None:
        classes, samples = scan_split(root / split)
        super().__init__(samples, classes, transform)


def folder_validator(name: str, splits: tuple[str, ...]) -> Callable[[Path], ValidationReport]:
    def validate(root: Path) -> ValidationReport:
        counts, per_class, classes = {}, {}, []
        for split in splits:
            first, (classes, samples) = classes, scan_split(root / split)
            if first and classes != first:
                # each split numbers its own sorted class folders: they must be the same set
                diff = sorted(set(first) ^ set(classes))
                raise DataError(f"{root / split} and {root / splits[0]} hold different class "
                                f"folders ({len(diff)} differ: {', '.join(diff[:5])})")
            counts[split] = len(samples)
            tally = [0] * len(classes)
            for _, t in samples:
                tally[t] += 1
            per_class[split] = dict(zip(classes, tally))
        return ValidationReport(name, root, counts, classes, per_class)
    return validate
