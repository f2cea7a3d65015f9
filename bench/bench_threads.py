"""Do torch's and faiss's thread pools fight? Ratios measured in one run on this machine.

1. k-means (faiss) right after a burst of torch work, vs alone, under OMP_WAIT_POLICY=ACTIVE
   and PASSIVE (dcbench sets PASSIVE on import): OpenMP workers of one library spinning after
   their parallel region steal cycles from the other's.
2. k-means with faiss set to the thread budget vs oversubscribed (2x the cores).
3. Two processes (as torchrun starts them) each training with `cores` threads
   (oversubscribed) vs with the budget dcbench gives them (cores / 2): throughput ratio.

    python bench/bench_threads.py                # ~2 minutes on 2 cores
"""

from __future__ import annotations

import os

os.environ.setdefault("DCBENCH_NO_PROGRESS", "1")  # bars would interleave with the numbers
import json
import os
import subprocess
import sys
import time

import faiss
import numpy as np
import torch

from dcbench.clustering.kmeans import kmeans
from dcbench.threads import thread_budget


def time_kmeans(x: np.ndarray, after_torch: bool) -> float:
    if after_torch:
        a = torch.randn(1024, 1024)
        for _ in range(20):
            a = torch.tanh(a @ a / 32)
    t = time.perf_counter()
    kmeans(x, 100, niter=10, seed=0)
    return time.perf_counter() - t


def train_rate(threads: int, seconds: float = 20.0) -> float:
    """Images/s of alexnet-small training steps with `threads` torch threads."""
    from dcbench.models import build_model
    torch.set_num_threads(threads)
    m = build_model("alexnet-small", k=100).to(memory_format=torch.channels_last)
    x = torch.randn(128, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 100, (128,))
    opt = torch.optim.SGD(m.parameters(), lr=0.01)
    n, t = 0, time.perf_counter()
    while time.perf_counter() - t < seconds:
        loss = torch.nn.functional.cross_entropy(m(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        n += 128
    return n / (time.perf_counter() - t)


def two_processes(threads: int) -> float:
    cmd = [sys.executable, __file__, "--train", str(threads)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    return sum(json.loads(p.communicate()[0])["rate"] for p in procs)


def data() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((60_000, 128)).astype(np.float32)


def after_vs_alone() -> dict[str, float]:
    """Case 1 in this process (its OMP_WAIT_POLICY was fixed when OpenMP started)."""
    cores = thread_budget()
    torch.set_num_threads(cores)
    faiss.omp_set_num_threads(cores)
    x = data()
    alone = min(time_kmeans(x, False) for _ in range(3))
    after = min(time_kmeans(x, True) for _ in range(3))
    return {"alone": alone, "after": after}


def case1(policy: str) -> dict[str, float]:
    env = {**os.environ, "OMP_WAIT_POLICY": policy}
    out = subprocess.run([sys.executable, __file__, "--case1"], env=env, check=True,
                         stdout=subprocess.PIPE, text=True).stdout
    return json.loads(out)


def main() -> None:
    cores = thread_budget()
    print(f"{cores} cores")
    for policy in ("ACTIVE", "PASSIVE"):
        r = case1(policy)
        print(f"1. {policy:7s} k-means after torch work / alone:   {r['after'] / r['alone']:5.2f}x "
              f"({r['after']:.2f} s vs {r['alone']:.2f} s)")
    torch.set_num_threads(cores)
    faiss.omp_set_num_threads(cores)
    x = data()
    alone = min(time_kmeans(x, False) for _ in range(3))
    faiss.omp_set_num_threads(2 * cores)
    over = min(time_kmeans(x, False) for _ in range(3))
    faiss.omp_set_num_threads(cores)
    print(f"2. k-means with {2 * cores} faiss threads / {cores}:         {over / alone:5.2f}x")
    if cores >= 2:
        budget = two_processes(max(1, cores // 2))
        oversub = two_processes(cores)
        print(f"3. two training processes, {cores // 2} thread(s) each vs {cores} each: "
              f"{budget / oversub:5.2f}x the throughput ({budget:.0f} vs {oversub:.0f} img/s)")


if __name__ == "__main__":
    if sys.argv[1:] == ["--case1"]:
        print(json.dumps(after_vs_alone()))
    elif len(sys.argv) == 3 and sys.argv[1] == "--train":
        os.environ.setdefault("OMP_NUM_THREADS", sys.argv[2])
        print(json.dumps({"rate": train_rate(int(sys.argv[2]))}))
    else:
        main()
