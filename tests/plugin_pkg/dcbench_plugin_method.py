"""A third-party pretraining method, through the `dcbench.methods` entry points: DeepCluster's
epoch under another name, reading the same options."""

from __future__ import annotations

from dcbench.methods.catalog import METHODS, Method

METHOD = Method("plugin-dc", "DeepCluster's epoch under another name (a plugin example)",
                METHODS["deepcluster"].options, "dcbench.methods.deepcluster:run_epoch")
