"""Pretraining methods: catalog.py names them and the options each reads; run.py runs one.
`run_pretraining` is imported on first use (it loads torch), so the catalog stays light."""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "run_pretraining":
        from dcbench.methods.run import run_pretraining

        return run_pretraining
    raise AttributeError(f"module 'dcbench.methods' has no attribute '{name}'")
