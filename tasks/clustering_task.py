"""`clustering`: k-means on one layer's frozen features against the labels of any labelled
dataset, with k = the number of classes (how IIC and JULE score clustering).

Conv layers are pooled as for the linear probes (tasks/pooling.py); the features are then
projected by PCA to `pca_dim` WITHOUT whitening and L2-normalised (whiten=true gives
DeepCluster's own preprocessing; pca_dim=0 clusters the raw L2-normalised features), and
clustered by dcbench's faiss k-means
(20 iterations as in the original code, seeded by the run's seed). Reported: NMI with both
normalisations, named (geometric as JULE, arithmetic as sklearn's default), ACC under the
Hungarian matching (percent) and ARI. All requested layers come from one frozen pass.

Why no whitening by default (measured on Fashion-MNIST test, README): whitening gives each of
the 256 components unit variance, so the many low-variance, noisy directions weigh as much as
the few that carry the classes; it ranked the random trunk above both trained ones at fc7
(NMI 0.467 vs 0.353 / 0.399), while the plain projection ranks supervised > DeepCluster >
Random at conv5 (0.697 / 0.523 / 0.493) and fc7 (0.718 / 0.550 / 0.458), the order the linear
probes give: it measures the features, not the whitening's noise.

Settings beside the layers, for the clustering table in JULE's shape:
- `pixels`: k-means on the raw pixels (no trunk, no PCA), the classic baseline;
- `jule-rc`: JULE-RC, JULE's agglomerative clustering (dcbench/clustering/agglomerative.py,
  K_s 20, K_c 5, eta 0.9; `min_size` its optional outlier rule, off by default) of the
  trunk's `embed` output (a JULE net) or its L2-normalised fc7;
- `jule-sf`: JULE-SF, the clusters a JULE run ended with, read from its checkpoint (only for a
  JULE checkpoint trained on this dataset and split).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from dcbench.errors import DcbenchError
from dcbench.layer_names import CONVNET_FC, CONVNET_LAYERS, with_modern

from .inputs import (
    QUICK_TEST,
    OnLabelledDataset,
    eval_split,
    input_side,
    labelled_split,
    num_classes,
    transform_for,
)
from .registry import Measurement, RunContext, register_task

if TYPE_CHECKING:       # the declaration loads without torch; run() imports what it uses
    import torch

    from dcbench.checkpoint import CheckpointInfo
    from dcbench.models import Trunk

LAYERS = with_modern((*CONVNET_LAYERS, *CONVNET_FC, "fc7_pre", "embed"))
CLUSTERINGS = ("pixels", "jule-rc", "jule-sf")
PERCENT = {"acc"}            # metrics recorded in percent; the others are in [0, 1]


def reduce(x: torch.Tensor, pca_dim: int, whiten: bool = True) -> torch.Tensor:
    """PCA to pca_dim, whitened (DeepCluster's preprocessing) or not, then L2-normalise
    (pca_dim 0: L2 only). The dimension is capped at N - 1, the rank of N centred rows:
    whitening a null direction would amplify noise."""
    import torch

    from dcbench.clustering.pca import PCAWhitening

    if pca_dim <= 0:
        return torch.nn.functional.normalize(x.float(), dim=1).cpu()
    dim = min(pca_dim, x.shape[0] - 1)
    pca = PCAWhitening.fit(x.cpu(), dim)
    if not whiten:          # undo the eigenvalue^-1/2 scaling: a plain projection
        pca.proj = pca.proj * (pca.eigenvalues.clamp(min=0) + 1e-8).sqrt().float()
    return pca.transform(x.cpu())


@register_task("clustering", settings=LAYERS + CLUSTERINGS, datasets=("fashion-mnist", "digits"))
class Clustering(OnLabelledDataset):
    """k-means with k = classes on a layer's features; NMI, ACC and ARI against the labels."""

    description = "k-means (k = classes) on a layer's features: NMI, ACC, ARI vs labels"
    # the last conv (Table 1) and fc7; fc7_pre (before the ReLU) is what DeepCluster clusters
    default_settings = ("conv5", "fc7")
    layer_role = "embed"
    frozen = True
    eval_only = True
    shards = True           # collect() gathers every rank's rows; the clustering is repeated
    options: dict[str, Any] = {
        "dataset": "fashion-mnist", "split": None, "k": None, "pca_dim": 256, "whiten": False,
        "niter": 20, "max_images": None, "k_s": 20, "k_c": 5, "eta": 0.9, "min_size": 1,
    }

    def config(self, ctx: RunContext) -> dict[str, Any]:
        cfg = {**self.options, **ctx.options}
        cfg["split"] = cfg["split"] or eval_split(cfg["dataset"])
        if ctx.quick:
            cfg["max_images"] = min(cfg["max_images"] or QUICK_TEST, QUICK_TEST)
        return cfg

    def run(self, trunk: Trunk, settings: list[str], ctx: RunContext) -> list[Measurement]:
        import torch

        from dcbench.clustering.agglomerative import agglomerate
        from dcbench.clustering.kmeans import kmeans
        from dcbench.clustering.metrics import all_metrics
        from dcbench.data import targets_of

        from .features import collect
        from .pooling import Pooler

        cfg = self.config(ctx)
        tf = transform_for(cfg["dataset"], "eval", input_side(cfg["dataset"], trunk))
        data = labelled_split(cfg["dataset"], cfg["split"], tf, ctx.data_root,
                              cfg["max_images"])
        k = cfg["k"] or num_classes(data)
        if k >= len(data):
            raise DcbenchError(f"k = {k} clusters needs more than the {len(data)} images "
                               f"(max_images {cfg['max_images']}); lower --set k or raise "
                               f"max_images")
        rc_layer = "embed" if "embed" in trunk.tap_names() else "fc7"
        layers = [s for s in settings if s in LAYERS]
        pooled = layers + ([rc_layer] if "jule-rc" in settings and rc_layer not in layers else [])
        if pooled:
            pooler = Pooler(trunk, pooled, ctx.device)
            feats, labels = collect(trunk, pooler, data, ctx, f"{self.name} features")
        else:           # no trunk pass: the labels without decoding every image
            labels = targets_of(data)
            if labels is None:
                labels = np.asarray([data[i][1] for i in range(len(data))])
        out = []
        for setting in settings:
            extra: dict[str, Any] = {"k": k, "n_images": len(labels)}
            if setting in layers:
                x = reduce(feats[setting], cfg["pca_dim"], cfg["whiten"]).numpy()
                result = kmeans(x, k, niter=cfg["niter"], seed=ctx.seed)
                assignment = result.assignment
                extra.update(dim=pooler.dims[setting], reduced_dim=int(x.shape[1]),
                             whiten=bool(cfg["whiten"] and cfg["pca_dim"] > 0),
                             loss=result.loss, empty_reseeded=result.empty_reseeded)
            elif setting == "pixels":
                x = np.stack([data[i][0].flatten().numpy() for i in range(len(data))])
                result = kmeans(x, k, niter=cfg["niter"], seed=ctx.seed)
                assignment = result.assignment
                extra.update(dim=int(x.shape[1]), loss=result.loss)
            elif setting == "jule-rc":
                x = torch.nn.functional.normalize(feats[rc_layer].float(), dim=1).cpu().numpy()
                assignment = agglomerate(x, k, cfg["k_s"], cfg["k_c"], cfg["eta"],
                                         min_size=cfg["min_size"])
                extra.update(layer=rc_layer, k_s=cfg["k_s"], k_c=cfg["k_c"], eta=cfg["eta"],
                             min_size=cfg["min_size"])
            else:
                assignment = jule_final_clusters(ctx.checkpoint, cfg, data)
                extra.update(source="the JULE run's final clusters (its checkpoint)")
            for metric, value in all_metrics(labels, assignment).items():
                out.append(Measurement(
                    setting=setting, dataset=cfg["dataset"], split=cfg["split"], metric=metric,
                    value=100.0 * value if metric in PERCENT else value, extra=dict(extra)))
        return out


def jule_final_clusters(info: CheckpointInfo | None, cfg: dict[str, Any], data) -> np.ndarray:
    """JULE-SF: the labels a JULE run's last period ended with (read with the checkpoint),
    checked to be of this split (on a --quick subset, the subset's labels)."""
    run = info.clusters if info is not None else None
    path = info.path if info is not None else None
    if run is None:
        raise DcbenchError(f"setting jule-sf needs a JULE checkpoint (dcbench pretrain "
                           f"--method jule); {path} is not one")
    if not run["final"]:
        raise DcbenchError(f"{path}: the JULE run has not reached its target clusters yet; "
                           f"finish it with dcbench pretrain --resume")
    keep = getattr(data, "indices", None)
    full = len(data) if keep is None else len(data.dataset)
    if (run["data"], run["split"]) != (cfg["dataset"], cfg["split"]) \
            or run["max_images"] is not None or len(run["labels"]) != full:
        raise DcbenchError(f"{path} clustered {run['data']} {run['split']} "
                           f"({len(run['labels'])} images), not {cfg['dataset']} "
                           f"{cfg['split']} ({full}); pass --set dataset={run['data']}")
    labels = np.asarray(run["labels"], np.int64)
    return labels if keep is None else labels[np.asarray(keep)]
