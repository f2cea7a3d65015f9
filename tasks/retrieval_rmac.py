"""The R-MAC measurement behind `retrieval-oxford` / `retrieval-paris` (tasks/retrieval.py
declares them and checks their options): regional vectors of each image at each scale, cached
per trunk and set for the task that runs next (Paris after Oxford), the PCA-whitening learned
on the other set, the ranking and both protocols' mAP."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dcbench import distributed, step_meter
from dcbench.checkpoint import state_sha256
from dcbench.data import get_dataset_spec, make_loader, subset
from dcbench.data.retrieval.oxford_paris import (
    MAX_SIDE,
    RetrievalSet,
    build_retrieval,
    retrieval_images,
)
from dcbench.errors import DcbenchError
from dcbench.extract import prepare, to_device
from dcbench.models import Trunk
from dcbench.progress import progress
from dcbench.retrieval.metrics import map_original, map_revisited
from dcbench.retrieval.rmac import aggregate, fit_whitening, rank, rmac_vectors

from .features import my_rows
from .inputs import QUICK_SUBSET_SEED
from .registry import Measurement, RunContext

EMBEDDED_SIDE = 32         # the trunk input side at which the embedded scenes are native


_CACHE: dict[tuple, tuple[list[torch.Tensor | None], int]] = {}
CACHE_ENTRIES = 4          # retrieval-paris reuses the sets retrieval-oxford just extracted


def cached_regions(trunk: Trunk, data, key: tuple, cfg: dict[str, Any], ctx: RunContext,
                   desc: str) -> tuple[list[torch.Tensor | None], int]:
    """`conv5_regions`, remembered for the last few (trunk, set, split, side, R-MAC options)
    in this process: the two retrieval tasks whiten on each other's database."""
    key = (*key, cfg["levels"], cfg["overlap"], cfg["pool"], str(ctx.device))
    if key not in _CACHE:
        while len(_CACHE) >= CACHE_ENTRIES:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = conv5_regions(trunk, data, cfg, ctx, desc)
    return _CACHE[key]


def conv5_regions(trunk: Trunk, data, cfg: dict[str, Any], ctx: RunContext,
                  desc: str) -> tuple[list[torch.Tensor | None], int]:
    """Per image, its (R, C) regional R-MAC vectors (None if unreadable), streamed one image
    at a time (sizes differ); and how many images could not be read. Under torchrun each
    rank extracts every world_size-th image and every rank ends with all of them (the
    whitening and ranking that follow are cheap and repeated; rank 0 records)."""
    trunk.eval()
    out: list[torch.Tensor | None] = [None] * len(data)
    skipped = 0
    loader = make_loader(data, 1, sampler=my_rows(len(data)), workers=ctx.workers)
    step_meter.begin(f"{desc} R-MAC", len(loader), "img")
    with torch.inference_mode():
        for images, _, indices, n_skipped in progress(loader, desc, total=len(loader),
                                                      unit="img"):
            skipped += n_skipped
            step_meter.step(len(indices))
            if images is None:
                continue
            # the last map: conv5 without pool5, a ResNet's res5, a ViT's patch-token grid
            fmap = trunk.feature_map(to_device(images, ctx.device))[0]
            out[int(indices[0])] = rmac_vectors(fmap, cfg["levels"], cfg["overlap"],
                                                cfg["pool"]).cpu()
    if distributed.is_distributed():       # each rank's images, into every rank's list
        for part in distributed.all_gather_object(
                {i: r for i, r in enumerate(out) if r is not None}):
            for i, r in part.items():
                out[i] = r
        skipped = int(distributed.all_reduce_sum(torch.tensor([skipped])).item())
    return out, skipped


def _vectors(regional: list[torch.Tensor | None], whitening) -> torch.Tensor:
    """Image vectors; an unreadable image gets a zero vector (ranked after every match)."""
    dim = whitening.proj.shape[1]
    kept = [i for i, r in enumerate(regional) if r is not None]
    out = torch.zeros(len(regional), dim)
    if kept:
        out[kept] = aggregate([regional[i] for i in kept], whitening)
    return out


