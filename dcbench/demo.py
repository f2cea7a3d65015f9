"""`dcbench demo`: the whole pipeline on the embedded default, Fashion-MNIST.

Pretrain DeepCluster and the supervised baseline, evaluate them and `random:alexnet-small` on
every task that has embedded data, and write the report. Each step is an ordinary dcbench
call with the same code path as the CLI; the records carry the equivalent `dcbench eval`
command so every number can be repeated on its own. Interrupted, it resumes: pretraining
continues from its last epoch and recorded evaluations are skipped.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from dcbench.progress import say
from dcbench.results import results_dir
from dcbench.tasks.voc.task import ALL, FC6_8

# What fits the 30-minute budget on a 2-core machine without AMX (issue 38: measured on an AMD
# EPYC in float32, README); --quick is the same pipeline on 512 images for the test suite.
# DeepCluster trains on a seeded 10,000-image subset of the 60k with two passes between
# clusterings (with one pass per clustering the features drift away from the labels on a small
# set: the sweep behind this is in README.md); the supervised baseline trains on the same
# subset. The evaluations run at the sizes of EVAL_SIZES. --full is the longer recipe on all
# 60k images, the evaluations at their task recipes' sizes, the VOC tasks in both settings and
# the k sweep of Fig. 2 (c). The default before issue 38 (all 60k images, full-size
# evaluations: 21.4 min on an AMX CPU, 63 on the AMD one) made the showcase in results/.
# JULE runs on digits (1,797 images) in every recipe; its `epochs` are CNN passes per period
# (JULE's own value, 20, in --full; its Fashion-MNIST run is a README command, ~15 minutes).
DEFAULT: dict[str, Any] = {
    "deepcluster": {"epochs": 3, "reassign": 2, "max_images": 10000},
    "supervised": {"epochs": 2, "max_images": 10000},
    "jule": {"epochs": 5},
    "eval": {"quick": False},
}
# the default demo's evaluation sizes (`--set` overrides, in each record's config and command):
# the probe's and kNN's training split cut to 10,000 images; the VOC tasks with fewer
# iterations (the lr steps at the same fraction of the run) and one test pass at the end,
# detection on 1,000 of the 2,000 trainval images and 500 of the 1,000 test images (the
# selective search of those it uses is half of the full set's)
EVAL_SIZES: dict[str, tuple[str, ...]] = {
    "linear-fmnist": ("max_train=10000",),
    "knn": ("max_train=10000",),
    "voc-cls": ("iterations=400", "lr_step=160", "evals=1"),
    "voc-det": ("iterations=400", "lr_step=270", "evals=1", "max_train=1000",
                "max_test=500"),
    "voc-seg": ("iterations=150", "evals=1"),
}
# --full's DeepCluster runs 10 clusterings x 3 passes, long enough for Fig. 2 (a)'s NMI curve
# to flatten, with independent seed streams (the paper protocol's; README: the curve beside
# the 5-clustering run of the shared epoch seed)
LONG: dict[str, Any] = {
    "deepcluster": {"epochs": 10, "reassign": 3, "seed_streams": "independent"},
    "supervised": {"epochs": 3},
    "jule": {"epochs": 20},
    "eval": {"quick": False},
}
QUICK: dict[str, Any] = {
    "deepcluster": {"epochs": 2, "max_images": 512, "k": 10, "batch_size": 64, "pca_dim": 32,
                    "workers": 0},
    "supervised": {"epochs": 1, "max_images": 512, "batch_size": 64, "workers": 0},
    "jule": {"epochs": 1},
    "eval": {"quick": True, "workers": 0},
}
# The VOC tasks run FC6-8, the setting that measures the frozen features; ALL (fine-tuning
# every layer) is in --full and in the README's commands: all six VOC runs per checkpoint do
# not fit the 30 minutes on 2 cores.
EVALS = [("linear-fmnist", ("all",)), ("linear-fmnist-10", ("all",)),
         ("clustering", ("conv5", "fc7", "pixels")),
         ("knn", ("conv5", "fc7")),
         ("voc-cls", (FC6_8,)), ("voc-det", (FC6_8,)), ("voc-seg", (FC6_8,)),
         ("retrieval-oxford", ("rmac",)), ("retrieval-paris", ("rmac",))]
# --full: the VOC tasks in both settings, and the 100-labels-per-class probe (the default
# demo's 30 minutes hold the 10-labels one, 3 seeds)
FULL_EVALS = [(task, (FC6_8, ALL) if task.startswith("voc-") else settings)
              for task, settings in EVALS] + [("linear-fmnist-100", ("all",))]
# --full also pretrains DeepCluster with other k (its recipe, seed 31; k = 100 is its own run)
# for the paper's Fig. 2 (c), each scored by VOC classification FC6-8 and the linear probe
K_SWEEP = (10, 30, 300, 1000)
K_SWEEP_RECIPE = {"epochs": 5, "reassign": 3}
K_SWEEP_EVALS = [("voc-cls", (FC6_8,)), ("linear-fmnist", ("all",))]
# --full also trains the supervised baseline with a standard supervised recipe (RGB input, no
# Sobel; weight decay 5e-4; lr 0.05 decayed by a cosine over 12 epochs, until the training
# loss flattens), a real ceiling beside the DeepCluster-recipe baseline, scored by the probes
STANDARD_SUPERVISED = {"epochs": 12, "lr_schedule": "cosine", "wd": 5e-4, "sobel": False}
STANDARD_SUPERVISED_EVALS = [("linear-fmnist", ("all",)), ("linear-fmnist-10", ("all",)),
                             ("linear-fmnist-100", ("all",)),
                             ("clustering", ("conv5", "fc7", "pixels")),
                             ("knn", ("conv5", "fc7"))]
# the low-label probes run several seeds (each draws another labelled subset): mean +- std
SEEDS = {"linear-fmnist-10": 3, "linear-fmnist-100": 3}
# Minutes each kind of step takes in the default demo, for the ETA: measured on 2 cores of an
# AMD EPYC without AMX, everything in float32 (results/demo/demo.log; supervised-standard,
# only in --full: 9.0 bf16 minutes on the AMX CPU x 1.8 x 2.2). retrieval-paris reuses
# the features retrieval-oxford extracted.
WEIGHTS = {"deepcluster": 5.2, "supervised": 1.9, "supervised-standard": 35.0, "jule": 0.8,
           "linear-fmnist": 0.6, "linear-fmnist-10": 0.8, "linear-fmnist-100": 0.9,
           "clustering": 0.35, "knn": 0.55, "voc-cls": 1.1, "voc-det": 0.8, "voc-seg": 0.75,
           "retrieval-oxford": 1.5, "retrieval-paris": 0.25, "report": 0.3}
# the tasks whose size the default demo cuts (EVAL_SIZES), at their recipe's own size (--full):
# minutes on the same CPU (the supervised checkpoint's steps in a fresh clone of 542e0b4)
FULL_SIZE = {"linear-fmnist": 2.6, "knn": 2.6, "voc-cls": 1.6, "voc-det": 1.9, "voc-seg": 1.9}
# the first voc-det step also computes the set's selective-search proposals
PROPOSALS = 1.7
# pretraining kinds: with bf16 autocast (`--amp auto` on a CPU with AMX) DeepCluster and the
# supervised baseline took 1/1.8 of their float32 minutes on the same CPU (results/fp32-demo:
# 10.8 vs 6.1 and 1.7 vs 0.9 min); JULE trains float32 everywhere
PRETRAINING = ("deepcluster", "supervised", "supervised-standard", "jule")
BF16_PRETRAINING = 1 / 1.8
# minutes a VOC task's ALL setting (fine-tuning every layer) adds to its FC6-8 run at full
# size: 1.4 / 0.9 / 1.0 measured in demo --full on 43e5da9 on the AMX CPU, x 1.6 for the AMD
# one (whose float32 evaluations ran at 0.55-0.7x that CPU's speed)
ALL_SETTING = {"voc-cls": 2.2, "voc-det": 1.4, "voc-seg": 1.6}


@dataclass
class Step:
    kind: str
    label: str
    run: Callable[[], Any]
    # minutes it takes with nothing recorded: its kind's weight, for a pretraining step scaled
    # by its passes against the default demo's, for a VOC eval plus its ALL setting's
    minutes: float
    command: str = ""           # the equivalent dcbench command line
    ckpt: str | None = None     # an eval step's checkpoint
    # an eval step's (runs not yet recorded, runs in all): the ETA leaves out what it will skip
    pending: Callable[[], tuple[int, int]] | None = None

    def weight(self) -> float:
        """Minutes this step is expected to take: `minutes`, scaled by the share of its runs
        not yet recorded once its checkpoint exists."""
        if self.pending is None or self.ckpt is None or not (
                self.ckpt.startswith("random") or Path(self.ckpt).exists()):
            return self.minutes
        todo, total = self.pending()
        return self.minutes * (todo / max(total, 1))


def _flag(key: str, value: Any) -> str:
    name = key.replace("_", "-")
    if isinstance(value, bool):
        return f"--{name}" if value else f"--no-{name}"
    return f"--{name} {value}"


def _images_seen(method: str, settings: dict[str, Any]) -> int:
    """Images a pretraining recipe passes through its trunk: epochs x passes per epoch
    (pretrain's --reassign, default 1) x images (--max-images, default all 60k; JULE's
    digits are the same 1,797 in every recipe)."""
    images = 1 if method == "jule" else settings.get("max_images") or 60000
    return settings["epochs"] * settings.get("reassign", 1) * images


def _pretrain_step(method: str, out: Path, settings: dict[str, Any],
                   data_root: str | None, kind: str | None = None) -> Step:
    from dcbench.methods import run_pretraining
    from dcbench.methods.catalog import DEFAULT_SEED

    data = "digits" if method == "jule" else "fashion-mnist"
    opts = {"method": method, "data": data, "out": str(out), "resume": True,
            "data_root": data_root, "seed": DEFAULT_SEED, **settings}
    flags = " ".join(_flag(k, v) for k, v in settings.items())
    command = (f"dcbench pretrain --method {method} --data {data} --out {out} "
               f"{flags} --resume").replace("  ", " ")
    scale = 1.0
    if kind is None:        # the default demo's weights: scale by the images it trains on
        scale = _images_seen(method, settings) / _images_seen(method, DEFAULT[method])
    return Step(kind or method, f"pretrain {method} -> {out}",
                lambda: run_pretraining(opts, command=command),
                WEIGHTS[kind or method] * scale, command, str(out / "checkpoint.pth.tar"))


class LoadedCheckpoints:
    """The demo's checkpoints, each loaded once for all its eval steps and their ETA checks
    (loaded again only when its file changed: a pretraining step re-trained it)."""

    def __init__(self) -> None:
        self.held: dict[str, tuple[tuple[int, int] | None, Any]] = {}

    def __call__(self, spec: str, device: Any) -> Any:
        from dcbench.checkpoint import load_trunk

        path = Path(spec)
        stat = path.stat() if path.is_file() else None
        stamp = (stat.st_mtime_ns, stat.st_size) if stat is not None else None
        if spec not in self.held or self.held[spec][0] != stamp:
            self.held[spec] = (stamp, load_trunk(spec, device))
        return self.held[spec][1]


def _eval_step(task: str, settings: tuple[str, ...], ckpt: str, name: str,
               eval_opts: dict[str, Any], results: Path, data_root: str | None,
               overrides: tuple[str, ...] = (), load: LoadedCheckpoints | None = None,
               full_size: bool = False) -> Step:
    from dcbench.evaluate import run_eval, unrecorded

    seeds = SEEDS.get(task, 1)
    opts = {"task": task, "ckpt": ckpt, "settings": settings, "seed": 0, "seeds": seeds,
            "force": False, "results": str(results), "data_root": data_root,
            "overrides": overrides, **eval_opts}
    command = (f"dcbench eval --task {task} --ckpt {ckpt} "
               + " ".join(f"--setting {s}" for s in settings)
               + (f" --seeds {seeds}" if seeds > 1 else "")
               + "".join(f" --set {o}" for o in overrides)
               + (" --quick" if eval_opts.get("quick") else "")
               + f" --results {results}")
    where = f" ({', '.join(overrides)})" if overrides else ""
    extra = ALL_SETTING.get(task, 0.0) if ALL in settings else 0.0
    return Step(task, f"eval {task}{where} on {name}",
                lambda: run_eval(opts, command=command, load=load),
                (FULL_SIZE.get(task, WEIGHTS[task]) if full_size else WEIGHTS[task]) + extra,
                command, ckpt, lambda: unrecorded(opts, load=load))


def run_dir(results: Path, method: str) -> Path:
    """The demo's pretraining folder for `method` (deepcluster, supervised or jule)."""
    return results / "runs" / (f"{method}-digits" if method == "jule" else f"{method}-fmnist")


