"""kNN's running top-k: merging every 256-row batch vs merging buffered chunks of ~64 MB of
similarities (tasks/knn_search.py's default).

The shapes of `knn` on Fashion-MNIST: 10,000 queries, 60,000 training rows in batches of
256, k = 20, features of 4,096 (fc7) and 2,304 (a pooled conv) dims. Both variants run in
one process, alternating, 3 rounds; the best time of each is kept. Also reports how far the
two agree (float rounding of differently shaped matmuls can swap neighbours at rank k).
JSON in bench/results/knn_topk.json.

    .venv/bin/python bench/bench_knn_topk.py       # ~2 minutes on 2 cores
"""

from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import torch

from dcbench.tasks.knn_search import RunningTopK
from dcbench.threads import configure_threads

N_QUERIES, N_TRAIN, BATCH, K = 10_000, 60_000, 256, 20


def run(queries: torch.Tensor, keys: torch.Tensor, labels: torch.Tensor,
        chunk_bytes: int) -> tuple[float, RunningTopK]:
    start = time.perf_counter()
    top = RunningTopK(queries, K, chunk_bytes=chunk_bytes)
    for i in range(0, len(keys), BATCH):
        top.add(keys[i:i + BATCH], labels[i:i + BATCH])
    assert top.sims.shape == (len(queries), K)     # the last flush
    return time.perf_counter() - start, top


def main() -> None:
    configure_threads()
    g = torch.Generator().manual_seed(0)
    out = {"cpu": platform.processor() or platform.machine(),
           "threads": torch.get_num_threads(), "dims": {}}
    for dim in (4096, 2304):
        q = torch.nn.functional.normalize(torch.randn(N_QUERIES, dim, generator=g), dim=1)
        keys = torch.nn.functional.normalize(torch.randn(N_TRAIN, dim, generator=g), dim=1)
        labels = torch.randint(0, 10, (N_TRAIN,), generator=g)
        best = {"per batch": float("inf"), "chunked": float("inf")}
        tops = {}
        for _ in range(3):
            for name, chunk in (("per batch", 1), ("chunked", 64 * 2**20)):
                t, tops[name] = run(q, keys, labels, chunk)
                best[name] = min(best[name], t)
        # the similarities come from matmuls of other shapes, so they may differ in the last
        # bits: a neighbour at rank k can swap with the next; report how often
        a, b = tops["per batch"], tops["chunked"]
        sim_diff = float((a.sims - b.sims).abs().max())
        same_rows = float((a.labels.sort(1).values == b.labels.sort(1).values).all(1)
                          .float().mean())
        ratio = best["per batch"] / best["chunked"]
        out["dims"][dim] = {**best, "speedup": ratio, "max_sim_difference": sim_diff,
                            "queries_with_identical_neighbour_labels": same_rows}
        print(f"dim {dim}: per batch {best['per batch']:.2f} s, chunked {best['chunked']:.2f} s"
              f" -> {ratio:.2f}x; similarities differ by <= {sim_diff:.1e}; "
              f"{100 * same_rows:.2f} % of queries have identical neighbour labels")
    path = Path(__file__).parent / "results" / "knn_topk.json"
    path.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
