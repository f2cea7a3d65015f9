"""ImageNet, Places205 and `image-folder` as datasets: class folders everywhere, and ImageNet and
Places205 also in the layouts they are distributed in (distributed_layouts.py), told apart per
root by `layout_of`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from dcbench.data.real import distributed_layouts as dl
from dcbench.data.real.image_folder import ImageFolder, folder_validator
from dcbench.data.spec import DatasetSpec, ValidationReport
from dcbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD

if TYPE_CHECKING:
    from torch.utils.data import Dataset


def _spec(name: str, description: str) -> DatasetSpec:
    """Class folders everywhere; ImageNet and Places205 also as distributed (a flat val/ with
    the devkit; Places205's CSV splits): dcbench/data/real/distributed_layouts.py."""
    splits = ("train", "val")
    folders = folder_validator(name, splits)

    def validate(root: Path) -> ValidationReport:
        if dl.layout_of(name, root) == "class-folders":
            return folders(root)
        return dl.validate(name, root, splits)

    def build(root: Path, split: str, transform: Callable | None) -> Dataset:
        if dl.layout_of(name, root) == "class-folders":
            return ImageFolder(root, split, transform)
        return dl.build(name, root, split, transform)

    return DatasetSpec(
        name=name, description=description, splits=splits, size="large", native=224,
        mean=IMAGENET_MEAN, std=IMAGENET_STD, labelled=True, validate=validate, build=build)


SPECS = [
    _spec("imagenet", "ImageNet ILSVRC-2012 (root/train/<wnid>/*.JPEG; root/val/<wnid>/*.JPEG "
          "or val/ flat with the devkit)"),
    _spec("places205", "Places205 (root/train/<class>/*.jpg, root/val/<class>/*.jpg, or as "
          "distributed: images256/ + trainvalsplit_places205/*.csv)"),
    _spec("image-folder", "any folder of class folders (root/train/<class>/*, root/val/<class>/*)"),
]
