"""DeepCluster (Caron et al., ECCV 2018): cluster the features, train on the clusters, repeat.

One epoch, as the paper and its released code do it:
1. fc7 features (before the ReLU) of every image, eval mode, deterministic transform;
   PCA-whitening to pca_dim and L2 normalisation; k-means (faiss, 20 iterations, a fresh seed
   each epoch; empty clusters re-seeded by splitting a random non-empty one) or PIC.
2. A new top layer sized to the non-empty clusters, drawn N(0, 0.01), with its own fresh SGD
   (no momentum, as in the original); the trunk's SGD keeps its momentum across epochs.
3. `reassign` passes of SGD over images sampled uniformly over clusters (or as the released
   sampler did), with RandomResizedCrop + flip.
The assignment is saved as soon as it exists; --resume restores it instead of re-clustering.
NMI against the previous assignment and, where labels exist, NMI/ACC/ARI against them are
logged per epoch (labels are never used for training).
"""

from __future__ import annotations

import hashlib
import time
from typing import Any

import numpy as np
import torch

from dcbench import distributed as dist
from dcbench.checkpoint import state_sha256
from dcbench.clustering.metrics import acc, ari, nmi
from dcbench.clustering.sampler import SAMPLERS
from dcbench.errors import DcbenchError
from dcbench.faults import fault_point
from dcbench.methods import cluster_pass
from dcbench.methods.session import Session
from dcbench.methods.train_epoch import rank_pass, train_epoch
from dcbench.progress import say


def clustering_step(s: Session, epoch: int) -> tuple[np.ndarray, dict[str, Any]]:
    """This epoch's assignment: restored from disk only right after a resume from a
    checkpoint, and only if the file was computed from this very model state (its digest is
    stored beside it); else computed and saved at once. Files a fresh start finds (another
    run's leftovers, a committed showcase folder) are never used."""
    digest = state_sha256(s.model)
    saved = s.run.load_assignment(epoch)
    resumed_here = s.start_epoch > 0 and epoch == s.start_epoch + 1
    if saved is not None and resumed_here and saved[1].get("model_sha256") == digest:
        say(f"epoch {epoch}: restored the saved assignment (not re-clustering)")
        return saved
    if saved is not None:
        why = ("it was computed from another model state" if resumed_here
               else "it was not written by this run")
        say(f"epoch {epoch}: ignoring {s.run.assignment_path(epoch)}: {why}; re-clustering")
    seeds = s.epoch_seeds(epoch)
    assignment, stats = cluster_pass.assign(s.model, s.cluster_set, s.cfg, seeds, s.device)
    stats["model_sha256"] = digest
    if dist.is_main():
        s.run.save_assignment(epoch, assignment, stats)
    dist.barrier()
    fault_point("after-assignment", epoch)
    return assignment, stats


def check_ranks_agree(assignment: np.ndarray) -> str:
    """Every rank must train on the same assignment; return its digest for the log."""
    digest = hashlib.sha256(np.ascontiguousarray(assignment, dtype=np.int64).tobytes()).hexdigest()
    digests = dist.all_gather_object(digest)
    if len(set(digests)) != 1:
        raise DcbenchError(f"ranks disagree on the cluster assignment ({digests}); this is a bug, "
                           f"please report it")
    return digest[:16]


def label_metrics(s: Session, assignment: np.ndarray, epoch: int) -> dict[str, Any]:
    ok = assignment >= 0
    out: dict[str, Any] = {"nmi_prev": None, "nmi_labels": None, "nmi_labels_arithmetic": None,
                           "acc_labels": None, "ari_labels": None}
    previous = s.run.load_assignment(epoch - 1) if epoch > 1 else None
    if previous is not None:
        both = ok & (previous[0] >= 0)
        out["nmi_prev"] = nmi(assignment[both], previous[0][both], "geometric")
    if s.labels is not None:
        y, a = s.labels[ok], assignment[ok]
        out.update(nmi_labels=nmi(y, a, "geometric"), nmi_labels_arithmetic=nmi(y, a, "arithmetic"),
                   acc_labels=100.0 * acc(y, a), ari_labels=ari(y, a))
    return out


def run_epoch(s: Session, epoch: int) -> dict[str, Any]:
    """Cluster, then train one epoch on the clusters; return the epoch's log row."""
    cfg = s.cfg
    t0 = time.time()
    assignment, stats = clustering_step(s, epoch)
    digest = check_ranks_agree(assignment)
    metrics = label_metrics(s, assignment, epoch) if dist.is_main() else {}

    # pseudo-labels 0..K'-1 over the non-empty clusters; -1 stays for unreadable images
    clusters = np.unique(assignment[assignment >= 0])
    remap = np.full(int(assignment.max()) + 1, -1, dtype=np.int64)
    remap[clusters] = np.arange(len(clusters))
    pseudo = torch.from_numpy(np.where(assignment >= 0, remap[np.maximum(assignment, 0)], -1))

    seeds = s.epoch_seeds(epoch)
    torch.manual_seed(seeds["head"])              # the same head on every rank
    s.model.set_top_layer(len(clusters))
    head_opt = torch.optim.SGD(s.model.top_layer.parameters(), lr=cfg["lr"],
                               weight_decay=cfg["wd"])
    rng = np.random.default_rng(seeds["sampler"])
    n_draw = int(cfg["reassign"] * int((assignment >= 0).sum()))
    order = SAMPLERS[cfg["sampler"]](assignment, n_draw, rng)
    net, loader = rank_pass(s, order, seeds["augment"])
    lr = s.set_epoch_lr(epoch)
    train = train_epoch(net, loader, [s.trunk_opt, head_opt], s.device, epoch, labels=pseudo,
                        desc="train", amp=cfg["amp"])
    seconds = dict(stats.get("seconds", {}))
    seconds.update(train=train["seconds"], epoch=time.time() - t0)
    return {"epoch": epoch, "method": "deepcluster", "clustering": cfg["clustering"],
            "loss": train["loss"], "lr": lr, "train_acc": train["train_acc"], **metrics,
            "assignment_sha256": digest, "ranks": dist.world_size(),
            "clusters": stats.get("clusters"), "empty_reseeded": stats.get("empty_reseeded"),
            "skipped_images": int(stats.get("skipped_images", 0)) + train["skipped_images"],
            "skipped_in_clustering": int(stats.get("skipped_images", 0)),
            "missing_images": s.missing_images,
            "images_trained": int(train["images"]),
            "images_per_second": train["images_per_second"], "seconds": seconds}
