"""Power iteration clustering on a k-NN graph, DeepCluster's alternative to k-means (Fig. 3).

As the paper's variant: a 5-NN graph of the PCA-whitened, L2-normalised features with
Gaussian weights exp(-d^2 / sigma^2) (sigma 0.2), symmetrised; 200 power iterations of
v <- alpha W^T v + (1 - alpha) / N, L1-normalised (alpha 0.001); each node then points to the
neighbour j maximising W_ij (v_j - v_i) (itself if none is higher) and clusters are the basins
of the local maxima. Singletons join the cluster of their nearest non-singleton neighbour.
The number of clusters is not fixed: it emerges from the graph.
"""

from __future__ import annotations

import faiss
import numpy as np
import scipy.sparse as sp

from dcbench.clustering.kmeans import gpu_available


def knn_graph(x: np.ndarray, nnn: int, use_gpu: bool) -> tuple[np.ndarray, np.ndarray]:
    """(neighbour ids, squared distances), (N, nnn), the point itself removed."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    if use_gpu:
        index = faiss.GpuIndexFlatL2(faiss.StandardGpuResources(), x.shape[1])
    else:
        index = faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    dist, ids = index.search(x, nnn + 1)
    n = len(x)
    is_self = ids == np.arange(n)[:, None]
    # drop the point itself where found, else the farthest of the nnn+1 neighbours
    drop = np.where(is_self.any(1), is_self.argmax(1), nnn)
    keep = np.ones_like(ids, dtype=bool)
    keep[np.arange(n), drop] = False
    return ids[keep].reshape(n, nnn), dist[keep].reshape(n, nnn)


def power_iteration(w: sp.csr_matrix, alpha: float, iters: int) -> np.ndarray:
    n = w.shape[0]
    wt = w.T.tocsr()
    v = np.full(n, 1.0 / n, dtype=np.float64)
    for _ in range(iters):
        v = alpha * (wt @ v) + (1.0 - alpha) / n
        v /= v.sum()
    return v


def basins(w: sp.csr_matrix, v: np.ndarray) -> np.ndarray:
    """Follow each node's steepest weighted ascent to a local maximum; label by maximum."""
    n = w.shape[0]
    rows = np.repeat(np.arange(n), np.diff(w.indptr))
    score = w.data * (v[w.indices] - v[rows])
    pointer = np.arange(n)
    best = np.zeros(n)
    # per row, the neighbour with the largest positive score (ties: the first in row order)
    order = np.lexsort((-np.arange(len(score)), score, rows))
    last_of_row = np.r_[rows[order][1:] != rows[order][:-1], True]
    top = order[last_of_row]
    ok = score[top] > 0
    pointer[rows[top][ok]] = w.indices[top][ok]
    best[rows[top][ok]] = score[top][ok]
    while True:                         # pointer jumping: O(log depth) rounds
        nxt = pointer[pointer]
        if np.array_equal(nxt, pointer):
            break
        pointer = nxt
    _, labels = np.unique(pointer, return_inverse=True)
    return labels.astype(np.int64)


def distribute_singletons(labels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    labels = labels.copy()
    sizes = np.bincount(labels)
    for s in np.flatnonzero(sizes[labels] == 1):
        for j in ids[s]:
            if sizes[labels[j]] > 1:
                sizes[labels[s]] -= 1
                labels[s] = labels[j]
                sizes[labels[j]] += 1
                break
    _, labels = np.unique(labels, return_inverse=True)
    return labels.astype(np.int64)


def pic(x: np.ndarray, nnn: int = 5, sigma: float = 0.2, alpha: float = 0.001,
        iters: int = 200, singletons: bool = True, use_gpu: bool | None = None) -> np.ndarray:
    """Cluster rows of x (L2-normalised); returns contiguous labels 0..C-1."""
    use_gpu = gpu_available() if use_gpu is None else use_gpu
    n = len(x)
    ids, dist = knn_graph(x, nnn, use_gpu)
    weights = np.exp(-dist.astype(np.float64) / sigma**2).ravel()
    a = sp.csr_matrix((weights, ids.ravel(), np.arange(0, n * nnn + 1, nnn)), shape=(n, n))
    w = (a + a.T).tocsr()
    labels = basins(w, power_iteration(w, alpha, iters))
    return distribute_singletons(labels, ids) if singletons else labels
