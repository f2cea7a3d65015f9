"""dcbench's k-means (faiss search + the paper's empty-cluster re-seeding) against faiss's own
Kmeans, same data, same iterations, measured in one run: time ratio and objective ratio.

    python bench/bench_kmeans.py                 # N=60k, d=128, k=100 (the Fashion-MNIST run)
    python bench/bench_kmeans.py 200000 256 1000
"""

from __future__ import annotations

import os

os.environ.setdefault("DCBENCH_NO_PROGRESS", "1")  # bars would interleave with the numbers
import sys
import time

import faiss
import numpy as np

from dcbench.clustering.kmeans import kmeans
from dcbench.clustering.pca import pca_whiten_l2
from dcbench.threads import configure_threads


def main() -> None:
    n, d, k = (int(a) for a in (sys.argv[1:4] if len(sys.argv) > 3 else (60_000, 128, 100)))
    configure_threads()
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((k // 2, d)) * 2
    x = (centres[rng.integers(0, len(centres), n)] + rng.standard_normal((n, d))).astype(
        np.float32)
    x = pca_whiten_l2(x, d)
    t = time.perf_counter()
    ours = kmeans(x, k, niter=20, seed=1)
    t_ours = time.perf_counter() - t
    t = time.perf_counter()
    km = faiss.Kmeans(d, k, niter=20, seed=1, max_points_per_centroid=10_000_000)
    km.train(x)
    dist, _ = km.index.search(x, 1)
    t_faiss = time.perf_counter() - t
    print(f"N={n} d={d} k={k}, 20 iterations, {faiss.omp_get_max_threads()} threads")
    print(f"dcbench kmeans: {t_ours:6.2f} s  objective {ours.loss:.1f}  "
          f"empty re-seeded {ours.empty_reseeded}")
    print(f"faiss.Kmeans:   {t_faiss:6.2f} s  objective {float(dist.sum()):.1f}")
    print(f"time ratio dcbench / faiss: {t_ours / t_faiss:.2f}x; objective ratio "
          f"{ours.loss / float(dist.sum()):.3f}")


if __name__ == "__main__":
    main()
