"""A third-party dataset, through the `dcbench.datasets` entry points: 300 seeded 28 px noise
images in 3 classes (class c is brighter by c), held in memory; its root is any folder."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np

from dcbench.data.gray_images import GrayImages
from dcbench.data.spec import DatasetSpec, ValidationReport


class Noise(GrayImages):
    classes = ["dark", "mid", "bright"]

    def __init__(self, split: str, transform=None) -> None:
        rng = np.random.default_rng(0 if split == "train" else 1)
        targets = np.arange(300) % 3
        images = rng.integers(0, 128, (300, 28, 28)) + 60 * targets[:, None, None]
        super().__init__(images.astype(np.uint8), targets.astype(np.int64), transform)


def validate(root: Path) -> ValidationReport:
    return ValidationReport("plugin-noise", root, {"train": 300, "test": 300}, Noise.classes)


SPECS = [DatasetSpec(name="plugin-noise", description="seeded noise in 3 classes (a plugin "
                     "example)", splits=("train", "test"), size="small", native=28,
                     mean=(0.5,) * 3, std=(0.25,) * 3, labelled=True, validate=validate,
                     build=lambda root, split, transform: Noise(split, transform),
                     default_root=Path(tempfile.gettempdir()))]
