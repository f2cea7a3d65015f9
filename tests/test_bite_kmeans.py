"""k-means on hand-worked cases where the mutants bench/mutation.py found surviving in
dcbench.clustering.kmeans give another outcome: the paper rule's geometric split, the donor
size threshold, the released rule's donor scan and sign pattern, the defaults, float64
input."""

from __future__ import annotations

import numpy as np
import pytest

from dcbench.clustering.kmeans import kmeans, reseed_empty, split_like_faiss

# np.random.default_rng(0).random() draws 0.637, 0.270, 0.041, 0.017, ...


def _reseed(points: list[float], k: int, assign: list[int], seed: int = 0):
    x = np.array(points, np.float32)[:, None]
    a = np.array(assign, np.int64)
    centroids = np.zeros((k, 1), np.float32)
    for c in range(k):
        if (a == c).any():
            centroids[c] = x[a == c].mean(0)
    n = reseed_empty(x, a, centroids, np.random.default_rng(seed))
    groups = sorted(tuple(np.flatnonzero(a == c).tolist()) for c in range(k))
    return n, groups, sorted(centroids[:, 0].tolist()), a, centroids


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_paper_rule_splits_the_donor_by_the_bisector_through_its_centroid(seed: int) -> None:
    # Donor 0 holds 0, 10, 13.5, 21, 22 (mean 13.3); cluster 1 is the single point 500 (too
    # small to donate); cluster 2 is empty. The two new centroids sit at 13.3 -+ noise, so
    # the points split on either side of 13.3 whatever the noise: {0, 10} (mean 5) and
    # {13.5, 21, 22} (mean 56.5 / 3); the point at 500 stays alone.
    n, groups, means, a, centroids = _reseed([0, 10, 13.5, 21, 22, 500], 3,
                                             [0, 0, 0, 0, 0, 1], seed)
    assert n == 1
    assert groups == [(0, 1), (2, 3, 4), (5,)]
    assert means == pytest.approx([5.0, 56.5 / 3, 500.0])
    assert centroids[1, 0] == 500.0 and a[5] == 1


def test_a_two_point_cluster_can_donate() -> None:
    n, groups, means, _, _ = _reseed([0, 2, 500], 3, [0, 0, 1])
    assert n == 1 and groups == [(0,), (1,), (2,)] and means == [0.0, 2.0, 500.0]


def test_two_empty_clusters_split_the_donor_and_then_its_larger_half() -> None:
    # {0, 1, 2, 3, 100} splits into {0, 1, 2, 3} and {100}; the second empty cluster can
    # only take from the four (the others hold one point each): {0, 1} and {2, 3}.
    n, groups, means, _, _ = _reseed([0, 1, 2, 3, 100, 500], 4, [0, 0, 0, 0, 0, 1])
    assert n == 2
    assert groups == [(0, 1), (2, 3), (4,), (5,)]
    assert means == [0.5, 2.5, 100.0, 500.0]


def test_released_rule_scans_donors_in_order_with_alternating_signs() -> None:
    # counts 4, 3, 3, 0 of n = 10, k = 4: acceptance (size - 1) / (n - k) = 3/6, 2/6, 2/6.
    # Draws 0.637 (> 1/2: not cluster 0), 0.270 (< 1/3: cluster 1). d = 3: signs +, -, +.
    centroids = np.array([[1, 2, 4], [2, 2, 2], [3, 3, 3], [0, 0, 0]], np.float32)
    counts = np.array([4, 3, 3, 0])
    assert split_like_faiss(centroids, counts, 10, np.random.default_rng(0)) == 1
    e = 1 / 1024
    np.testing.assert_array_equal(centroids, np.array(
        [[1, 2, 4], [2 - 2 * e, 2 + 2 * e, 2 - 2 * e], [3, 3, 3],
         [2 + 2 * e, 2 - 2 * e, 2 + 2 * e]], np.float32))
    assert counts.tolist() == [4, 2, 3, 1]          # 3 // 2 moves, 3 - 1 stays


def test_released_rule_acceptance_uses_n_minus_k_and_counts_every_split() -> None:
    # counts 2, 2, 0 of n = 4, k = 3: cluster 0 is accepted with probability 1/1.
    centroids = np.array([[1.0], [2.0], [0.0]], np.float32)
    counts = np.array([2, 2, 0])
    assert split_like_faiss(centroids, counts, 4, np.random.default_rng(0)) == 1
    assert counts.tolist() == [1, 2, 1]
    # counts 10, 0, 0 of n = 10: two empty clusters, two splits.
    counts = np.array([10, 0, 0])
    centroids = np.array([[1.0], [0.0], [0.0]], np.float32)
    assert split_like_faiss(centroids, counts, 10, np.random.default_rng(0)) == 2


def test_paper_rule_keeps_centroids_on_repeated_points() -> None:
    # 60 copies of (1, 1), 40 of (5, 2), k = 3: every centroid starts on a point, and the
    # paper rule's re-seeded centroids are means of identical points, so every iteration's
    # objective is exactly 0 (faiss's split would scale a copy off the point: > 0).
    x = np.array([[1.0, 1.0]] * 60 + [[5.0, 2.0]] * 40, np.float32)
    result = kmeans(x, 3, niter=10, seed=0, empty="paper", use_gpu=False)
    assert result.losses == [0.0] * 10 and result.loss == 0.0


def test_defaults_are_twenty_iterations_and_seed_zero() -> None:
    # Four identical points, k = 3: two clusters empty every iteration, so no fixed point
    # is ever reached and all default 20 iterations run.
    assert len(kmeans(np.zeros((4, 2), np.float32), 3, use_gpu=False).losses) == 20
    x = np.random.default_rng(5).random((40, 2)).astype(np.float32)
    default = kmeans(x, 6, use_gpu=False)
    seeded = kmeans(x, 6, seed=0, use_gpu=False)
    other = kmeans(x, 6, seed=1, use_gpu=False)
    np.testing.assert_array_equal(default.centroids, seeded.centroids)
    assert not np.array_equal(default.centroids, other.centroids)


def test_float64_input_clusters_as_float32_and_returns_float32_centroids() -> None:
    # 0, 1, 10, 11 on a line: from any two distinct starts Lloyd ends at {0, 1}, {10, 11}.
    x = np.array([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [11.0, 0.0]])      # float64
    result = kmeans(x, 2, niter=5, seed=0, use_gpu=False)
    assert result.centroids.dtype == np.float32
    assert sorted(result.centroids.tolist()) == [[0.5, 0.0], [10.5, 0.0]]
    assert result.loss == 1.0                        # four points 0.5 from their centroid


def test_an_unknown_empty_rule_lists_the_rules() -> None:
    from dcbench.errors import DcbenchError

    with pytest.raises(DcbenchError, match=r"rule 'faiss'; choose one of paper, released$"):
        kmeans(np.zeros((4, 2), np.float32), 2, empty="faiss")
