"""dcbench.evaluate: records, the cache, seeds, the frozen-trunk check and bad input."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest
import torch

import dcbench
from dcbench import evaluate, tasks
from dcbench.checkpoint import save_checkpoint
from dcbench.errors import DcbenchError
from dcbench.evaluate import parse_overrides, parse_value, run_eval, task_table
from dcbench.models import build_model
from dcbench.provenance import config_hash, sha256_file
from dcbench.results import Record, read_records, records_path

REPO = Path(__file__).resolve().parent.parent


def opts(task: str, results: Path, **kw) -> dict:
    return {"task": task, "ckpt": "random:alexnet-small", "settings": (), "seed": 0,
            "seeds": 1, "force": False, "quick": True, "data_root": None,
            "results": str(results), "overrides": (), "workers": 0, **kw}


class Constant(tasks.Task):
    """Measures the trunk's first conv weight sum; no data, instant."""

    options = {"scale": 1.0}

    def config(self, ctx: tasks.RunContext) -> dict:
        return {"scale": ctx.options.get("scale", 1.0)}

    def run(self, trunk, settings, ctx):
        value = float(trunk.features[0].weight.detach().sum()) * self.config(ctx)["scale"]
        return [tasks.Measurement(setting=s, dataset="none", split="none", metric="wsum",
                            value=value, best=value + 1.0, best_epoch=3, epochs=3)
                for s in settings]


class BumpsBatchNorm(Constant):
    """Forgets to freeze the trunk: a train-mode forward moves the BN running statistics."""

    def run(self, trunk, settings, ctx):
        trunk.train()
        with torch.no_grad():
            trunk(torch.randn(4, 3, 32, 32, device=ctx.device))
        trunk.eval()
        return super().run(trunk, settings, ctx)


class EvalOnlyBumpsBatchNorm(BumpsBatchNorm):
    eval_only = True


class NudgesAWeight(Constant):
    def run(self, trunk, settings, ctx):
        with torch.no_grad():
            trunk.features[0].weight[0, 0, 0, 0] += 1e-6
        return super().run(trunk, settings, ctx)


class FineTunes(Constant):
    """A task allowed to train the trunk: each seed must still start from the checkpoint."""

    frozen = False

    def run(self, trunk, settings, ctx):
        with torch.no_grad():
            trunk.features[0].weight.add_(0.5)
        return super().run(trunk, settings, ctx)


@pytest.fixture
def toy_tasks() -> Iterator[None]:
    """Register the toy tasks above for one test, then remove them."""
    tasks.register_task("toy-constant", settings=("a", "b"))(Constant)
    tasks.register_task("toy-bumps-bn", settings=("a",))(BumpsBatchNorm)
    tasks.register_task("toy-nudges", settings=("a",))(NudgesAWeight)
    tasks.register_task("toy-fine-tunes", settings=("a",))(FineTunes)
    tasks.register_task("toy-eval-only-bumps-bn", settings=("a",))(EvalOnlyBumpsBatchNorm)
    tasks.register_task("toy-eval-only-nudges", settings=("a",))(
        type("EvalOnlyNudges", (NudgesAWeight,), {"eval_only": True}))
    yield
    for name in ("toy-constant", "toy-bumps-bn", "toy-nudges", "toy-fine-tunes",
                 "toy-eval-only-bumps-bn", "toy-eval-only-nudges"):
        tasks.TASKS.pop(name, None)


def test_parse_value_types() -> None:
    assert [parse_value(v) for v in ("5", "0.1", "1e-4", "true", "Off", "none", "cosine")] == \
        [5, 0.1, 1e-4, True, False, None, "cosine"]


def test_overrides_are_checked_against_the_task_options() -> None:
    task = tasks.get_task("linear-fmnist")
    assert parse_overrides(task, ("epochs=3", "lr=1", "head_bn=false", "max_train=100")) == \
        {"epochs": 3, "lr": 1.0, "head_bn": False, "max_train": 100}
    with pytest.raises(DcbenchError, match="no option 'epoch'.*epochs=10"):
        parse_overrides(task, ("epoch=3",))
    with pytest.raises(DcbenchError, match=r"--set epochs=many: expected an integer in \[1, inf\)"):
        parse_overrides(task, ("epochs=many",))
    with pytest.raises(DcbenchError, match="KEY=VALUE"):
        parse_overrides(task, ("epochs",))


RANDOM_SMALL_0_SHA256 = "cbee22d6be9276754a513608c3891ccb3c860f67327e16def20ea859a0325935"


def git_code_version() -> str:
    """What `git rev-parse --short=12 HEAD` names this checkout ('git:<12 hex>'), or the
    package version outside a git checkout."""
    if not (REPO / ".git").exists():
        return f"dcbench=={dcbench.__version__}"
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"],
                         capture_output=True, text=True, check=True).stdout.strip()
    return f"git:{sha}"


