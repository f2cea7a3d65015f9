"""`knn`: weighted k-nearest-neighbour accuracy of a layer's frozen features (Wu et al. 2018,
as DINO evaluates): cosine similarity between L2-normalised features, the k = 20 nearest
training images vote for their class with weight exp(similarity / 0.07).

The held-out images' features are held in memory; the training set streams past them in
batches and only the running top-k similarities and labels are kept, so the memory bank is
never materialised. Conv layers are pooled as for the linear probes. All requested layers
come from one frozen pass over each split.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dcbench.errors import DcbenchError
from dcbench.layer_names import CONVNET_FC, CONVNET_LAYERS, with_modern

from .inputs import (
    QUICK_TEST,
    QUICK_TRAIN,
    OnLabelledDataset,
    eval_split,
    input_side,
    labelled_split,
    num_classes,
    train_split,
    transform_for,
)
from .registry import Measurement, RunContext, register_task

if TYPE_CHECKING:       # the declaration loads without torch; run() imports what it uses
    from dcbench.models import Trunk

LAYERS = with_modern((*CONVNET_LAYERS, *CONVNET_FC))


@register_task("knn", settings=LAYERS, datasets=("fashion-mnist",))
class KNN(OnLabelledDataset):
    """Weighted kNN (k 20, T 0.07) of the held-out split against the training split."""

    description = "weighted k-NN accuracy (k 20, T 0.07) of a layer's features"
    default_settings = ("conv5", "fc7")
    layer_role = "embed"
    frozen = True
    eval_only = True
    shards = True
    options: dict[str, Any] = {
        "dataset": "fashion-mnist", "k": 20, "temperature": 0.07, "max_train": None,
        "max_test": None,
    }

    def config(self, ctx: RunContext) -> dict[str, Any]:
        cfg = {**self.options, **ctx.options}
        cfg["train_split"] = train_split(cfg["dataset"])
        cfg["test_split"] = eval_split(cfg["dataset"])
        if ctx.quick:
            cfg["max_train"] = min(cfg["max_train"] or QUICK_TRAIN, QUICK_TRAIN)
            cfg["max_test"] = min(cfg["max_test"] or QUICK_TEST, QUICK_TEST)
        return cfg

    def run(self, trunk: Trunk, settings: list[str], ctx: RunContext) -> list[Measurement]:
        import torch
        from torch.nn import functional as F

        from dcbench import distributed

        from .features import collect, iter_pooled
        from .knn_search import RunningTopK, vote
        from .pooling import Pooler

        cfg = self.config(ctx)
        ds = cfg["dataset"]
        tf = transform_for(ds, "eval", input_side(ds, trunk))
        train = labelled_split(ds, cfg["train_split"], tf, ctx.data_root, cfg["max_train"])
        test = labelled_split(ds, cfg["test_split"], tf, ctx.data_root, cfg["max_test"])
        if cfg["k"] > len(train):
            raise DcbenchError(f"--set k={cfg['k']} is more than the {len(train)} training "
                               f"images (max_train {cfg['max_train']}); lower k or raise "
                               f"max_train")
        n_classes = num_classes(train)
        pooler = Pooler(trunk, settings, ctx.device)
        queries, labels = collect(trunk, pooler, test, ctx, f"{self.name} queries")
        tops = {k: RunningTopK(F.normalize(q, dim=1), cfg["k"]) for k, q in queries.items()}
        n_train = 0
        for targets, pooled in iter_pooled(trunk, pooler, train, ctx, f"{self.name} bank"):
            n_train += len(targets)
            for k, v in pooled.items():
                tops[k].add(F.normalize(v, dim=1), targets)
        for top in tops.values():
            top.merge_ranks()
        n_train = int(distributed.all_reduce_sum(torch.tensor([n_train])).item())
        truth = torch.from_numpy(labels).to(ctx.device)
        out = []
        for layer in settings:
            scores = vote(tops[layer], n_classes, cfg["temperature"])
            pred = scores.topk(min(5, n_classes), dim=1).indices
            hits = pred == truth[:, None]
            acc = {"top1": hits[:, 0].float().mean(), "top5": hits.any(1).float().mean()}
            for metric, value in acc.items():
                out.append(Measurement(
                    setting=layer, dataset=ds, split=cfg["test_split"], metric=metric,
                    value=100.0 * float(value),
                    extra={"k": cfg["k"], "temperature": cfg["temperature"],
                           "dim": pooler.dims[layer], "n_train": n_train,
                           "n_test": len(labels), "n_classes": n_classes}))
        return out
