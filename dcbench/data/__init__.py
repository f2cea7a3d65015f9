"""The data layer: a registry of named datasets with validating loaders."""

from dcbench.data.loader import make_loader, subset, targets_of
from dcbench.data.registry import (
    DATASETS,
    DatasetSpec,
    ValidationReport,
    build_dataset,
    get_dataset_spec,
    resolve_root,
    validate_dataset,
)
from dcbench.data.registry import _load_builtin as _load
from dcbench.data.transforms import make_transform

_load()

__all__ = [
    "DATASETS", "DatasetSpec", "ValidationReport", "build_dataset", "get_dataset_spec",
    "make_loader", "make_transform", "resolve_root", "subset", "targets_of", "validate_dataset",
]