def measure(trunk: Trunk, settings: list[str], cfg: dict[str, Any], ctx: RunContext
            ) -> list[Measurement]:
    """The run of a retrieval task with its checked config: R-MAC vectors of the whitening
    set, the database and the queries; mAP under each protocol the set has."""
    ds, other = cfg["dataset"], cfg["whiten_on"]
    model = prepare(trunk, ctx.device)
    scale = trunk.INPUT_SIZE / EMBEDDED_SIDE if get_dataset_spec(ds).size == "small" else 1
    side = int(cfg["max_side"] or round(MAX_SIDE[ds] * scale))

    from torchvision import transforms as T  # seconds to import: only where used

    def images(rs: RetrievalSet, name: str, split: str, at: int):
        spec = get_dataset_spec(name)
        tf = T.Compose([T.ToTensor(), T.Normalize(spec.mean, spec.std)])
        return retrieval_images(rs, split, at, tf)

    digest = state_sha256(model)        # the cache key's checkpoint part
    sides = [max(1, round(side * f)) for f in cfg["scales"]]

    def regions(rs: RetrievalSet, name: str, split: str, limit: int | None = None):
        """Regional vectors per image, the regions of every scale together (multi-scale
        R-MAC sums them all); None where an image could not be read."""
        per_scale, skipped = [], 0
        for at in sides:
            data = subset(images(rs, name, split, at), limit, QUICK_SUBSET_SEED)
            got, n = cached_regions(model, data, (digest, str(rs.root), split, at,
                                                  len(data)), cfg, ctx,
                                    f"R-MAC {name} {split} {at}px")
            per_scale.append(got)
            skipped = max(skipped, n)
        merged = [None if any(r is None for r in rs_) else torch.cat(rs_)
                  for rs_ in zip(*per_scale)]
        return merged, skipped

    rs = build_retrieval(ds, ctx.data_root)      # both sets read (and checked) before work
    rs_other = build_retrieval(other, ctx.data_root)
    regional, skipped_w = regions(rs_other, other, "database", cfg["whiten_images"])
    whiten_count = sum(r is not None for r in regional) + skipped_w
    kept = [r for r in regional if r is not None]
    if not kept:
        raise DcbenchError(f"{other}: no readable image to learn the whitening from")
    whitening = fit_whitening(torch.cat(kept), cfg["pca_dim"])

    db_regional, skipped_db = regions(rs, ds, "database")
    q_regional, skipped_q = regions(rs, ds, "query")
    db = _vectors(db_regional, whitening)
    ranks = rank(_vectors(q_regional, whitening), db).numpy()
    gnd = [{"good": g, "ok": o, "junk": j} for g, o, j in zip(rs.good, rs.ok, rs.junk)]
    scores = {"map": 100.0 * map_original(ranks, gnd)}
    extra: dict[str, Any] = {
        "protocol": {"map": "original (good+ok positive, junk ignored, queries in the "
                            "database)"},
        "n_database": len(rs.images), "n_queries": len(rs.query_images),
        "max_side": side, "sides": sides, "whitened_on": other, "whiten_images": whiten_count,
        "pca_dim": int(whitening.proj.shape[1]),
        "skipped": {"whitening": skipped_w, "database": skipped_db, "queries": skipped_q}}
    if rs.revisited is not None:
        rev = rs.revisited
        row = {n: i for i, n in enumerate(rs.images)}
        rev_db = db[[row[n] for n in rev.images]]
        rq_regional, skipped_rq = regions(rs, ds, "revisited-query")
        rev_ranks = rank(_vectors(rq_regional, whitening), rev_db).numpy()
        rev_gnd = [{"easy": e, "hard": h, "junk": j}
                   for e, h, j in zip(rev.easy, rev.hard, rev.junk)]
        for level, value in map_revisited(rev_ranks, rev_gnd).items():
            scores[f"map_{level}"] = 100.0 * value
        extra["protocol"]["revisited"] = ("revisitop: queries cropped first and not in "
                                          "the database; easy/medium/hard")
        extra["skipped"]["revisited_queries"] = skipped_rq
    out = []
    for setting in settings:
        for metric, value in scores.items():
            if np.isnan(value):
                continue
            out.append(Measurement(setting=setting, dataset=ds, split="query",
                                   metric=metric, value=value, best=value,
                                   extra=extra))
    return out
