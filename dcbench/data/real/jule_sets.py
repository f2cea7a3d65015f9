"""JULE's image-clustering sets in the files their users download: MNIST, USPS, COIL-20/100.

Each is held in memory at its own size as grayscale (GrayImages): MNIST 28 px, USPS 16 px,
COIL 128 px, the sizes of JULE's per-set nets (jule-28, jule-16, jule-128), which see the
images as they are. The 32-px tasks and trunks (alexnet-small, jule-32) see them as every
small set: 28 px padded to 32, other sizes resized to 32 (dcbench/data/small_transforms.py).
- `mnist`: the four idx files (train-images-idx3-ubyte[.gz] ...), as Fashion-MNIST.
- `usps`: `usps.bz2` and `usps.t.bz2` (the LIBSVM-format files most mirrors carry: one line
  per image, "label index:value ...", labels 1-10 for digits 0-9, 256 values in [-1, 1] for a
  16x16 image); splits train (7,291) and test (2,007).
- `coil20`: the processed COIL-20 folder (`obj<K>__<A>.png`, K 1-20, 72 poses, 128x128 grey).
- `coil100`: COIL-100 (`obj<K>__<A>.png`, K 1-100, 72 poses, 128x128 colour, made grey).
COIL sets have one split, 'all'.
"""

from __future__ import annotations

import bz2
import re
from pathlib import Path

import numpy as np

from dcbench.data.gray_images import GrayImages, to_gray
from dcbench.data.idx import FILES, read_idx, validate_idx
from dcbench.data.image_file import open_image
from dcbench.data.spec import DatasetSpec, ValidationReport
from dcbench.errors import DataError

DIGITS = [str(i) for i in range(10)]
USPS_FILES = {"train": "usps.bz2", "test": "usps.t.bz2"}
COIL_NAME = re.compile(r"obj(\d+)__(\d+)\.png$")
COIL_SIDE = 128          # the processed COIL sets' image size (others are resized to it)


# -- MNIST ------------------------------------------------------------------------------------
def mnist(root: Path, split: str, transform) -> GrayImages:
    img_name, lbl_name = FILES[split]
    out = GrayImages(read_idx(root / img_name, 2051), read_idx(root / lbl_name, 2049),
                     transform)
    out.classes = DIGITS
    return out


# -- USPS -------------------------------------------------------------------------------------
def read_usps(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(N x 16 x 16 uint8, labels 0-9) from a LIBSVM-format file (bz2 or plain)."""
    if not path.exists():
        raise DataError(f"USPS file missing: {path} (usps.bz2 / usps.t.bz2, LIBSVM format)")
    opener = bz2.open if path.suffix == ".bz2" else open
    images, labels = [], []
    try:
        with opener(path, "rt") as f:
            for line in f:
                parts = line.split()
                if not parts:
                    continue
                pixels = np.zeros(256, np.float32)
                for item in parts[1:]:
                    k, v = item.split(":")
                    pixels[int(k) - 1] = float(v)
                labels.append(int(float(parts[0])) - 1)
                images.append(pixels)
    except (OSError, EOFError, ValueError, IndexError) as e:
        raise DataError(f"{path} line {len(images) + 1}: not a LIBSVM USPS line ({e})") from None
    if not images:
        raise DataError(f"{path} holds no image")
    x = np.clip(np.rint((np.stack(images) + 1.0) * 127.5), 0, 255).astype(np.uint8)
    x = x.reshape(-1, 16, 16)
    y = np.asarray(labels, np.int64)
    if y.min() < 0 or y.max() > 9:
        raise DataError(f"{path}: labels must be 1-10, found {y.min() + 1}-{y.max() + 1}")
    return x, y


def usps(root: Path, split: str, transform) -> GrayImages:
    x, y = read_usps(root / USPS_FILES[split])
    out = GrayImages(x, y, transform)
    out.classes = DIGITS
    return out


def validate_usps(root: Path) -> ValidationReport:
    splits = {s: len(read_usps(root / f)[1]) for s, f in USPS_FILES.items()}
    return ValidationReport("usps", root, splits, DIGITS)


# -- COIL -------------------------------------------------------------------------------------
def coil_files(root: Path, n_objects: int) -> list[tuple[Path, int]]:
    """(file, object index 0..n-1) sorted by object then pose; refuses a partial folder."""
    found = []
    for path in root.iterdir() if root.is_dir() else []:
        m = COIL_NAME.match(path.name)
        if m and 1 <= int(m.group(1)) <= n_objects:
            found.append((int(m.group(1)), int(m.group(2)), path))
    objects = {k for k, _, _ in found}
    if len(objects) != n_objects:
        raise DataError(f"{root}: expected images obj1__0.png .. obj{n_objects}__*.png of "
                        f"{n_objects} objects, found {len(objects)}; point --root at the "
                        f"COIL folder")
    return [(p, k - 1) for k, _, p in sorted(found)]


def coil(n_objects: int):
    def build(root: Path, split: str, transform) -> GrayImages:
        files = coil_files(root, n_objects)
        images = [open_image(p, "L", hint="restore it from the COIL archive") for p, _ in files]
        out = GrayImages(to_gray(images, COIL_SIDE),
                         np.asarray([k for _, k in files]), transform)
        out.classes = [f"obj{k}" for k in range(1, n_objects + 1)]
        return out

    def validate(root: Path) -> ValidationReport:
        files = coil_files(root, n_objects)
        return ValidationReport(f"coil{n_objects}", root, {"all": len(files)},
                                [f"obj{k}" for k in range(1, n_objects + 1)])

    return build, validate


# USPS and COIL mean / std are rounded estimates (no copy of either set on the dev machines to
# measure them on); they only rescale the inputs, which the BatchNorm after the first conv
# absorbs in training.
# this module's datasets, registered by dcbench/data/catalog.py
SPECS: list[DatasetSpec] = []


SPECS.append(DatasetSpec(
    name="mnist", description="MNIST, 70k 28x28 handwritten digits (the four idx files)",
    splits=("train", "test"), size="small", native=28, mean=(0.1307,) * 3, std=(0.3081,) * 3,
    labelled=True, validate=lambda root: validate_idx("mnist", root, DIGITS), build=mnist,
    needs_root_hint="the folder of the MNIST idx files"))
SPECS.append(DatasetSpec(
    name="usps", description="USPS, 9,298 16x16 handwritten digits (usps.bz2, usps.t.bz2)",
    splits=("train", "test"), size="small", native=16,
    mean=(0.25,) * 3, std=(0.35,) * 3, labelled=True, validate=validate_usps, build=usps,
    needs_root_hint="the folder of usps.bz2 and usps.t.bz2"))
for _n in (20, 100):
    _build, _validate = coil(_n)
    SPECS.append(DatasetSpec(
        name=f"coil{_n}", description=f"COIL-{_n}, {_n} objects x 72 poses (obj<K>__<A>.png), "
        f"128 px, grey", splits=("all",), size="small", native=COIL_SIDE,
        mean=(0.2,) * 3, std=(0.3,) * 3, labelled=True, validate=_validate, build=_build,
        needs_root_hint=f"the COIL-{_n} image folder"))
