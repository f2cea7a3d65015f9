"""From result records to measured table rows: which records a cell shows and how it reads.

The rules, applied per cell (one checkpoint, task, setting, metric):
- quick records (tests' --quick runs) never reach a table;
- the value is the final one, or the best epoch's with best=True (records without epochs
  have no best and show their final value);
- several configs: the most recently started one is shown and the table says so;
- several seeds: mean ± sample standard deviation (ddof=1); one record per seed, the latest.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from dcbench.report.table import FillCommand

PERCENT_METRICS = {"top1", "top5", "map", "miou", "acc", "map_easy", "map_medium", "map_hard"}
METHOD_ORDER = ("supervised", "deepcluster", "random", "random-rgb")
SPLIT_ORDER = ("test", "val")


@dataclass(frozen=True)
class Column:
    """One value column of a table and the records that fill it."""

    label: str
    task: str
    metric: str
    setting: str | None = None       # None: the row's own setting (rows per layer)
    dataset: str | None = None       # only records of this dataset
    arch: str | None = None          # only checkpoints of this arch; other rows: not applicable
    fill_options: tuple[str, ...] = ()
    fillable: bool = True


@dataclass
class MeasuredRow:
    label: str
    ckpt: str                        # what --ckpt takes to redo it
    lead: dict[str, str] = field(default_factory=dict)
    cells: dict[str, str] = field(default_factory=dict)
    means: dict[str, float] = field(default_factory=dict)
    fill: dict[str, FillCommand] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)


def select(frame: pd.DataFrame, best: bool) -> pd.DataFrame:
    """Non-quick records, with `shown` (the number the report prints) and `ckpt_key`."""
    if frame.empty:
        out = frame.copy()
        out["shown"] = pd.Series(dtype=float)
        out["ckpt_key"] = pd.Series(dtype=object)
        return out
    out = frame[~frame["quick"].map(is_quick).astype(bool)].copy()
    value = pd.to_numeric(out["value"], errors="coerce")
    if best:
        value = pd.to_numeric(out["best"], errors="coerce").fillna(value)
    out["shown"] = value
    # one checkpoint = one set of weights: a bit-identical re-training (a new file hash: the
    # file holds the run's timings) is the same row, its latest records shown
    weights = (out["ckpt_weights_sha256"] if "ckpt_weights_sha256" in out
               else pd.Series(None, index=out.index, dtype=object))
    key = weights.where(weights.notna(), out["ckpt_sha256"])
    key = key.where(key.notna(), out["ckpt_path"])
    out["ckpt_key"] = key.fillna("unknown").astype(str)
    out["started"] = out["started"].fillna("").astype(str)
    return out


def is_quick(flag: object) -> bool:
    """Only a recorded true is quick (older records have no flag)."""
    return flag is True or flag is np.True_


def quick_count(frame: pd.DataFrame) -> int:
    return int(frame["quick"].map(is_quick).sum()) if not frame.empty else 0


def decimals(metric: str) -> int:
    """1 decimal for percents, like the paper; 3 for NMI / ARI in [0, 1]."""
    return 1 if metric in PERCENT_METRICS else 3


def format_value(mean: float, std: float | None, metric: str) -> str:
    """A cell's text. A NaN or infinite value (a diverged run) reads "nan" / "inf" / "-inf",
    never a blank cell that looks unmeasured; its spread would mean nothing and is left out."""
    d = decimals(metric)
    if not np.isfinite(mean):
        return "nan" if np.isnan(mean) else ("inf" if mean > 0 else "-inf")
    return f"{mean:.{d}f}" if std is None else f"{mean:.{d}f} ± {std:.{d}f}"


def short_path(path: str | None) -> str:
    """A checkpoint path short enough for a row label: relative to here, else its tail."""
    if not path:
        return "?"
    p = Path(path)
    if p.is_absolute():
        try:
            return str(p.relative_to(Path.cwd()))
        except ValueError:
            return str(Path(*p.parts[-3:])) if len(p.parts) > 3 else str(p)
    return str(p)


def checkpoint_label(record: pd.Series) -> str:
    """'method · short path · sha256[:8]': what a measured row was computed from."""
    method = record.get("ckpt_method")
    method = method if isinstance(method, str) and method else "foreign"
    sha = record.get("ckpt_sha256")
    sha = sha[:8] if isinstance(sha, str) and sha else "no-sha"
    return f"{method} · {short_path(record.get('ckpt_path'))} · {sha}"


def summarize(records: pd.DataFrame, metric: str, where: str
              ) -> tuple[float, float | None, str, list[str], list[str]] | None:
    """(mean, std, text, notes, commands) of one cell's records, or None when there are none.
    NaN values are kept: a diverged run shows as "nan", not as a cell still to measure."""
    if records.empty:
        return None
    notes = []
    records = records.sort_values("started")
    configs = records["config_hash"].astype(str)
    if configs.nunique() > 1:
        latest = configs.iloc[-1]
        notes.append(f"{where}: {configs.nunique()} configs recorded; showing the most recent "
                     f"({latest}, started {records['started'].iloc[-1]})")
        records = records[configs == latest]
    splits = records["split"].fillna("").astype(str)
    if splits.nunique() > 1:
        ranked = sorted(splits.unique(), key=lambda s: (
            SPLIT_ORDER.index(s) if s in SPLIT_ORDER else len(SPLIT_ORDER), s))
        notes.append(f"{where}: splits {', '.join(sorted(splits.unique()))} recorded; "
                     f"showing {ranked[0]}")
        records = records[splits == ranked[0]]
    per_seed = records.drop_duplicates("seed", keep="last")
    values = per_seed["shown"].to_numpy(dtype=float)
    mean = float(values.mean())
    std = float(values.std(ddof=1)) if len(values) > 1 else None
    commands = [c for c in dict.fromkeys(per_seed["command"].fillna("").astype(str)) if c]
    return mean, std, format_value(mean, std, metric), notes, commands


def _sort_key(record: pd.Series) -> tuple:
    method = record.get("ckpt_method")
    rank = METHOD_ORDER.index(method) if method in METHOD_ORDER else len(METHOD_ORDER)
    return rank, checkpoint_label(record), str(record.get("setting", ""))


def measured_rows(records: pd.DataFrame, columns: list[Column], per_setting: bool = False,
                  lead: dict[str, str] | None = None) -> list[MeasuredRow]:
    """One row per checkpoint (per checkpoint and setting when `per_setting`) that has a
    record in any column; missing applicable cells get the command that would fill them.

    `lead` maps a lead column name to the record field it shows (e.g. the training set).
    """
    wanted = pd.Series(False, index=records.index)
    for col in columns:
        wanted |= _matches(records, col)
    records = records[wanted]
    if records.empty:
        return []
    keys = ["ckpt_key", "setting"] if per_setting else ["ckpt_key"]
    firsts = [group.iloc[-1] for _, group in records.sort_values("started").groupby(keys)]
    rows = []
    for first in sorted(firsts, key=_sort_key):
        mine = records["ckpt_key"] == first["ckpt_key"]
        if per_setting:
            mine &= records["setting"] == first["setting"]
        label = checkpoint_label(first)
        row = MeasuredRow(label=label, ckpt=str(first.get("ckpt_path") or "<ckpt>"))
        if per_setting:
            row.lead["layer"] = str(first["setting"])
        for name, fieldname in (lead or {}).items():
            row.lead[name] = str(first.get(fieldname) or "?")
        for col in columns:
            if col.arch is not None and first.get("ckpt_arch") != col.arch:
                continue                       # another arch's column: not this checkpoint's
            setting = col.setting or (first["setting"] if per_setting else None)
            where = f"{col.task} {setting or ''} {col.metric} of {label}".replace("  ", " ")
            cell = summarize(records[mine & _matches(records, col, setting)], col.metric, where)
            if cell is None:
                if col.fillable and task_fits_arch(col.task, col.dataset, first.get("ckpt_arch")):
                    row.fill[col.label] = FillCommand(col.task, row.ckpt, setting,
                                                      col.fill_options)
                continue
            mean, _, text, notes, commands = cell
            row.cells[col.label], row.means[col.label] = text, mean
            row.notes += notes
            row.commands += [c for c in commands if c not in row.commands]
        rows.append(row)
    return rows


# The image side each task feeds its trunk (tasks on a `dataset` option: that dataset's side).
TASK_SIDE = {"linear-imagenet": 224, "linear-places": 224, "linear-fmnist": 32,
             "retrieval-oxford": 224, "retrieval-paris": 224}
# The VOC tasks resize their crops to each trunk's own input side: every arch fits them.
ANY_ARCH_TASKS = {"voc-cls", "voc-det", "voc-seg"}


def task_fits_arch(task: str, dataset: str | None, arch: object) -> bool:
    """Whether `dcbench eval --task task` can run on a checkpoint of `arch` at all (an
    alexnet-small checkpoint cannot fill an ImageNet column: no fill command is offered)."""
    from dcbench.data import DATASETS
    from dcbench.models import MODELS

    if not isinstance(arch, str) or arch not in MODELS or task in ANY_ARCH_TASKS:
        return True
    side = TASK_SIDE.get(task)
    if side is None and dataset in DATASETS:
        side = 224 if DATASETS[dataset].size == "large" else 32
    # small sets are fed at every trunk's own side (tasks.inputs: upsampled for 224 px ones)
    return side in (None, 32) or MODELS[arch].INPUT_SIZE == side


def _matches(records: pd.DataFrame, col: Column, setting: str | None = None) -> pd.Series:
    hit = (records["task"] == col.task) & (records["metric"] == col.metric)
    if setting or col.setting:
        hit &= records["setting"] == (setting or col.setting)
    if col.dataset is not None:
        hit &= records["dataset"] == col.dataset
    if col.arch is not None:
        hit &= records["ckpt_arch"] == col.arch
    return hit
