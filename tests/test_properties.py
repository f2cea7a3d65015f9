"""Property-based tests (hypothesis) of the clustering pieces against a reference: sklearn /
scipy / brute force for NMI, ACC and ARI, faiss for the k-means objective and the
PCA-whitening, counting for the uniform sampler; then hand cases from mutation survivors.
The VOC and retrieval metrics' properties are in test_properties_eval_metrics.py.

Examples are derandomised (the same ones every run) and few, so the file takes seconds.
"""

from __future__ import annotations

import itertools

import faiss
import numpy as np
import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis_settings import FEW, SOME, seeds  # tests/ is on sys.path
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from dcbench.clustering import metrics
from dcbench.clustering.kmeans import kmeans, reseed_empty
from dcbench.clustering.pca import Moments, PCAWhitening
from dcbench.clustering.sampler import released, uniform_over_clusters


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


# ------------------------------------------------------------------------- samplers


@st.composite
def assignments(draw):
    sizes = draw(st.lists(st.integers(0, 40), min_size=1, max_size=8))
    assume(sum(sizes) > 0)
    unreadable = draw(st.integers(0, 5))
    seed = draw(seeds)
    a = np.concatenate([np.repeat(np.arange(len(sizes)), sizes), np.full(unreadable, -1)])
    return np.random.default_rng(seed).permutation(a), seed


@FEW
@given(assignments(), st.integers(1, 300))
def test_uniform_sampler_gives_every_cluster_the_same_share(data, n):
    a, seed = data
    drawn = uniform_over_clusters(a, n, np.random.default_rng(seed))
    clusters = np.unique(a[a >= 0])
    c = len(clusters)
    per = n // c + 1
    assert drawn.shape == (n,) and drawn.dtype.kind == "i"
    assert (a[drawn] >= 0).all()                                  # never an unreadable image
    counts = np.array([(a[drawn] == j).sum() for j in clusters])
    removed = c * per - n                                         # truncation of the shuffle
    assert counts.sum() == n
    assert counts.max() <= per and counts.min() >= per - removed
    for j in clusters:                   # a cluster with enough members is drawn without
        mine = drawn[a[drawn] == j]      # replacement: no image twice
        if (a == j).sum() >= per:
            assert len(np.unique(mine)) == len(mine)
    again = uniform_over_clusters(a, n, np.random.default_rng(seed))
    assert np.array_equal(drawn, again)


@FEW
@given(assignments(), st.integers(1, 300))
def test_uniform_sampler_draws_are_reproducible_from_index_order(data, n):
    """The exact draw for a seed: each cluster's members in ascending index order (a stable
    sort), `per` draws from each cluster in cluster order, then one shuffle. An unstable sort
    would give other images for the same seed on another numpy or machine."""
    a, seed = data
    rng = np.random.default_rng(seed)
    clusters = sorted({int(x) for x in a if x >= 0})
    per = n // len(clusters) + 1
    picks = []
    for c in clusters:
        members = np.array([i for i in range(len(a)) if a[i] == c])
        picks.append(rng.choice(members, size=per, replace=len(members) < per))
    want = np.concatenate(picks)
    rng.shuffle(want)
    got = uniform_over_clusters(a, n, np.random.default_rng(seed))
    assert got.tolist() == want[:n].tolist()


@FEW
@given(assignments(), st.integers(1, 300))
def test_released_sampler_reads_uniform_draws_as_cluster_ordered_positions(data, n):
    a, seed = data
    got = released(a, n, np.random.default_rng(seed))
    drawn = uniform_over_clusters(a, n, np.random.default_rng(seed))
    valid = [i for i in range(len(a)) if a[i] >= 0]
    by_cluster = sorted(valid, key=lambda i: (a[i], i))
    want = [by_cluster[valid.index(int(i))] for i in drawn]
    assert got.tolist() == want and (a[got] >= 0).all()


# ------------------------------------------------------------------------------ PCA


@st.composite
def pca_data(draw):
    seed = draw(seeds)
    d = draw(st.integers(3, 12))
    dout = draw(st.integers(1, d))
    n = draw(st.integers(8 * d, 40 * d))
    offset = draw(st.floats(-50.0, 50.0))
    rng = np.random.default_rng(seed)
    scales = np.geomspace(10.0, 0.5, d)                  # well separated eigenvalues
    rot, _ = np.linalg.qr(rng.standard_normal((d, d)))
    x = (rng.standard_normal((n, d)) * scales) @ rot + offset
    return x.astype(np.float32), dout


def align_signs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """b with each column's sign flipped to agree with a's."""
    s = np.sign((a * b).sum(0))
    return b * np.where(s == 0, 1.0, s)


@SOME
@given(pca_data())
def test_pca_whitening_matches_faiss_pcamatrix(data):
    x, dout = data
    d = x.shape[1]
    pca = faiss.PCAMatrix(d, dout, -0.5)
    pca.train(x)
    ref = pca.apply_py(x).astype(np.float64)
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    ours = PCAWhitening.fit(torch.from_numpy(x), dout)
    got = ours.transform(torch.from_numpy(x)).numpy().astype(np.float64)
    np.testing.assert_allclose(align_signs(got, ref), got, atol=2e-3)
    eig = np.asarray(faiss.vector_to_array(pca.eigenvalues), np.float64)[:dout]
    ours_eig = ours.eigenvalues.numpy()        # faiss's are n times these (sums, not means)
    np.testing.assert_allclose(ours_eig / ours_eig[0], eig / eig[0], rtol=1e-3, atol=1e-5)
    # whitened before the L2 step: unit variance on each kept component
    y = (torch.from_numpy(x) - ours.mean) @ ours.proj
    np.testing.assert_allclose(y.double().var(0, unbiased=False).numpy(), 1.0, rtol=1e-3)


