"""JULE's agglomerative step at Fashion-MNIST scale: 60,000 images on 2 cores, time and memory.

The raw pixels (784 dims) of the 60k training images: the K_s = 20 NN graph (faiss, exact),
the 1-NN components, then periods of ceil(0.9 n) merges to 10 clusters (JULE-RC's schedule,
dcbench/clustering/agglomerative.py). Printed: seconds per phase, the peak resident memory of
the process, and what a dense N x N float32 affinity matrix would take. JSON in
bench/results/agglomerative.json.

    .venv/bin/python bench/bench_agglomerative.py          # ~2 minutes on 2 cores
    .venv/bin/python bench/bench_agglomerative.py 10000    # the first N images only
"""

from __future__ import annotations

import os

os.environ.setdefault("DCBENCH_NO_PROGRESS", "1")
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

from dcbench.clustering.agglomerative import knn_graph, merge, merges_per_period, nn_components
from dcbench.clustering.metrics import nmi
from dcbench.data.idx import read_idx
from dcbench.threads import configure_threads

ROOT = Path("/usr/share/datasets/fashion-mnist")


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    configure_threads()
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 60_000
    x = read_idx(ROOT / "train-images-idx3-ubyte.gz", 2051)[:n].reshape(n, -1)
    x = x.astype(np.float32) / 255.0
    y = read_idx(ROOT / "train-labels-idx1-ubyte.gz", 2049)[:n]
    base = peak_mb()
    t = time.perf_counter()
    w = knn_graph(x, 20)
    t_graph = time.perf_counter() - t
    t = time.perf_counter()
    start = nn_components(w)
    first = int(start.max()) + 1
    periods, scores = [], {}
    for min_size in (1, 10):       # JULE's rule, then with dcbench's outlier rule
        labels = start
        while labels.max() + 1 > 10:
            tp = time.perf_counter()
            labels = merge(w, labels, merges_per_period(int(labels.max()) + 1, 0.9, 10),
                           min_size=min_size).labels
            if min_size == 1:
                periods.append({"clusters": int(labels.max()) + 1,
                                "seconds": time.perf_counter() - tp})
        if min_size == 1:
            t_merge = time.perf_counter() - t
        scores[min_size] = nmi(y, labels, "geometric")
    score = scores[1]
    dense_gb = n * n * 4 / 2**30
    print(f"N={n} raw pixels, K_s 20, K_c 5, eta 0.9, to 10 clusters")
    print(f"kNN graph (faiss): {t_graph:.1f} s; merges from {first} 1-NN components: "
          f"{t_merge:.1f} s in {len(periods)} periods")
    print(f"peak RSS {peak_mb():.0f} MB (after loading the data: {base:.0f} MB); a dense "
          f"N x N float32 affinity would take {dense_gb:.1f} GB")
    print(f"NMI (geometric) of the 10 clusters vs labels: {score:.3f} (min_size 10: "
          f"{scores[10]:.3f})")
    out = {"n": n, "graph_s": t_graph, "merge_s": t_merge, "initial_clusters": first,
           "periods": periods, "peak_rss_mb": peak_mb(), "rss_after_load_mb": base,
           "dense_affinity_gb": dense_gb, "nmi_geometric": score,
           "nmi_geometric_min_size_10": scores[10]}
    folder = Path(__file__).with_name("results")
    folder.mkdir(exist_ok=True)
    (folder / "agglomerative.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
