"""`retrieval-oxford` / `retrieval-paris`: instance retrieval with R-MAC (the paper's Table 5).

As DeepCluster's eval_retrieval.py (PROTOCOLS.md, Retrieval): conv5 after its ReLU with the
final max-pool removed, the trunk in eval mode (Sobel if it has one), one image at a time at
its own size: resized so its longest side is `max_side` (1024 on the real sets; on the
embedded sets the scenes' 96 px times the trunk's input side / 32, as the VOC tasks scale
them), queries cropped to their box after the resize. `--set scales=1,0.707,0.5` gives
multi-scale R-MAC (the regions of every scale summed into one vector; default: one scale,
as DeepCluster). R-MAC regions (L = 3, 40 % overlap),
each max-pooled (or GeM) and L2-normalised, PCA-whitened to `pca_dim` dims learned on the
regional vectors of at most `whiten_images` database images of the OTHER set (Paris for
Oxford and the reverse), L2, summed, L2; ranking by dot product (dcbench/retrieval/).

Two protocols from one extraction: the original (good + ok positive, junk ignored, the
trapezoid AP of Oxford's compute_ap; queries stay in the database, as DeepCluster ran it),
and, where the set has a revisited gnd_*.pkl, the revisited Easy / Medium / Hard mAP
(queries cropped to their box BEFORE resizing and left out of the database, as revisitop).
No training: final and best are the same number.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

from dcbench.data import get_dataset_spec, make_loader, subset
from dcbench.data.oxford_paris import MAX_SIDE, RetrievalSet, build_retrieval
from dcbench.data.retrieval_images import retrieval_images
from dcbench.errors import DcbenchError
from dcbench.extract import prepare, to_device
from dcbench.models import Trunk
from dcbench.progress import progress
from dcbench.retrieval.metrics import map_original, map_revisited
from dcbench.retrieval.rmac import aggregate, fit_whitening, rank, rmac_vectors

from .inputs import QUICK_SUBSET_SEED
from .registry import Measurement, RunContext, Task, register_task

OTHER = {"oxford5k": "paris6k", "paris6k": "oxford5k", "fmnist-oxford": "fmnist-paris",
         "fmnist-paris": "fmnist-oxford", "fmnist-oxford-quick": "fmnist-paris-quick",
         "fmnist-paris-quick": "fmnist-oxford-quick"}
EMBEDDED_SIDE = 32         # the trunk input side at which the embedded scenes are native


_CACHE: dict[tuple, tuple[list[torch.Tensor | None], int]] = {}
CACHE_ENTRIES = 4          # retrieval-paris reuses the sets retrieval-oxford just extracted


def fingerprint(trunk: Trunk) -> str:
    """A digest of the trunk's weights and buffers: the cache key's checkpoint part."""
    h = hashlib.sha256()
    for name, t in sorted(trunk.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


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
    at a time (sizes differ); and how many images could not be read."""
    trunk.eval()
    out: list[torch.Tensor | None] = [None] * len(data)
    skipped = 0
    loader = make_loader(data, 1, workers=ctx.workers)
    with torch.inference_mode():
        for images, _, indices, n_skipped in progress(loader, desc, total=len(loader),
                                                      unit="img"):
            skipped += n_skipped
            if images is None:
                continue
            x = to_device(images, ctx.device)
            if trunk.sobel is not None:
                x = trunk.sobel(x)
            conv5 = trunk.features[:-1](x)[0]                 # pool5 removed
            out[int(indices[0])] = rmac_vectors(conv5, cfg["levels"], cfg["overlap"],
                                                cfg["pool"]).cpu()
    return out, skipped


def _vectors(regional: list[torch.Tensor | None], whitening) -> torch.Tensor:
    """Image vectors; an unreadable image gets a zero vector (ranked after every match)."""
    dim = whitening.proj.shape[1]
    kept = [i for i, r in enumerate(regional) if r is not None]
    out = torch.zeros(len(regional), dim)
    if kept:
        out[kept] = aggregate([regional[i] for i in kept], whitening)
    return out


