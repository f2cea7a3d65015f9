"""A pretraining run folder: what it holds, and how a run starts, refuses or resumes in it.

    DIR/config.json                     the resolved config
    DIR/checkpoint.pth.tar              latest completed epoch (DeepCluster format)
    DIR/checkpoint_0010.pth.tar         kept every --save-every epochs
    DIR/assignments/epoch_0001.npy      the cluster of every image trained on in that epoch
    DIR/assignments/epoch_0001.json     its clustering statistics (for the log)
    DIR/log.jsonl                       one line per completed epoch

Every file is written atomically. The assignment of an epoch is saved as soon as it is
computed, so a run killed during training restores it on --resume instead of re-clustering.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import IO, Any

import numpy as np

from dcbench.atomic import (
    atomic_numpy_save,
    atomic_write_text,
    check_writable_dir,
    hold_or_refuse,
)
from dcbench.errors import DcbenchError
from dcbench.methods.config import differences
from dcbench.progress import say


def _shown(cfg: dict[str, Any], key: str) -> str:
    return repr(cfg[key]) if key in cfg else "(not set)"


class RunDir:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock: IO[str] | None = None

    # -- paths ------------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def checkpoint(self) -> Path:
        return self.path / "checkpoint.pth.tar"

    @property
    def log_path(self) -> Path:
        return self.path / "log.jsonl"

    def kept_checkpoint(self, epoch: int) -> Path:
        return self.path / f"checkpoint_{epoch:04d}.pth.tar"

    def assignment_path(self, epoch: int) -> Path:
        return self.path / "assignments" / f"epoch_{epoch:04d}.npy"

    # -- start / resume -----------------------------------------------------------------
    def completed(self) -> bool:
        """Whether a run here finished at least one epoch (a checkpoint or a log line)."""
        return self.checkpoint.exists() or bool(self.read_log())

    def check(self, config: dict[str, Any], resume: bool, lock: bool = True) -> None:
        """Refuse what cannot start here, writing nothing but the lock: called before any
        work. `lock` (the main process of a run) holds --out for this process's life, so a
        second run started into the same folder is refused instead of mixing their files."""
        check_writable_dir(self.path, "--out")
        if lock and self._lock is None:
            self._lock = hold_or_refuse(self.path, "--out")
        if self.config_path.exists() and self.completed():
            try:
                saved = json.loads(self.config_path.read_text())
            except (OSError, ValueError) as e:
                raise DcbenchError(f"{self.config_path} is unreadable ({e}); move the folder "
                                   f"away or choose another --out") from None
            if not isinstance(saved, dict):
                raise DcbenchError(f"{self.config_path} holds a JSON {type(saved).__name__}, "
                                   f"not a run config (an object of options); restore it, or "
                                   f"move the folder away or choose another --out")
            if not resume:
                raise DcbenchError(f"{self.path} already holds a run; pass --resume to "
                                   f"continue it or choose another --out")
            diff = differences(saved, config)
            if diff:
                shown = ", ".join(f"{k}: {_shown(saved, k)} -> {_shown(config, k)}"
                                  for k in diff)
                raise DcbenchError(f"--resume refused: {self.path} holds a run with a different "
                                   f"config ({shown}); use another --out")
        elif not self.config_path.exists() and self.path.is_dir() and any(self.path.iterdir()):
            raise DcbenchError(f"{self.path} is not empty and holds no dcbench run; choose "
                               f"another --out")

    def create(self, config: dict[str, Any]) -> None:
        """Write the config once everything is checked. A start that failed before its first
        epoch left a config and maybe an assignment but nothing trained: they are replaced."""
        if self.config_path.exists() and not self.completed():
            stale = sorted(self.path.glob("assignments/epoch_*"))
            for f in stale:
                f.unlink()
            say(f"{self.path}: replacing the config of a start that never completed an epoch")
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.config_path, json.dumps(config, indent=2, sort_keys=True) + "\n")

    # -- log ----------------------------------------------------------------------------
    def read_log(self, upto: int | None = None) -> list[dict[str, Any]]:
        """The epoch rows; a line that is not one (edited, junk appended) names file and line:
        resuming on a log it cannot read would rewrite it without that line."""
        if not self.log_path.exists():
            return []
        rows = []
        for n, line in enumerate(self.log_path.read_bytes().splitlines(), 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                ok = isinstance(row, dict) and isinstance(row.get("epoch"), int)
            except ValueError:       # bad JSON or bytes that are not UTF-8
                ok = False
            if not ok:
                raise DcbenchError(f"{self.log_path}:{n} is not an epoch record (expected a "
                                   f"JSON object with an integer 'epoch'); fix or delete that "
                                   f"line, or choose another --out")
            rows.append(row)
        return [r for r in rows if upto is None or r["epoch"] <= upto]

    def write_log(self, rows: list[dict[str, Any]]) -> None:
        atomic_write_text(self.log_path, "".join(json.dumps(r, sort_keys=True) + "\n"
                                                 for r in rows))

    # -- assignments --------------------------------------------------------------------
    def save_assignment(self, epoch: int, assignment: np.ndarray, stats: dict[str, Any]) -> None:
        # int32 halves the files (k < 2^31); -1 marks an unreadable image
        atomic_numpy_save(self.assignment_path(epoch), assignment.astype(np.int32))
        atomic_write_text(self.assignment_path(epoch).with_suffix(".json"),
                          json.dumps(stats, sort_keys=True))

    def load_assignment(self, epoch: int) -> tuple[np.ndarray, dict[str, Any]] | None:
        """The saved assignment of an epoch and its stats, or None if it was never saved."""
        npy, meta = self.assignment_path(epoch), self.assignment_path(epoch).with_suffix(".json")
        if not (npy.exists() and meta.exists()):
            return None
        try:
            assignment = np.load(npy, allow_pickle=False)
            stats = json.loads(meta.read_text())
            ok = (isinstance(assignment, np.ndarray) and assignment.ndim == 1
                  and assignment.dtype.kind in "iu" and isinstance(stats, dict))
        except (OSError, ValueError, EOFError):
            ok = False
        if not ok:
            raise DcbenchError(f"{npy} (or its .json) is not a saved assignment (expected a 1-D "
                               f"integer array and a JSON object); delete both files and "
                               f"--resume clusters that epoch again")
        return assignment.astype(np.int64), stats
