"""linear-fmnist: all five conv layers in ONE frozen pass vs five single-layer runs.

The task trains one head per requested layer on the pooled taps of a single forward pass
(tasks/linear_probe.py); asking for the layers one at a time repeats the frozen pass and the
feature caching five times. Both ways run here on the same checkpoint and subset
(random:alexnet-small, 20k train / 5k test images, the task's Fashion-MNIST recipe), twice:
- as a user runs them: one `dcbench eval --setting conv1 ... --setting conv5` command against
  five `dcbench eval --setting convN` commands (each a process of its own, start-up included);
- in one process, after a warm-up run, so neither side pays the one-off imports (torch's
  first optimizer imports torch._dynamo, ~1-2 s): the compute alone.
Printed as time ratios, JSON in bench/results/probe_layers.json.

Single-layer runs stop their frozen pass at their layer (as the released eval_linear.py does),
and every run trains its heads for the same time either way, so the in-process ratio is
bounded by (sum of the five partial passes) / (one full pass) even if the heads cost
nothing: measured here too, on the same number of images through the same BN-folded trunk.

    .venv/bin/python bench/bench_probe_layers.py      # ~5 minutes on 2 cores
"""

from __future__ import annotations

import os

os.environ.setdefault("DCBENCH_NO_PROGRESS", "1")
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from dcbench.checkpoint import load_trunk
from dcbench.evaluate import run_eval
from dcbench.models.fold_bn import folded_copy

LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")
SUBSET = ("max_train=20000", "max_test=5000")


def timed(settings: tuple[str, ...], results: str) -> tuple[float, dict[str, float]]:
    opts = {"task": "linear-fmnist", "ckpt": "random:alexnet-small", "settings": settings,
            "results": results, "force": True, "overrides": SUBSET}
    t = time.perf_counter()
    records = run_eval(opts)
    return time.perf_counter() - t, {r.setting: r.value for r in records if r.metric == "top1"}


def cli_seconds(settings: tuple[str, ...], results: str) -> float:
    """Wall time of one `dcbench eval` process, start-up and record writing included."""
    args = [sys.executable, "-m", "dcbench", "eval", "--task", "linear-fmnist", "--ckpt",
            "random:alexnet-small", "--results", results, "--force"]
    args += [a for layer in settings for a in ("--setting", layer)]
    args += [a for o in SUBSET for a in ("--set", o)]
    t = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True, env={**os.environ})
    return time.perf_counter() - t


def frozen_pass_seconds(images: int = 25_000, batch: int = 256) -> dict[str, float]:
    """Seconds of the frozen forward alone (no pooling, no heads) up to each layer, and up to
    conv5 with all five taps (the one-pass run's), on `images` 32 px inputs."""
    trunk = folded_copy(load_trunk("random:alexnet-small")[0].eval())
    x = torch.randn(batch, 3, 32, 32)
    out = {}
    for name, taps in [*((layer, (layer,)) for layer in LAYERS), ("all five", LAYERS)]:
        t = time.perf_counter()
        with torch.inference_mode():
            for _ in range(images // batch):
                trunk.extract(x, taps)
        out[name] = time.perf_counter() - t
    return out


def cli_rounds(tmp: str, rounds: int = 2) -> tuple[list[float], list[float]]:
    """Seconds of the one command and of the five commands, in `rounds` rounds that alternate
    which side goes first, after a warm-up command (the previous version timed the one
    command once, first of all: 2.46x then, 2.64x best-of-2 alternated on a faster day)."""
    cli_seconds(("conv1",), tmp)                        # warms the page cache for both sides
    one, five = [], []
    for r in range(rounds):
        for side in (("one", "five") if r % 2 == 0 else ("five", "one")):
            if side == "one":
                one.append(cli_seconds(LAYERS, tmp))
            else:
                five.append(sum(cli_seconds((layer,), tmp) for layer in LAYERS))
    return one, five


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        one_rounds, five_rounds = cli_rounds(tmp)
        cli_one, cli_five = min(one_rounds), min(five_rounds)
        opts = {"task": "linear-fmnist", "ckpt": "random:alexnet-small", "settings": ("conv1",),
                "results": tmp, "force": True, "quick": True}
        run_eval(opts)                                  # warm-up: imports, dataset decode
        one_pass, joint = timed(LAYERS, tmp)
        separate, single = 0.0, {}
        for layer in LAYERS:
            seconds, values = timed((layer,), tmp)
            separate += seconds
            single.update(values)
    print(f"as commands (best of {len(one_rounds)} alternated rounds): one `dcbench eval`, five "
          f"layers: {cli_one:6.1f} s (rounds {', '.join(f'{x:.1f}' for x in one_rounds)})")
    print(f"             five single-layer commands:      {cli_five:6.1f} s (rounds "
          f"{', '.join(f'{x:.1f}' for x in five_rounds)})")
    print(f"speed-up as a user runs them: {cli_five / cli_one:.2f}x")
    print(f"in one process (warm): one pass, five layers: {one_pass:6.1f} s")
    print(f"                       five single-layer runs: {separate:6.1f} s")
    print(f"speed-up of the compute: {separate / one_pass:.2f}x")
    print("top-1 joint vs single: " + ", ".join(
        f"{k} {joint[k]:.2f}/{single[k]:.2f}" for k in LAYERS))
    passes = frozen_pass_seconds()
    bound = sum(passes[k] for k in LAYERS) / passes["all five"]
    print("frozen pass up to each layer (25k images): " + ", ".join(
        f"{k} {v:.1f} s" for k, v in passes.items()))
    print(f"bound on the speed-up with free heads: {bound:.2f}x")
    folder = Path(__file__).with_name("results")
    folder.mkdir(exist_ok=True)
    (folder / "probe_layers.json").write_text(json.dumps(
        {"cli_one_command_s": cli_one, "cli_five_commands_s": cli_five,
         "cli_speedup": cli_five / cli_one, "cli_one_rounds_s": one_rounds,
         "cli_five_rounds_s": five_rounds,
         "one_pass_s": one_pass, "five_runs_s": separate, "speedup": separate / one_pass,
         "frozen_pass_s": passes, "speedup_bound_free_heads": bound, "joint_top1": joint,
         "single_top1": single, "subset": list(SUBSET)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
