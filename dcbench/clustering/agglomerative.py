"""JULE's agglomerative clustering: graph-degree-linkage (GDL) affinity on a K_s-NN graph.

As JULE (Yang et al., CVPR 2016) and its released code define it (../shared/REFERENCE.md,
PROTOCOLS.md):
- W: directed K_s-nearest-neighbour graph (faiss), w_ij = exp(-d_ij^2 / sigma^2) for j in
  kNN(i), sigma^2 the mean squared kNN distance. Sparse: N * K_s entries, never N x N.
- Cluster affinity A(Ci, Cj) = S(i, j) / |Ci|^2 + S(j, i) / |Cj|^2 with
  S(i, j) = 1' W(Ci, Cj) W(Cj, Ci) 1 = sum over b in Cj of P[i, b] * Q[b, i], where
  P[i, b] = sum_{a in Ci} W[a, b] (weight from Ci into b) and Q[b, i] = sum_{c in Ci} W[b, c].
  A is symmetric.
- Initial clusters: connected components of the 1-NN graph (the released code follows 1-NN
  chains, capped at 50 steps: the same partition unless a chain is longer than 50).
- Each merge joins the cluster with the highest criterion and its most affine neighbour. The
  criterion is A1 + sum_{k=2..K_c} (A1 - A_k) / (K_c - 1) over the cluster's K_c largest
  affinities (missing ones count 0) while there are more than `criterion_above` (100, the
  released code) clusters, then plain A1. Ties go to the smallest cluster id.
- A cluster with affinity 0 to every other (no point outside it has one of its members among
  its K_s neighbours while being among theirs: GDL's affinity needs paths both ways) can never
  win a merge, and at a small target such stranded clusters of 2-4 outliers end up as target
  clusters while the real ones are merged into one (measured on Fashion-MNIST pixels: NMI 0.64
  at 19 clusters, 0.02 at 10). dcbench merges a stranded cluster first, into the cluster its
  out-edges weigh most. This rule is dcbench's: neither the paper nor REFERENCE.md says what
  happens to such clusters. A cluster with no edge out of it at all (a connected component of
  the graph) is left alone while any other merge is possible; then the two smallest join.
- `min_size` (default 1: off) extends that rule to clusters of fewer than `min_size` images
  once at most `criterion_above` clusters remain. Outlier clusters of 2-5 images whose affinity
  is tiny but not zero otherwise survive to the target count while real clusters merge (JULE-RC
  on a JULE run's Fashion-MNIST outputs: NMI 0.676 at 19 clusters, 0.497 at 10 with one
  cluster of 6,973 and six of 2-5 images; with min_size 10, 0.673 at 10). Off by default: it
  is dcbench's rule, not JULE's.

Merges are incremental and exact: merging i and j into m, S(d, m) = S(d, i) + S(d, j) and
S(m, d) = S(i, d) + S(j, d) + the cross terms sum_{b in Cd} P[i,b] Q[b,j] + P[j,b] Q[b,i],
found by walking the smaller cluster's sparse rows. The merged cluster keeps the id of the
larger one (the smaller id on equal sizes). tests/test_agglomerative.py checks every merge
against a dense O(N^2) recomputation of the same rule.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass

import numpy as np
from scipy import sparse

from dcbench.errors import DcbenchError
from dcbench.progress import bar


def knn_graph(x: np.ndarray, k_s: int) -> sparse.csr_matrix:
    """The directed K_s-NN affinity matrix W (N x N, N * K_s entries) of the rows of x."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    n = len(x)
    if n < 2:
        raise DcbenchError(f"agglomerative clustering needs at least 2 points, got {n}")
    k_s = min(k_s, n - 1)
    import faiss  # imported where used: a tenth of a second every command would pay

    index = faiss.IndexFlatL2(x.shape[1])
    index.add(x)
    d2, idx = index.search(x, k_s + 1)
    # drop each point itself (not always column 0 when points are duplicated)
    is_self = idx == np.arange(n)[:, None]
    no_self = ~is_self.any(1)
    is_self[no_self, -1] = True
    keep = ~is_self
    cols = idx[keep].reshape(n, k_s).astype(np.int64)
    d2 = np.maximum(d2[keep].reshape(n, k_s).astype(np.float64), 0.0)
    sigma2 = float(d2.mean())
    w = np.exp(-d2 / sigma2) if sigma2 > 0 else np.ones_like(d2)
    rows = np.repeat(np.arange(n), k_s)
    return sparse.csr_matrix((w.ravel(), (rows, cols.ravel())), shape=(n, n))


