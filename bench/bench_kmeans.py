"""dcbench's k-means (faiss search + the paper's empty-cluster re-seeding) against faiss's own
Kmeans and scikit-learn's KMeans (Lloyd, one init), same data, same 20 iterations, measured
in one run: time ratios and objective ratios. Both stop early at a fixed point (the assignment,
or for faiss the objective, no longer changes); the iterations each ran are printed.
JSON in bench/results/kmeans_N_d_k.json.

    python bench/bench_kmeans.py                 # N=60k, d=128, k=100 (the Fashion-MNIST run)
    python bench/bench_kmeans.py 50000 256 1000 --sklearn
"""

from __future__ import annotations

import os

os.environ.setdefault("DCBENCH_NO_PROGRESS", "1")  # bars would interleave with the numbers
import json
import sys
import time
from pathlib import Path

import faiss
import numpy as np

from dcbench.clustering.kmeans import kmeans
from dcbench.clustering.pca import pca_whiten_l2
from dcbench.threads import configure_threads


def main() -> None:
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    n, d, k = (int(a) for a in (args[:3] if len(args) >= 3 else (60_000, 128, 100)))
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
          f"empty re-seeded {ours.empty_reseeded}  iterations {len(ours.losses)}")
    print(f"faiss.Kmeans:   {t_faiss:6.2f} s  objective {float(dist.sum()):.1f}  "
          f"iterations {len(km.obj)}")
    print(f"time ratio dcbench / faiss: {t_ours / t_faiss:.2f}x; objective ratio "
          f"{ours.loss / float(dist.sum()):.3f}")
    out = {"n": n, "d": d, "k": k, "dcbench_s": t_ours, "faiss_s": t_faiss,
           "dcbench_objective": ours.loss, "faiss_objective": float(dist.sum()),
           "dcbench_iterations": len(ours.losses), "faiss_iterations": len(km.obj)}
    if "--sklearn" in sys.argv:
        from sklearn.cluster import KMeans

        t = time.perf_counter()
        sk = KMeans(k, n_init=1, max_iter=20, tol=0.0, algorithm="lloyd", random_state=1).fit(x)
        t_sk = time.perf_counter() - t
        print(f"sklearn KMeans: {t_sk:6.2f} s  objective {sk.inertia_:.1f}")
        print(f"time ratio sklearn / dcbench: {t_sk / t_ours:.1f}x")
        out.update(sklearn_s=t_sk, sklearn_objective=float(sk.inertia_))
    folder = Path(__file__).with_name("results")
    folder.mkdir(exist_ok=True)
    (folder / f"kmeans_{n}_{d}_{k}.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
