"""What a demo run changed against the records its results folder already held.

A fresh clone's `dcbench demo` re-measures the committed showcase on the user's CPU (a CPU
without AMX pretrains in float32, so its checkpoints and every number measured on them
differ) and appends its records beside the committed ones. This lists, for every number
measured again, the value the folder held before and the new one, so a user sees which
numbers moved instead of diffing 57 files.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dcbench.atomic import atomic_write_text

# what makes two records the same measurement (the checkpoint by its path or random spec:
# a retrained checkpoint has a new sha256 but stands in the same row of the showcase)
KEY = ("task", "setting", "dataset", "split", "metric", "seed", "quick")
MOVED = 0.5         # points: a change smaller than this is within the runs' noise


def _key(record: dict[str, Any]) -> tuple:
    path = str((record.get("checkpoint") or {}).get("path", ""))
    if path.startswith("random:") and path.count(":") == 1:
        path += ":0"                # random:ARCH is recorded as random:ARCH:SEED
    return (path, *(record.get(k) for k in KEY))


def _records(lines: list[str]) -> list[dict[str, Any]]:
    out = []
    for line in lines:
        try:
            r = json.loads(line)
        except ValueError:
            continue
        if isinstance(r, dict) and isinstance(r.get("value"), (int, float)):
            out.append(r)
    return out


def snapshot(records: Path) -> list[str]:
    """The lines the records file holds now (taken before the demo's first step)."""
    return records.read_text().splitlines() if records.is_file() else []


def compare(before: list[str], records: Path, out_csv: Path) -> list[str]:
    """Lines to print: how many of the records added since `before` re-measured a number the
    folder held, and the largest moves; every pair is written to `out_csv`."""
    old_lines = set(before)
    new = _records([x for x in snapshot(records) if x not in old_lines])
    held: dict[tuple, float] = {}
    for r in _records(before):
        held[_key(r)] = float(r["value"])        # the latest: the one the report showed
    pairs = [(k, held[k], float(r["value"])) for r in new if (k := _key(r)) in held]
    if not pairs:
        return [f"[demo] {len(new)} new records; none re-measures a number {records} held"]
    rows = ["checkpoint,task,setting,dataset,split,metric,seed,before,after,change"]
    for k, old, value in sorted(pairs, key=lambda p: -abs(p[2] - p[1])):
        rows.append(",".join(str(x) for x in (*k[:7], f"{old:.4f}", f"{value:.4f}",
                                              f"{value - old:+.4f}")))
    atomic_write_text(out_csv, "\n".join(rows) + "\n")
    moved = [p for p in pairs if abs(p[2] - p[1]) > MOVED]
    lines = [f"[demo] {len(pairs)} numbers measured again against what {records} held "
             f"before this run: {len(moved)} moved by more than {MOVED} (list: {out_csv})"]
    for k, old, value in sorted(moved, key=lambda p: -abs(p[2] - p[1]))[:5]:
        name = Path(k[0]).parent.name if k[0].endswith(".tar") else k[0]
        lines.append(f"[demo]   {k[1]} {k[2]} {k[5]} on {name}: {old:.2f} -> {value:.2f}")
    return lines
