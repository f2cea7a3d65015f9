"""The data layer: a registry of named datasets with validating loaders (importable without
torch: the loaders import it on first use)."""

from dcbench.data.catalog import register_builtin
from dcbench.data.registry import (
    DATASETS,
    build_dataset,
    get_dataset_spec,
    resolve_root,
    validate_dataset,
)
from dcbench.data.spec import DatasetSpec, ValidationReport
from dcbench.data.transforms import make_transform

register_builtin()

LAZY = {"make_loader", "subset", "targets_of"}     # dcbench.data.loader: they need torch


def __getattr__(name: str):
    """make_loader, subset and targets_of load torch: imported on first use, so that listing
    tasks and datasets and checking inputs start without it (about a second)."""
    if name in LAZY:
        from dcbench.data import loader

        return getattr(loader, name)
    raise AttributeError(f"module 'dcbench.data' has no attribute '{name}'")

__all__ = [
    "DATASETS", "DatasetSpec", "ValidationReport", "build_dataset", "get_dataset_spec",
    "make_loader", "make_transform", "resolve_root", "subset", "targets_of", "validate_dataset",
]