class FrozenClock:
    """The time module as dcbench.evaluate sees it, with a perf_counter that only moves when
    a test advances it."""

    def __init__(self) -> None:
        self.now = 1000.0

    def perf_counter(self) -> float:
        return self.now

    def __getattr__(self, name: str):
        return getattr(time, name)


def test_record_has_every_field(tmp_path: Path, toy_tasks: None,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FrozenClock()
    measure = evaluate.run_frozen_checked

    def measured_in_1_25_s(*args, **kwargs):
        out = measure(*args, **kwargs)
        clock.now += 1.25
        return out

    monkeypatch.setattr(evaluate, "time", clock)
    monkeypatch.setattr(evaluate, "run_frozen_checked", measured_in_1_25_s)
    records = run_eval(opts("toy-constant", tmp_path, overrides=("scale=2",)), command="cmd x")
    assert [r.setting for r in records] == ["a", "b"]
    raw = read_records(records_path(tmp_path))
    assert len(raw) == 2
    for row in raw:
        assert set(row) == set(Record.__dataclass_fields__)
        assert row["command"] == "cmd x" and row["quick"] is True and row["seed"] == 0
        assert row["checkpoint"]["path"] == "random:alexnet-small:0"
        assert row["checkpoint"]["arch"] == "alexnet-small"
        assert row["checkpoint"]["sha256"] == RANDOM_SMALL_0_SHA256   # sha256 of its name
        assert row["config"]["scale"] == 2.0 and row["config"]["options"] == {"scale": 2.0}
        assert row["config_hash"] == config_hash(row["config"])
        assert (row["best"], row["best_epoch"], row["epochs"]) == (row["value"] + 1.0, 3, 3)
        assert row["code_version"] in (git_code_version(), git_code_version() + "+dirty")
        assert row["dcbench_version"] == dcbench.__version__
        assert datetime.fromisoformat(row["started"]).tzinfo is not None
        assert row["seconds"] == 1.25 and row["device"] in ("cpu", "cuda:0")
        assert row["world_size"] == 1


def test_cache_skips_recorded_settings_and_force_reruns(tmp_path: Path, toy_tasks: None,
                                                         capsys: pytest.CaptureFixture) -> None:
    assert len(run_eval(opts("toy-constant", tmp_path, settings=("a",)))) == 1
    again = run_eval(opts("toy-constant", tmp_path))              # 'a' cached, 'b' new
    assert [r.setting for r in again] == ["b"]
    assert "skip toy-constant a seed 0" in capsys.readouterr().err
    assert run_eval(opts("toy-constant", tmp_path)) == []
    err = capsys.readouterr().err           # one line for the eval, not one per setting
    assert err.count("skip ") == 1 and "skip toy-constant a b seed 0: already recorded" in err
    assert "--force reruns them" in err
    assert len(run_eval(opts("toy-constant", tmp_path, overrides=("scale=3",)))) == 2
    assert len(run_eval(opts("toy-constant", tmp_path, force=True))) == 2
    assert len(read_records(records_path(tmp_path))) == 6


def test_seeds_writes_one_record_per_seed(tmp_path: Path, toy_tasks: None) -> None:
    records = run_eval(opts("toy-constant", tmp_path, settings=("a",), seed=5, seeds=2))
    assert sorted(r.seed for r in records) == [5, 6]
    assert len(read_records(records_path(tmp_path))) == 2


@pytest.mark.parametrize(("task", "message"), [
    ("toy-bumps-bn", "changed the frozen trunk"),
    ("toy-nudges", "changed the frozen trunk"),
    ("toy-eval-only-bumps-bn", "switched its trunk to train mode"),   # it gets a BN-folded copy
    ("toy-eval-only-nudges", "changed the frozen trunk"),
])
def test_frozen_trunk_check_catches_a_task_that_changes_it(tmp_path: Path, toy_tasks: None,
                                                           task: str, message: str) -> None:
    with pytest.raises(DcbenchError, match=message):
        run_eval(opts(task, tmp_path))
    assert not records_path(tmp_path).exists()


def test_a_task_that_trains_the_trunk_starts_each_seed_from_the_checkpoint(
        tmp_path: Path, toy_tasks: None) -> None:
    records = run_eval(opts("toy-fine-tunes", tmp_path, seeds=3))
    assert len({r.value for r in records}) == 1 and len(records) == 3


def test_saved_checkpoint_goes_through_a_real_task_for_two_seeds(tmp_path: Path) -> None:
    ckpt = tmp_path / "checkpoint.pth.tar"
    save_checkpoint(ckpt, build_model("alexnet-small", k=10, seed=3), epoch=4,
                    method="deepcluster", seed=3, config={"data": "fashion-mnist"})
    records = run_eval(opts("clustering", tmp_path, ckpt=str(ckpt), settings=("fc7",),
                            seeds=2))
    assert sorted((r.seed, r.metric) for r in records) == [
        (s, m) for s in (0, 1) for m in sorted(("acc", "ari", "nmi_arithmetic", "nmi_geometric"))]
    info = records[0].checkpoint
    assert info["sha256"] == sha256_file(ckpt) and info["path"] == str(ckpt)
    assert (info["arch"], info["epoch"], info["method"], info["format"]) == \
        ("alexnet-small", 4, "deepcluster", "dcbench")


@pytest.mark.parametrize("task, ckpt, message", [
    ("knnn", "random:alexnet-small", r"unknown task 'knnn' \(did you mean knn\?\); valid tasks"),
    ("voc-sge", "random:alexnet-small", r"unknown task 'voc-sge' \(did you mean voc-seg"),
    ("knn", "random:alexnet-smal",
     r"unknown arch 'alexnet-smal' in 'random:alexnet-smal' \(did you mean alexnet-small"),
    ("nope", "random:alexnet-small", r"unknown task 'nope'; valid tasks"),    # nothing close
])
def test_a_mistyped_name_gets_a_did_you_mean(task: str, ckpt: str, message: str,
                                             tmp_path: Path) -> None:
    """Issue 35: `eval --task knnn` printed the task list without suggesting knn."""
    with pytest.raises(DcbenchError, match=message):
        run_eval({**opts(task, tmp_path), "ckpt": ckpt})


def test_a_mistyped_dataset_gets_a_did_you_mean() -> None:
    from dcbench.data.registry import get_dataset_spec

    with pytest.raises(DcbenchError, match=r"'fashion-mnst' \(did you mean fashion-mnist\?\)"):
        get_dataset_spec("fashion-mnst")


def test_unknown_task_and_setting_list_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(DcbenchError, match="unknown task 'nope'.*clustering.*linear-fmnist"):
        run_eval(opts("nope", tmp_path))
    with pytest.raises(DcbenchError, match="no setting 'conv9'.*conv1, conv2"):
        run_eval(opts("linear-fmnist", tmp_path, settings=("conv9",)))


def test_arch_that_does_not_fit_the_input_size_is_refused(tmp_path: Path) -> None:
    from dcbench.models import build_model
    from dcbench.tasks.inputs import input_side

    # a small set is served at a 224 px trunk's own side (upsampled); not the other way round
    assert input_side("fashion-mnist", build_model("alexnet")) == 224
    assert input_side("fashion-mnist", build_model("resnet18")) == 224
    with pytest.raises(DcbenchError, match="224 px .*takes 32 px.*alexnet or vgg16"):
        run_eval(opts("linear-imagenet", tmp_path))
    assert not records_path(tmp_path).exists()


def test_unlabelled_dataset_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DcbenchError, match="needs labels and dataset 'yfcc1m' has none"):
        run_eval(opts("clustering", tmp_path, ckpt="random:alexnet",
                      overrides=("dataset=yfcc1m",)))


