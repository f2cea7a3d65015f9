"""The k-NN search of `knn`, memory-bounded: the queries' features stay in memory and the
training rows stream past them; only each query's running top-k similarities and labels are
kept, never the full queries x training similarity matrix."""

from __future__ import annotations

import torch

from dcbench import distributed


class RunningTopK:
    """The k most similar training rows seen so far, for every query row."""

    def __init__(self, queries: torch.Tensor, k: int) -> None:
        self.queries, self.k = queries, k
        n = len(queries)
        self.sims = torch.full((n, 0), -2.0, device=queries.device)
        self.labels = torch.zeros((n, 0), dtype=torch.long, device=queries.device)

    def add(self, keys: torch.Tensor, labels: torch.Tensor) -> None:
        """Merge a batch of training rows: its own top k first (only k labels per query are
        gathered, not a queries x batch label matrix), then the top k of the 2k."""
        top = (self.queries @ keys.T).topk(min(self.k, len(keys)), dim=1)
        sims = torch.cat([self.sims, top.values], dim=1)
        labs = torch.cat([self.labels, labels[top.indices]], dim=1)
        best = sims.topk(min(self.k, sims.shape[1]), dim=1)
        self.sims, self.labels = best.values, labs.gather(1, best.indices)


    def merge_ranks(self) -> None:
        """Under torchrun each rank saw its share of the training rows: keep the top k of
        every rank's top k (exactly the single-process top k, ties aside)."""
        if not distributed.is_distributed():
            return
        sims = distributed.gather_rows(self.sims.T.contiguous().cpu()).T
        labs = distributed.gather_rows(self.labels.T.contiguous().cpu()).T
        best = sims.topk(min(self.k, sims.shape[1]), dim=1)
        self.sims = best.values.to(self.queries.device)
        self.labels = labs.gather(1, best.indices).to(self.queries.device)


def vote(top: RunningTopK, n_classes: int, temperature: float) -> torch.Tensor:
    """Class scores: the sum of exp(sim / T) over the neighbours of each class."""
    weights = (top.sims / temperature).exp()
    scores = torch.zeros(len(top.sims), n_classes, device=weights.device)
    return scores.scatter_add_(1, top.labels, weights)