def nn_components(w: sparse.csr_matrix) -> np.ndarray:
    """Initial clusters: connected components of the 1-NN graph (each row's largest weight),
    numbered in order of first appearance."""
    n = w.shape[0]
    per_row = np.diff(w.indptr)
    if (per_row != per_row[0]).any():
        raise ValueError("nn_components expects the same number of neighbours in every row")
    data, cols = w.data.reshape(n, -1), w.indices.reshape(n, -1)
    nearest = cols[np.arange(n), np.argmax(data, axis=1)]
    graph = sparse.csr_matrix((np.ones(n), (np.arange(n), nearest)), shape=(n, n))
    from scipy.sparse.csgraph import connected_components

    _, labels = connected_components(graph, directed=True, connection="weak")
    return relabel(labels)


def relabel(labels: np.ndarray) -> np.ndarray:
    """Cluster ids 0..C-1 in order of first appearance."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    rank = np.empty(len(first), np.int64)
    rank[np.argsort(first, kind="stable")] = np.arange(len(first))
    return rank[inverse.ravel()]


@dataclass
class MergeLog:
    merges: list[tuple[int, int]]       # (kept id, absorbed id) in order
    labels: np.ndarray                  # relabelled 0..C-1


class GDL:
    """Clusters of a fixed W, merged one pair at a time with exact affinities."""

    def __init__(self, w: sparse.csr_matrix, labels: np.ndarray, k_c: int = 5,
                 criterion_above: int = 100, min_size: int = 1) -> None:
        self.k_c, self.criterion_above, self.min_size = k_c, criterion_above, min_size
        self.labels = relabel(np.asarray(labels)).copy()
        n, c = w.shape[0], int(self.labels.max()) + 1
        y = sparse.csr_matrix((np.ones(n), (np.arange(n), self.labels)), shape=(n, c))
        p = (y.T @ w).tocsr()                   # C x N: weight from cluster into point
        q = (w @ y).tocsc()                     # N x C: weight from point into cluster
        s = (p.T.multiply(q).T @ y).tocsr()     # C x C: S(i, j)
        self.size = np.bincount(self.labels, minlength=c).astype(np.int64)
        self.members = [[] for _ in range(c)]
        for i, lab in enumerate(self.labels):
            self.members[lab].append(i)
        self.prow = [dict(zip(p.indices[p.indptr[i]:p.indptr[i + 1]].tolist(),
                              p.data[p.indptr[i]:p.indptr[i + 1]].tolist())) for i in range(c)]
        self.qcol = [dict(zip(q.indices[q.indptr[i]:q.indptr[i + 1]].tolist(),
                              q.data[q.indptr[i]:q.indptr[i + 1]].tolist())) for i in range(c)]
        self.s_out: list[dict[int, float]] = [{} for _ in range(c)]
        self.s_in: list[dict[int, float]] = [{} for _ in range(c)]
        coo = s.tocoo()
        for i, j, v in zip(coo.row.tolist(), coo.col.tolist(), coo.data.tolist()):
            if i != j and v != 0.0:
                self.s_out[i][j] = v
                self.s_in[j][i] = v
        self.alive = np.ones(c, bool)
        self.n_clusters = c
        self.aff: list[dict[int, float]] = [{} for _ in range(c)]
        for i in range(c):
            for j in set(self.s_out[i]) | set(self.s_in[i]):
                self.aff[i][j] = self.affinity(i, j)
        self.crit = np.full(c, -np.inf)
        self.best = np.full(c, -1, np.int64)
        for i in range(c):
            self._score(i)

    def affinity(self, i: int, j: int) -> float:
        return (self.s_out[i].get(j, 0.0) / float(self.size[i]) ** 2
                + self.s_in[i].get(j, 0.0) / float(self.size[j]) ** 2)

    def _score(self, i: int) -> None:
        """Cluster i's merge criterion and its most affine neighbour."""
        aff = self.aff[i]
        if not aff:
            self.crit[i], self.best[i] = -np.inf, -1
            return
        top = heapq.nsmallest(self.k_c, ((-v, j) for j, v in aff.items()))
        a1, self.best[i] = -top[0][0], top[0][1]
        if self.n_clusters > self.criterion_above and self.k_c > 1:
            rest = [-v for v, _ in top[1:]] + [0.0] * (self.k_c - len(top))
            self.crit[i] = a1 + sum(a1 - a for a in rest) / (self.k_c - 1)
        else:
            self.crit[i] = a1

    def out_weights(self, i: int) -> dict[int, float]:
        """Total edge weight from cluster i into each other cluster."""
        weight: dict[int, float] = {}
        for b, v in self.prow[i].items():
            d = int(self.labels[b])
            if d != i:
                weight[d] = weight.get(d, 0.0) + v
        return weight

    def merge_once(self) -> tuple[int, int]:
        pick = None
        first = ~np.isfinite(self.crit)
        if self.min_size > 1 and self.n_clusters <= self.criterion_above:
            first |= self.size < self.min_size        # outlier clusters, the final phase only
        for i in np.flatnonzero(self.alive & first).tolist():
            weight = self.out_weights(i)       # stranded, but pointing at another cluster
            if weight:
                pick = (i, min(weight, key=lambda d: (-weight[d], d)))
                break
        if pick is None and np.isfinite(self.crit.max()):
            i = int(np.argmax(self.crit))
            pick = (i, int(self.best[i]))
        if pick is None:              # only self-contained components left: join the two
            alive = np.flatnonzero(self.alive)       # smallest (ties: smallest ids)
            order = sorted(alive.tolist(), key=lambda d: (self.size[d], d))
            pick = (order[0], order[1])
        i, j = pick
        keep, gone = (i, j) if (self.size[i], -i) > (self.size[j], -j) else (j, i)
        self._merge(keep, gone)
        return keep, gone

    def _merge(self, m: int, g: int) -> None:
        labels = self.labels
        # S(m, d) cross terms, walking the absorbed (smaller) cluster's sparse rows
        cross: dict[int, float] = {}
        for b, pv in self.prow[g].items():
            qv = self.qcol[m].get(b)
            if qv is not None:
                d = int(labels[b])
                cross[d] = cross.get(d, 0.0) + pv * qv
        for b, qv in self.qcol[g].items():
            pv = self.prow[m].get(b)
            if pv is not None:
                d = int(labels[b])
                cross[d] = cross.get(d, 0.0) + pv * qv
        for source, target in ((self.prow[g], self.prow[m]), (self.qcol[g], self.qcol[m])):
            for b, v in source.items():
                target[b] = target.get(b, 0.0) + v
        self.prow[g], self.qcol[g] = {}, {}
        out_m, in_m = self.s_out[m], self.s_in[m]
        for d, v in self.s_out[g].items():
            out_m[d] = out_m.get(d, 0.0) + v
            self.s_in[d].pop(g, None)
        for d, v in self.s_in[g].items():
            in_m[d] = in_m.get(d, 0.0) + v
            self.s_out[d].pop(g, None)
        for d, v in cross.items():
            out_m[d] = out_m.get(d, 0.0) + v
        for d in (m, g):
            out_m.pop(d, None)
            in_m.pop(d, None)
        for d, v in out_m.items():
            self.s_in[d][m] = v
        for d, v in in_m.items():
            self.s_out[d][m] = v
        self.s_out[g], self.s_in[g] = {}, {}
        labels[self.members[g]] = m
        self.members[m].extend(self.members[g])
        self.members[g] = []
        self.size[m] += self.size[g]
        self.size[g] = 0
        self.alive[g] = False
        self.n_clusters -= 1
        touched = (set(self.aff[m]) | set(self.aff[g])) - {g}
        for d in self.aff[g]:
            self.aff[d].pop(g, None)
        for d in self.aff[m]:
            self.aff[d].pop(m, None)
        self.aff[g], self.aff[m] = {}, {}
        self.crit[g], self.best[g] = -np.inf, -1
        for d in set(out_m) | set(in_m):
            a = self.affinity(m, d)
            self.aff[m][d] = a
            self.aff[d][m] = a
        for d in touched | set(self.aff[m]) | {m}:
            self._score(d)
        if self.n_clusters == self.criterion_above:    # the criterion switches rule: rescore
            for d in np.flatnonzero(self.alive):
                self._score(int(d))


