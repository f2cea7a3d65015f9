"""JULE's agglomerative step against a brute-force O(N^2) implementation of the same rule."""

from __future__ import annotations

import math

import numpy as np
import pytest

from dcbench.clustering.agglomerative import (
    GDL,
    agglomerate,
    knn_graph,
    merge,
    merges_per_period,
    nn_components,
    relabel,
)


def dense_graph(x: np.ndarray, k_s: int) -> np.ndarray:
    x = x.astype(np.float64)
    d2 = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d2, np.inf)
    nn = np.argsort(d2, axis=1, kind="stable")[:, :k_s]
    rows = np.arange(len(x))[:, None]
    sigma2 = d2[rows, nn].mean()
    w = np.zeros_like(d2)
    w[rows, nn] = np.exp(-d2[rows, nn] / sigma2)
    return w


def dense_affinity(w: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """A(c, d) straight from the definition, every pair, from scratch."""
    c = labels.max() + 1
    s = np.zeros((c, c))
    for i in range(c):
        ci = labels == i
        for j in range(c):
            if i != j:
                cj = labels == j
                s[i, j] = w[np.ix_(ci, cj)].sum(0) @ w[np.ix_(cj, ci)].sum(1)
    size = np.bincount(labels, minlength=c).astype(float)
    a = s / size[:, None] ** 2 + s.T / size[None, :] ** 2
    np.fill_diagonal(a, 0.0)
    return a


def brute_merges(w: np.ndarray, labels: np.ndarray, n_merges: int, k_c: int,
                 above: int) -> list[tuple[int, int]]:
    labels = labels.copy()
    alive = set(range(labels.max() + 1))
    out = []
    ids = np.arange(labels.max() + 1)
    for _ in range(n_merges):
        # affinities among alive ids (labels keep their original ids, as GDL does)
        order = sorted(alive)
        compact = np.searchsorted(order, labels)
        a = dense_affinity(w, compact)
        best_crit, pick = -np.inf, None
        pick = None
        for ci, c in enumerate(order):
            if (a[ci] > 0).any():
                continue
            out_w = {d: w[np.ix_(labels == c, labels == d)].sum() for d in order if d != c}
            out_w = {d: v for d, v in out_w.items() if v > 0}
            if out_w:
                pick = (c, min(out_w, key=lambda d: (-out_w[d], d)))
                break
        stranded = pick is not None
        for ci, cid in enumerate(order if not stranded else []):
            neigh = sorted((-a[ci, dj], order[dj]) for dj in range(len(order))
                            if dj != ci and a[ci, dj] > 0)
            if not neigh:
                continue
            a1 = -neigh[0][0]
            if len(alive) > above:
                rest = [-v for v, _ in neigh[1:k_c]] + [0.0] * (k_c - min(k_c, len(neigh)))
                crit = a1 + sum(a1 - r for r in rest) / (k_c - 1)
            else:
                crit = a1
            if crit > best_crit:
                best_crit, pick = crit, (cid, neigh[0][1])
        if pick is None:
            by_size = sorted(order, key=lambda d: ((labels == d).sum(), d))
            pick = (by_size[0], by_size[1])
        i, j = pick
        si, sj = (labels == i).sum(), (labels == j).sum()
        keep, gone = (i, j) if (si, -i) > (sj, -j) else (j, i)
        labels[labels == gone] = keep
        alive.discard(gone)
        out.append((int(keep), int(gone)))
    del ids
    return out


@pytest.mark.parametrize(("n", "k_s", "k_c", "above", "seed"),
                         [(60, 5, 3, 4, 0), (80, 8, 5, 10, 1), (50, 4, 2, 100, 2)])
def test_every_merge_equals_the_brute_force_rule(n, k_s, k_c, above, seed):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((4, 3)) * 3
    x = (centres[rng.integers(0, 4, n)] + rng.standard_normal((n, 3))).astype(np.float32)
    w = knn_graph(x, k_s)
    np.testing.assert_allclose(w.toarray(), dense_graph(x, k_s), rtol=1e-5, atol=1e-7)
    labels = nn_components(w)
    assert labels.max() + 1 < n            # 1-NN components join points
    n_merges = labels.max() + 1 - 2
    got = merge(w, labels, n_merges, k_c, above).merges
    want = brute_merges(dense_graph(x, k_s), labels, n_merges, k_c, above)
    assert got == want


def test_initial_affinities_equal_the_definition():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((40, 4)).astype(np.float32)
    w = knn_graph(x, 6)
    labels = rng.integers(0, 7, 40)
    labels = relabel(labels)
    gdl = GDL(w, labels, k_c=3)
    a = dense_affinity(w.toarray(), labels)
    got = np.zeros_like(a)
    for i in range(len(a)):
        for j, v in gdl.aff[i].items():
            got[i, j] = v
    np.testing.assert_allclose(got, a, rtol=1e-10, atol=1e-14)
    assert (a != a.T).sum() == 0 and (a > 0).sum() > 10


def test_hand_computed_affinity_of_two_pairs():
    # 4 points, clusters {0,1} and {2,3}; W by hand
    from scipy import sparse
    w = np.zeros((4, 4))
    w[0, 2], w[2, 0], w[1, 3], w[3, 0], w[0, 1], w[2, 3] = 0.5, 0.4, 0.2, 0.1, 0.9, 0.7
    labels = np.array([0, 0, 1, 1])
    # S(0,1) = sum_{b in C1} (sum_{a in C0} w[a,b]) (sum_{c in C0} w[b,c])
    #        = b=2: 0.5 * 0.4 + b=3: 0.2 * 0.1 = 0.22; S(1,0) = b=0: (0.4+0.1)*0.5 = 0.25
    #          + b=1: 0 -> 0.25; A = 0.22/4 + 0.25/4
    gdl = GDL(sparse.csr_matrix(w), labels, k_c=2)
    assert gdl.aff[0][1] == pytest.approx((0.22 + 0.25) / 4)


def test_knn_graph_uses_the_mean_squared_distance_and_skips_self_with_duplicates():
    x = np.array([[0.0], [0.0], [1.0], [3.0]], np.float32)
    w = knn_graph(x, 1).toarray()
    # nearest: 0<->1 (d2 0), 2->0 or 1 (d2 1), 3->2 (d2 4); sigma2 = (0+0+1+4)/4
    assert np.count_nonzero(np.diag(w)) == 0
    assert w[0, 1] == 1.0 and w[1, 0] == 1.0
    assert w[3, 2] == pytest.approx(math.exp(-4 / 1.25))


def test_periods_and_agglomerate_reach_the_target():
    assert merges_per_period(100, 0.9, 10) == 90
    assert merges_per_period(15, 0.9, 10) == 5
    assert merges_per_period(10, 0.9, 10) == 0
    rng = np.random.default_rng(4)
    centres = rng.standard_normal((5, 6)) * 6
    truth = rng.integers(0, 5, 400)
    x = (centres[truth] + rng.standard_normal((400, 6))).astype(np.float32)
    labels = agglomerate(x, 5, k_s=10)
    assert labels.max() + 1 == 5
    from dcbench.clustering.metrics import nmi
    assert nmi(truth, labels, "geometric") > 0.95


def test_min_size_merges_outlier_clusters_first_in_the_final_phase():
    from scipy import sparse
    # A = 0-3, B = 4-7 (dense inside, one link each way between 3 and 4); C = 8-9, an outlier
    # pair pointing into B that only point 5 of B points back to, weakly
    w = np.zeros((10, 10))
    for group in (range(0, 4), range(4, 8), range(8, 10)):
        for i in group:
            for j in group:
                w[i, j] = 1.0 if i != j else 0.0
    w[3, 4] = w[4, 3] = 0.5
    w[8, 5], w[9, 6], w[5, 8] = 0.9, 0.9, 0.01
    labels = np.array([0] * 4 + [1] * 4 + [2] * 2)
    gdl = GDL(sparse.csr_matrix(w), labels, k_c=2)
    assert 0 < gdl.aff[1][2] < gdl.aff[0][1]            # C's affinity is tiny, not zero
    plain = merge(sparse.csr_matrix(w), labels, 1, k_c=2).merges
    fixed = merge(sparse.csr_matrix(w), labels, 1, k_c=2, min_size=3).merges
    assert plain == [(0, 1)]                  # GDL joins the two real clusters
    assert fixed == [(1, 2)]                  # the outlier pair goes into B first
    early = merge(sparse.csr_matrix(w), labels, 1, k_c=2, min_size=3, criterion_above=2)
    assert early.merges == [(0, 1)]           # above criterion_above clusters: rule is off
