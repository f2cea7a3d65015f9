"""Average precision for Oxford5k / Paris6k, under both protocols a reader will compare with.

Original (Philbin et al. 2007, the `compute_ap.cpp` that DeepCluster's eval_retrieval.py calls):
junk images are skipped and the precision-recall curve is integrated by trapezoids starting from
precision 1 at recall 0. This is not sklearn's average_precision_score (a step sum without the
trapezoid; naver/deep-image-retrieval#8), so numbers from one do not compare with the other.

Revisited (Radenovic et al., CVPR 2018, revisitop python/evaluate.py compute_ap / compute_map):
the same trapezoids written on positive ranks, each reduced by the junk ranked before it, with
Easy / Medium / Hard choosing which lists count as positive and which are ignored.

Rankings are (Q, N) arrays of database indices, best first (dcbench.retrieval.rmac.rank's
layout; revisitop's is the transpose). Ground truth is one dict per query of index arrays:
"good", "ok", "junk" (original) or "easy", "hard", "junk" (revisited).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import torch

IndexSet = set[int] | np.ndarray | Sequence[int]


def _as_array(x: IndexSet | Iterable[int]) -> np.ndarray:
    if isinstance(x, (set, frozenset)):
        x = sorted(x)
    return np.unique(np.asarray(x, dtype=np.int64).reshape(-1))


def _as_ranks(ranks: torch.Tensor | np.ndarray, n_queries: int) -> np.ndarray:
    r = ranks.cpu().numpy() if isinstance(ranks, torch.Tensor) else np.asarray(ranks)
    if r.ndim != 2 or r.shape[0] != n_queries:
        raise ValueError(f"ranks must be (Q, N) with Q = {n_queries} queries, got {r.shape}")
    return r


def average_precision_original(ranked: np.ndarray, positives: IndexSet,
                               junk: IndexSet) -> float:
    """Oxford `compute_ap.cpp`: walk the ranking skipping junk; at each kept rank j (0-based),
    rec = TP/|pos|, prec = TP/(j+1), AP += (rec - rec_old)(prec_old + prec)/2, prec_old starting
    at 1. Positives missing from `ranked` still count in |pos|. NaN when there are none."""
    pos, bad = _as_array(positives), _as_array(junk)
    if pos.size == 0:
        return float("nan")
    kept = np.asarray(ranked).reshape(-1)
    kept = kept[~np.isin(kept, bad)]
    tp = np.cumsum(np.isin(kept, pos))
    rec = tp / pos.size
    prec = tp / np.arange(1, kept.size + 1)
    rec_old = np.concatenate(([0.0], rec[:-1]))
    prec_old = np.concatenate(([1.0], prec[:-1]))
    return float(np.sum((rec - rec_old) * (prec_old + prec) / 2.0))


def _ap_from_positive_ranks(ranks: np.ndarray, n_pos: int) -> float:
    """revisitop compute_ap: trapezoid per found positive, recall step 1/n_pos; precision
    before the j-th positive (0-based) at rank r is j/r, or 1 when r is 0."""
    j = np.arange(ranks.size, dtype=np.float64)
    r = ranks.astype(np.float64)
    prec0 = np.where(r == 0, 1.0, j / np.maximum(r, 1.0))
    prec1 = (j + 1) / (r + 1)
    return float(np.sum((prec0 + prec1) / 2.0) / n_pos)


def average_precision_revisited(ranked: np.ndarray, positives: IndexSet,
                                junk: IndexSet) -> float:
    """revisitop compute_map for one query: 0-based positions of the positives in `ranked`,
    each reduced by the number of junk images ranked before it, then compute_ap. NaN when there
    are no positives (compute_map leaves such queries out)."""
    pos, bad = _as_array(positives), _as_array(junk)
    if pos.size == 0:
        return float("nan")
    ranked = np.asarray(ranked).reshape(-1)
    pos_at = np.flatnonzero(np.isin(ranked, pos))      # ascending
    junk_at = np.flatnonzero(np.isin(ranked, bad))
    reduced = pos_at - np.searchsorted(junk_at, pos_at, side="left")
    return _ap_from_positive_ranks(reduced, pos.size)


def _mean_skipping_nan(aps: list[float]) -> float:
    kept = [a for a in aps if not np.isnan(a)]
    return float(np.mean(kept)) if kept else float("nan")


def _get(g: Mapping[str, IndexSet], key: str) -> np.ndarray:
    return _as_array(g.get(key, ()))


def map_original(ranks: torch.Tensor | np.ndarray, gnd: Sequence[Mapping[str, IndexSet]]) -> float:
    """Original Oxford5k / Paris6k mAP: positives good + ok, junk ignored, trapezoid AP of
    compute_ap.cpp averaged over the queries (those without positives left out; NaN if none)."""
    r = _as_ranks(ranks, len(gnd))
    aps = [average_precision_original(r[i], np.concatenate([_get(g, "good"), _get(g, "ok")]),
                                      _get(g, "junk"))
           for i, g in enumerate(gnd)]
    return _mean_skipping_nan(aps)


#: (positive lists, ignored lists) per setting, as revisitop's example_evaluate.py builds them.
REVISITED_SETTINGS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "easy": (("easy",), ("junk", "hard")),
    "medium": (("easy", "hard"), ("junk",)),
    "hard": (("hard",), ("junk", "easy")),
}


def map_revisited(ranks: torch.Tensor | np.ndarray,
                  gnd: Sequence[Mapping[str, IndexSet]]) -> dict[str, float]:
    """ROxford / RParis mAP for Easy, Medium and Hard: per setting, the positive and ignored
    lists of REVISITED_SETTINGS; queries without positives are left out (NaN if none remain)."""
    r = _as_ranks(ranks, len(gnd))
    out: dict[str, float] = {}
    for name, (pos_keys, junk_keys) in REVISITED_SETTINGS.items():
        aps = []
        for i, g in enumerate(gnd):
            pos = np.concatenate([_get(g, k) for k in pos_keys])
            bad = np.concatenate([_get(g, k) for k in junk_keys])
            aps.append(average_precision_revisited(r[i], pos, bad))
        out[name] = _mean_skipping_nan(aps)
    return out