def checkpoints(results: Path) -> list[tuple[str, str]]:
    """(--ckpt, name) of the three checkpoints the demo evaluates."""
    return [(str(run_dir(results, "deepcluster") / "checkpoint.pth.tar"), "DeepCluster"),
            (str(run_dir(results, "supervised") / "checkpoint.pth.tar"), "supervised"),
            ("random:alexnet-small", "Random")]


RECIPES = {"default": DEFAULT, "quick": QUICK, "full": LONG}


def plan(recipe: str, results: Path, data_root: str | None) -> list[Step]:
    cfg = RECIPES[recipe]
    # each checkpoint loaded once; --full evaluates at the tasks' own sizes
    eval_step = partial(_eval_step, load=LoadedCheckpoints(), full_size=recipe == "full")
    steps = [_pretrain_step(m, run_dir(results, m), cfg[m], data_root)
             for m in ("deepcluster", "supervised", "jule")]
    sizes = EVAL_SIZES if recipe == "default" else {}
    for ckpt, name in checkpoints(results):
        for task, settings in FULL_EVALS if recipe == "full" else EVALS:
            steps.append(eval_step(task, settings, ckpt, name, cfg["eval"], results,
                                    data_root, sizes.get(task, ())))
        # the clustering table's digits column: k-means on this trunk's features and pixels
        steps.append(eval_step("clustering", ("conv5", "fc7", "pixels"), ckpt, name,
                                cfg["eval"], results, data_root, ("dataset=digits",)))
    first_det = next((s for s in steps if s.kind == "voc-det"), None)
    if first_det is not None:
        first_det.minutes += PROPOSALS
    jule = str(run_dir(results, "jule") / "checkpoint.pth.tar")
    steps.append(eval_step("clustering", ("jule-sf", "jule-rc"), jule, "JULE", cfg["eval"],
                            results, data_root, ("dataset=digits",)))
    if recipe == "full":
        out = results / "runs" / "supervised-standard-fmnist"
        steps.append(_pretrain_step("supervised", out, STANDARD_SUPERVISED, data_root,
                                    kind="supervised-standard"))
        for task, settings in STANDARD_SUPERVISED_EVALS:
            steps.append(eval_step(task, settings, str(out / "checkpoint.pth.tar"),
                                    "supervised (standard recipe)", cfg["eval"], results,
                                    data_root))
        for k in K_SWEEP:
            out = results / "runs" / f"dc-k{k}"
            steps.append(_pretrain_step("deepcluster", out, {**K_SWEEP_RECIPE, "k": k},
                                        data_root))
            for task, settings in K_SWEEP_EVALS:
                steps.append(eval_step(task, settings, str(out / "checkpoint.pth.tar"),
                                        f"DeepCluster k={k}", cfg["eval"], results,
                                        data_root))
    return steps


