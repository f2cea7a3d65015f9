"""Progress bars with ETA that stay quiet where they would only add noise.

Only rank 0 draws bars. When stderr is not a terminal (CI logs, files) the bar redraws at
most every 30 s so a long run leaves a readable log rather than thousands of lines.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def _enabled() -> bool:
    if os.environ.get("DCBENCH_NO_PROGRESS"):
        return False
    return int(os.environ.get("RANK", "0")) == 0


def progress(iterable: Iterable[T], desc: str, total: int | None = None,
             unit: str = "it") -> Iterator[T]:
    """Wrap an iterable in a tqdm bar (rank 0 only) showing rate and ETA."""
    interactive = sys.stderr.isatty()
    return iter(tqdm(
        iterable, desc=desc, total=total, unit=unit, disable=not _enabled(),
        mininterval=0.5 if interactive else 30.0, dynamic_ncols=interactive,
        leave=interactive, file=sys.stderr,
    ))


def bar(desc: str, total: int | None, unit: str = "it") -> tqdm:
    """A manual bar for phases that are not a single loop (call .update / .close)."""
    interactive = sys.stderr.isatty()
    return tqdm(desc=desc, total=total, unit=unit, disable=not _enabled(),
                mininterval=0.5 if interactive else 30.0, dynamic_ncols=interactive,
                leave=interactive, file=sys.stderr)


def say(message: str) -> None:
    """Print a status line (rank 0 only), above any running bar."""
    if _enabled() or os.environ.get("DCBENCH_NO_PROGRESS"):
        if int(os.environ.get("RANK", "0")) == 0:
            tqdm.write(message, file=sys.stderr)
