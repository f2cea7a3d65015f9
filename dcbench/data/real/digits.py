"""scikit-learn's bundled handwritten digits (UCI optdigits test set): 1,797 images of 8x8
pixels with 17 grey levels, 10 classes. JULE-style clustering benchmarks use it as a small
MNIST; it needs no download (the file ships inside scikit-learn).

Images are scaled to 0-255 and resized to 28x28 (bilinear), Fashion-MNIST's side, so the same
32-px transforms and trunks apply. One split, 'all': clustering uses every image.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from dcbench.data.gray_images import GrayImages, to_28
from dcbench.data.spec import DatasetSpec, ValidationReport
from dcbench.errors import DataError

MEAN, STD = 0.3062, 0.3255      # of the 28-px images (0-1), all 1,797
DATA_FILE = "digits.csv.gz"


def _sklearn_data_dir() -> Path:
    """scikit-learn's bundled data folder, found without importing scikit-learn (0.7 s)."""
    from importlib.util import find_spec

    spec = find_spec("sklearn")
    if spec is None or spec.origin is None:
        raise DataError("scikit-learn is not installed; pip install scikit-learn")
    return Path(spec.origin).parent / "datasets" / "data"


def validate(root: Path) -> ValidationReport:
    path = root / DATA_FILE
    if not path.is_file():
        raise DataError(f"{path} is missing (it ships with scikit-learn); reinstall it: "
                        f"pip install --force-reinstall scikit-learn")
    return ValidationReport("digits", root, {"all": 1797}, [str(i) for i in range(10)])


def digits_28px() -> tuple[np.ndarray, np.ndarray]:
    """(images uint8 N x 28 x 28, labels int64)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    small = np.clip(bunch.images * 16.0, 0, 255).astype(np.uint8)
    big = to_28([Image.fromarray(im) for im in small])
    return big, bunch.target.astype(np.int64)


class Digits(GrayImages):
    classes = [str(i) for i in range(10)]

    def __init__(self, transform: Callable | None = None) -> None:
        super().__init__(*digits_28px(), transform)


# this module's datasets, registered by dcbench/data/catalog.py
SPECS: list[DatasetSpec] = []


SPECS.append(DatasetSpec(
    name="digits",
    description="scikit-learn's 8x8 digits, 1,797 images in 10 classes, shown at 28 px",
    splits=("all",), size="small", native=28,
    mean=(MEAN,) * 3, std=(STD,) * 3, labelled=True,
    validate=validate,
    build=lambda root, split, transform: Digits(transform),
    default_root=_sklearn_data_dir(),
))