PACE_PRIOR = 2.0


class EtaClock:
    """The demo's ETA: the minutes left of each category (pretraining, evaluation), each at
    the pace its own finished steps ran. One pace for all made the evaluations, which run in
    float32 on every CPU, inherit the pretraining's slowness on a CPU without AMX ("ETA 41
    min" after pretraining, where 16 were left); a category with nothing finished yet runs at
    its nominal minutes."""

    def __init__(self, report: float = WEIGHTS["report"]) -> None:
        self.report = report                                       # the report's minutes
        self.minutes = {"pretraining": 0.0, "evaluation": 0.0}     # actually spent
        self.expected = {"pretraining": 0.0, "evaluation": 0.0}    # their weights

    @staticmethod
    def category(step: Step) -> str:
        return "pretraining" if step.kind in PRETRAINING else "evaluation"

    @property
    def started(self) -> bool:
        return any(self.expected.values())

    def record(self, step: Step, weight: float, minutes: float) -> None:
        self.minutes[self.category(step)] += minutes
        self.expected[self.category(step)] += weight

    def pace(self, category: str) -> float:
        """Minutes spent per planned minute, shrunk towards 1 by PACE_PRIOR planned minutes
        at the plan's pace: one short first step off by a third (linear-fmnist, 0.8 min for
        0.6) made the ETA 21 minutes where 13.8 were left."""
        return ((self.minutes[category] + PACE_PRIOR)
                / (self.expected[category] + PACE_PRIOR))

    def eta(self, steps: list[Step], weights: list[float]) -> float:
        """Minutes left for `steps` (with their `weights`) and the report."""
        left = {"pretraining": 0.0, "evaluation": self.report}
        for step, weight in zip(steps, weights):
            left[self.category(step)] += weight
        return sum(left[c] * self.pace(c) for c in left)


