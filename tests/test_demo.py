"""`dcbench demo --quick`: the whole pipeline end to end, and resuming when run again."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def demo(results: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DCBENCH_NO_PROGRESS": "1"}
    return subprocess.run([sys.executable, "-m", "dcbench", "demo", "--quick", "--results",
                           str(results)], capture_output=True, text=True, env=env, timeout=1200)


@pytest.mark.slow
def test_quick_demo_runs_end_to_end_and_resumes(tmp_path: Path):
    results = tmp_path / "results"
    first = demo(results)
    assert first.returncode == 0, first.stderr[-3000:]
    records = [json.loads(x) for x in (results / "records.jsonl").read_text().splitlines()]
    methods = {r["checkpoint"]["method"] for r in records}
    assert methods == {"deepcluster", "supervised", "random"}
    assert {r["task"] for r in records} == {"linear-fmnist", "clustering", "knn"}
    assert all(r["quick"] for r in records)
    for run in ("deepcluster-fmnist", "supervised-fmnist"):
        assert (results / "runs" / run / "checkpoint.pth.tar").is_file()
    report = (results / "report.md").read_text()
    assert "## Table 1" in report
    table1 = (results / "tables" / "table1_linear.csv").read_text()
    assert "deepcluster · " in table1 and "random · random:alexnet-small" in table1
    for fig in ("fig2_nmi", "fig3_cluster_sizes", "probe_layers"):
        png = (results / "figures" / f"{fig}.png").read_bytes()
        assert png.startswith(b"\x89PNG") and len(png) > 5000
    # the closing summary prints the recorded probe accuracies and DeepCluster minus Random
    top1 = {(r["checkpoint"]["method"], r["setting"]): r["value"] for r in records
            if r["task"] == "linear-fmnist" and r["metric"] == "top1"}
    summary = [line[len("[demo]   "):] for line in first.stderr.splitlines()
               if line.startswith("[demo]   ")]
    random_row = next(x for x in summary if x.startswith("Random "))
    diff_row = next(x for x in summary if x.startswith("DeepCluster - Random "))
    layers = [f"conv{i}" for i in range(1, 6)]
    assert random_row.split()[1:] == [f"{top1['random', x]:.2f}" for x in layers]
    assert diff_row.split()[3:] == [f"{top1['deepcluster', x] - top1['random', x]:+.2f}"
                                    for x in layers]
    # run again: nothing is retrained or re-evaluated
    second = demo(results)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "already has 2 epochs" in second.stderr
    assert second.stderr.count("skip ") >= 9
    again = (results / "records.jsonl").read_text().splitlines()
    assert len(again) == len(records)
