"""One thread budget for torch and faiss, so their OpenMP pools do not fight over the cores.

torch (intra-op) and faiss (OpenMP) each default to one thread per core; with several
processes per machine (torchrun) that oversubscribes the cores N-fold. Every process gets
cores / local processes threads for both libraries (bench/bench_threads.py measures it).
"""

from __future__ import annotations

import os

import torch


def thread_budget() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    return max(1, (cores or 1) // local)


def configure_threads(n: int | None = None) -> int:
    n = n or thread_budget()
    import faiss  # imported where used (startup time)

    torch.set_num_threads(n)
    faiss.omp_set_num_threads(n)
    return n