def _pretrains_in_float32() -> bool:
    """Whether the demo's DeepCluster and supervised runs will train in float32 (`--amp
    auto` on this machine's device)."""
    import torch

    from dcbench.precision import amp_name

    return amp_name(torch.device("cuda" if torch.cuda.is_available() else "cpu")) == "off"


def demo_results(recipe: str, results: str | None) -> Path:
    """Where the demo writes: --results if given; else results/demo/, results/quick/ or
    results/full/ by recipe, so recipes never mix run folders (a resume would refuse the
    other config) and none touches the earlier showcase in results/ itself."""
    if results is not None:
        return results_dir(results)
    return results_dir() / ("demo" if recipe == "default" else recipe)


def run_demo(quick: bool = False, results: str | None = None,
             data_root: str | None = None, full: bool = False) -> Path:
    """Run every step (resuming), then the report; return the report's path."""
    from dcbench.errors import DcbenchError
    from dcbench.report import build_report

    if quick and full:
        raise DcbenchError("--quick and --full exclude each other; pass one of them")
    recipe = "quick" if quick else "full" if full else "default"
    root = demo_results(recipe, results)
    from dcbench.demo_changes import compare, snapshot
    from dcbench.results import records_path

    held = snapshot(records_path(root))     # to say afterwards which numbers moved
    steps = plan(recipe, root, data_root)
    float32 = _pretrains_in_float32()
    weights = [s.weight() * (BF16_PRETRAINING if not float32 and s.kind in PRETRAINING
                             and s.kind != "jule" else 1.0) for s in steps]
    clock = EtaClock()
    start = time.time()
    for i, step in enumerate(steps, 1):
        elapsed = time.time() - start
        eta = clock.eta(steps[i - 1:], weights[i - 1:])
        shown = f", ETA {eta:.0f} min" + ("" if clock.started else " (nominal)")
        say(f"[demo {i}/{len(steps)}] {step.label} (elapsed {elapsed / 60:.1f} min{shown})")
        t0 = time.time()
        step.run()
        clock.record(step, weights[i - 1], (time.time() - t0) / 60)
        if step.pending is None:    # a checkpoint was (re)trained: what its evals will skip
            weights[i:] = [s.weight() if s.ckpt == step.ckpt else w
                           for s, w in zip(steps[i:], weights[i:])]
    # the paper's pictures of the three checkpoints (about 17 s on 2 cores)
    pictures = [ckpt for ckpt, _ in checkpoints(root)]
    path = build_report(str(root), None, best=False, include_quick=quick, pictures=pictures,
                        data_root=data_root, picture_images=300 if quick else 2000)
    for line in probe_summary(root, quick):
        say(line)
    for line in compare(held, records_path(root), root / "tables" / "demo_changes.csv"):
        say(line)
    say(f"[demo] done in {(time.time() - start) / 60:.1f} min; report: {path}")
    return path