def test_missing_dataset_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(DcbenchError, match=f"'imagenet' not found.*{tmp_path / 'imagenet'}"):
        run_eval(opts("linear-imagenet", tmp_path, ckpt="random:alexnet",
                      data_root=str(tmp_path)))
    with pytest.raises(DcbenchError, match=f"'places205' not found.*{tmp_path}"):
        run_eval(opts("knn", tmp_path, ckpt="random:alexnet", data_root=str(tmp_path),
                      overrides=("dataset=places205",)))


def test_task_table_lists_tasks_data_and_plugin_errors(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from dcbench import plugins

    monkeypatch.setattr(plugins, "ERRORS", [*plugins.ERRORS, "plugin 'x' (x) failed to load: boom"])
    table = task_table(str(tmp_path))
    for name in ("linear-imagenet", "linear-places", "linear-fmnist", "clustering", "knn"):
        assert f"{name}  -  " in table
    assert "fashion-mnist (found: /usr/share/datasets/fashion-mnist)" in table
    assert f"imagenet (MISSING; looked in: {tmp_path / 'imagenet'})" in table
    assert "settings: conv1 conv2 conv3 conv4 conv5" in table
    assert "warning: plugin 'x' (x) failed to load: boom" in table
    # issue 35: the VOC tasks showed 16 options as None; now their recipes' real defaults
    voc_cls = next(x for x in table.split("\n") if x.startswith("    options:  dataset=fmnist-voc")
                   and "test_crops" in x)
    assert " iterations=750/80000 " in voc_cls and " lr=0.003 " in voc_cls
    assert "=None" not in voc_cls.replace("max_train=None", "").replace("max_test=None", "")


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--task", "nope"], "unknown task 'nope'; valid tasks:"),
    (["--task", "linear-fmnist", "--setting", "conv6"], "valid settings: conv1"),
])
def test_cli_bad_input_exits_2_with_one_line(tmp_path: Path, args: list[str],
                                             message: str) -> None:
    env = {**os.environ, "DCBENCH_NO_PROGRESS": "1"}
    proc = subprocess.run([sys.executable, "-m", "dcbench", "eval", *args, "--ckpt",
                           "random:alexnet-small", "--results", str(tmp_path)],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]
