"""PCA-whitening, k-means with empty-cluster re-seeding, PIC, the samplers and the metrics."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dcbench.clustering import metrics
from dcbench.clustering.kmeans import CentroidIndex, _means, kmeans, reseed_empty
from dcbench.clustering.pca import Moments, PCAWhitening, pca_whiten_l2
from dcbench.clustering.pic import pic
from dcbench.clustering.sampler import released, uniform_over_clusters
from dcbench.errors import DcbenchError


def blobs(n: int, k: int, d: int, seed: int = 0, spread: float = 4.0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((k, d)) * spread
    labels = rng.integers(0, k, n)
    return (centres[labels] + rng.standard_normal((n, d))).astype(np.float32), labels


def reference_pca(x: np.ndarray, dim: int) -> np.ndarray:
    """float64 numpy PCA-whitening + L2, the textbook formula."""
    xc = x.astype(np.float64) - x.astype(np.float64).mean(0)
    w, v = np.linalg.eigh(xc.T @ xc / len(x))
    w, v = w[::-1][:dim], v[:, ::-1][:, :dim]
    y = xc @ v / np.sqrt(w)
    return y / np.linalg.norm(y, axis=1, keepdims=True)


def test_pca_matches_reference_up_to_sign_even_with_a_large_mean():
    x, _ = blobs(3000, 5, 32)
    x += 1000.0
    ours = pca_whiten_l2(x, 8)
    assert ours.shape == (3000, 8)
    np.testing.assert_allclose(np.abs(ours), np.abs(reference_pca(x, 8)), atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)


def test_streamed_moments_give_the_same_pca_as_one_batch():
    x, _ = blobs(2000, 5, 16)
    whole = PCAWhitening.fit(x, 6).transform(torch.from_numpy(x))
    m = Moments(16)
    for i in range(0, 2000, 333):
        m.add(torch.from_numpy(x[i:i + 333]))
    streamed = PCAWhitening.from_moments(m, 6).transform(torch.from_numpy(x))
    torch.testing.assert_close(streamed, whole, atol=1e-5, rtol=1e-4)


def test_pca_is_capped_at_the_rank_of_its_sample(capsys):
    """5 rows in 10 dims span 4 directions: asking for 8 must give 4 (the other 4 would be
    round-off noise scaled by ~1e4), each with unit variance on the sample, and say so."""
    x = np.random.default_rng(3).standard_normal((5, 10)).astype(np.float32)
    pca = PCAWhitening.fit(x, 8)
    assert pca.proj.shape == (10, 4)
    assert "span only 4 dimensions; reducing to 4 instead of 8" in capsys.readouterr().err
    y = (torch.from_numpy(x) - pca.mean) @ pca.proj
    np.testing.assert_allclose(y.var(0, unbiased=False).numpy(), 1.0, atol=1e-4)
    full_rank = np.linalg.eigvalsh(np.cov(x.T.astype(np.float64), bias=True))[::-1][:4]
    np.testing.assert_allclose(pca.eigenvalues.numpy(), full_rank, rtol=1e-6)
    # repeated rows span even less: 6 rows, 2 distinct -> 1 direction
    twice = np.repeat(x[:2], 3, axis=0)
    assert PCAWhitening.fit(twice, 8).proj.shape == (10, 1)


def test_whitened_components_have_unit_variance():
    x, _ = blobs(5000, 3, 12)
    t = torch.from_numpy(x)
    pca = PCAWhitening.fit(t, 12)
    y = (t - pca.mean) @ pca.proj
    np.testing.assert_allclose(y.var(0, unbiased=False).numpy(), 1.0, atol=1e-3)


def test_kmeans_recovers_separated_blobs_and_leaves_no_cluster_empty():
    x, labels = blobs(3000, 6, 8, spread=10.0)
    result = kmeans(x, 6, niter=20, seed=3)
    assert metrics.nmi(labels, result.assignment, "geometric") > 0.95
    assert np.bincount(result.assignment, minlength=6).min() > 0
    assert result.losses[-1] <= result.losses[0]


def test_kmeans_reseeds_empty_clusters_and_counts_them():
    # two points repeated and k = 5: initial centroids coincide, so some clusters start
    # empty and must be re-seeded by splitting a non-empty one
    x = np.concatenate([np.zeros((60, 4)), np.full((60, 4), 5.0)]).astype(np.float32)
    result = kmeans(x, 5, niter=5, seed=0)
    assert np.bincount(result.assignment, minlength=5).min() > 0
    assert result.empty_reseeded >= 3


def test_reseed_splits_a_non_empty_cluster_into_two():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((40, 3)).astype(np.float32)
    assign = np.zeros(40, np.int64)            # everything in cluster 0, cluster 1 empty
    centroids = np.stack([x.mean(0), np.full(3, 99.0)]).astype(np.float32)
    assert reseed_empty(x, assign, centroids, rng) == 1
    counts = np.bincount(assign, minlength=2)
    assert counts.min() > 0 and counts.sum() == 40


def test_kmeans_is_deterministic_for_a_seed_and_refuses_k_above_n():
    x, _ = blobs(500, 4, 8)
    a, b = kmeans(x, 10, seed=7), kmeans(x, 10, seed=7)
    assert np.array_equal(a.assignment, b.assignment)
    with pytest.raises(DcbenchError, match="more than the 500 points"):
        kmeans(x, 501)


def plain_lloyd(x: np.ndarray, k: int, niter: int, seed: int):
    """The same Lloyd loop without the fixed-point stop: every one of `niter` iterations."""
    rng = np.random.default_rng(seed)
    centroids = x[rng.choice(len(x), size=k, replace=False)].copy()
    index = CentroidIndex(x.shape[1], False)
    for _ in range(niter):
        _, assign = index.nearest(x, centroids)
        centroids = _means(x, assign, k, centroids)
        reseed_empty(x, assign, centroids, rng)
    _, assign = index.nearest(x, centroids)
    reseed_empty(x, assign, centroids, rng)
    return assign, centroids


def test_kmeans_stops_at_a_fixed_point_with_the_bits_of_the_full_run():
    x, _ = blobs(2000, 8, 6, seed=4, spread=6.0)
    result = kmeans(x, 8, niter=40, seed=2)
    assert len(result.losses) < 40                 # it did stop early
    assign, centroids = plain_lloyd(x, 8, 40, seed=2)
    assert np.array_equal(result.assignment, assign)
    assert np.array_equal(result.centroids, centroids)


def test_means_sum_in_float32_close_to_float64_and_keep_empty_centroids():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((3000, 7)).astype(np.float32) + 100.0   # a large offset
    assign = rng.integers(0, 4, 3000)                               # cluster 4 stays empty
    old = np.full((5, 7), -1.0, np.float32)
    got = _means(x, assign, 5, old)
    want = np.stack([x[assign == j].astype(np.float64).mean(0) for j in range(4)])
    np.testing.assert_allclose(got[:4], want, rtol=0, atol=1e-3)
    assert (got[4] == -1.0).all()


def test_pic_finds_the_blobs_and_assigns_every_point():
    x, labels = blobs(1500, 4, 8, spread=12.0)
    a = pic(pca_whiten_l2(x, 8))
    assert a.shape == (1500,) and a.min() == 0
    assert np.bincount(a).min() >= 2          # singletons were distributed
    # PIC over-segments but never mixes well separated blobs
    purity = sum(np.bincount(labels[a == c]).max() for c in np.unique(a)) / len(a)
    assert purity > 0.97


def test_uniform_sampler_draws_every_cluster_equally():
    rng = np.random.default_rng(0)
    assignment = np.repeat(np.arange(4), [1000, 100, 10, 1])
    rng.shuffle(assignment)
    assignment[:3] = -1                        # unreadable images are never drawn
    drawn = uniform_over_clusters(assignment, 4000, rng)
    assert len(drawn) == 4000 and (assignment[drawn] >= 0).all()
    counts = np.bincount(assignment[drawn], minlength=4)
    assert counts.min() >= 999


def test_released_sampler_is_size_proportional():
    rng = np.random.default_rng(0)
    assignment = np.repeat(np.arange(4), [1000, 100, 10, 1])
    rng.shuffle(assignment)
    counts = np.bincount(assignment[released(assignment, 4000, rng)], minlength=4)
    assert counts[0] > 3000 and counts[3] < 50


def test_metrics_on_a_known_case():
    labels = np.array([0, 0, 1, 1, 2, 2])
    perfect = np.array([5, 5, 3, 3, 9, 9])
    assert metrics.acc(labels, perfect) == 1.0
    assert metrics.nmi(labels, perfect, "geometric") == pytest.approx(1.0)
    assert metrics.ari(labels, perfect) == pytest.approx(1.0)
    half = np.array([0, 0, 0, 1, 1, 1])
    assert metrics.acc(labels, half) == pytest.approx(4 / 6)
    with pytest.raises(ValueError):
        metrics.nmi(labels, half, "median")
    stats = metrics.size_stats(np.array([0, 0, 0, 2, -1]), 3)
    assert stats == {"k": 3, "nonempty": 2, "min": 1, "max": 3, "median": 2.0, "std": 1.0}


def test_clustering_task_reduce_whitened_or_plain_projection():
    """whiten=False is the plain PCA projection (variances kept: the first component
    dominates), whiten=True gives every component unit variance before the L2 norm."""
    from dcbench.tasks.clustering_task import reduce

    x, _ = blobs(400, 4, 12, seed=5)
    t = torch.from_numpy(x)
    xc = x.astype(np.float64) - x.astype(np.float64).mean(0)
    w, v = np.linalg.eigh(xc.T @ xc / len(x))
    v = v[:, ::-1][:, :5]
    plain = xc @ v
    plain /= np.linalg.norm(plain, axis=1, keepdims=True)
    np.testing.assert_allclose(np.abs(reduce(t, 5, whiten=False).numpy()), np.abs(plain),
                               atol=1e-4)
    np.testing.assert_allclose(np.abs(reduce(t, 5).numpy()), np.abs(reference_pca(x, 5)),
                               atol=1e-4)
    np.testing.assert_allclose(np.linalg.norm(reduce(t, 0).numpy(), axis=1), 1.0, atol=1e-6)


def test_released_empty_cluster_rule_is_faiss_split():
    """The released code's rule: the empty centroid copies a donor drawn with probability
    (size - 1) / (n - k) (here 9/8 for cluster 0: always accepted first), the pair scaled by
    1 +- 1/1024 alternating per coordinate, sizes halved; no point moves."""
    from dcbench.clustering.kmeans import split_like_faiss

    centroids = np.array([[1.0, 2.0], [5.0, 5.0], [0.0, 0.0]], np.float32)
    counts = np.array([10, 1, 0])
    assert split_like_faiss(centroids, counts, 11, np.random.default_rng(0)) == 1
    e = 1 / 1024
    np.testing.assert_allclose(centroids, [[1 - e, 2 + 2 * e], [5, 5], [1 + e, 2 - 2 * e]],
                               rtol=1e-6)
    assert counts.tolist() == [5, 1, 5]


def test_kmeans_empty_rules_differ_where_a_cluster_empties():
    """Two repeated points, k = 3: two centroids start on the same point and one empties
    every iteration. The paper rule moves points at once (3 non-empty clusters at the end);
    the released rule only splits the centroid, and identical points all go back to one
    copy, so its final assignment keeps an empty cluster, as the released code's can."""
    x = np.array([[1.0, 1.0]] * 60 + [[5.0, 2.0]] * 40, np.float32)
    paper = kmeans(x, 3, niter=10, seed=0, empty="paper")
    released = kmeans(x, 3, niter=10, seed=0, empty="released")
    assert sorted(np.bincount(paper.assignment, minlength=3)) == [20, 20, 60]
    assert sorted(np.bincount(released.assignment, minlength=3)) == [0, 40, 60]
    assert paper.empty_reseeded == 11 and released.empty_reseeded == 10
    with pytest.raises(DcbenchError, match="unknown empty-cluster rule 'faiss'"):
        kmeans(x, 3, empty="faiss")