def probe_summary(results: Path, quick: bool) -> list[str]:
    """Linear-probe top-1 per layer of the three checkpoints, and DeepCluster minus Random:
    the check the paper's Table 1 makes (DeepCluster above Random from conv2-conv3 on)."""
    from dcbench.results import load_frame, records_path

    frame = load_frame(records_path(results))
    frame = frame[(frame["task"] == "linear-fmnist") & (frame["metric"] == "top1")
                  & (frame["quick"].fillna(False).astype(bool) == quick)]
    path = frame["ckpt_path"].astype(str)      # random:ARCH is recorded as random:ARCH:SEED
    rows: dict[str, dict[str, float]] = {}
    for ckpt, name in checkpoints(results):
        mine = frame[(path == ckpt) | path.str.startswith(ckpt + ":")].sort_values("started")
        rows[name] = {r.setting: float(r.value) for r in mine.itertuples()}
    layers = [f"conv{i}" for i in range(1, 6)]
    if not all(rows[n].keys() >= set(layers) for n in ("DeepCluster", "Random")):
        return ["[demo] linear-fmnist is not recorded for every layer: no summary"]
    out = ["[demo] linear-fmnist top-1 (final epoch)  " + "  ".join(f"{x:>6s}" for x in layers)]
    for name, values in rows.items():
        out.append(f"[demo]   {name:<38s}"
                   + "  ".join(f"{values.get(x, float('nan')):6.2f}" for x in layers))
    out.append(f"[demo]   {'DeepCluster - Random':<38s}"
               + "  ".join(f"{rows['DeepCluster'][x] - rows['Random'][x]:+6.2f}" for x in layers))
    return out
