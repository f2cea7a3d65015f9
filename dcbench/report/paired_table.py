"""The low-label probes paired by seed: every trunk minus the Random trunk of its own arch.

Seed s of linear-fmnist-10 / -100 draws one labelled subset, the same for every checkpoint,
so a trunk's per-seed difference to the Random trunk on the same subset drops most of the
subset-to-subset spread that the mean ± std of "Table 1 with headroom" carries. Each cell is
the checkpoint's mean over its seeds and, in brackets, the mean ± std (ddof 1) of its
per-seed differences to random:ARCH over the seeds both have. This is how the fidelity sweep
(README) scores its levers.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dcbench.report import published as pub
from dcbench.report.measured import checkpoint_label, format_value, select
from dcbench.report.table import Table

TASKS = {"linear-fmnist-10": "10/class", "linear-fmnist-100": "100/class"}


def per_seed(records: pd.DataFrame) -> dict[str, dict[tuple[str, int], float]]:
    """ckpt_key -> {(column, seed): value}: the latest record per cell and seed, of the most
    recently started config of each checkpoint and task (the report's rule for a cell)."""
    out: dict[str, dict[tuple[str, int], float]] = {}
    for (key, task), group in records.groupby(["ckpt_key", "task"], sort=False):
        group = group.sort_values("started")
        group = group[group["config_hash"] == group["config_hash"].iloc[-1]]
        cells = out.setdefault(str(key), {})
        for r in group.itertuples():
            cells[(f"{TASKS[task]} {r.setting}", int(r.seed))] = float(r.shown)
    return out


def paired_cell(mine: dict[int, float], random: dict[int, float]) -> str:
    """'mean (+d ± s)' over the seeds of `mine`; d and s over the seeds both share."""
    mean = float(np.mean(list(mine.values())))
    shared = sorted(set(mine) & set(random))
    diffs = np.array([mine[s] - random[s] for s in shared])
    if not shared or not np.isfinite(diffs).all():     # NaN / inf: the value alone, marked
        return format_value(mean, None, "top1")
    spread = f" ± {diffs.std(ddof=1):.1f}" if len(diffs) > 1 else ""
    return f"{mean:.1f} ({diffs.mean():+.1f}{spread})"


def paired_table(frame: pd.DataFrame, best: bool = False) -> Table | None:
    """None when no trunk has a low-label probe beside a Random trunk of its arch."""
    records = select(frame, best)
    if records.empty:
        return None
    records = records[records["task"].isin(list(TASKS)) & (records["metric"] == "top1")
                      & records["seed"].notna()]
    if records.empty:
        return None
    values = per_seed(records)
    first = records.sort_values("started").groupby("ckpt_key", sort=False).head(1)
    info = {str(r["ckpt_key"]): r for _, r in first.iterrows()}
    columns = [f"{probe} {layer}" for probe in TASKS.values() for layer in pub.LAYERS]
    randoms: dict[str, str] = {}        # arch -> the ckpt_key of its Random trunk with most values
    for key, r in info.items():
        if str(r.get("ckpt_method")) == "random":
            arch = str(r.get("ckpt_arch"))
            if arch not in randoms or len(values[key]) > len(values[randoms[arch]]):
                randoms[arch] = key
    data = []
    for key, r in sorted(info.items(), key=lambda kv: checkpoint_label(kv[1])):
        random_key = randoms.get(str(r.get("ckpt_arch")))
        if random_key is None:
            continue
        row = {"method": checkpoint_label(r), "source": "measured",
               "paired with": "itself" if key == random_key
               else checkpoint_label(info[random_key])}
        for col in columns:
            mine = {s: v for (c, s), v in values[key].items() if c == col}
            other = {s: v for (c, s), v in values[random_key].items() if c == col}
            row[col] = ("" if not mine else format_value(np.mean(list(mine.values())), None,
                                                         "top1")
                        if key == random_key else paired_cell(mine, other))
        data.append(row)
    if not any(row["paired with"] != "itself" for row in data):
        return None
    used = [c for c in columns if any(row[c] for row in data)]
    table_frame = pd.DataFrame(data, columns=["method", "source", "paired with", *used],
                               dtype=object)
    notes = ["Cells: the mean top-1 (%) over the probe's seeds; in brackets the mean ± std of "
             "the per-seed differences to the Random trunk of the same arch (seed s draws the "
             "same labelled subset for every trunk, so these pairs share their subset).",
             "Final values" + (" (best epoch)" if best else "") + "; one record per seed, "
             "the latest, of each checkpoint's latest config."]
    commands = list(dict.fromkeys(records["command"].dropna().astype(str)))
    return Table(name="probe_paired", title="Low-label probes paired by seed with the Random "
                 "trunk of the same arch (top-1, %)", frame=table_frame, value_columns=used,
                 notes=notes, commands=commands, has_measured=True)
