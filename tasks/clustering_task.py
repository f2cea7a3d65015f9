"""`clustering`: k-means on one layer's frozen features against the labels of any labelled
dataset, with k = the number of classes (how IIC and JULE score clustering).

Conv layers are pooled as for the linear probes (tasks/pooling.py); the features are then
PCA-whitened to `pca_dim` and L2-normalised, DeepCluster's own preprocessing before k-means
(pca_dim=0 clusters the raw L2-normalised features), and clustered by dcbench's faiss k-means
(20 iterations as in the original code, seeded by the run's seed). Reported: NMI with both
normalisations, named (geometric as JULE, arithmetic as sklearn's default), ACC under the
Hungarian matching (percent) and ARI. All requested layers come from one frozen pass.
"""

from __future__ import annotations

from typing import Any

import torch

from dcbench.clustering.kmeans import kmeans
from dcbench.clustering.metrics import all_metrics
from dcbench.clustering.pca import PCAWhitening
from dcbench.models import Trunk

from .features import collect
from .inputs import (
    QUICK_TEST,
    OnLabelledDataset,
    eval_split,
    labelled_split,
    num_classes,
    transform_for,
)
from .pooling import Pooler
from .registry import Measurement, RunContext, register_task

LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5", "fc6", "fc7")
PERCENT = {"acc"}            # metrics recorded in percent; the others are in [0, 1]


def reduce(x: torch.Tensor, pca_dim: int) -> torch.Tensor:
    """PCA-whiten to pca_dim and L2-normalise (pca_dim 0: L2 only). The dimension is capped
    at N - 1, the rank of N centred rows: whitening a null direction would amplify noise."""
    if pca_dim <= 0:
        return torch.nn.functional.normalize(x.float(), dim=1).cpu()
    dim = min(pca_dim, x.shape[0] - 1)
    return PCAWhitening.fit(x.cpu(), dim).transform(x.cpu())


@register_task("clustering", settings=LAYERS, datasets=("fashion-mnist",))
class Clustering(OnLabelledDataset):
    """k-means with k = classes on a layer's features; NMI, ACC and ARI against the labels."""

    description = "k-means (k = classes) on a layer's features: NMI, ACC, ARI vs labels"
    default_settings = ("conv5", "fc7")   # the last conv (Table 1) and what DeepCluster clusters
    frozen = True
    eval_only = True
    options: dict[str, Any] = {
        "dataset": "fashion-mnist", "split": None, "k": None, "pca_dim": 256, "niter": 20,
        "max_images": None,
    }

    def config(self, ctx: RunContext) -> dict[str, Any]:
        cfg = {**self.options, **ctx.options}
        cfg["split"] = cfg["split"] or eval_split(cfg["dataset"])
        if ctx.quick:
            cfg["max_images"] = min(cfg["max_images"] or QUICK_TEST, QUICK_TEST)
        return cfg

    def run(self, trunk: Trunk, settings: list[str], ctx: RunContext) -> list[Measurement]:
        cfg = self.config(ctx)
        data = labelled_split(cfg["dataset"], cfg["split"], transform_for(cfg["dataset"], "eval"),
                              ctx.data_root, cfg["max_images"])
        k = cfg["k"] or num_classes(data)
        pooler = Pooler(trunk, settings, ctx.device)
        feats, labels = collect(trunk, pooler, data, ctx, f"{self.name} features")
        out = []
        for layer in settings:
            x = reduce(feats.pop(layer), cfg["pca_dim"]).numpy()
            result = kmeans(x, k, niter=cfg["niter"], seed=ctx.seed)
            for metric, value in all_metrics(labels, result.assignment).items():
                out.append(Measurement(
                    setting=layer, dataset=cfg["dataset"], split=cfg["split"], metric=metric,
                    value=100.0 * value if metric in PERCENT else value,
                    extra={"k": k, "n_images": len(labels), "dim": pooler.dims[layer],
                           "reduced_dim": int(x.shape[1]), "loss": result.loss,
                           "empty_reseeded": result.empty_reseeded}))
        return out
