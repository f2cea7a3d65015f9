"""The demo's closing list of numbers that moved against what the results folder held."""

from __future__ import annotations

import json
from pathlib import Path

from dcbench.demo_changes import compare, snapshot


def rec(path: str, task: str, setting: str, value: float, started: str) -> str:
    return json.dumps({"task": task, "setting": setting, "dataset": "fashion-mnist",
                       "split": "test", "metric": "top1", "seed": 0, "quick": False,
                       "value": value, "started": started, "checkpoint": {"path": path}})


DC = "results/runs/deepcluster-fmnist/checkpoint.pth.tar"


def test_moves_are_listed_against_the_latest_held_value(tmp_path: Path) -> None:
    """The held value is the latest record of its key (an older showcase's 80.0 is not the
    baseline); `random:alexnet-small` matches its recorded form `random:...:0`; a record of a
    new key is not a move; only |change| > 0.5 counts as moved, all go to the CSV, largest
    first."""
    records = tmp_path / "records.jsonl"
    records.write_text("\n".join([
        rec(DC, "knn", "conv5", 80.0, "1"), rec(DC, "knn", "conv5", 88.0, "2"),
        rec(DC, "knn", "fc7", 85.0, "2"), rec("random:alexnet-small:0", "knn", "fc7", 70.0, "2"),
    ]) + "\n")
    before = snapshot(records)
    with open(records, "a") as f:
        f.write("\n".join([
            rec(DC, "knn", "conv5", 86.5, "3"),            # -1.5: moved
            rec(DC, "knn", "fc7", 85.3, "3"),              # +0.3: within noise
            rec("random:alexnet-small", "knn", "fc7", 70.9, "3"),   # +0.9: moved
            rec(DC, "voc-cls", "fc6-8", 40.0, "3"),        # nothing held: not a move
        ]) + "\n")
    lines = compare(before, records, tmp_path / "tables" / "changes.csv")
    assert lines[0].startswith("[demo] 3 numbers measured again against what ")
    assert "2 moved by more than 0.5" in lines[0]
    assert lines[1:] == ["[demo]   knn conv5 top1 on deepcluster-fmnist: 88.00 -> 86.50",
                         "[demo]   knn fc7 top1 on random:alexnet-small:0: 70.00 -> 70.90"]
    csv = (tmp_path / "tables" / "changes.csv").read_text().splitlines()
    assert [row.split(",")[-1] for row in csv[1:]] == ["-1.5000", "+0.9000", "+0.3000"]


def test_a_first_run_into_an_empty_folder_says_nothing_moved(tmp_path: Path) -> None:
    records = tmp_path / "records.jsonl"
    before = snapshot(records)
    records.write_text(rec(DC, "knn", "conv5", 86.5, "3") + "\n")
    assert compare(before, records, tmp_path / "c.csv") == [
        f"[demo] 1 new records; none re-measures a number {records} held"]
    assert not (tmp_path / "c.csv").exists()
