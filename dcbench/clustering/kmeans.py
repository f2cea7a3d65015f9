"""k-means with faiss for the nearest-centroid search and either empty-cluster rule.

Lloyd iterations: faiss finds each point's nearest centroid (GPU index when faiss-gpu sees a
GPU), centroids are the means of their points. A cluster left empty is re-seeded as the paper
describes: pick a random non-empty cluster (two points or more), put the empty centroid at
that centroid plus a small random perturbation and the other one minus it, and split the
chosen cluster's points between the two. The released code instead relies on faiss's own
split (`split_like_faiss`, `empty="released"`). The count of such re-seedings is returned.
Defaults follow the original code: 20 iterations, a fresh seed per call (the caller passes it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dcbench.errors import DcbenchError
from dcbench.progress import bar


@dataclass
class KMeansResult:
    assignment: np.ndarray          # (N,) int64; every cluster non-empty under the paper rule
    centroids: np.ndarray           # (k, d) float32
    loss: float                     # sum of squared distances at the final assignment
    empty_reseeded: int             # how many times an empty cluster was re-seeded
    losses: list[float]             # the objective at each iteration's assignment (fewer than
                                    # niter entries when the assignment stopped changing)


def gpu_available() -> bool:
    import faiss  # imported where used (startup time)

    return hasattr(faiss, "StandardGpuResources") and faiss.get_num_gpus() > 0


class CentroidIndex:
    """A flat L2 index over the centroids, built once per k-means call (GPU resources are
    expensive to create) and refilled each iteration. The released run_kmeans searches on
    GPU 0 only; with several visible GPUs dcbench replicates the index on all of them and
    splits the queries (faiss's index_cpu_to_all_gpus): the same nearest centroids, sooner.
    k-means runs on rank 0 only, so it may use every GPU of the machine."""

    def __init__(self, d: int, use_gpu: bool):
        import faiss

        if use_gpu and faiss.get_num_gpus() > 1:
            self.index = faiss.index_cpu_to_all_gpus(faiss.IndexFlatL2(d))
        elif use_gpu:
            self._res = faiss.StandardGpuResources()
            cfg = faiss.GpuIndexFlatConfig()
            cfg.useFloat16 = False
            cfg.device = 0
            self.index = faiss.GpuIndexFlatL2(self._res, d, cfg)
        else:
            self.index = faiss.IndexFlatL2(d)

    def nearest(self, x: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(squared distance, index) of each row's nearest centroid."""
        self.index.reset()
        self.index.add(np.ascontiguousarray(centroids, dtype=np.float32))
        dist, idx = self.index.search(x, 1)
        return dist[:, 0], idx[:, 0].astype(np.int64)


def _means(x: np.ndarray, assign: np.ndarray, k: int, old: np.ndarray) -> np.ndarray:
    """Cluster means; an empty cluster keeps its old centroid. The sums are float32 rows added
    in row order (torch's index_add_ on CPU is a serial loop over rows, so the bits do not
    depend on the thread count): 6x faster than a float64 one-hot product, whose conversion
    of the rows each iteration cost more than faiss's search (bench/bench_kmeans.py)."""
    sums = torch.zeros(k, x.shape[1], dtype=torch.float32)
    sums.index_add_(0, torch.from_numpy(assign), torch.from_numpy(x))
    counts = np.bincount(assign, minlength=k)
    means = sums.numpy() / np.maximum(counts, 1).astype(np.float32)[:, None]
    means[counts == 0] = old[counts == 0]
    return means


def reseed_empty(x: np.ndarray, assign: np.ndarray, centroids: np.ndarray,
                 rng: np.random.Generator, eps: float = 1e-3) -> int:
    """Fill every empty cluster by splitting a random non-empty one (in place); return count."""
    k = len(centroids)
    counts = np.bincount(assign, minlength=k)
    n_reseeded = 0
    for j in np.flatnonzero(counts == 0):
        donors = np.flatnonzero(counts >= 2)
        c = int(rng.choice(donors))
        scale = eps * (np.linalg.norm(centroids[c]) + 1e-12) / np.sqrt(x.shape[1])
        noise = rng.standard_normal(x.shape[1]).astype(np.float32) * scale
        base = centroids[c].copy()
        centroids[j], centroids[c] = base + noise, base - noise
        members = np.flatnonzero(assign == c)
        pts = x[members]
        to_j = (((pts - centroids[j]) ** 2).sum(1) < ((pts - centroids[c]) ** 2).sum(1))
        if to_j.all() or not to_j.any():        # a degenerate split: halve at random
            to_j = np.zeros(len(members), bool)
            to_j[rng.permutation(len(members))[: len(members) // 2]] = True
        assign[members[to_j]] = j
        counts[j], counts[c] = int(to_j.sum()), int((~to_j).sum())
        centroids[j] = pts[to_j].mean(0)
        centroids[c] = pts[~to_j].mean(0)
        n_reseeded += 1
    return n_reseeded


def split_like_faiss(centroids: np.ndarray, counts: np.ndarray, n: int,
                     rng: np.random.Generator, eps: float = 1.0 / 1024) -> int:
    """The released code's rule (faiss Clustering's split_clusters), in place: each empty
    centroid copies a donor drawn with probability (size - 1) / (n - k), scanning clusters
    in order until one is accepted, and the pair is pushed apart by scaling coordinates by
    1 +- eps (alternating sign per coordinate). No point moves: the next assignment splits
    the donor. Returns the count."""
    k = len(centroids)
    sign = np.where(np.arange(centroids.shape[1]) % 2 == 0, 1.0, -1.0).astype(np.float32)
    n_split = 0
    for ci in np.flatnonzero(counts == 0):
        cj = 0
        while True:
            if rng.random() < (counts[cj] - 1.0) / max(n - k, 1):
                break
            cj = (cj + 1) % k
        centroids[ci] = centroids[cj] * (1 + sign * eps)
        centroids[cj] = centroids[cj] * (1 - sign * eps)
        counts[ci] = counts[cj] // 2
        counts[cj] -= counts[ci]
        n_split += 1
    return n_split


EMPTY_RULES = ("paper", "released")


def kmeans(x: np.ndarray, k: int, niter: int = 20, seed: int = 0,
           use_gpu: bool | None = None, empty: str = "paper") -> KMeansResult:
    """Cluster the rows of x (N x d float32) into k clusters. `empty` picks the rule for
    clusters left empty: 'paper' (every cluster non-empty at the end, reseed_empty) or
    'released' (faiss's split, as DeepCluster's released code runs it: the final
    assignment may leave a cluster empty, which the sampler then skips)."""
    if empty not in EMPTY_RULES:
        raise DcbenchError(f"unknown empty-cluster rule '{empty}'; choose one of "
                           f"{', '.join(EMPTY_RULES)}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    if k > n:
        raise DcbenchError(f"k = {k} clusters is more than the {n} points to cluster; "
                           f"lower --k or use more images")
    use_gpu = gpu_available() if use_gpu is None else use_gpu
    rng = np.random.default_rng(seed)
    centroids = x[rng.choice(n, size=k, replace=False)].copy()
    reseeded, losses = 0, []
    assign = np.zeros(n, np.int64)
    index = CentroidIndex(x.shape[1], use_gpu)
    progress = bar(f"k-means (k={k})", total=niter, unit="iter")
    previous = None
    for _ in range(niter):
        dist, assign = index.nearest(x, centroids)
        losses.append(float(dist.sum()))
        if previous is not None and np.array_equal(assign, previous):
            # A fixed point: the same assignment gives the same means (summed in the same
            # order), so every later iteration would repeat this one. Stopping changes no bit
            # of the result (faiss.Kmeans stops here too: "objective did not change").
            break
        centroids = _means(x, assign, k, centroids)
        if empty == "paper":
            n_new = reseed_empty(x, assign, centroids, rng)
        else:
            n_new = split_like_faiss(centroids, np.bincount(assign, minlength=k), n, rng)
        reseeded += n_new
        previous = None if n_new else assign
        progress.update(1)
    else:
        dist, assign = index.nearest(x, centroids)
        if empty == "paper":
            reseeded += reseed_empty(x, assign, centroids, rng)
    progress.update(niter - progress.n)     # a fixed point ends the bar early
    progress.close()
    final = float(((x - centroids[assign]) ** 2).sum())
    return KMeansResult(assign, centroids, final, reseeded, losses)
