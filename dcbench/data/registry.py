"""Named datasets: where each lives on disk, how to validate it, and how to load it.

Roots resolve in this order: an explicit root for this dataset (`--root`), then
`<data-root>/<name>` (`--data-root` or the DCBENCH_DATA environment variable), then the
dataset's own default (Fashion-MNIST: /usr/share/datasets/fashion-mnist, from Debian's
`dataset-fashion-mnist`). Every loader validates its layout before any work starts and names
the first missing file.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from dcbench.data.spec import DatasetSpec, ValidationReport
from dcbench.did_you_mean import did_you_mean
from dcbench.errors import DataError

if TYPE_CHECKING:
    from torch.utils.data import Dataset


DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    """Add a dataset under its name (catalog.py registers the built-in ones, in one list)."""
    if spec.name in DATASETS:
        raise DataError(f"dataset '{spec.name}' is registered twice")
    DATASETS[spec.name] = spec
    return spec


def get_dataset_spec(name: str) -> DatasetSpec:
    if name not in DATASETS:
        raise DataError(f"unknown dataset '{name}'{did_you_mean(name, DATASETS)}; known datasets: "
                        f"{', '.join(sorted(DATASETS))}")
    return DATASETS[name]


def candidate_roots(name: str, root: str | os.PathLike | None = None,
                    data_root: str | os.PathLike | None = None) -> list[Path]:
    """Where `name` is looked for, in order."""
    spec = get_dataset_spec(name)
    if root is not None:
        return [Path(root)]
    out: list[Path] = []
    base = data_root if data_root is not None else os.environ.get("DCBENCH_DATA")
    if base:
        out.append(Path(base) / name)
    if spec.default_root is not None:
        out.append(spec.default_root)
    if spec.builder is not None:
        out.append(cache_dir() / name)
    return out


def resolve_root(name: str, root: str | os.PathLike | None = None,
                 data_root: str | os.PathLike | None = None) -> Path:
    """The first existing candidate root, or a DataError saying where we looked."""
    cands = candidate_roots(name, root, data_root)
    for c in cands:
        if c.is_dir():
            return c
    if not cands:
        raise DataError(f"no root for dataset '{name}': pass --data-root DIR (holding "
                        f"DIR/{name}) or set DCBENCH_DATA{get_dataset_spec(name).needs_root_hint}")
    if root is not None:
        raise DataError(f"--root {root} is not a folder; point --root at the folder holding "
                        f"'{name}' itself (or drop it and pass --data-root DIR holding "
                        f"DIR/{name})")
    looked = ", ".join(str(c) for c in cands)
    raise DataError(f"dataset '{name}' not found (looked in: {looked}); pass --data-root or "
                    f"set DCBENCH_DATA{get_dataset_spec(name).needs_root_hint}")


def cache_dir() -> Path:
    """Where embedded sets are built by default: $DCBENCH_CACHE or ~/.cache/dcbench."""
    return Path(os.environ.get("DCBENCH_CACHE") or Path.home() / ".cache" / "dcbench")


def ensure_root(name: str, root: str | os.PathLike | None = None,
                data_root: str | os.PathLike | None = None) -> Path:
    """`resolve_root`, except that an embedded set found nowhere is built first, at the first
    place it is looked for (a real dataset still fails, saying where it looked)."""
    spec = get_dataset_spec(name)
    try:
        return resolve_root(name, root, data_root)
    except DataError:
        cands = candidate_roots(name, root, data_root)
        if spec.builder is None or not cands:
            raise
        from dcbench.progress import say

        say(f"{name} not found: building it once at {cands[0]}")
        return spec.builder(cands[0])


def validate_dataset(name: str, root: str | os.PathLike | None = None,
                     data_root: str | os.PathLike | None = None) -> ValidationReport:
    spec = get_dataset_spec(name)
    return spec.validate(resolve_root(name, root, data_root))


def build_dataset(name: str, split: str, transform: Callable | None,
                  root: str | os.PathLike | None = None,
                  data_root: str | os.PathLike | None = None) -> Dataset:
    """Validate the layout, then build the split's Dataset."""
    spec = get_dataset_spec(name)
    if split not in spec.splits:
        raise DataError(f"dataset '{name}' has no split '{split}'; "
                        f"splits: {', '.join(spec.splits)}")
    path = ensure_root(name, root, data_root)
    spec.validate(path)
    return spec.build(path, split, transform)
