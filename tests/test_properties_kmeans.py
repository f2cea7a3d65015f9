"""Property-based tests (hypothesis) of dcbench's k-means: its objective against faiss's from
the same start, monotone and complete clusters, and the empty-cluster re-seeding (hand
cases from bench/mutation.py survivors at the end).
"""

from __future__ import annotations

import faiss
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis_settings import FEW, SOME, seeds  # tests/ is on sys.path

from dcbench.clustering.kmeans import kmeans, reseed_empty

# ------------------------------------------------------------------------- k-means


@st.composite
def blob_data(draw):
    seed = draw(seeds)
    k = draw(st.integers(2, 6))
    d = draw(st.integers(2, 8))
    n = draw(st.integers(10 * k, 60 * k))
    spread = draw(st.floats(0.5, 8.0))
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d)) * spread
    x = centres[rng.integers(0, k, n)] + rng.standard_normal((n, d))
    return x.astype(np.float32), k, seed


@SOME
@given(blob_data())
def test_kmeans_objective_matches_faiss_from_the_same_start(data):
    """From the same initial centroids and with no empty cluster, Lloyd's iterations are
    faiss.Kmeans's: the same objective at every iteration both ran, and a final loss no worse
    than faiss's last."""
    x, k, seed = data
    ours = kmeans(x, k, niter=20, seed=seed, use_gpu=False)
    assume(ours.empty_reseeded == 0)
    init = x[np.random.default_rng(seed).choice(len(x), size=k, replace=False)].copy()
    km = faiss.Kmeans(x.shape[1], k, niter=20, seed=seed, max_points_per_centroid=10**6)
    km.train(x, init_centroids=init)
    assume(all(s["nsplit"] == 0 for s in km.iteration_stats))
    ref = np.array([s["obj"] for s in km.iteration_stats])
    m = min(len(ref), len(ours.losses))
    np.testing.assert_allclose(ours.losses[:m], ref[:m], rtol=1e-4)
    assert ours.loss <= ref[-1] * (1 + 1e-4) + 1e-4
    # the reported loss is the objective of the returned assignment and centroids
    recomputed = float(((x.astype(np.float64) - ours.centroids[ours.assignment]) ** 2).sum())
    assert ours.loss == pytest.approx(recomputed, rel=1e-4)
    # a local optimum: every point is at its nearest centroid, centroids are their means
    d2 = ((x[:, None, :] - ours.centroids[None]) ** 2).sum(-1)
    assert (d2[np.arange(len(x)), ours.assignment] <= d2.min(1) * (1 + 1e-4) + 1e-5).all()
    for j in range(k):
        np.testing.assert_allclose(ours.centroids[j], x[ours.assignment == j].mean(0),
                                   rtol=1e-4, atol=1e-4)


@SOME
@given(blob_data())
def test_kmeans_is_never_worse_than_its_first_iteration_and_fills_every_cluster(data):
    x, k, seed = data
    ours = kmeans(x, k, niter=10, seed=seed, use_gpu=False)
    assert np.bincount(ours.assignment, minlength=k).min() >= 1
    assert ours.loss <= ours.losses[0] * (1 + 1e-5) + 1e-4
    assert ours.assignment.dtype == np.int64 and ours.centroids.shape == (k, x.shape[1])



@FEW
@given(st.integers(2, 6), st.integers(1, 3), st.integers(1, 5), seeds)
def test_reseeding_splits_donors_and_leaves_means_consistent(k_full, n_empty, d, seed):
    """Each empty cluster takes part of one cluster of two or more points: every cluster ends
    non-empty, only donors' points move, each touched centroid is its points' mean, and the
    count is the number of clusters that were empty."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((12 * k_full, d)).astype(np.float32)
    assign = rng.integers(0, k_full, len(x))
    assign[:k_full] = np.arange(k_full)                   # clusters 0..k_full-1 non-empty
    k = k_full + n_empty                                  # the last n_empty are empty
    centroids = np.zeros((k, d), np.float32)
    for j in range(k_full):
        centroids[j] = x[assign == j].mean(0)
    before = assign.copy()
    n = reseed_empty(x, assign, centroids, np.random.default_rng(seed))
    assert n == n_empty
    assert np.bincount(assign, minlength=k).min() >= 1
    moved = before != assign
    assert (assign[moved] >= k_full).all()                # points only move to new clusters
    for j in np.unique(np.concatenate([before[moved], assign[moved]])):
        np.testing.assert_allclose(centroids[j], x[assign == j].mean(0), rtol=1e-5, atol=1e-5)
    for j in set(range(k_full)) - set(before[moved].tolist()):
        np.testing.assert_allclose(centroids[j], x[before == j].mean(0), rtol=1e-5, atol=1e-5)


def test_kmeans_accepts_as_many_clusters_as_points():
    x = np.arange(12, dtype=np.float32).reshape(6, 2)
    result = kmeans(x, 6, niter=3, seed=0, use_gpu=False)
    assert sorted(result.assignment.tolist()) == list(range(6)) and result.loss == 0.0
