"""The trunk's learning rate over a pretraining run: the paper's constant rate by default, a
cosine decay for the standard-recipe supervised baseline, replayed exactly on resume."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from test_pretrain import pretrain, weights

from dcbench.faults import KILLED_EXIT
from dcbench.methods.config import differences, epoch_lr, resolve


def test_cosine_starts_at_lr_halves_midway_and_constant_stays():
    cfg = {"lr": 0.08, "epochs": 4, "lr_schedule": "cosine"}
    assert [epoch_lr(cfg, e) for e in (1, 2, 3, 4)] == pytest.approx(
        [0.08, 0.04 * (1 + math.cos(math.pi / 4)), 0.04, 0.04 * (1 + math.cos(3 * math.pi / 4))])
    assert [epoch_lr({**cfg, "lr_schedule": "constant"}, e) for e in (1, 4)] == [0.08, 0.08]
    assert epoch_lr({"lr": 0.08, "epochs": 4}, 3) == 0.08      # runs saved before the key


def test_runs_saved_before_the_schedule_existed_resume_as_constant():
    new = resolve({"data": "fashion-mnist", "out": "x"})
    old = {k: v for k, v in new.items() if k != "lr_schedule"}
    assert new["lr_schedule"] == "constant" and differences(old, new) == []
    assert differences(old, {**new, "lr_schedule": "cosine"}) == ["lr_schedule"]


def test_a_cosine_run_refuses_a_resume_with_other_epochs():
    """The cosine spans the run's epochs: more epochs is another schedule (a constant-lr run
    may be extended)."""
    cos = resolve({"data": "fashion-mnist", "out": "x", "lr_schedule": "cosine"})
    assert differences(cos, {**cos, "epochs": 20}) == ["epochs"]
    const = resolve({"data": "fashion-mnist", "out": "x"})
    assert differences(const, {**const, "epochs": 20}) == []


def test_a_killed_cosine_run_resumes_at_its_epochs_rate(tmp_path: Path):
    """Killed inside epoch 2 of 2, the resume trains epoch 2 at lr / 2 (not the lr of the
    optimizer state it restores, nor the base lr) and ends with the uninterrupted run's bits."""
    args = ["--method", "supervised", "--lr-schedule", "cosine", "--epochs", "2"]
    straight = tmp_path / "straight"
    pretrain(straight, *args)
    log = [json.loads(x) for x in (straight / "log.jsonl").read_text().splitlines()]
    assert [r["lr"] for r in log] == [0.05, 0.025]
    cut = tmp_path / "cut"
    assert pretrain(cut, *args, fault="mid-train:2", check=False).returncode == KILLED_EXIT
    pretrain(cut, *args, "--resume")
    assert [json.loads(x)["lr"] for x in (cut / "log.jsonl").read_text().splitlines()] == \
        [0.05, 0.025]
    a, b = weights(straight / "checkpoint.pth.tar"), weights(cut / "checkpoint.pth.tar")
    assert all((a[k] == b[k]).all() for k in a)
