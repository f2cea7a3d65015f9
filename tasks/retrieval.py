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

from typing import TYPE_CHECKING, Any

from dcbench.data import get_dataset_spec
from dcbench.data.retrieval.oxford_paris import MAX_SIDE
from dcbench.errors import DcbenchError

from .registry import Measurement, RunContext, Task, register_task

if TYPE_CHECKING:       # the declarations load without torch; run() imports the measurement
    from dcbench.models import Trunk

OTHER = {"oxford5k": "paris6k", "paris6k": "oxford5k", "fmnist-oxford": "fmnist-paris",
         "fmnist-paris": "fmnist-oxford", "fmnist-oxford-quick": "fmnist-paris-quick",
         "fmnist-paris-quick": "fmnist-oxford-quick"}


class RetrievalTask(Task):
    """Instance retrieval mAP with R-MAC; one setting, `rmac`."""

    frozen = True
    eval_only = True
    shards = True           # extraction split over torchrun's ranks (tasks/retrieval_rmac.py)
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
        from .retrieval_rmac import measure

        return measure(trunk, settings, self.config(ctx), ctx)


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
