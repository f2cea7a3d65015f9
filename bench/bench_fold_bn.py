"""Frozen feature extraction with BatchNorm folded into the convs vs the plain eval-mode trunk.

The pass every frozen task makes (linear probe, kNN, clustering, retrieval) and the clustering
pass of pretraining: alexnet-small, batch 256, Fashion-MNIST test images (10k), all five conv
taps and fc7, in one run, alternating the two variants three times (the best of each is kept,
so a burst of load on the machine does not decide the ratio). Also checks that the two give
the same features (max abs difference printed). JSON in bench/results/fold_bn.json.

    .venv/bin/python bench/bench_fold_bn.py       # ~1 minute on 2 cores
"""

from __future__ import annotations

import os

os.environ.setdefault("DCBENCH_NO_PROGRESS", "1")
import json
import time
from pathlib import Path

import torch

from dcbench.data import make_loader
from dcbench.extract import iter_taps, prepare
from dcbench.models import build_model
from dcbench.models.fold_bn import folded_copy
from dcbench.tasks.inputs import labelled_split, transform_for
from dcbench.threads import configure_threads

TAPS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc7")


def one_pass(trunk, loader) -> tuple[float, dict[str, torch.Tensor]]:
    start, last = time.perf_counter(), {}
    for _, _, taps, _ in iter_taps(trunk, loader, TAPS, torch.device("cpu"), amp="off"):
        last = taps
    return time.perf_counter() - start, last


def main() -> None:
    configure_threads()
    data = labelled_split("fashion-mnist", "test", transform_for("fashion-mnist", "eval"),
                          None, None)
    loader = make_loader(data, 256, workers=0, seed=0)
    plain = prepare(build_model("alexnet-small", seed=0), torch.device("cpu")).eval()
    # BN statistics as a trained trunk has them (a fresh one has mean 0, var 1 everywhere)
    for m in plain.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.1)
    folded = folded_copy(plain)
    best = {"plain": float("inf"), "folded": float("inf")}
    outs = {}
    for _ in range(3):
        for name, trunk in (("plain", plain), ("folded", folded)):
            seconds, outs[name] = one_pass(trunk, loader)
            best[name] = min(best[name], seconds)
    diff = max(float((outs["plain"][k] - outs["folded"][k]).abs().max()) for k in TAPS)
    n = len(data)
    print(f"{n} images, taps {', '.join(TAPS)}, best of 3, {torch.get_num_threads()} threads")
    print(f"plain eval trunk: {best['plain']:.2f} s ({n / best['plain']:.0f} img/s)")
    print(f"BN folded:        {best['folded']:.2f} s ({n / best['folded']:.0f} img/s)")
    print(f"speed-up {best['plain'] / best['folded']:.2f}x; max |difference| of the last "
          f"batch's taps {diff:.2e}")
    out = {"images": n, "plain_s": best["plain"], "folded_s": best["folded"],
           "speedup": best["plain"] / best["folded"], "max_abs_diff": diff}
    folder = Path(__file__).with_name("results")
    folder.mkdir(exist_ok=True)
    (folder / "fold_bn.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
