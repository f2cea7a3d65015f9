"""The idx format of MNIST-like sets (Fashion-MNIST, MNIST, the JULE sets and the embedded sets
built from Fashion-MNIST): a big-endian header, then uint8 values; .gz or plain. Read within
what the header promises, never more, and never past a size a real set can have."""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from dcbench.data.spec import ValidationReport
from dcbench.errors import DataError

# the four files of every MNIST-format set
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
MAX_IDX_BYTES = 2**31             # EMNIST, the largest MNIST-format set, is ~0.6 GB


def _open(path: Path):
    if path.exists():
        return gzip.open(path, "rb")
    plain = path.with_suffix("")          # also accept the uncompressed files
    if plain.exists():
        return open(plain, "rb")
    raise DataError(f"idx file missing: {path} (Fashion-MNIST: 'apt-get install "
                    f"dataset-fashion-mnist'; any MNIST-format set: point --root at its folder)")


def _read(path: Path, size: int = -1) -> bytes:
    """Read (the start of) an idx file; a cut or corrupt .gz becomes a DataError naming it."""
    try:
        with _open(path) as f:
            return f.read(size)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path} is truncated or corrupt ({e}); re-install the dataset") from None


def _read_header(path: Path, magic: int) -> tuple[int, ...]:
    head = _read(path, 16 if magic == 2051 else 8)
    ndim = 3 if magic == 2051 else 1
    if len(head) < 4 + 4 * ndim:
        raise DataError(f"{path} is truncated (no idx header); re-install the dataset")
    got = struct.unpack(">I", head[:4])[0]
    if got != magic:
        raise DataError(f"{path} is not an idx file (magic {got}, expected {magic})")
    return struct.unpack(">" + "I" * ndim, head[4:4 + 4 * ndim])


def read_idx(path: Path, magic: int) -> np.ndarray:
    dims = _read_header(path, magic)
    offset = 4 + 4 * len(dims)
    want = int(np.prod([int(d) for d in dims]))
    if want > MAX_IDX_BYTES:       # a header (or gzip bomb) that would exhaust memory
        raise DataError(f"{path}: its header claims {' x '.join(map(str, dims))} = {want:,} "
                        f"bytes, over the {MAX_IDX_BYTES:,} an MNIST-format set can hold; "
                        f"re-install the dataset")
    raw = _read(path, offset + want)        # never more than the header promises
    if len(raw) - offset < want:
        raise DataError(f"{path} is truncated ({len(raw) - offset} of {want} bytes)")
    return np.frombuffer(raw, dtype=np.uint8, count=want, offset=offset).reshape(dims)


def check_complete(path: Path, expected: int) -> None:
    """Stream the whole file (bounded memory): a cut .gz fails its CRC/length check at the
    end of the stream, a short plain file has fewer bytes than its header promises."""
    got = 0
    try:
        with _open(path) as f:
            while chunk := f.read(1 << 20):
                got += len(chunk)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path} is truncated or corrupt ({e}); re-install the dataset "
                        f"(apt-get install --reinstall dataset-fashion-mnist) or copy it "
                        f"again") from None
    if got < expected:
        raise DataError(f"{path} is truncated ({got} of {expected} bytes); re-install the "
                        f"dataset or copy it again")


def validate_idx(name: str, root: Path, classes: list[str]) -> ValidationReport:
    """The four idx files of an MNIST-format set: headers agree, 28x28 images, per-class counts."""
    splits, per_class = {}, {}
    for split, (img_name, lbl_name) in FILES.items():
        n_img, h, w = _read_header(root / img_name, 2051)
        (n_lbl,) = _read_header(root / lbl_name, 2049)
        if n_img != n_lbl:
            raise DataError(f"{root / img_name} has {n_img} images but {lbl_name} has "
                            f"{n_lbl} labels")
        if (h, w) != (28, 28):
            raise DataError(f"{root / img_name} holds {h}x{w} images, expected 28x28")
        labels = read_idx(root / lbl_name, 2049)
        check_complete(root / img_name, 16 + n_img * h * w)
        splits[split] = n_img
        counts = np.bincount(labels, minlength=len(classes))
        per_class[split] = {c: int(k) for c, k in zip(classes, counts)}
    return ValidationReport(name, root, splits, classes, per_class)
