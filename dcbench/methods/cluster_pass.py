"""One clustering step of DeepCluster: features of every image -> PCA-whitening + L2 ->
k-means or PIC -> an assignment, with memory bounded by N x pca_dim.

Features are fc7 before its ReLU (a ResNet's res5avg, a ViT's CLS), in eval mode, on the
deterministic 'cluster' transform.
Images are visited in a seeded random order: the first `pca_sample` images (a random sample)
are buffered raw and their moments fit the PCA; every later batch is reduced to `pca_dim` as
it arrives. The raw buffer is bounded by pca_sample x D, never N x D. Under torchrun each rank
takes a stride of that order, the PCA moments are summed over ranks (every rank fits the same
PCA), reduced rows are gathered for clustering on rank 0 and the assignment is broadcast.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from dcbench import distributed as dist
from dcbench import step_meter
from dcbench.clustering.kmeans import kmeans
from dcbench.clustering.metrics import size_stats
from dcbench.clustering.pca import Moments, PCAWhitening
from dcbench.clustering.pic import pic
from dcbench.data import make_loader
from dcbench.errors import DcbenchError
from dcbench.extract import iter_taps
from dcbench.models import Trunk
from dcbench.models.fold_bn import folded_copy
from dcbench.progress import say


def reduced_features(trunk: Trunk, dataset: Dataset, *, pca_dim: int, pca_sample: int,
                     batch_size: int, workers: int | None, seed: int,
                     device: torch.device, amp: str
                     ) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """(indices, reduced rows (float32, L2-normalised), seconds per phase), rows in index
    order, complete on every rank. Unreadable images are absent from `indices`. `amp`: the
    run's precision for the frozen pass (dcbench.precision)."""
    n = len(dataset)
    order = np.random.default_rng(seed).permutation(n)
    sample, rest = order[:pca_sample], order[pca_sample:]
    mine = slice(dist.rank(), None, dist.world_size())
    per_rank = max(1, batch_size // dist.world_size())
    frozen = folded_copy(trunk)     # BatchNorm folded into the convs: same features, faster
    tap = trunk.role("cluster")[0]  # fc7 before its ReLU; a ResNet's res5avg, a ViT's CLS

    def batches(indices: np.ndarray, desc: str):
        loader = make_loader(dataset, per_rank, sampler=indices[mine].tolist(), workers=workers)
        step_meter.begin(f"clustering pass: {desc}", len(loader), "batch", limited=False)
        for idx, _, feats, _ in iter_taps(frozen, loader, [tap], device, desc=desc,
                                          amp=amp):
            step_meter.step(len(idx))
            if len(idx):
                x = feats[tap]
                if not torch.isfinite(x).all():
                    raise DcbenchError(
                        "the trunk's features hold NaN or inf at the clustering pass (the "
                        "weights diverged, or overflowed in reduced precision): lower --lr, "
                        "or pass --amp off")
                yield idx, x

    t0 = time.time()
    raw: list[tuple[np.ndarray, torch.Tensor]] = []
    moments = Moments(trunk.FC_DIM)
    for idx, x in batches(sample, "features (PCA sample)"):
        moments.add(x)
        raw.append((idx, x.cpu()))
    t_feat = time.time() - t0

    t1 = time.time()
    moments.all_reduce()
    if moments.n < 2:
        raise DcbenchError(f"only {moments.n} of the {min(n, pca_sample)} images sampled for "
                           f"the PCA could be read (missing, empty or corrupt files); check "
                           f"the dataset with dcbench data validate")
    pca = PCAWhitening.from_moments(moments, pca_dim)
    dim = pca.proj.shape[1]
    out = np.zeros((n, dim), dtype=np.float32)      # the only N-sized buffer: N x pca_dim
    seen = np.zeros(n, dtype=bool)
    while raw:
        idx, x = raw.pop()
        out[idx], seen[idx] = pca.transform(x).numpy(), True
    t_pca = time.time() - t1

    t2 = time.time()
    for idx, x in batches(rest, "features (reduce)"):
        out[idx], seen[idx] = pca.transform(x).cpu().numpy(), True
    t_feat += time.time() - t2
    if dist.is_distributed():
        mine_idx = np.flatnonzero(seen)
        rows = dist.gather_rows(torch.from_numpy(out[mine_idx])).numpy()
        got = dist.gather_rows(torch.from_numpy(mine_idx)).numpy()
        back = np.argsort(got, kind="stable")
        return got[back], rows[back], {"features": t_feat, "pca": t_pca}
    if seen.all():
        return np.arange(n), out, {"features": t_feat, "pca": t_pca}
    return np.flatnonzero(seen), out[seen], {"features": t_feat, "pca": t_pca}


def cluster(x: np.ndarray, algorithm: str, k: int, seed: int, niter: int,
            empty: str = "paper") -> tuple[np.ndarray, int]:
    """(labels, empty clusters re-seeded) for the reduced rows."""
    if algorithm == "kmeans":
        result = kmeans(x, k, niter=niter, seed=seed, empty=empty)
        return result.assignment, result.empty_reseeded
    if algorithm == "pic":
        return pic(x), 0
    raise ValueError(f"unknown clustering '{algorithm}'")


def assign(trunk: Trunk, dataset: Dataset, cfg: dict[str, Any], seeds: dict[str, int],
           device: torch.device) -> tuple[np.ndarray, dict[str, Any]]:
    """The assignment of every image (-1 = unreadable) and the statistics for the log;
    `seeds` (session.stream_seeds) gives the PCA sample's and the k-means' seeds."""
    indices, x, seconds = reduced_features(
        trunk, dataset, pca_dim=cfg["pca_dim"], pca_sample=cfg["pca_sample"],
        batch_size=cfg["batch_size"], workers=cfg["workers"], seed=seeds["pca_sample"],
        device=device, amp=cfg["amp"])
    if len(indices) < cfg["k"]:
        raise DcbenchError(f"only {len(indices)} of {len(dataset)} images could be read, fewer "
                           f"than k = {cfg['k']} clusters; fix the unreadable files (dcbench "
                           f"data validate) or lower --k")
    if len(indices) < len(dataset):
        say(f"clustering: {len(dataset) - len(indices)} of {len(dataset)} images could not be "
            f"read and were skipped (counted as skipped_images in log.jsonl)")
    assignment = np.full(len(dataset), -1, dtype=np.int64)
    stats: dict[str, Any] = {}
    if dist.is_main():
        t0 = time.time()
        labels, reseeded = cluster(x, cfg["clustering"], cfg["k"], seeds["kmeans"],
                                   cfg["kmeans_iters"],
                                   cfg.get("empty_clusters", "paper"))
        assignment[indices] = labels
        seconds["cluster"] = time.time() - t0
        stats = {"clusters": size_stats(assignment, int(labels.max()) + 1),
                 "empty_reseeded": reseeded, "skipped_images": int(len(dataset) - len(indices)),
                 "seconds": seconds}
    assignment = dist.broadcast_array(assignment if dist.is_main() else None, np.int64)
    stats = dist.broadcast_object(stats)
    return assignment, stats
