"""The built-in datasets, in one list: each loader module declares its SPECS and imports nothing
of the registry's, so no module imports the registry that imports it. Third-party datasets come
through the `dcbench.datasets` entry points (a module with SPECS, as the built-in ones)."""

from __future__ import annotations

from dcbench.data.real import class_folder_sets, digits, fashion_mnist, file_list, jule_sets
from dcbench.data.registry import DATASETS, register_dataset
from dcbench.data.retrieval import oxford_paris
from dcbench.data.voc import devkit
from dcbench.plugins import load_group, reject

# the order `dcbench data list` shows them in
BUILTIN = (digits, fashion_mnist, class_folder_sets, file_list, jule_sets, oxford_paris, devkit)


def register_builtin() -> None:
    """Register every built-in dataset, then the plugins' (the package's __init__ calls it,
    once); a plugin dataset whose name is taken is kept as a warning, not registered."""
    for module in BUILTIN:              # a name given twice fails in register_dataset
        for spec in module.SPECS:
            register_dataset(spec)
    for name, module in load_group("dcbench.datasets"):
        for spec in getattr(module, "SPECS", []):
            if spec.name in DATASETS:
                reject("dcbench.datasets", name, f"dataset '{spec.name}' exists already")
            else:
                register_dataset(spec)
