"""The sha256 of every file an embedded set's builder wrote, checked before each use.

The embedded sets (fmnist-voc, fmnist-oxford, fmnist-paris) live in a cache folder that
anything on the machine may write to. A file swapped there after the build (a planted
`gnd_roxford5k.pkl`, an edited annotation) would otherwise be read as dcbench's own data, and
a record made from it would carry the set's name as if nothing had changed. The builder
writes DIGESTS.json beside BUILD_INFO.json; `verify` refuses a set with any file changed,
missing or added, naming the first one.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from dcbench.errors import DataError

DIGESTS = "DIGESTS.json"
UNLISTED = {DIGESTS, "BUILD_INFO.json"}      # written after the digests
# written later, beside the set, by its users: the OpenCV proposals cache of voc-det (read
# with allow_pickle=False and recomputed unless its ids and parameters match)
CACHES = {"proposals"}


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _files(root: Path) -> list[str]:
    out = []
    for folder, subs, names in os.walk(root):
        rel = Path(folder).relative_to(root)
        if str(rel) == ".":
            subs[:] = [d for d in subs if d not in CACHES]
        out.extend(str(rel / n) if str(rel) != "." else n for n in names)
    return sorted(f for f in out if f not in UNLISTED)


def write_digests(root: Path) -> None:
    """Record the sha256 of every file under `root` (called on the finished build)."""
    digests = {name: _sha256(root / name) for name in _files(root)}
    (root / DIGESTS).write_text(json.dumps(digests, indent=0, sort_keys=True) + "\n")


def verify(root: Path) -> None:
    """Refuse `root` unless every file matches the digest its build recorded."""
    fix = "delete the folder and run again (it is rebuilt from Fashion-MNIST)"
    try:
        digests = json.loads((root / DIGESTS).read_text())
    except (OSError, ValueError):
        raise DataError(f"{root} has no readable {DIGESTS} (built by an older dcbench, or "
                        f"damaged), so its files cannot be checked; {fix}") from None
    if not isinstance(digests, dict):
        raise DataError(f"{root / DIGESTS} is not a JSON object of file digests; {fix}")
    present = _files(root)
    for name in present:
        if name not in digests:
            raise DataError(f"{root / name} was not written by the build (absent from "
                            f"{DIGESTS}); remove it, or {fix}")
        if _sha256(root / name) != digests[name]:
            raise DataError(f"{root / name} differs from the file the build wrote (sha256 "
                            f"mismatch); {fix}")
    missing = sorted(set(digests) - set(present))
    if missing:
        raise DataError(f"{root / missing[0]} is missing ({len(missing)} files of the build "
                        f"are); {fix}")