class RetrievalTask(Task):
    """Instance retrieval mAP with R-MAC; one setting, `rmac`."""

    frozen = True
    eval_only = True
    default_dataset = ""
    options: dict[str, Any] = {}

    def config(self, ctx: RunContext) -> dict[str, Any]:
        cfg = dict(self.options)
        cfg.update({k: v for k, v in ctx.options.items() if v is not None})
        if ctx.quick:
            cfg["dataset"] = get_dataset_spec(cfg["dataset"]).quick_variant or cfg["dataset"]
        cfg["whiten_on"] = cfg.get("whiten_on") or OTHER.get(cfg["dataset"])
        if cfg["dataset"] not in MAX_SIDE:
            raise DcbenchError(f"{self.name}: '{cfg['dataset']}' is not a retrieval set; "
                               f"use one of {', '.join(sorted(MAX_SIDE))}")
        if cfg["whiten_on"] not in MAX_SIDE or cfg["whiten_on"] == cfg["dataset"]:
            raise DcbenchError(f"{self.name}: whiten_on must be another retrieval set than "
                               f"{cfg['dataset']} (the protocol learns the PCA on the other "
                               f"dataset), got {cfg['whiten_on']!r}")
        if cfg["pool"] not in ("max", "gem"):
            raise DcbenchError(f"{self.name}: pool must be max (R-MAC) or gem, got "
                               f"{cfg['pool']!r}")
        for key in ("levels", "pca_dim", "whiten_images"):
            if int(cfg[key]) < 1:
                raise DcbenchError(f"{self.name} option {key} must be at least 1, got "
                                   f"{cfg[key]}")
        v = cfg["scales"]
        cfg["scales"] = tuple(float(x) for x in (v if isinstance(v, (list, tuple))
                                                 else str(v).split(",")))
        if not cfg["scales"] or min(cfg["scales"]) <= 0 or max(cfg["scales"]) > 4:
            raise DcbenchError(f"{self.name}: scales are factors of max_side in (0, 4], e.g. "
                               f"--set scales=1,0.707,0.5 (multi-scale R-MAC); got {v}")
        if not 0 <= float(cfg["overlap"]) < 1:
            raise DcbenchError(f"{self.name}: overlap must be in [0, 1), got {cfg['overlap']}")
        return cfg

    def data_needed(self, ctx: RunContext) -> tuple[str, ...]:
        cfg = self.config(ctx)
        return (cfg["dataset"], cfg["whiten_on"])

    def run(self, trunk: Trunk, settings: list[str], ctx: RunContext) -> list[Measurement]:
        cfg = self.config(ctx)
        ds, other = cfg["dataset"], cfg["whiten_on"]
        model = prepare(trunk, ctx.device)
        scale = trunk.INPUT_SIZE / EMBEDDED_SIDE if get_dataset_spec(ds).size == "small" else 1
        side = int(cfg["max_side"] or round(MAX_SIDE[ds] * scale))

        from torchvision import transforms as T  # seconds to import: only where used

        def images(rs: RetrievalSet, name: str, split: str, at: int):
            spec = get_dataset_spec(name)
            tf = T.Compose([T.ToTensor(), T.Normalize(spec.mean, spec.std)])
            return retrieval_images(rs, split, at, tf)

        digest = fingerprint(model)
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

        rs_other = build_retrieval(other, ctx.data_root)
        regional, skipped_w = regions(rs_other, other, "database", cfg["whiten_images"])
        whiten_count = sum(r is not None for r in regional) + skipped_w
        kept = [r for r in regional if r is not None]
        if not kept:
            raise DcbenchError(f"{other}: no readable image to learn the whitening from")
        whitening = fit_whitening(torch.cat(kept), cfg["pca_dim"])

        rs = build_retrieval(ds, ctx.data_root)
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


_OPTIONS = {"levels": 3, "overlap": 0.4, "pool": "max", "pca_dim": 512, "whiten_images": 10_000,
            "max_side": None, "whiten_on": None, "scales": (1.0,)}


@register_task("retrieval-oxford", settings=("rmac",),
               datasets=("fmnist-oxford", "oxford5k"))
class OxfordRetrieval(RetrievalTask):
    """Oxford5k (or the embedded fmnist-oxford), whitened on Paris."""

    description = ("Oxford5k instance retrieval mAP with R-MAC (original and revisited "
                   "protocols), PCA-whitened on Paris6k")
    options = {"dataset": "fmnist-oxford", **_OPTIONS}


@register_task("retrieval-paris", settings=("rmac",), datasets=("fmnist-paris", "paris6k"))
class ParisRetrieval(RetrievalTask):
    """Paris6k (or the embedded fmnist-paris), whitened on Oxford."""

    description = ("Paris6k instance retrieval mAP with R-MAC (original and revisited "
                   "protocols), PCA-whitened on Oxford5k")
    options = {"dataset": "fmnist-paris", **_OPTIONS}
