"""The k-NN search of `knn`, memory-bounded: the queries' features stay in memory and the
training rows stream past them; only each query's running top-k similarities and labels are
kept, never the full queries x training similarity matrix."""

from __future__ import annotations

import torch

from dcbench import distributed


class RunningTopK:
    """The k most similar training rows seen so far, for every query row.

    Training rows are buffered until about `chunk_bytes` of similarities would be computed
    at once, then merged in one matmul and one top-k: merging each 256-row batch on its own
    spent more time in the 10,000 x 2k top-k merges than in the similarities
    (bench/bench_knn_topk.py). The buffer bounds memory; `sims` and `labels` flush it."""

    def __init__(self, queries: torch.Tensor, k: int, chunk_bytes: int = 64 * 2**20) -> None:
        self.queries, self.k = queries, k
        n = len(queries)
        self._sims = torch.full((n, 0), -2.0, device=queries.device)
        self._labels = torch.zeros((n, 0), dtype=torch.long, device=queries.device)
        self._keys: list[torch.Tensor] = []
        self._key_labels: list[torch.Tensor] = []
        self._buffered = 0
        self._chunk_rows = max(k, chunk_bytes // (4 * max(n, 1)))

    def add(self, keys: torch.Tensor, labels: torch.Tensor) -> None:
        """Buffer a batch of training rows; merge once enough are buffered."""
        self._keys.append(keys)
        self._key_labels.append(labels)
        self._buffered += len(keys)
        if self._buffered >= self._chunk_rows:
            self._flush()

    def _flush(self) -> None:
        """Merge the buffer: its own top k first (only k labels per query are gathered, not
        a queries x rows label matrix), then the top k of the 2k."""
        if not self._keys:
            return
        keys, labels = torch.cat(self._keys), torch.cat(self._key_labels)
        self._keys, self._key_labels, self._buffered = [], [], 0
        top = (self.queries @ keys.T).topk(min(self.k, len(keys)), dim=1)
        sims = torch.cat([self._sims, top.values], dim=1)
        labs = torch.cat([self._labels, labels[top.indices]], dim=1)
        best = sims.topk(min(self.k, sims.shape[1]), dim=1)
        self._sims, self._labels = best.values, labs.gather(1, best.indices)

    @property
    def sims(self) -> torch.Tensor:
        self._flush()
        return self._sims

    @property
    def labels(self) -> torch.Tensor:
        self._flush()
        return self._labels

    def merge_ranks(self) -> None:
        """Under torchrun each rank saw its share of the training rows: keep the top k of
        every rank's top k (exactly the single-process top k, ties aside)."""
        if not distributed.is_distributed():
            return
        sims = distributed.gather_rows(self.sims.T.contiguous().cpu()).T
        labs = distributed.gather_rows(self.labels.T.contiguous().cpu()).T
        best = sims.topk(min(self.k, sims.shape[1]), dim=1)
        self._sims = best.values.to(self.queries.device)
        self._labels = labs.gather(1, best.indices).to(self.queries.device)


def vote(top: RunningTopK, n_classes: int, temperature: float) -> torch.Tensor:
    """Class scores: the sum of exp(sim / T) over the neighbours of each class."""
    weights = (top.sims / temperature).exp()
    scores = torch.zeros(len(top.sims), n_classes, device=weights.device)
    return scores.scatter_add_(1, top.labels, weights)
