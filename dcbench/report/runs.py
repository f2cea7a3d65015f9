"""Pretraining run folders (`dcbench pretrain --out DIR`) as the figures read them.

A run folder holds config.json, log.jsonl (one line per completed epoch), assignments/
epoch_NNNN.npy and checkpoint.pth.tar. The report only reads them: a folder that is missing
pieces, or whose last log line was cut by a crash, is read as far as it goes and the problem
is reported instead of stopping the report.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd


@dataclass
class Run:
    path: Path
    name: str
    config: dict[str, Any]
    log: list[dict[str, Any]]                  # one entry per epoch, sorted, last write wins
    problems: list[str] = field(default_factory=list)

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """(epochs, values) of a per-epoch log field, skipping epochs where it is null."""
        pairs = [(e["epoch"], e[key]) for e in self.log if e.get(key) is not None]
        return [p[0] for p in pairs], [float(p[1]) for p in pairs]

    @property
    def clustering(self) -> str | None:
        found = [e.get("clustering") for e in self.log if e.get("clustering")]
        return self.config.get("clustering") or (found[-1] if found else None)

    @property
    def k(self) -> int | None:
        if self.config.get("k"):
            return int(self.config["k"])
        found = [e["clusters"].get("k") for e in self.log if e.get("clusters")]
        return int(found[-1]) if found and found[-1] else None

    def last_assignments(self) -> tuple[int, np.ndarray] | None:
        """(epoch, assignment) of the newest readable assignments/epoch_NNNN.npy."""
        for path in sorted((self.path / "assignments").glob("epoch_*.npy"), reverse=True):
            try:
                epoch = int(path.stem.split("_")[1])
                return epoch, np.asarray(np.load(path, allow_pickle=False)).astype(np.int64)
            except (ValueError, OSError, IndexError) as e:
                self.problems.append(f"{path}: unreadable ({e})")
        return None


def read_run(path: Path) -> Run | None:
    """The run in `path`, or None when it has no log.jsonl (not a pretraining run)."""
    log_path = path / "log.jsonl"
    if not log_path.is_file():
        return None
    problems, epochs = [], {}
    for n, line in enumerate(log_path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            entry = json.loads(line)
            epochs[int(entry["epoch"])] = entry
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            problems.append(f"{log_path}:{n} is not an epoch record; skipped")
    config: dict[str, Any] = {}
    config_path = path / "config.json"
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            problems.append(f"{config_path} is not JSON; ignored")
    log = [epochs[e] for e in sorted(epochs)]
    return Run(path=path, name=path.name, config=config, log=log, problems=problems)


def run_folders(results: Path, runs: list[str] | None, records: pd.DataFrame) -> list[Path]:
    """The folders given, else results/runs/* and the folders of recorded checkpoints."""
    if runs:
        return [Path(r) for r in runs]
    folders = sorted(p for p in (results / "runs").glob("*") if p.is_dir())
    for ckpt in records["ckpt_path"].dropna().astype(str).unique():
        folder = Path(ckpt).parent          # random:ARCH specs are no file: skipped here
        if Path(ckpt).is_file() and (folder / "log.jsonl").is_file():
            folders.append(folder)
    unique: dict[Path, Path] = {}
    for folder in folders:
        unique.setdefault(folder.resolve(), folder)
    return list(unique.values())


def find_runs(results: Path, runs: list[str] | None, records: pd.DataFrame
              ) -> tuple[list[Run], list[str]]:
    """The readable runs, and notes on the folders that are not (or only partly) readable."""
    found, notes = [], []
    for folder in run_folders(results, runs, records):
        run = read_run(folder)
        if run is None:
            if runs:
                notes.append(f"{folder}: no log.jsonl; not a pretraining run folder, skipped")
            continue
        found.append(run)
    names = [r.name for r in found]
    for run in found:
        if names.count(run.name) > 1:       # same folder name in two places: add the parent
            run.name = f"{run.path.parent.name}/{run.name}"
    return found, notes
