"""`dcbench demo --quick` as a newcomer runs it: in a fresh `git clone` of the repository
(with its committed showcase under results/), end to end, then again to resume; the quick
run writes only under results/quick/ and leaves every committed file as it was."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def demo(cwd: Path, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DCBENCH_NO_PROGRESS": "1", "DCBENCH_CACHE": str(cache)}
    env.pop("DCBENCH_RESULTS", None)
    # the console script, not `python -m` (which would import the clone's files from cwd):
    # the code under test is the installed one, the repository state the clone's
    script = Path(sys.executable).parent / "dcbench"
    return subprocess.run([str(script), "demo", "--quick"], cwd=cwd,
                          capture_output=True, text=True, env=env, timeout=1200)


def git(clone: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=clone, capture_output=True, text=True,
                          check=True).stdout


@pytest.mark.slow
def test_quick_demo_in_a_fresh_clone_runs_end_to_end_and_resumes(tmp_path: Path):
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    first = demo(clone, tmp_path / "cache")
    assert first.returncode == 0, first.stderr[-3000:]
    assert git(clone, "status", "--porcelain") == ""      # nothing committed was touched
    results = clone / "results" / "quick"
    records = [json.loads(x) for x in (results / "records.jsonl").read_text().splitlines()]
    methods = {r["checkpoint"]["method"] for r in records}
    assert methods == {"deepcluster", "supervised", "random", "jule"}
    assert {r["task"] for r in records} == {"linear-fmnist", "linear-fmnist-10",
                                           "clustering", "knn", "voc-cls", "voc-det",
                                           "voc-seg", "retrieval-oxford", "retrieval-paris"}
    few = {(r["checkpoint"]["method"], r["task"], r["seed"]) for r in records
           if r["task"].startswith("linear-fmnist-")}
    assert few == {(m, "linear-fmnist-10", s) for m in methods - {"jule"} for s in (0, 1, 2)}
    voc = {(r["checkpoint"]["method"], r["task"], r["setting"]) for r in records
           if r["task"].startswith("voc-")}
    assert voc == {(m, t, "fc6-8") for m in methods - {"jule"}
                   for t in ("voc-cls", "voc-det", "voc-seg")}
    assert all(r["quick"] for r in records)
    jule = {(r["setting"], r["dataset"]) for r in records if r["checkpoint"]["method"] == "jule"}
    assert jule == {("jule-sf", "digits"), ("jule-rc", "digits")}
    for run in ("deepcluster-fmnist", "supervised-fmnist", "jule-digits"):
        assert (results / "runs" / run / "checkpoint.pth.tar").is_file()
    report = (results / "report.md").read_text()
    assert "## Table 1" in report
    table1 = (results / "tables" / "table1_linear.csv").read_text()
    assert "deepcluster · " in table1 and "random · random:alexnet-small" in table1
    assert "DeepCluster: % of the gap from Random to supervised closed" in \
        (results / "tables" / "table1_headroom.csv").read_text()
    for fig in ("fig2_nmi", "fig3_cluster_sizes", "probe_layers", "conv1_filters",
                "nearest_neighbours"):
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
    second = demo(clone, tmp_path / "cache")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "already has 2 epochs" in second.stderr
    assert second.stderr.count("skip ") >= 28
    assert "jule-digits is complete" in second.stderr
    assert git(clone, "status", "--porcelain") == ""
    again = (results / "records.jsonl").read_text().splitlines()
    assert len(again) == len(records)


def test_full_demo_plans_the_k_sweep_of_fig_2c_with_its_own_recipe(tmp_path: Path):
    from dcbench.demo import K_SWEEP, plan

    steps = plan("full", tmp_path, None)
    sweep = [s for s in steps if "/dc-k" in s.label]
    assert [s.label for s in sweep if s.kind == "deepcluster"] == [
        f"pretrain deepcluster -> {tmp_path / 'runs' / f'dc-k{k}'}" for k in K_SWEEP]
    # each checkpoint is scored by voc-cls FC6-8 and the linear probe
    assert sum(s.kind == "voc-cls" and s.label.endswith(f" k={K_SWEEP[0]}") for s in steps) == 1
    # the sweep keeps its 5 x 3 recipe (shared seed) while --full's own DeepCluster run is the
    # long Fig. 2 (a) one with independent seed streams
    dc = [s.command for s in steps if s.kind == "deepcluster"]
    assert dc[0].endswith("--epochs 10 --reassign 3 --seed-streams independent --resume")
    assert all(c.endswith(f"--epochs 5 --reassign 3 --k {k} --resume")
               for c, k in zip(dc[1:], K_SWEEP, strict=True))
    assert not [s for s in plan("default", tmp_path, None) if "dc-k" in s.label]


def test_full_demo_trains_and_probes_a_standard_recipe_supervised_baseline(tmp_path: Path):
    from dcbench.demo import plan

    steps = plan("full", tmp_path, None)
    out = tmp_path / "runs" / "supervised-standard-fmnist"
    train = [s for s in steps if s.kind == "supervised-standard"]
    assert [s.label for s in train] == [f"pretrain supervised -> {out}"]
    probes = [s.kind for s in steps if s.label.endswith("on supervised (standard recipe)")]
    assert probes == ["linear-fmnist", "linear-fmnist-10", "linear-fmnist-100", "clustering",
                      "knn"]
    # the command printed beside its records says how it was trained
    import inspect
    closure = inspect.getclosurevars(train[0].run).nonlocals
    assert closure["command"].endswith("--epochs 12 --lr-schedule cosine --wd 0.0005 "
                                       "--no-sobel --resume")
    assert closure["opts"]["sobel"] is False and closure["opts"]["lr_schedule"] == "cosine"
    assert not [s for s in plan("default", tmp_path, None) if s.kind == "supervised-standard"]


def test_the_eta_leaves_out_what_the_demo_will_skip(tmp_path: Path, monkeypatch) -> None:
    """A step weighs its kind's minutes scaled by the share of its (setting, seed) runs not
    yet recorded: kNN with conv5 recorded and fc7 not weighs half, a fully recorded step
    nothing (on a fresh clone the Random trunk's evaluations are all recorded: counting them
    made the ETA 21 minutes where 15 were left), a step whose checkpoint is not trained yet
    its full weight."""
    from dcbench.demo import WEIGHTS, plan
    from dcbench.evaluate import run_eval

    monkeypatch.setenv("DCBENCH_CACHE", str(tmp_path / "cache"))
    steps = {s.label: s for s in plan("quick", tmp_path, None)}
    knn = steps["eval knn on Random"]
    assert knn.weight() == WEIGHTS["knn"]
    run_eval({"task": "knn", "ckpt": "random:alexnet-small", "settings": ("conv5",),
              "quick": True, "workers": 0, "results": str(tmp_path)})
    assert knn.weight() == WEIGHTS["knn"] / 2
    assert steps["eval clustering on Random"].weight() == WEIGHTS["clustering"]
    run_eval({"task": "knn", "ckpt": "random:alexnet-small", "settings": ("fc7",),
              "quick": True, "workers": 0, "results": str(tmp_path)})
    assert knn.weight() == 0.0
    dc = steps["eval knn on DeepCluster"]             # not trained: its checkpoint is absent
    assert not Path(dc.ckpt).exists() and dc.weight() == WEIGHTS["knn"]
    # --quick's 2 clusterings x 1 pass against the default demo's 3 x 2
    assert steps[f"pretrain deepcluster -> {tmp_path / 'runs' / 'deepcluster-fmnist'}"
                 ].weight() == pytest.approx(WEIGHTS["deepcluster"] / 3)


def test_the_eta_scales_pretraining_by_its_passes(tmp_path: Path) -> None:
    """--full's DeepCluster run makes 10 x 3 passes where the default demo's makes 3 x 2: it
    weighs 5x the default's minutes (with the default's weight its ETA said 279 minutes left
    after it), the k sweep's 5 x 3 runs 2.5x, 3 supervised epochs 3x, JULE's 20 passes 4x."""
    from dcbench.demo import WEIGHTS, plan

    full = [s for s in plan("full", tmp_path, None) if s.pending is None]
    weights = {s.label.split(" -> ")[1].split("/")[-1]: s.weight() / WEIGHTS[s.kind]
               for s in full}
    assert weights == pytest.approx({
        "deepcluster-fmnist": 5.0, "supervised-fmnist": 3.0, "jule-digits": 4.0,
        "supervised-standard-fmnist": 1.0, "dc-k10": 2.5, "dc-k30": 2.5, "dc-k300": 2.5,
        "dc-k1000": 2.5})
    default = [s for s in plan("default", tmp_path, None) if s.pending is None]
    assert [s.weight() for s in default] == [WEIGHTS["deepcluster"], WEIGHTS["supervised"],
                                             WEIGHTS["jule"]]


def test_the_eta_weighs_the_voc_tasks_all_setting(tmp_path: Path) -> None:
    """--full runs each VOC task in FC6-8 and ALL; ALL fine-tunes every layer and took 1.4 /
    0.9 / 1.0 more minutes (cls / det / seg): weighed as FC6-8 alone, --full's ETA said 85
    minutes left where 77 were. The default demo's FC6-8 steps keep their weight;
    linear-fmnist's setting `all` (every layer) is not the VOC ALL setting."""
    from dcbench.demo import ALL_SETTING, PROPOSALS, WEIGHTS, plan

    def weights(recipe: str) -> dict[str, float]:
        return {s.label: s.weight() for s in plan(recipe, tmp_path / recipe, None)
                if s.label.endswith(" on DeepCluster")}

    full, default = weights("full"), weights("default")
    for task in ("voc-cls", "voc-det", "voc-seg"):
        label = f"eval {task} on DeepCluster"
        proposals = PROPOSALS if task == "voc-det" else 0.0    # its first run computes them
        assert full[label] == pytest.approx(WEIGHTS[task] + ALL_SETTING[task] + proposals)
        assert default[label] == pytest.approx(WEIGHTS[task] + proposals)
    assert full["eval linear-fmnist on DeepCluster"] == WEIGHTS["linear-fmnist"]