@SOME
@given(pca_data(), st.integers(1, 7))
def test_streamed_moments_equal_one_batch(data, parts):
    x, dout = data
    whole = PCAWhitening.fit(torch.from_numpy(x), dout)
    m = Moments(x.shape[1])
    for chunk in np.array_split(x, parts):
        if len(chunk):
            m.add(torch.from_numpy(chunk))
    streamed = PCAWhitening.from_moments(m, dout)
    t = torch.from_numpy(x)
    torch.testing.assert_close(streamed.transform(t), whole.transform(t), atol=1e-4, rtol=1e-4)


# ------------------------------------------- targeted cases (from bench/mutation.py survivors)


def test_pca_rel_floor_clamps_small_eigenvalues_and_scales_without_eps():
    """R-MAC's variant (eval_retrieval.py): eigenvalues below rel_floor x max are raised to it
    and each component is scaled by eigenvalue^-1/2 exactly; fit passes rel_floor through."""
    rng = np.random.default_rng(3)
    # eigenvalues 1e-4 .. 1e-14: small enough that adding faiss's eps (1e-8) would show
    x = rng.standard_normal((400, 4)) * np.array([10.0, 3.0, 1.0, 1e-4]) * 1e-3
    xc = x - x.mean(0)
    w, v = np.linalg.eigh(xc.T @ xc / len(x))
    w, v = w[::-1], v[:, ::-1]
    floor = 1e-3 * w[0]
    clamped = np.maximum(w, floor)
    pca = PCAWhitening.fit(torch.from_numpy(x), 4, rel_floor=1e-3)
    np.testing.assert_allclose(pca.eigenvalues.numpy(), clamped, rtol=1e-6)
    assert pca.eigenvalues[-1].item() == pytest.approx(floor, rel=1e-9)
    proj = pca.proj.double().numpy()
    np.testing.assert_allclose(np.abs(proj), np.abs(v / np.sqrt(clamped)), rtol=1e-4, atol=1e-6)
    same = PCAWhitening.from_moments(_moments(x), 4, rel_floor=1e-3)
    torch.testing.assert_close(same.proj, pca.proj)


def test_pca_rel_floor_on_rank_one_rows_floors_the_exact_zeros():
    x = np.zeros((50, 3))
    x[:, 0] = np.random.default_rng(1).standard_normal(50)
    var = x[:, 0].var()
    pca = PCAWhitening.fit(torch.from_numpy(x), 3, rel_floor=1e-5)
    np.testing.assert_allclose(pca.eigenvalues.numpy(), [var, var * 1e-5, var * 1e-5],
                               rtol=1e-9)


def test_pca_of_tiny_features_keeps_every_spanned_dimension():
    """The rank test is relative to the largest eigenvalue: features of scale 1e-6 (all
    eigenvalues ~1e-12) still span their 5 dimensions."""
    x = (np.random.default_rng(2).standard_normal((300, 5)) * 1e-6).astype(np.float64)
    pca = PCAWhitening.fit(torch.from_numpy(x), 5)
    assert pca.proj.shape == (5, 5)
    # faiss's scaling (eigenvalue + 1e-8)^-1/2: eigenvalues ~1e-12 come out far below unit
    # variance (R-MAC's rel_floor variant alone scales by eigenvalue^-1/2)
    y = (torch.from_numpy(x) - pca.mean.double()) @ pca.proj.double()
    ev = pca.eigenvalues.numpy()
    np.testing.assert_allclose(y.var(0, unbiased=False).numpy(), ev / (ev + 1e-8), rtol=1e-3)


def _moments(x: np.ndarray) -> Moments:
    m = Moments(x.shape[1])
    m.add(torch.from_numpy(x))
    return m


def test_pca_refusals_name_their_reason():
    with pytest.raises(ValueError, match="^PCA needs at least two rows$"):
        PCAWhitening.fit(np.ones((1, 3), np.float32), 2)
    with pytest.raises(ValueError, match="^PCA needs rows that are not all identical$"):
        PCAWhitening.fit(np.ones((5, 3), np.float32), 2, rel_floor=1e-5)
    two = PCAWhitening.fit(np.array([[0.0, 1.0], [2.0, 1.0]], np.float32), 1)   # n = 2 is enough
    assert two.proj.shape == (2, 1)


def test_pca_signs_are_fixed_largest_entry_positive_and_rank_capped():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((300, 5)) * np.array([5.0, 4.0, 3.0, 2.0, 1.0])).astype(np.float32)
    pca = PCAWhitening.fit(x, 5)
    evecs = pca.proj.double() * pca.eigenvalues.clamp(min=0).add(1e-8).sqrt()
    top = evecs[evecs.abs().argmax(0), torch.arange(5)]
    assert (top > 0).all()
    # 4 rows span 3 dimensions: the PCA keeps 3, not the 5 asked for
    few = PCAWhitening.fit(x[:4], 5)
    assert few.proj.shape == (5, 3)
    # rows spanning exactly dim directions keep dim
    assert PCAWhitening.fit(x[:6], 5).proj.shape == (5, 5)


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
