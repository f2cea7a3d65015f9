"""Result records: one JSON line per (task, setting, metric) in results/records.jsonl.

A record carries everything needed to trust and repeat a number: the final value and the best
value with its epoch, the seed, the task config and its hash, the checkpoint (path, sha256,
arch, method, epoch), the code version, when it started, how long it took, the device and the
world size. Appends are atomic (see dcbench.atomic). A (task, setting, checkpoint sha256,
config hash, seed) already recorded is a cache hit: `dcbench eval` skips it unless --force.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from dcbench.atomic import atomic_append_lines

DEFAULT_RESULTS_DIR = Path("results")


def results_dir(override: str | os.PathLike | None = None) -> Path:
    if override is not None:
        return Path(override)
    return Path(os.environ.get("DCBENCH_RESULTS", DEFAULT_RESULTS_DIR))


def records_path(results: str | os.PathLike | None = None) -> Path:
    return results_dir(results) / "records.jsonl"


@dataclass
class Record:
    task: str
    setting: str
    dataset: str
    split: str
    metric: str
    value: float                      # the final value (last epoch where the task has epochs)
    best: float | None                # the best value over epochs (None where no epochs)
    best_epoch: int | None
    epochs: int | None
    checkpoint: dict[str, Any]        # path, sha256, arch, sobel, format, epoch, method, k
    seed: int
    config: dict[str, Any]
    config_hash: str
    code_version: str
    dcbench_version: str
    started: str                      # ISO 8601, UTC
    seconds: float
    device: str
    world_size: int
    quick: bool = False
    command: str = ""                 # the command line that produced the record
    extra: dict[str, Any] = field(default_factory=dict)

    def key(self) -> tuple:
        return cache_key(self.task, self.setting, self.checkpoint["sha256"], self.config_hash,
                         self.seed)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True, default=str)


def cache_key(task: str, setting: str, sha256: str, config_hash: str, seed: int) -> tuple:
    return (task, setting, sha256, config_hash, int(seed))


def append_records(records: list[Record], results: str | os.PathLike | None = None) -> Path:
    path = records_path(results)
    atomic_append_lines(path, [r.to_json() for r in records])
    return path


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of a file (an absent file has none). A corrupt line is a clear error."""
    p = Path(path)
    if not p.exists():
        return []
    out = []
    for n, line in enumerate(p.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError as e:
            from dcbench.errors import DcbenchError
            raise DcbenchError(f"{p}:{n} is not a JSON record ({e.msg}); fix or delete that "
                               f"line") from None
    return out


def recorded_keys(results: str | os.PathLike | None = None) -> set[tuple]:
    return {cache_key(r["task"], r["setting"], r["checkpoint"]["sha256"], r["config_hash"],
                      r["seed"]) for r in read_records(records_path(results))}


def load_frame(path: str | os.PathLike) -> pd.DataFrame:
    """Records as a DataFrame, checkpoint fields flattened to ckpt_* columns."""
    rows = []
    for r in read_records(path):
        row = {k: v for k, v in r.items() if k not in ("checkpoint", "config", "extra")}
        for k, v in (r.get("checkpoint") or {}).items():
            row[f"ckpt_{k}"] = v
        row["config"] = r.get("config", {})
        row["extra"] = r.get("extra", {})
        rows.append(row)
    cols = ["task", "setting", "dataset", "split", "metric", "value", "best", "best_epoch",
            "epochs", "seed", "config_hash", "code_version", "started", "seconds", "device",
            "world_size", "quick", "command", "ckpt_path", "ckpt_sha256", "ckpt_arch",
            "ckpt_method", "ckpt_epoch", "ckpt_format", "ckpt_sobel", "ckpt_k", "ckpt_data",
            "config", "extra"]
    frame = pd.DataFrame(rows)
    for c in cols:
        if c not in frame.columns:
            frame[c] = pd.Series(dtype=object)
    return frame
