"""Property-based tests (hypothesis) of the clustering metrics against a reference: sklearn /
scipy / brute force for NMI, ACC and ARI, and the cluster-size statistics. The VOC and
retrieval metrics' properties are in test_properties_eval_metrics.py.

Examples are derandomised (the same ones every run) and few, so the file takes seconds.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis_settings import FEW, seeds  # tests/ is on sys.path
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from dcbench.clustering import metrics


@st.composite
def labelings(draw, max_n: int = 40, max_labels: int = 5, max_clusters: int = 6):
    """(labels, clusters): two integer labelings of the same n points, at least 2 points."""
    n = draw(st.integers(2, max_n))
    a = draw(st.lists(st.integers(0, max_labels - 1), min_size=n, max_size=n))
    b = draw(st.lists(st.integers(0, max_clusters - 1), min_size=n, max_size=n))
    return np.array(a), np.array(b)


def brute_force_acc(labels: np.ndarray, clusters: np.ndarray) -> float:
    """Best one-to-one matching by trying every injective map of the smaller side."""
    ls, cs = np.unique(labels), np.unique(clusters)
    best = 0
    if len(cs) <= len(ls):
        for image in itertools.permutations(ls, len(cs)):
            best = max(best, sum(int(((clusters == c) & (labels == y)).sum())
                                 for c, y in zip(cs, image)))
    else:
        for image in itertools.permutations(cs, len(ls)):
            best = max(best, sum(int(((clusters == c) & (labels == y)).sum())
                                 for y, c in zip(ls, image)))
    return best / len(labels)


# --------------------------------------------------------------------- NMI, ACC, ARI


@FEW
@given(labelings())
def test_nmi_matches_sklearn_for_every_normalisation(ab):
    a, b = ab
    for method in ("arithmetic", "geometric", "min", "max"):
        want = normalized_mutual_info_score(a, b, average_method=method)
        assert metrics.nmi(a, b, method) == pytest.approx(want, abs=1e-12)
    rec = metrics.all_metrics(a, b)
    assert rec["nmi_geometric"] == pytest.approx(
        normalized_mutual_info_score(a, b, average_method="geometric"), abs=1e-12)
    assert rec["nmi_arithmetic"] == pytest.approx(
        normalized_mutual_info_score(a, b, average_method="arithmetic"), abs=1e-12)


@FEW
@given(labelings())
def test_acc_is_the_best_one_to_one_matching(ab):
    a, b = ab
    got = metrics.acc(a, b)
    assert got == pytest.approx(brute_force_acc(a, b), abs=1e-12)
    # and scipy's assignment on a contingency table counted here
    _, ai = np.unique(a, return_inverse=True)
    _, bi = np.unique(b, return_inverse=True)
    table = np.zeros((ai.max() + 1, bi.max() + 1), np.int64)
    np.add.at(table, (ai, bi), 1)
    r, c = linear_sum_assignment(-table)
    assert got == pytest.approx(table[r, c].sum() / len(a), abs=1e-12)
    assert metrics.all_metrics(a, b)["acc"] == got


@FEW
@given(labelings())
def test_ari_matches_sklearn_and_is_symmetric(ab):
    a, b = ab
    assert metrics.ari(a, b) == pytest.approx(adjusted_rand_score(a, b), abs=1e-12)
    assert metrics.ari(a, b) == pytest.approx(metrics.ari(b, a), abs=1e-12)
    assert metrics.all_metrics(a, b)["ari"] == metrics.ari(a, b)


@FEW
@given(labelings(), seeds)
def test_metrics_are_invariant_under_relabelling(ab, seed):
    a, b = ab
    rng = np.random.default_rng(seed)
    a2 = (rng.permutation(50) + 100)[a]                 # other ids, same partition
    b2 = rng.permutation(50)[b]
    before, after = metrics.all_metrics(a, b), metrics.all_metrics(a2, b2)
    assert after == pytest.approx(before, abs=1e-12)
    assert metrics.nmi(b, a, "geometric") == pytest.approx(before["nmi_geometric"], abs=1e-12)


@FEW
@given(st.integers(2, 40), st.integers(1, 6), seeds)
def test_a_perfect_clustering_scores_one_whatever_its_ids(n, k, seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    clusters = rng.permutation(k)[labels] + 7
    got = metrics.all_metrics(labels, clusters)
    assert got["acc"] == 1.0
    if len(np.unique(labels)) > 1:
        assert got["nmi_geometric"] == pytest.approx(1.0) and got["ari"] == pytest.approx(1.0)


@FEW
@given(st.lists(st.integers(-1, 9), min_size=1, max_size=60))
def test_size_stats_counts_the_non_empty_clusters(values):
    a = np.array(values)
    assume((a >= 0).any())
    sizes = np.array([(a == c).sum() for c in range(10) if (a == c).sum() > 0])
    got = metrics.size_stats(a, 10)
    assert got == {"k": 10, "nonempty": len(sizes), "min": sizes.min(), "max": sizes.max(),
                   "median": pytest.approx(float(np.median(sizes))),
                   "std": pytest.approx(float(sizes.std()))}
