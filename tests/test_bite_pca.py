"""PCA-whitening on hand-worked cases where the mutants bench/mutation.py found surviving give
another number: float64 running sums, a per-column shift, the rank cap on identical rows and
the reduction message only when the rank is short."""

from __future__ import annotations

import pytest
import torch

from dcbench.clustering.pca import Moments, PCAWhitening


def test_running_sum_is_float64() -> None:
    # 2^24 + 1 = 16777217 has no float32 representation (float32 would hold 16777216).
    m = Moments(1)
    m.add(torch.zeros(2, 1, dtype=torch.float64))           # shift 0
    m.add(torch.tensor([[16777217.0]], dtype=torch.float64))
    assert m.s1.item() == 16777217.0


def test_per_column_shift_keeps_a_large_mean_out_of_the_covariance() -> None:
    # rows (0, 1e9) and (1, 1e9 + 1): per-column shift (0.5, 1e9 + 0.5) leaves (-+0.5, -+0.5),
    # covariance [[1/4, 1/4], [1/4, 1/4]], eigenvalues 1/2 and 0. A single scalar shift
    # (5e8 + 0.5) leaves squares near 2.5e17, where float64's spacing (32) swallows the 1/4.
    m = Moments(2)
    m.add(torch.tensor([[0.0, 1e9], [1.0, 1e9 + 1.0]], dtype=torch.float64))
    assert m.shift.tolist() == [0.5, 1e9 + 0.5]
    pca = PCAWhitening.from_moments(m, 2)
    assert pca.eigenvalues.tolist() == pytest.approx([0.5], abs=1e-15)


def test_identical_rows_reduce_to_one_dimension() -> None:
    # Three identical rows span no direction: every eigenvalue is exactly 0, the rank is 0 and
    # the projection keeps max(1, 0) = 1 column (not the 2 asked for).
    pca = PCAWhitening.fit(torch.ones(3, 2), 2)
    assert tuple(pca.proj.shape) == (2, 1)


def test_full_rank_sample_is_not_reported_as_reduced(capsys: pytest.CaptureFixture) -> None:
    # Rows (0,0), (1,0), (0,1), (1,1) span 2 dimensions: asking for 2 reduces nothing, says
    # nothing; asking for 3 of a 2-column input also reduces nothing (dim is capped at 2).
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    pca = PCAWhitening.fit(x, 2)
    assert tuple(pca.proj.shape) == (2, 2)
    assert capsys.readouterr().err == ""


def test_moments_of_two_ranks_pool_to_the_moments_of_all_rows(monkeypatch) -> None:
    # This rank holds rows 0 and 2 (shift 1), the other rank 4, 6 and 8 (its shift, 6,
    # times its 3 rows is its sum, 18). The common shift is (1 * 2 + 18) / 5 = 4, and the
    # pooled rows 0, 2, 4, 6, 8 have mean 4 and variance (16 + 4 + 0 + 4 + 16) / 5 = 8.
    # The fake all-reduce adds the other rank's share, computed from its rows directly.
    from dcbench import distributed

    other = torch.tensor([[4.0], [6.0], [8.0]], dtype=torch.float64)
    calls: list[torch.Tensor] = []

    def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
        calls.append(t.clone())
        if len(calls) == 1:                       # (shift * n, n)
            return t + torch.tensor([other.sum().item(), 3.0], dtype=torch.float64)
        c = 4.0                                   # the other rank's sums about the common shift
        return t + torch.tensor([(other - c).sum().item(), ((other - c) ** 2).sum().item()],
                                dtype=torch.float64)

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(distributed, "all_reduce_sum", all_reduce_sum)
    m = Moments(1)
    m.add(torch.tensor([[0.0], [2.0]], dtype=torch.float64))
    m.all_reduce()
    assert calls[0].tolist() == [2.0, 2.0]        # shift 1 times 2 rows, 2 rows
    assert calls[1].tolist() == [-6.0, 20.0]      # rows 0, 2 about 4: sum -6, squares 20
    assert m.n == 5 and m.shift.tolist() == [4.0]
    assert m.s1.tolist() == [0.0] and m.s2.tolist() == [[40.0]]
    pca = PCAWhitening.from_moments(m, 1)
    assert pca.mean.tolist() == [4.0] and pca.eigenvalues.tolist() == [8.0]


def _lockstep_all_reduce(monkeypatch, ranks: list[Moments]) -> None:
    """Run Moments.all_reduce on every rank at once, in threads, with an all-reduce that
    waits for every rank's tensor of the same call and returns their sum (what gloo does)."""
    import threading

    from dcbench import distributed

    barrier = threading.Barrier(len(ranks))
    calls: dict[int, list] = {}
    count = threading.local()
    lock = threading.Lock()

    def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
        k = getattr(count, "k", 0)
        count.k = k + 1
        with lock:
            calls.setdefault(k, []).append(t.clone())
        barrier.wait()
        out = torch.stack(calls[k]).sum(0)
        barrier.wait()
        return out

    monkeypatch.setenv("WORLD_SIZE", str(len(ranks)))
    monkeypatch.setattr(distributed, "all_reduce_sum", all_reduce_sum)
    threads = [threading.Thread(target=m.all_reduce) for m in ranks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)


@pytest.mark.parametrize("split", [3, 7])       # 7 of 7 rows: the second rank has none
def test_two_ranks_reduced_equal_one_process_on_the_union(monkeypatch, split: int) -> None:
    # two columns with different means, ranks holding different row counts (or none): the
    # merged count, mean and covariance must be the single process's, whatever each rank's
    # own shift was; index or sign slips in the re-centring change the 2 x 2 covariance
    x = torch.tensor([[1.0, 10.0], [2.0, 14.0], [4.0, 11.0], [7.0, 20.0], [3.0, 9.0],
                      [5.0, 15.0], [0.0, 12.0]], dtype=torch.float64)
    ranks = [Moments(2), Moments(2)]
    ranks[0].add(x[:split])
    if split < len(x):
        ranks[1].add(x[split:split + 2])
        ranks[1].add(x[split + 2:])
    _lockstep_all_reduce(monkeypatch, ranks)
    mean = x.mean(0)
    cov = (x - mean).T @ (x - mean) / len(x)
    for m in ranks:
        assert m.n == 7
        total_mean = m.shift + m.s1 / m.n
        torch.testing.assert_close(total_mean, mean, rtol=0, atol=1e-12)
        torch.testing.assert_close(m.s2 / m.n - torch.outer(m.s1, m.s1) / m.n ** 2, cov,
                                   rtol=0, atol=1e-12)


def test_one_row_over_two_ranks_keeps_it_as_the_mean(monkeypatch) -> None:
    # the common shift divides by the total count (floored at 1 for no rows at all): with a
    # single row it is that row; a floor of 2 would halve it
    ranks = [Moments(2), Moments(2)]
    ranks[1].add(torch.tensor([[3.0, -5.0]], dtype=torch.float64))
    _lockstep_all_reduce(monkeypatch, ranks)
    for m in ranks:
        assert m.n == 1 and m.shift.tolist() == [3.0, -5.0] and m.s1.tolist() == [0.0, 0.0]