def merge(w: sparse.csr_matrix, labels: np.ndarray, n_merges: int, k_c: int = 5,
          criterion_above: int = 100, desc: str = "merges", min_size: int = 1) -> MergeLog:
    """Merge `n_merges` pairs of the clusters `labels` on the graph w."""
    gdl = GDL(w, labels, k_c, criterion_above, min_size)
    n_merges = min(n_merges, gdl.n_clusters - 1)
    done: list[tuple[int, int]] = []
    progress = bar(desc, total=n_merges, unit="merge")
    for _ in range(n_merges):
        done.append(gdl.merge_once())
        progress.update(1)
    progress.close()
    return MergeLog(done, relabel(gdl.labels))


def merges_per_period(n_clusters: int, eta: float, target: int) -> int:
    """JULE's unfolding rate: ceil(eta * n) merges per period, never below the target."""
    return max(0, min(math.ceil(eta * n_clusters), n_clusters - target))


def agglomerate(x: np.ndarray, target: int, k_s: int = 20, k_c: int = 5, eta: float = 0.9,
                criterion_above: int = 100, min_size: int = 1) -> np.ndarray:
    """JULE-RC's clustering of fixed features: 1-NN components, then periods of
    ceil(eta * n) merges on the same graph until `target` clusters remain."""
    w = knn_graph(x, k_s)
    labels = nn_components(w)
    while labels.max() + 1 > target:
        n = merges_per_period(int(labels.max()) + 1, eta, target)
        labels = merge(w, labels, n, k_c, criterion_above, min_size=min_size).labels
    return labels
