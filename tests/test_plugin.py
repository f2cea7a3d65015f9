"""Third-party tasks plug in through the `dcbench.tasks` entry-point group: install the tiny
package in tests/plugin_pkg (offline, into a temporary folder) and use it from the CLI."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PLUGIN = Path(__file__).resolve().parent / "plugin_pkg"


@pytest.mark.slow
def test_entry_point_plugin_is_listed_and_runs(tmp_path: Path) -> None:
    site, source = tmp_path / "site", tmp_path / "plugin_pkg"
    shutil.copytree(PLUGIN, source)            # the build leaves its build/ folder there
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", "--target", str(site), str(source)],
                   check=True, capture_output=True, text=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(site), "DCBENCH_NO_PROGRESS": "1"}

    def dcbench(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "dcbench", *args], capture_output=True,
                              text=True, env=env, cwd=tmp_path, timeout=300)

    listing = dcbench("tasks")
    assert listing.returncode == 0, listing.stderr
    assert "plugin-demo  -  mean activation norm" in listing.stdout
    assert "settings: conv5 fc7" in listing.stdout and "warning:" not in listing.stdout

    results = tmp_path / "results"
    run = dcbench("eval", "--task", "plugin-demo", "--ckpt", "random:alexnet-small", "--quick",
                  "--results", str(results))
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in (results / "records.jsonl").read_text().splitlines()]
    assert [(r["task"], r["setting"], r["metric"]) for r in records] == [
        ("plugin-demo", "conv5", "act_norm"), ("plugin-demo", "fc7", "act_norm")]
    assert all(r["value"] > 0 and r["config"] == {"images": 2, "quick": True, "options": {}}
               for r in records)


@pytest.mark.slow
def test_datasets_trunks_and_methods_plug_in_through_their_entry_points(tmp_path: Path) -> None:
    """The three other registries take plugins the way tasks do (issue 36): the package's
    noise dataset, half-width trunk and renamed DeepCluster method are listed, chosen by name
    and trained on together."""
    site, source = tmp_path / "site", tmp_path / "plugin_pkg"
    shutil.copytree(PLUGIN, source)
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps",
                    "--no-build-isolation", "--no-index", "--target", str(site), str(source)],
                   check=True, capture_output=True, text=True, timeout=300)
    env = {**os.environ, "PYTHONPATH": str(site), "DCBENCH_NO_PROGRESS": "1"}
    listing = subprocess.run([sys.executable, "-m", "dcbench", "data", "list"],
                             capture_output=True, text=True, env=env, timeout=300)
    assert listing.returncode == 0 and "plugin-noise" in listing.stdout, listing.stderr
    out = tmp_path / "run"
    run = subprocess.run([sys.executable, "-m", "dcbench", "pretrain", "--method", "plugin-dc",
                          "--arch", "alexnet-small-half", "--data", "plugin-noise", "--k", "3",
                          "--pca-dim", "8", "--batch-size", "32", "--workers", "0",
                          "--epochs", "1", "--out", str(out)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    config = json.loads((out / "config.json").read_text())
    assert (config["method"], config["arch"], config["data"]) == (
        "plugin-dc", "alexnet-small-half", "plugin-noise")
    (row,) = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert row["images_trained"] == 300 and row["clusters"]["k"] == 3
