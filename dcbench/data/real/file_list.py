"""Unlabelled images listed in a text file: the YFCC100M 1M-image subset of the paper.

Layout: <root>/yfcc1m.txt with one image path per line, relative to <root> ('#' comments
and blank lines ignored). Listed files that do not exist are left out and counted when the
dataset is built; files that exist but cannot be decoded are skipped at load time and counted
by the loader. Neither is fatal.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dcbench.data.real.image_folder import load_rgb
from dcbench.data.spec import DatasetSpec, ValidationReport
from dcbench.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from dcbench.errors import DataError

LIST_NAME = "yfcc1m.txt"


def read_list(root: Path) -> tuple[list[str], int]:
    """(existing paths, number of listed paths that are missing)."""
    list_path = root / LIST_NAME
    if not list_path.is_file():
        raise DataError(f"missing image list {list_path} (one image path per line, relative "
                        f"to {root})")
    listed = [ln.strip() for ln in list_path.read_text().splitlines()]
    listed = [p for p in listed if p and not p.startswith("#")]
    if not listed:
        raise DataError(f"{list_path} lists no images")
    present = [str(root / p) for p in listed if (root / p).is_file()]
    return present, len(listed) - len(present)


def validate(root: Path) -> ValidationReport:
    present, missing = read_list(root)
    if not present:
        raise DataError(f"none of the images listed in {root / LIST_NAME} exist under {root}")
    notes = [f"{missing} listed images are missing and will be skipped"] if missing else []
    return ValidationReport("yfcc1m", root, {"train": len(present)}, notes=notes)


class FileList:
    classes: list[str] = []

    def __init__(self, root: Path, transform: Callable | None = None) -> None:
        self.paths, self.missing = read_list(root)
        self.targets = [-1] * len(self.paths)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        img = load_rgb(self.paths[i])
        if img is None:
            return None
        if self.transform is not None:
            img = self.transform(img)
        return img, -1


# this module's datasets, registered by dcbench/data/catalog.py
SPECS: list[DatasetSpec] = []


SPECS.append(DatasetSpec(
    name="yfcc1m",
    description=f"YFCC100M 1M-image subset: <root>/{LIST_NAME} lists image paths (unlabelled)",
    splits=("train",), size="large", native=224,
    mean=IMAGENET_MEAN, std=IMAGENET_STD, labelled=False,
    validate=validate,
    build=lambda root, split, transform: FileList(root, transform),
))
