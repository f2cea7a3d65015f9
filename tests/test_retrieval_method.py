"""R-MAC grid, regional pooling, whitening, ranking and both Oxford/Paris AP definitions, each
against a value worked by hand (see the comments) rather than a range."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from dcbench.retrieval.metrics import (
    average_precision_original,
    average_precision_revisited,
    map_original,
    map_revisited,
)
from dcbench.retrieval.rmac import aggregate, fit_whitening, rank, rmac_regions, rmac_vectors


def test_region_counts_match_protocols() -> None:
    assert len(rmac_regions(30, 30)) == 1 + 4 + 9
    # 48 x 64: long side gets idx = 1 extra region -> 1x2 + 2x3 + 3x4
    regions = rmac_regions(48, 64)
    assert len(regions) == 2 + 6 + 12
    assert regions[:2] == [(0, 0, 48, 48), (16, 0, 48, 48)]
    assert len(rmac_regions(64, 48)) == 20
    assert rmac_regions(64, 48)[1] == (0, 16, 48, 48)
    # 5 x 9: s = 2 (b = 4) and s = 3 (b = 2) tie at |1 - b/5 - 0.4| = 0.2; DC's float32 picks
    # s = 2 (idx 1: 2 + 6 + 12 regions), float64 would pick idx 2 (3 + 8 + 15 = 26)
    assert len(rmac_regions(5, 9)) == 20


def test_region_list_2x3_by_hand() -> None:
    # w = 2; b_s = 1/(s-1): |1 - 1/2 - 0.4| = 0.1 at s = 2 is smallest -> idx 1, Wd = 1.
    # l=1: side 2, half floor(0) = 0, bW = (3-2)/1 = 1 -> x {0, 1}; y {0}.
    # l=2: side floor(4/3) = 1, half floor(-0.5) = -1, bW = 2/2 = 1 -> x {0, 1, 2};
    #      bH = (2-1)/1 = 1 -> y {0, 1}.
    # l=3: side 1, bW = 2/3 -> floor(-1 + 2i/3) + 1 = 0, 0, 1, 2; bH = 1/2 -> y 0, 0, 1.
    l1 = [(0, 0, 2, 2), (1, 0, 2, 2)]
    l2 = [(x, y, 1, 1) for y in (0, 1) for x in (0, 1, 2)]
    l3 = [(x, y, 1, 1) for y in (0, 0, 1) for x in (0, 0, 1, 2)]
    assert rmac_regions(2, 3) == l1 + l2 + l3


@pytest.mark.parametrize("h,w", [(1, 1), (1, 5), (5, 1), (2, 3), (3, 2), (7, 40)])
def test_tiny_and_thin_maps_stay_inside(h: int, w: int) -> None:
    regions = rmac_regions(h, w)
    assert regions
    for x, y, rw, rh in regions:
        assert rw >= 1 and rh >= 1 and x >= 0 and y >= 0 and x + rw <= w and y + rh <= h
    assert rmac_regions(1, 1) == [(0, 0, 1, 1)]      # levels 2 and 3 would be 0 px wide
    assert rmac_vectors(torch.ones(4, h, w)).shape == (len(regions), 4)


def _map_2x3() -> torch.Tensor:
    ch0 = torch.arange(6.0).reshape(2, 3)             # [[0, 1, 2], [3, 4, 5]]
    return torch.stack([ch0, 5.0 - ch0])              # channel 1: [[5, 4, 3], [2, 1, 0]]


def test_rmac_vectors_max_per_region() -> None:
    v = rmac_vectors(_map_2x3())
    assert v.shape == (20, 2)
    s41 = math.sqrt(41.0)
    # (0,0,2,2): ch0 max 4 (bottom right), ch1 max 5 (top left); (1,0,2,2): 5 and 4
    torch.testing.assert_close(v[0], torch.tensor([4 / s41, 5 / s41]))
    torch.testing.assert_close(v[1], torch.tensor([5 / s41, 4 / s41]))
    # 1x1 regions of level 2 at (x, y) = (0, 0) and (2, 1): pixels (0, 5) and (5, 0)
    torch.testing.assert_close(v[2], torch.tensor([0.0, 1.0]))
    torch.testing.assert_close(v[7], torch.tensor([1.0, 0.0]))
    # a batch dim passes through
    torch.testing.assert_close(rmac_vectors(_map_2x3()[None])[0], v)


def test_rmac_vectors_gem() -> None:
    v = rmac_vectors(_map_2x3(), pool="gem")
    # (0,0,2,2): ch0 {0,1,3,4} -> (92/4)^(1/3); ch1 {5,4,2,1} -> (198/4)^(1/3)
    a, b = 23.0 ** (1 / 3), 49.5 ** (1 / 3)
    n = math.hypot(a, b)
    torch.testing.assert_close(v[0], torch.tensor([a / n, b / n]))
    with pytest.raises(ValueError):
        rmac_vectors(_map_2x3(), pool="avg")  # type: ignore[arg-type]


def _data_with_covariance(n: int, lam: list[float], d: int) -> tuple[np.ndarray, np.ndarray]:
    """n rows in d dims whose sample covariance (1/n) is exactly R diag(lam, 0...) R^T."""
    rng = np.random.default_rng(0)
    k = len(lam)
    z = rng.standard_normal((n, k))
    z -= z.mean(0)
    q, _ = np.linalg.qr(z)                          # orthonormal, zero-mean columns
    rot, _ = np.linalg.qr(rng.standard_normal((d, d)))
    x = (q * math.sqrt(n)) * np.sqrt(lam) @ rot[:, :k].T + 3.0   # offset: must centre first
    return x, rot


def test_whitening_gives_identity_covariance_and_clamps() -> None:
    x, _ = _data_with_covariance(400, [16.0, 4.0, 1.0], d=5)  # rank 3 in 5 dims
    wh = fit_whitening(x, dim=2)
    np.testing.assert_allclose(wh.eigenvalues.numpy(), [16.0, 4.0], rtol=1e-6)
    y = (torch.as_tensor(x).float() - wh.mean) @ wh.proj
    cov = (y.T @ y / y.shape[0]).double().numpy()
    np.testing.assert_allclose(cov, np.eye(2), atol=1e-4)

    full = fit_whitening(x, dim=512)                 # capped at 5 dims
    assert full.proj.shape == (5, 5)
    # the two null eigenvalues are clamped to 1e-5 * 16, not left at ~0 (+eps) or inf
    np.testing.assert_allclose(full.eigenvalues.numpy()[3:], [1.6e-4, 1.6e-4], rtol=1e-9)
    assert torch.isfinite(full.proj).all()
    # column j of P^T is v_j / sqrt(lambda_j): the clamped ones have norm 1.6e-4^-1/2
    np.testing.assert_allclose(full.proj.norm(dim=0).numpy()[3:], [1.6e-4 ** -0.5] * 2,
                               rtol=1e-5)

    assert fit_whitening(x[:3], dim=512).proj.shape == (5, 3)   # fewer rows than dims


def test_aggregate_sums_normalised_regions() -> None:
    img0 = torch.tensor([[3.0, 0.0], [0.0, 1.0], [2.0, 0.0]])   # L2 rows: e0, e1, e0
    img1 = torch.tensor([[0.0, 5.0]])
    out = aggregate([img0, img1], whitening=None)
    torch.testing.assert_close(out, torch.tensor([[2 / math.sqrt(5), 1 / math.sqrt(5)],
                                                  [0.0, 1.0]]))
    x, _ = _data_with_covariance(200, [9.0, 1.0], d=2)
    wh = fit_whitening(x, dim=2)
    regs = [torch.as_tensor(x[:4]).float(), torch.as_tensor(x[4:7]).float()]
    got = aggregate(regs, wh)
    for r, g in zip(regs, got):
        want = torch.nn.functional.normalize(
            torch.nn.functional.normalize((r - wh.mean) @ wh.proj, dim=1).sum(0), dim=0)
        torch.testing.assert_close(g, want)


def test_rank_by_dot_product() -> None:
    q = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    db = torch.tensor([[0.5, 0.5], [1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    r = rank(q, db)
    assert r.dtype == torch.int64
    # q1 scores [.5, 0, 1, 0]: the tie between 1 and 3 keeps database order
    assert r.tolist() == [[1, 0, 2, 3], [2, 0, 1, 3]]


def test_original_ap_is_the_trapezoid_not_sklearn() -> None:
    # ranks: neg, pos, pos. Trapezoid: 0 + 0.5 (0 + 1/2)/2 + 0.5 (1/2 + 2/3)/2 = 5/12.
    ranked = np.array([0, 1, 2])
    ap = average_precision_original(ranked, {1, 2}, set())
    assert ap == pytest.approx(5 / 12)
    sk = pytest.importorskip("sklearn.metrics")
    sk_ap = sk.average_precision_score([0, 1, 1], [3, 2, 1])
    assert sk_ap == pytest.approx(7 / 12)           # 0.5 * 1/2 + 0.5 * 2/3
    # a positive never retrieved still counts in |pos|: 0.5 * (1 + 1)/2 = 0.5
    assert average_precision_original(np.array([5, 6]), {5, 9}, set()) == pytest.approx(0.5)


def test_junk_before_a_positive_is_ignored() -> None:
    # ranked: junk, pos, neg, pos. Junk removed the positives sit at 0 and 2:
    # 1/2 (1 + 1)/2 + 1/2 (1/2 + 2/3)/2 = 19/24. Counting junk as negative gives 1/3.
    ranked = np.array([10, 11, 12, 13])
    pos, junk = {11, 13}, {10}
    assert average_precision_revisited(ranked, pos, junk) == pytest.approx(19 / 24)
    assert average_precision_revisited(ranked, pos, set()) == pytest.approx(1 / 3)
    assert average_precision_original(ranked, pos, junk) == pytest.approx(19 / 24)
    assert math.isnan(average_precision_revisited(ranked, set(), junk))


def test_easy_medium_hard_selection() -> None:
    # ranking 0..6: 0 easy, 1 junk, 2 hard, 3 neg, 4 easy, 5 neg, 6 hard
    gnd = [{"easy": np.array([0, 4]), "hard": np.array([2, 6]), "junk": np.array([1])}]
    ranks = np.arange(7)[None]
    got = map_revisited(ranks, gnd)
    # easy: ignore 1, 2, 6 -> positives at 0, 2: 1/2 + 1/2 (1/2 + 2/3)/2 = 19/24
    # medium: ignore 1 -> 0, 1, 3, 5: 1/4 [1 + 1 + (2/3 + 3/4)/2 + (3/5 + 4/6)/2] = 401/480
    # hard: ignore 0, 1, 4 -> 0, 3: 1/2 + 1/2 (1/3 + 2/4)/2 = 17/24
    assert got == pytest.approx({"easy": 19 / 24, "medium": 401 / 480, "hard": 17 / 24})

    # a second query without hard positives is left out of Hard only
    gnd.append({"easy": np.array([3]), "hard": np.array([], dtype=int), "junk": np.array([])})
    got = map_revisited(np.stack([np.arange(7), np.arange(7)]), gnd)
    assert got["hard"] == pytest.approx(17 / 24)
    # easy, query 2: positive 3 at rank 3, ignored nothing -> 1 (0 + 1/4)/2 = 1/8
    assert got["easy"] == pytest.approx((19 / 24 + 1 / 8) / 2)
    assert math.isnan(map_revisited(ranks, [{"easy": [], "hard": [], "junk": [0]}])["hard"])


def test_map_original_uses_good_and_ok() -> None:
    gnd = [{"good": [1], "ok": [2], "junk": [0]}, {"good": [0], "ok": [], "junk": []}]
    ranks = torch.tensor([[0, 1, 2, 3], [3, 0, 1, 2]])
    # q0: junk skipped, positives at 0, 1 -> 1; q1: positive at 1 -> 1 (0 + 1/2)/2 = 1/4
    assert map_original(ranks, gnd) == pytest.approx((1 + 1 / 4) / 2)
    with pytest.raises(ValueError):
        map_original(ranks.T, gnd)
