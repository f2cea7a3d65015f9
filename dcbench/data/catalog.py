"""The built-in datasets, in one list: each loader module declares its SPECS and imports nothing
of the registry's, so no module imports the registry that imports it. Third-party datasets call
registry.register_dataset themselves."""

from __future__ import annotations

from dcbench.data.real import class_folder_sets, digits, fashion_mnist, file_list, jule_sets
from dcbench.data.registry import DATASETS, register_dataset
from dcbench.data.retrieval import oxford_paris
from dcbench.data.voc import devkit

# the order `dcbench data list` shows them in
BUILTIN = (digits, fashion_mnist, class_folder_sets, file_list, jule_sets, oxford_paris, devkit)


def register_builtin() -> None:
    """Register every built-in dataset once (the package's __init__ calls it)."""
    for module in BUILTIN:
        for spec in module.SPECS:
            if spec.name not in DATASETS:
                register_dataset(spec)
