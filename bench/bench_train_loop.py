"""The pretraining loop's images/s against the model-only step (the target: >= 90 %).

Three measurements in one run, alexnet-small, batch 256, Fashion-MNIST's 'train' recipe, the
DeepCluster step (forward, cross-entropy on 100 pseudo-classes, backward, SGD with momentum):
- model only: the same step on one fixed in-memory batch (no loading, no augmentation);
- in-memory loader: dcbench's loop as `dcbench pretrain` runs it on Fashion-MNIST (uint8
  images in memory, the crop/flip recipe applied to whole batches, no worker processes);
- per-image loader: the DataLoader path (one worker process, one PIL crop per image), which
  every dataset not held in memory uses (DCBENCH_PER_IMAGE_LOADER=1 forces it).
Printed as ratios to the model-only step; JSON in bench/results/train_loop.json.

    .venv/bin/python bench/bench_train_loop.py        # ~2 minutes on 2 cores
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from dcbench.data import build_dataset, make_loader, make_transform, subset
from dcbench.data.real.fashion_mnist import MEAN, STD
from dcbench.extract import prepare, to_device
from dcbench.models import build_model
from dcbench.threads import configure_threads

BATCH, STEPS, K = 256, 24, 100


def model_and_opt():
    model = prepare(build_model("alexnet-small", seed=0, k=K), torch.device("cpu")).train()
    return model, torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-5)


def step(model, opt, x: torch.Tensor, y: torch.Tensor) -> None:
    loss = torch.nn.functional.cross_entropy(model(to_device(x, torch.device("cpu"))), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


def model_only() -> float:
    model, opt = model_and_opt()
    x, y = torch.randn(BATCH, 3, 32, 32), torch.randint(0, K, (BATCH,))
    step(model, opt, x, y)
    t = time.perf_counter()
    for _ in range(STEPS):
        step(model, opt, x, y)
    return STEPS * BATCH / (time.perf_counter() - t)


def real_loop(per_image: bool) -> float:
    os.environ["DCBENCH_PER_IMAGE_LOADER"] = "1" if per_image else "0"
    t = make_transform("train", "small", (MEAN,) * 3, (STD,) * 3, 28, min_scale=0.3)
    data = subset(build_dataset("fashion-mnist", "train", t), (STEPS + 1) * BATCH, 0)
    labels = torch.from_numpy(np.random.default_rng(0).integers(0, K, len(data)))
    model, opt = model_and_opt()
    loader = make_loader(data, BATCH, shuffle=True, seed=0)
    seen, start = 0, None
    for i, (x, _, idx, _) in enumerate(loader):
        step(model, opt, x, labels[idx])
        if i == 0:
            start = time.perf_counter()
        else:
            seen += len(idx)
    return seen / (time.perf_counter() - start)


def main() -> None:
    configure_threads()
    out = {"model_only": model_only(), "in_memory_loader": real_loop(False),
           "per_image_loader": real_loop(True)}
    os.environ.pop("DCBENCH_PER_IMAGE_LOADER", None)
    base = out["model_only"]
    for name, v in out.items():
        print(f"{name:18s} {v:7.0f} img/s   {v / base:5.2f}x the model-only step")
    Path(__file__).with_name("results").mkdir(exist_ok=True)
    Path(__file__).with_name("results").joinpath("train_loop.json").write_text(
        json.dumps({**out, "batch": BATCH, "steps": STEPS}, indent=2) + "\n")


if __name__ == "__main__":
    main()
