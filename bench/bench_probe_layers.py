"""linear-fmnist: all five conv layers in ONE frozen pass vs five single-layer runs.

The task trains one head per requested layer on the pooled taps of a single forward pass
(tasks/linear_probe.py); asking for the layers one at a time repeats the frozen pass and the
feature caching five times. Both ways run here in one process on the same checkpoint and
subset (random:alexnet-small, 20k train / 5k test images, the task's Fashion-MNIST recipe);
printed as the time ratio, JSON in bench/results/probe_layers.json.

    .venv/bin/python bench/bench_probe_layers.py      # ~3 minutes on 2 cores
"""

from __future__ import annotations

import os

os.environ.setdefault("DCBENCH_NO_PROGRESS", "1")
import json
import tempfile
import time
from pathlib import Path

from dcbench.evaluate import run_eval

LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")
SUBSET = ("max_train=20000", "max_test=5000")


def timed(settings: tuple[str, ...], results: str) -> tuple[float, dict[str, float]]:
    opts = {"task": "linear-fmnist", "ckpt": "random:alexnet-small", "settings": settings,
            "results": results, "force": True, "overrides": SUBSET}
    t = time.perf_counter()
    records = run_eval(opts)
    return time.perf_counter() - t, {r.setting: r.value for r in records if r.metric == "top1"}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        one_pass, joint = timed(LAYERS, tmp)
        separate, single = 0.0, {}
        for layer in LAYERS:
            seconds, values = timed((layer,), tmp)
            separate += seconds
            single.update(values)
    print(f"one pass, five layers:   {one_pass:6.1f} s")
    print(f"five single-layer runs:  {separate:6.1f} s")
    print(f"speed-up: {separate / one_pass:.2f}x")
    print("top-1 joint vs single: " + ", ".join(
        f"{k} {joint[k]:.2f}/{single[k]:.2f}" for k in LAYERS))
    folder = Path(__file__).with_name("results")
    folder.mkdir(exist_ok=True)
    (folder / "probe_layers.json").write_text(json.dumps(
        {"one_pass_s": one_pass, "five_runs_s": separate, "joint_top1": joint,
         "single_top1": single, "subset": list(SUBSET)}, indent=2) + "\n")


if __name__ == "__main__":
    main()