def _replay(log: list[tuple[str, float]], end: float, float32: bool) -> list[tuple[float, float]]:
    """(ETA, minutes actually left) at each step of a recorded demo: `log` holds each step's
    label and start (minutes), `end` the demo's total. Random evaluations that took no time
    were recorded already (committed): the demo weighs them 0."""
    from dcbench.demo import FLOAT32_PRETRAINING, PROPOSALS, WEIGHTS, EtaClock, Step

    starts = [t for _, t in log] + [end]
    steps, weights = [], []
    for label, _ in log:
        kind = label.split()[1]
        w = WEIGHTS[kind] * (FLOAT32_PRETRAINING if float32 and kind in (
            "deepcluster", "supervised") else 1.0)
        if kind == "voc-det" and not any(s.kind == "voc-det" for s in steps):
            w += PROPOSALS
        steps.append(Step(kind, label, lambda: None, w))
        took = starts[len(steps)] - starts[len(steps) - 1]
        weights.append(0.0 if label.endswith("on Random") and took < 0.05 else w)
    clock, out = EtaClock(), []
    for k, step in enumerate(steps):
        out.append((clock.eta(steps[k:], weights[k:]), end - starts[k]))
        clock.record(step, weights[k], starts[k + 1] - starts[k])
    return out


def _recorded(path: Path) -> tuple[list[tuple[str, float]], float]:
    import re

    text = path.read_text()
    log = [(m[1], float(m[2])) for m in re.finditer(
        r"^\[demo \d+/\d+\] (.+?) \(elapsed ([\d.]+) min", text, re.M)]
    return log, float(re.search(r"\[demo\] done in ([\d.]+) min", text)[1])


