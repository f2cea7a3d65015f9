"""dcbench.step_meter's arithmetic and budget, and `dcbench preflight` on a VOC tree: the table
and projection it prints, nothing recorded, a broken tree named before any work."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from dcbench import step_meter
from dcbench.cli import cli
from dcbench.preflight import duration
from dcbench.rehearsal.voc_tree import build_voc_size_tree
from dcbench.step_meter import Phase, StepBudgetReached


def test_rate_leaves_out_the_warm_up_steps_and_projects_the_planned_steps() -> None:
    # step ends at 1, 2, 4, 7, 11, 16 s: after the 2 warm-up steps, 4 steps in 14 s
    p = Phase("train", planned=100, started=0.0, ends=[1.0, 2.0, 4.0, 7.0, 11.0, 16.0],
              images=[10] * 6)
    assert p.timed() == (4, 14.0, 40)
    assert p.seconds_per_step() == 3.5              # 16/6 with the warm-up; 3.0 one step late
    assert p.images_per_second() == pytest.approx(40 / 14)
    assert p.projected_seconds() == 350.0
    short = Phase("train", planned=10, started=0.0, ends=[2.0, 3.0, 5.0], images=[1, 1, 1])
    assert short.seconds_per_step() == pytest.approx(5 / 3)     # too few: every step counts


def test_loss_trend_compares_the_halves_and_finds_the_first_non_finite_step() -> None:
    p = Phase("train", planned=5, losses=[4.0, 3.0, 2.0, 1.0, 0.5])
    assert p.loss_trend() == (3.5, 0.75)            # the middle step is in neither half
    assert Phase("t", 3, losses=[1.0, 2.0, 3.0]).loss_trend() is None
    assert Phase("t", 3, losses=[1.0, 2.0, math.nan, 4.0]).first_non_finite() == 3


def test_the_meter_stops_a_loop_at_its_budget_and_is_idle_outside_metering() -> None:
    seen = []
    with step_meter.metering(3) as meter, pytest.raises(StepBudgetReached):
        step_meter.begin("loop", 1000)
        for i in range(1000):
            seen.append(i)
            step_meter.step(8, 1.0 / (i + 1))
    assert seen == [0, 1, 2] and meter.phases[0].losses == [1.0, 0.5, 1 / 3]
    step_meter.begin("idle", 5)
    for _ in range(5):
        step_meter.step(8, math.nan)                # idle: nothing recorded, nothing raised
    with step_meter.metering(100) as meter, pytest.raises(StepBudgetReached, match="nan"):
        step_meter.begin("diverging", 100)
        for loss in (1.0, 1e20, math.nan, 1.0):
            step_meter.step(1, loss)
    assert meter.phases[0].first_non_finite() == 3
    with step_meter.metering(2) as meter:           # one-time work is timed, never cut short
        step_meter.begin("proposals", 5, "img", limited=False)
        for _ in range(5):
            step_meter.step(1)
    assert meter.phases[0].steps == 5


def test_durations_read_in_the_unit_a_person_plans_with() -> None:
    assert [duration(s) for s in (42, 750, 11520, 4 * 86400)] == [
        "42 s", "12.5 min", "3.2 h", "4.0 days"]


@pytest.mark.slow
def test_preflight_on_a_voc_tree_prints_its_projection_and_records_nothing(
        voc_quick_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "pf.json"
    result = CliRunner().invoke(cli, [
        "preflight", "--task", "voc-cls", "--ckpt", "random:alexnet-small", "--quick",
        "--data-root", str(voc_quick_root), "--steps", "6", "--json", str(out)])
    assert result.exit_code == 0, result.output
    text = result.output
    assert "fc6-8 -> finite" in text and "all -> finite" in text
    assert "nothing was recorded" in text and "projected:" in text
    assert not (tmp_path / "results").exists()          # never written as results
    import json

    report = json.loads(out.read_text())
    for s in report["settings"]:
        (phase,) = [p for p in s["phases"] if p["name"].endswith("training")]
        assert phase["steps"] == 6 and len(phase["losses"]) == 6
        assert phase["planned"] == 20       # the quick recipe's iterations
        assert phase["projected_seconds"] == pytest.approx(
            phase["seconds_per_step"] * 20)
        assert s["peak_rss_bytes"] > 100 * 2**20


def test_preflight_names_the_broken_file_before_any_work(
        fmnist_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    from test_bad_inputs import run_cli

    root = build_voc_size_tree(tmp_path / "voc2007", fmnist_root,
                               {"train": 2, "val": 1, "test": 2})
    victim = sorted((root / "Annotations").iterdir())[3]
    victim.write_text(victim.read_text().replace("<xmax>", "<xmax>wide", 1))
    code, err = run_cli(["preflight", "--task", "voc-cls", "--ckpt", "random:alexnet",
                         "--data-root", str(tmp_path), "--set", "dataset=voc2007"],
                        monkeypatch, capsys)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert str(victim) in err and "xmax" in err
    assert "training" not in capsys.readouterr().out


def test_pretrain_preflight_projects_the_full_data_set_and_every_epoch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    """60,000 images in batches of 64 for 10 epochs: 9,375 steps of each pass, projected
    from a subset of 4 batches (4 without the scale to the full set, 938 without the
    epochs); nothing is written."""
    import sys

    from dcbench.cli import main

    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(sys, "argv", ["dcbench", "pretrain", "--data", "fashion-mnist",
                                      "--batch-size", "64", "--preflight", "3", "--json",
                                      str(tmp_path / "pf.json")])
    main()
    out = capsys.readouterr().out
    rows = {line.split()[1]: line.split() for line in out.splitlines()
            if line.startswith("deepcluster ") and "->" not in line}
    assert rows["clustering"][-4:-2] == ["9375", "batch"]     # the clustering pass
    assert rows["train"][3] == "3" and rows["train"][-4:-2] == ["9375", "batch"]
    assert "deepcluster -> finite" in out and "60,000 images; metered on 256" in out
    assert list(cwd.iterdir()) == []
    import json

    (report,) = json.loads((tmp_path / "pf.json").read_text())["settings"]
    empty = [p for p in report["phases"] if p["steps"] == 0]   # all 256 in the PCA sample
    assert [p["name"] for p in empty] == ["clustering pass: features (reduce)"]
    assert empty[0]["seconds_per_step"] is None


def test_pretrain_needs_out_except_in_a_preflight(monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture) -> None:
    from test_bad_inputs import run_cli

    code, err = run_cli(["pretrain", "--data", "fashion-mnist"], monkeypatch, capsys)
    assert code == 2 and "Missing option '--out'" in err
    code, err = run_cli(["pretrain", "--data", "fashion-mnist", "--out", "x", "--json", "y"],
                        monkeypatch, capsys)
    assert code == 2 and "--json goes with --preflight" in err


def test_a_probe_is_metered_as_it_runs_its_layers_in_one_pass(tmp_path: Path) -> None:
    """A linear probe trains the five layers' heads on one forward pass: one metered run of
    conv1..conv5 (five runs would project five times the cost); VOC's two settings are two
    trainings, metered apart (the VOC test above)."""
    import json

    out = tmp_path / "pf.json"
    result = CliRunner().invoke(cli, [
        "preflight", "--task", "linear-fmnist", "--ckpt", "random:alexnet-small", "--quick",
        "--steps", "3", "--json", str(out)])
    assert result.exit_code == 0, result.output
    (report,) = json.loads(out.read_text())["settings"]
    assert report["setting"] == "conv1+conv2+conv3+conv4+conv5"
    (phase,) = [p for p in report["phases"] if p["steps"]]
    assert phase["name"].startswith("linear-fmnist training") and phase["steps"] == 3
