"""Fashion-MNIST from its four idx .gz files (the Debian `dataset-fashion-mnist` layout),
read directly: no torchvision downloader, no network."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from dcbench.data.gray_images import GrayImages
from dcbench.data.idx import FILES, read_idx, validate_idx
from dcbench.data.spec import DatasetSpec, ValidationReport

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
           "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
SIZES = {"train": 60000, "test": 10000}
MEAN, STD = 0.2860, 0.3530


def validate(root: Path) -> ValidationReport:
    return validate_idx("fashion-mnist", root, CLASSES)


class FashionMNIST(GrayImages):
    """Images held in memory as uint8 (60k x 28 x 28 = 47 MB)."""

    classes = CLASSES

    def __init__(self, root: Path, split: str, transform: Callable | None = None) -> None:
        img_name, lbl_name = FILES[split]
        super().__init__(read_idx(root / img_name, 2051), read_idx(root / lbl_name, 2049),
                         transform)


SPECS = [DatasetSpec(
    name="fashion-mnist",
    description="Fashion-MNIST, 70k 28x28 grayscale images in 10 classes (idx .gz files)",
    splits=("train", "test"), size="small", native=28,
    mean=(MEAN,) * 3, std=(STD,) * 3, labelled=True,
    validate=validate,
    build=lambda root, split, transform: FashionMNIST(root, split, transform),
    default_root=Path("/usr/share/datasets/fashion-mnist"),
)]