@pytest.mark.parametrize("run,float32", [("results/demo.log", False),
                                         ("results/fp32-demo/demo.log", True)])
def test_the_eta_holds_on_the_recorded_demos_of_each_precision(run: str, float32: bool) -> None:
    """Replayed on the committed demos (bf16 pretraining on an AMX CPU, 21.4 min; float32 on
    the same CPU, 27.7 min, an older plan that ran the Random evaluations too), the ETA from
    the first step on is within 30 % of the minutes that were left (or 1.5 min near the end;
    the same step's time varies by about that much between runs: voc-det 1.1 vs 2.2 min)."""
    log, end = _recorded(Path(__file__).resolve().parents[1] / run)
    for eta, left in _replay(log, end, float32):
        assert abs(eta - left) <= max(0.3 * left, 1.5), (eta, left)


def test_the_eta_after_slow_float32_pretraining_does_not_slow_the_evaluations() -> None:
    """The issue's run (AMD EPYC, no AMX): pretraining took 18.2 min, the evaluations 16.2.
    One pace for both said 41 min left; each category at its own pace says what the
    evaluations weigh (float32 on every CPU), within 20 % of 16.2."""
    from dcbench.demo import EtaClock, plan

    steps = plan("default", Path("/nonexistent"), None)
    pre = [s for s in steps if s.pending is None]
    rest = [s for s in steps if s.pending is not None]
    weights = [0.0 if s.label.endswith("on Random") else s.minutes for s in rest]
    clock = EtaClock()
    for s in pre:
        clock.record(s, s.minutes * 1.8, 18.2 * s.minutes / sum(p.minutes for p in pre))
    eta = clock.eta(rest, weights)
    assert abs(eta - 16.2) <= 0.2 * 16.2, eta
    single_pace = 18.2 / sum(p.minutes * 1.8 for p in pre) * (sum(weights) + 0.3)
    assert single_pace > 1.2 * eta         # the old ETA's mistake, for contrast


def test_the_demo_loads_each_checkpoint_once_and_again_when_it_is_retrained(tmp_path: Path,
                                                                             monkeypatch):
    """Its ETA checks and eval steps loaded the file once per step (issue 36)."""
    import os

    import dcbench.checkpoint as checkpoint_module
    from dcbench.demo import LoadedCheckpoints
    from dcbench.models import build_model

    calls = []
    real = checkpoint_module.load_trunk
    monkeypatch.setattr(checkpoint_module, "load_trunk",
                        lambda spec, device: calls.append(spec) or real(spec, device))
    path = tmp_path / "c.pth"
    checkpoint_module.save_checkpoint(path, build_model("alexnet-small", seed=0), epoch=1,
                                      method="deepcluster")
    load = LoadedCheckpoints()
    first = load(str(path), "cpu")
    assert load(str(path), "cpu") is first and load("random:alexnet-small", "cpu")
    assert load("random:alexnet-small", "cpu") and calls == [str(path), "random:alexnet-small"]
    checkpoint_module.save_checkpoint(path, build_model("alexnet-small", seed=1), epoch=2,
                                      method="deepcluster")
    os.utime(path, ns=(1, 1))          # a re-trained file: another stamp
    assert load(str(path), "cpu")[1].epoch == 2 and len(calls) == 3
