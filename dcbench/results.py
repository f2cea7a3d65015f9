"""Result records: one JSON line per (task, setting, metric) in results/records.jsonl.

A record carries everything needed to trust and repeat a number: the final value and the best
value with its epoch, the seed, the task config and its hash, the checkpoint (path, sha256,
arch, method, epoch), the code version, when it started, how long it took, the device and the
world size. Appends are atomic (see dcbench.atomic). A (task, setting, checkpoint sha256,
config hash, seed) already recorded is a cache hit: `dcbench eval` skips it unless --force.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dcbench.atomic import atomic_append_lines, locked

if TYPE_CHECKING:
    import pandas as pd

DEFAULT_RESULTS_DIR = Path("results")


def results_dir(override: str | os.PathLike | None = None) -> Path:
    """--results, else $DCBENCH_RESULTS, else results/. An empty value is refused: as a
    path it is the current folder, where records would land unnoticed."""
    from dcbench.errors import DcbenchError

    if override is not None:
        if not str(override).strip():
            raise DcbenchError("--results is empty; pass a results folder, e.g. --results "
                               "results")
        return Path(override)
    env = os.environ.get("DCBENCH_RESULTS")
    if env is not None and not env.strip():
        raise DcbenchError("DCBENCH_RESULTS is set but empty; set it to a results folder "
                           "(export DCBENCH_RESULTS=results) or unset it (default: results)")
    return Path(env) if env is not None else DEFAULT_RESULTS_DIR


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


def save_records(records: list[Record], results: str | os.PathLike | None = None) -> Path:
    """Append to records.jsonl; if that fails (disk full, folder gone, permissions changed
    mid-run), the computed records are written beside the working directory instead and
    the error says where: a result, once computed, is never lost."""
    try:
        return append_records(records, results)
    except OSError as e:
        from dcbench.errors import DcbenchError

        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        for folder in (Path.cwd(), Path(tempfile.gettempdir())):
            rescue = folder / f"dcbench-unsaved-records-{stamp}-{os.getpid()}.jsonl"
            try:
                atomic_append_lines(rescue, [r.to_json() for r in records])
            except OSError:
                continue
            raise DcbenchError(f"could not write {records_path(results)} ({e.strerror or e}); "
                               f"the {len(records)} computed records are saved in {rescue}: "
                               f"append them with cat {rescue} >> "
                               f"{records_path(results)}") from None
        raise


@contextmanager
def computing(root: Path, key: tuple) -> Iterator[None]:
    """Hold a lock per (task, checkpoint, config, seed) while it is computed and recorded,
    so two identical evals started together do the work once: the second waits, then finds
    the records. One process under torchrun per rank would deadlock on it: no lock there."""
    from dcbench import distributed
    from dcbench.progress import say

    if distributed.is_distributed():
        yield
        return
    digest = hashlib.sha256(repr(key).encode()).hexdigest()[:16]
    with locked(root / ".locks" / digest, on_wait=lambda lock: say(
            f"waiting for another dcbench eval of the same task, checkpoint, config and seed "
            f"to finish (lock {lock})")):
        yield


# what a line must hold to be a record: key -> accepted types (the rest is provenance)
REQUIRED: dict[str, tuple[type, ...]] = {
    "task": (str,), "setting": (str,), "metric": (str,), "value": (int, float),
    "checkpoint": (dict,), "seed": (int,), "config_hash": (str,),
}
_warned: set[tuple[str, int, str]] = set()


def record_problem(obj: Any) -> str | None:
    """Why a parsed line is not a record (None when it is one)."""
    if not isinstance(obj, dict):
        return f"a JSON {type(obj).__name__}, not an object"
    for key, kinds in REQUIRED.items():
        if key not in obj:
            return f"no '{key}'"
        if not isinstance(obj[key], kinds) or isinstance(obj[key], bool):
            return f"'{key}' is {obj[key]!r}"
    if not isinstance(obj["checkpoint"].get("sha256"), str):
        return "no checkpoint sha256"
    return None


def parse_records(path: str | os.PathLike
                  ) -> tuple[list[dict[str, Any]], list[tuple[int, str, str]]]:
    """(records, [(line number, line, why it is not a record)]) of a file; none if absent."""
    p = Path(path)
    if not p.exists():
        return [], []
    if not p.is_file():
        from dcbench.errors import DcbenchError
        raise DcbenchError(f"{p} is not a file; --results must be a folder holding "
                           f"records.jsonl")
    out, bad = [], []
    for n, line in enumerate(p.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            why = record_problem(obj)
        except json.JSONDecodeError as e:
            why = f"not JSON: {e.msg}"
        if why is None:
            out.append(obj)
        else:
            bad.append((n, line, why))
    return out, bad


def read_records(path: str | os.PathLike) -> list[dict[str, Any]]:
    """All records of a file (an absent file has none). A line that is not a record (bad
    JSON, or JSON without the record's fields) is skipped with a warning naming file and
    line: one bad line never hides the others or stops a report."""
    out, bad = parse_records(path)
    for n, line, why in bad:
        if (str(path), n, line) not in _warned:
            _warned.add((str(path), n, line))
            print(f"warning: {path}:{n} is not a dcbench record ({why}); skipped (fix or "
                  f"delete that line)", file=sys.stderr)
    return out


def recorded_keys(results: str | os.PathLike | None = None) -> set[tuple]:
    return {cache_key(r["task"], r["setting"], r["checkpoint"]["sha256"], r["config_hash"],
                      r["seed"]) for r in read_records(records_path(results))}


def load_frame(path: str | os.PathLike) -> pd.DataFrame:
    """Records as a DataFrame, checkpoint fields flattened to ckpt_* columns."""
    import pandas as pd  # 0.2 s: imported where used (startup time)

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
