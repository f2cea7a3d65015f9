"""Pretraining run folders (`dcbench pretrain --out DIR`) as the figures read them.

A run folder holds config.json, log.jsonl (one line per completed epoch), assignments/
epoch_NNNN.npy and checkpoint.pth.tar. The report only reads them: a folder that is missing
pieces, or whose last log line was cut by a crash, is read as far as it goes and the problem
is reported instead of stopping the report (each problem once, as a warning naming the
file and line, and under the figures in report.md).
"""

from __future__ import annotations

import json
import math
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
    log_lines: dict[int, int] = field(default_factory=dict)     # epoch -> its log.jsonl line

    def note(self, problem: str) -> None:
        if problem not in self.problems:
            self.problems.append(problem)

    def series(self, key: str) -> tuple[list[int], list[float]]:
        """(epochs, values) of a per-epoch log field, skipping epochs where it is null or
        not a number (noted with its line)."""
        pairs = []
        for e in self.log:
            value = e.get(key)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                line = self.log_lines.get(e["epoch"], "?")
                self.note(f"{self.path / 'log.jsonl'}:{line}: {key} is {value!r:.40}, not a "
                          f"number; that epoch is left out of the figures")
                continue
            pairs.append((e["epoch"], float(value)))
        return [p[0] for p in pairs], [p[1] for p in pairs]

    @property
    def clustering(self) -> str | None:
        found = [e["clustering"] for e in self.log if isinstance(e.get("clustering"), str)]
        named = self.config.get("clustering")
        return named if isinstance(named, str) and named else (found[-1] if found else None)

    @property
    def k(self) -> int | None:
        """The config's k, else the last one logged (a value that is no count is passed)."""
        logged = [e["clusters"].get("k") for e in self.log if isinstance(e.get("clusters"), dict)]
        usable = [v for v in [self.config.get("k"), *reversed(logged)]
                  if isinstance(v, (int, float)) and not isinstance(v, bool)
                  and math.isfinite(v) and v >= 1]
        return int(usable[0]) if usable else None

    def last_assignments(self) -> tuple[int, np.ndarray] | None:
        """(epoch, assignment) of the newest readable assignments/epoch_NNNN.npy."""
        for path in sorted((self.path / "assignments").glob("epoch_*.npy"), reverse=True):
            try:
                epoch = int(path.stem.split("_")[1])
                a = np.load(path, allow_pickle=False)
            except (ValueError, OSError, IndexError, EOFError):
                self.note(f"{path}: not a .npy array dcbench can read (garbage, or Python "
                          f"objects, which it never loads); skipped")
                continue
            if not isinstance(a, np.ndarray) or a.ndim != 1 or a.dtype.kind not in "iu":
                what = f"{a.dtype} {a.shape}" if isinstance(a, np.ndarray) else "an archive"
                self.note(f"{path}: holds {what}, not a 1-D integer assignment; skipped")
                continue
            # a cluster index past the images and k is no clustering (and bincount on it
            # would allocate that many counters)
            if a.size and (a.min() < -1 or a.max() >= max(a.size, self.k or 0)):
                self.note(f"{path}: cluster indices {a.min()}..{a.max()} are out of range "
                          f"for {a.size} images; skipped")
                continue
            return epoch, a.astype(np.int64)
        return None


def read_run(path: Path) -> Run | None:
    """The run in `path`, or None when it has no log.jsonl (not a pretraining run)."""
    log_path = path / "log.jsonl"
    if not log_path.is_file():
        return None
    problems, epochs, lines = [], {}, {}
    for n, line in enumerate(log_path.read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        try:                    # json.loads takes bytes: junk that is not UTF-8 fails here
            entry = json.loads(line)
            epoch = entry["epoch"]
            if isinstance(epoch, bool) or not isinstance(epoch, int):
                raise TypeError("epoch")
            epochs[epoch], lines[epoch] = entry, n
        except (KeyError, TypeError, ValueError):
            problems.append(f"{log_path}:{n} is not an epoch record; skipped")
    config: dict[str, Any] = {}
    config_path = path / "config.json"
    if config_path.is_file():
        try:
            config = json.loads(config_path.read_bytes())
        except ValueError:
            problems.append(f"{config_path} is not JSON; ignored")
        if not isinstance(config, dict):
            problems.append(f"{config_path} holds a JSON {type(config).__name__}, not a run "
                            f"config (an object); ignored")
            config = {}
    log = [epochs[e] for e in sorted(epochs)]
    return Run(path=path, name=path.name, config=config, log=log, problems=problems,
               log_lines=lines)


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
