"""Fault points: the tests of exact resume and of error handling trigger failures through
these at precise moments.

`DCBENCH_FAULT=name:epoch` makes `fault_point(name, epoch)` exit the process abruptly
(os._exit, like a kill: no cleanup, no flush) and `fault_active(name, epoch)` return True
(for faults that corrupt a value rather than kill). Unset, each costs one environment lookup.
"""

from __future__ import annotations

import os

KILLED_EXIT = 77


def fault_active(name: str, epoch: int) -> bool:
    return os.environ.get("DCBENCH_FAULT") == f"{name}:{epoch}"


def fault_point(name: str, epoch: int) -> None:
    if fault_active(name, epoch):
        os._exit(KILLED_EXIT)
