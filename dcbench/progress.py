"""Progress bars with ETA that stay quiet where they would only add noise.

Only rank 0 draws bars. When stderr is not a terminal (CI logs, files) a bar is a plain
line at most every 30 s and one at the end, so a long run leaves a readable log without
carriage returns or cursor escapes.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def _enabled() -> bool:
    if os.environ.get("DCBENCH_NO_PROGRESS"):
        return False
    return int(os.environ.get("RANK", "0")) == 0


class LogBar:
    """What a bar becomes when stderr is not a terminal (CI logs, files, pipes): plain
    lines "desc: n/total (p%), rate, ETA" at most every `interval` seconds and one at the
    end, with no carriage returns or cursor escapes (nested tqdm bars leave \x1b[A)."""

    def __init__(self, desc: str, total: int | None, unit: str, interval: float = 30.0,
                 enabled: bool = True) -> None:
        self.desc, self.total, self.unit, self.interval = desc, total, unit, interval
        self.enabled, self.n, self.postfix = enabled, 0, ""
        self.start = self.last = time.monotonic()

    def _line(self, final: bool) -> str:
        secs = time.monotonic() - self.start
        rate = self.n / secs if secs > 0 else 0.0
        done = f"{self.n}/{self.total}" if self.total else str(self.n)
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        if final:
            tail = f"done in {secs:.0f}s"
        elif self.total and rate > 0:
            tail = f"ETA {(self.total - self.n) / rate:.0f}s"
        else:
            tail = "ETA ?"
        post = f" {self.postfix}" if self.postfix else ""
        return f"{self.desc}: {done}{pct} {self.unit}, {rate:.1f} {self.unit}/s, {tail}{post}"

    def update(self, n: int = 1) -> None:
        self.n += n
        now = time.monotonic()
        if self.enabled and now - self.last >= self.interval:
            self.last = now
            print(self._line(False), file=sys.stderr, flush=True)

    def set_postfix(self, **values: object) -> None:
        self.postfix = " ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if self.enabled and time.monotonic() - self.start >= 1.0:
            print(self._line(True), file=sys.stderr, flush=True)
        self.enabled = False


def progress(iterable: Iterable[T], desc: str, total: int | None = None,
             unit: str = "it") -> Iterator[T]:
    """Wrap an iterable in a bar (rank 0 only) showing rate and ETA."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    if not sys.stderr.isatty():
        return _logged(iterable, LogBar(desc, total, unit, enabled=_enabled()))
    return iter(tqdm(iterable, desc=desc, total=total, unit=unit, disable=not _enabled(),
                     mininterval=0.5, dynamic_ncols=True, leave=True, file=sys.stderr))


def _logged(iterable: Iterable[T], log: LogBar) -> Iterator[T]:
    try:
        for item in iterable:
            yield item
            log.update(1)
    finally:
        log.close()


def bar(desc: str, total: int | None, unit: str = "it") -> tqdm | LogBar:
    """A manual bar for phases that are not a single loop (call .update / .close)."""
    if not sys.stderr.isatty():
        return LogBar(desc, total, unit, enabled=_enabled())
    return tqdm(desc=desc, total=total, unit=unit, disable=not _enabled(), mininterval=0.5,
                dynamic_ncols=True, leave=True, file=sys.stderr)


def say(message: str) -> None:
    """Print a status line (rank 0 only), above any running bar."""
    if _enabled() or os.environ.get("DCBENCH_NO_PROGRESS"):
        if int(os.environ.get("RANK", "0")) == 0:
            tqdm.write(message, file=sys.stderr)
