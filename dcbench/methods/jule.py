"""JULE (Yang, Parikh, Batra, CVPR 2016): joint unsupervised learning of a convnet and clusters.

The recurrent loop, as the paper and its released code (../shared/PROTOCOLS.md) run it:
- period 0: initial clusters are the connected components of the 1-NN graph of the raw
  pixels; the CNN trains `epochs` (20) passes on them.
- each later period: the CNN's L2-normalised 160-d outputs of every image give a K_s-NN graph
  (dcbench/clustering/agglomerative.py); ceil(eta * n) merges of the current clusters
  (graph-degree linkage, K_c criterion); then `epochs` passes of the CNN on the new labels.
- stop after the period that reaches `target` clusters (the number of classes). JULE-SF is
  that period's clustering; JULE-RC re-clusters the final outputs from scratch with the same
  agglomerative step (no CNN update).
Backward pass: the weighted triplet loss max(0, gamma ||a-p||^2 - ||a-n||^2 + margin) on the
L2-normalised outputs: every same-cluster pair (m < n) of a minibatch is an (anchor, positive)
with min(negatives, clusters in the batch - 1) random negatives from other clusters; SGD lr
0.01 (1 + 1e-4 t)^-0.75 over the global iteration t, momentum 0.9, weight decay 5e-5.
Minibatches (dcbench's organiser, the released one is not specified in REFERENCE.md): each
cluster's shuffled members cut into chunks of at most 10, chunks shuffled and packed into
batches of 100, so every batch holds positives and negatives and every image is seen once per
pass. The images are held in memory as one tensor (JULE's sets are small).

`--epochs` is the passes per period; `--set KEY=VALUE` sets arch (the net: NETS below), k_s,
k_c, eta, margin, gamma, negatives, target, split and min_size (dcbench's outlier rule, off by
default: dcbench/clustering/agglomerative.py). A checkpoint after every period holds the labels and
the global iteration: --resume continues at the next period.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from dcbench import distributed as dist
from dcbench.checkpoint import load_into, save_checkpoint
from dcbench.checkpoint_file import read_resumable
from dcbench.clustering.agglomerative import (
    agglomerate,
    knn_graph,
    merge,
    merges_per_period,
    nn_components,
)
from dcbench.clustering.metrics import all_metrics
from dcbench.data import build_dataset, get_dataset_spec, make_transform, subset, targets_of
from dcbench.errors import DcbenchError
from dcbench.extract import prepare
from dcbench.methods.catalog import DEFAULT_SEED, check_options
from dcbench.methods.run_dir import RunDir
from dcbench.methods.session import check_max_images
from dcbench.models import build_model
from dcbench.models.jule_net import JULE_NETS
from dcbench.progress import bar, say
from dcbench.schema import JULE as JULE_FIELDS
from dcbench.schema import PRETRAIN, check_value, check_values

DEFAULTS: dict[str, Any] = {
    "arch": None, "epochs": 20, "batch_size": 100, "lr": 0.01, "momentum": 0.9,
    "wd": 5e-5, "k_s": 20, "k_c": 5, "eta": 0.9, "gamma": 1.0, "margin": 0.2, "negatives": 20,
    "target": None, "split": None, "chunk": 10, "min_size": 1,
}
# (type, lowest allowed value) of every JULE option; `target` None = the number of classes
# The released code's net per set (its images at their own size); any other small set gets
# jule-32, the MNIST net on the 32-px view every dcbench task feeds. `--set arch=jule-32`
# trains that one on any set (e.g. MNIST, for the 32-px tasks).
NETS = {"mnist": "jule-28", "usps": "jule-16", "coil20": "jule-128", "coil100": "jule-128"}

def resolve(opts: dict[str, Any]) -> dict[str, Any]:
    """CLI options -> JULE's full config (checked before any work)."""
    opts = check_values(opts, PRETRAIN)
    spec = get_dataset_spec(opts.get("data") or "digits")
    if spec.size != "small":
        raise DcbenchError(f"JULE runs on small grayscale sets (digits, fashion-mnist); "
                           f"'{spec.name}' has {spec.size} images")
    if opts.get("arch") is not None and "arch" not in (opts.get("jule_options") or {}):
        raise DcbenchError(f"--arch {opts['arch']}: JULE trains its own nets "
                           f"({', '.join(JULE_NETS)}; {NETS.get(spec.name, 'jule-32')} for "
                           f"{spec.name}); drop --arch, or pick one with --set arch=jule-32")
    check_options({**opts, "method": "jule", "arch": None})   # DeepCluster's flags refused
    sets = dict(opts.get("jule_options") or {})
    unknown = sorted(set(sets) - set(DEFAULTS))
    if unknown:
        raise DcbenchError(f"--set {unknown[0]}: JULE has no such option; it has "
                           f"{', '.join(DEFAULTS)}")
    cfg: dict[str, Any] = {"method": "jule", "data": spec.name}
    for key, default in DEFAULTS.items():
        value = sets.get(key, opts.get(key))
        cfg[key] = default if value is None else value
    cfg["arch"] = cfg["arch"] or NETS.get(spec.name, "jule-32")
    for key, field in JULE_FIELDS.items():
        flag = f"--set {key}" if key in sets else f"--{key.replace('_', '-')}"
        cfg[key] = check_value(flag, cfg[key], field, sep="=" if key in sets else " ")
    cfg["split"] = cfg["split"] or ("test" if "test" in spec.splits else spec.splits[0])
    if cfg["split"] not in spec.splits:
        raise DcbenchError(f"--set split={cfg['split']}: '{spec.name}' has splits "
                           f"{', '.join(spec.splits)}")
    cfg.update({"root": opts.get("root"), "data_root": opts.get("data_root"),
                "seed": int(opts["seed"]) if opts.get("seed") is not None else DEFAULT_SEED,
                "max_images": opts.get("max_images"), "out": str(opts["out"]),
                "workers": opts.get("workers"), "save_every": 0, "sobel": False})
    return cfg


def triplet_loss(z: torch.Tensor, y: torch.Tensor, negatives: int, gamma: float,
                 margin: float, gen: torch.Generator) -> tuple[torch.Tensor, int]:
    """JULE's weighted triplet loss over a minibatch; (mean loss, number of triplets)."""
    same = y[:, None] == y[None, :]
    a, p = torch.triu(same, diagonal=1).nonzero(as_tuple=True)
    n_neg = min(negatives, int(torch.unique(y).numel()) - 1)
    if len(a) == 0 or n_neg < 1:
        return z.sum() * 0.0, 0
    d2 = (z[:, None, :] - z[None, :, :]).pow(2).sum(-1)
    scores = torch.rand(len(a), len(y), generator=gen).to(z.device)
    scores[same[a]] = -1.0                      # only other clusters can be negatives
    neg = scores.topk(n_neg, dim=1).indices     # n_neg distinct random negatives per pair
    losses = F.relu(gamma * d2[a, p][:, None] - d2[a[:, None], neg] + margin)
    return losses.mean(), int(losses.numel())


def organise(labels: np.ndarray, batch: int, chunk: int, rng: np.random.Generator) -> list:
    """One pass: every index once, in batches of whole chunks of <= `chunk` same-cluster
    images, chunks shuffled."""
    order = rng.permutation(len(labels))
    by_cluster = order[np.argsort(labels[order], kind="stable")]
    bounds = np.flatnonzero(np.diff(labels[by_cluster])) + 1
    chunks = [c[i:i + chunk] for c in np.split(by_cluster, bounds)
              for i in range(0, len(c), chunk)]
    out, current = [], []
    for j in rng.permutation(len(chunks)):
        if current and sum(map(len, current)) + len(chunks[j]) > batch:
            out.append(np.concatenate(current))
            current = []
        current.append(chunks[j])
    if current:
        out.append(np.concatenate(current))
    return out


def lr_at(cfg: dict[str, Any], iteration: int) -> float:
    return cfg["lr"] * (1.0 + 1e-4 * iteration) ** -0.75


@torch.no_grad()
def embed(model, images: torch.Tensor, device: torch.device) -> np.ndarray:
    model.eval()
    out = [model(images[i:i + 500].to(device)).cpu() for i in range(0, len(images), 500)]
    return torch.cat(out).numpy()


def load_images(cfg: dict[str, Any]) -> tuple[torch.Tensor, np.ndarray | None]:
    """The whole split at the net's input side (deterministic transform), as one float
    tensor; and its labels."""
    spec = get_dataset_spec(cfg["data"])
    tf = make_transform("cluster", spec.size, spec.mean, spec.std, spec.native,
                        side=JULE_NETS[cfg["arch"]].INPUT_SIZE)
    full = build_dataset(cfg["data"], cfg["split"], tf, cfg["root"], cfg["data_root"])
    check_max_images(cfg, len(full))
    data = subset(full, cfg["max_images"], cfg["seed"])
    images = torch.stack([data[i][0] for i in range(len(data))])
    labels = targets_of(data) if spec.labelled else None
    return images, (np.asarray(labels) if labels is not None else None)


def scores(truth: np.ndarray | None, labels: np.ndarray) -> dict[str, float] | None:
    return None if truth is None else all_metrics(truth, labels)


def run(opts: dict[str, Any], command: str = "") -> dict[str, Any]:
    """Run (or resume) JULE; return the final row of the log."""
    from dcbench.methods.session import print_config
    from dcbench.threads import configure_threads

    cfg = resolve(opts)
    device = dist.init()
    if dist.world_size() > 1:
        raise DcbenchError("JULE runs in one process (its sets are small); run it without "
                           "torchrun")
    cfg["world_size"] = 1
    configure_threads()
    run_dir = RunDir(cfg["out"])
    run_dir.check(cfg, bool(opts.get("resume")))
    images, truth = load_images(cfg)
    n = len(images)
    target = cfg["target"] or (int(truth.max()) + 1 if truth is not None else None)
    if target is None:
        raise DcbenchError(f"'{cfg['data']}' has no labels: set the number of clusters with "
                           f"--set target=K")
    if target >= n:
        raise DcbenchError(f"target {target} clusters needs more than the {n} images")
    if cfg["k_s"] >= n:
        raise DcbenchError(f"k_s {cfg['k_s']}: each image has only {n - 1} neighbours among "
                           f"the {n} images; expected k_s in 1..{n - 1} (JULE uses 20)")
    ckpt = (read_resumable(run_dir.checkpoint, ("iteration", "history", "labels"))
            if opts.get("resume") and run_dir.checkpoint.exists() else None)
    run_dir.create(cfg)                     # only once the inputs are checked
    print_config(cfg)
    model = prepare(build_model(cfg["arch"], sobel=False, seed=cfg["seed"]), device)
    opt = torch.optim.SGD(model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"],
                          weight_decay=cfg["wd"])
    period, iteration, history, labels = 0, 0, [], None
    if ckpt is not None:
        load_into(model, ckpt["state_dict"], str(run_dir.checkpoint))
        opt.load_state_dict(ckpt["optimizer"])
        period, iteration = int(ckpt["epoch"]) + 1, int(ckpt["iteration"])
        history, labels = ckpt["history"], np.asarray(ckpt["labels"], np.int64)
        if history and history[-1].get("final"):
            say(f"{run_dir.path} is complete ({period} periods)")
            return history[-1]
        say(f"resuming {run_dir.path} at period {period}")
    while True:
        t0 = time.time()
        rng = np.random.default_rng(cfg["seed"] * 100_003 + period)
        gen = torch.Generator().manual_seed(cfg["seed"] * 100_003 + period)
        if labels is None:
            graph = knn_graph(images.flatten(1).numpy(), cfg["k_s"])
            labels = nn_components(graph)
        else:
            graph = knn_graph(embed(model, images, device), cfg["k_s"])
            merges = merges_per_period(int(labels.max()) + 1, cfg["eta"], target)
            labels = merge(graph, labels, merges, cfg["k_c"], desc=f"period {period} merges",
                           min_size=cfg["min_size"]).labels
        t_cluster = time.time() - t0
        loss, triplets, iteration = train_period(model, opt, images, labels, cfg, rng, gen,
                                                 iteration, device, period)
        n_clusters = int(labels.max()) + 1
        row = {"epoch": period, "method": "jule", "n_clusters": n_clusters, "loss": loss,
               "triplets": triplets, "iteration": iteration,
               "labels_vs_truth": scores(truth, labels),
               "seconds": {"cluster": t_cluster, "train": time.time() - t0 - t_cluster}}
        if n_clusters <= target:
            t1 = time.time()
            rc = agglomerate(embed(model, images, device), target, cfg["k_s"], cfg["k_c"],
                             cfg["eta"], min_size=cfg["min_size"])
            row.update(final=True, jule_sf=scores(truth, labels), jule_rc=scores(truth, rc),
                       n_images=n)
            row["seconds"]["rc"] = time.time() - t1
        row["seconds"]["epoch"] = time.time() - t0
        history.append(row)
        save_checkpoint(run_dir.checkpoint, model, epoch=period, method="jule",
                        optimizer=opt.state_dict(), seed=cfg["seed"], config=cfg,
                        extra={"history": history, "labels": labels.tolist(),
                               "iteration": iteration, "command": command})
        run_dir.write_log(history)
        say(summary(row))
        if row.get("final"):
            return row
        period += 1


def summary(row: dict[str, Any]) -> str:
    m = row["labels_vs_truth"] or {}
    text = (f"period {row['epoch']}: {row['n_clusters']} clusters  loss {row['loss']:.4f}  "
            f"NMI {m.get('nmi_geometric', float('nan')):.3f}  "
            f"({row['seconds']['cluster']:.0f}s clustering, {row['seconds']['train']:.0f}s CNN)")
    if row.get("final") and row["jule_sf"]:
        text += (f"\nJULE-SF NMI {row['jule_sf']['nmi_geometric']:.3f}  JULE-RC NMI "
                 f"{row['jule_rc']['nmi_geometric']:.3f} (geometric normalisation)")
    return text


def train_period(model, opt, images: torch.Tensor, labels: np.ndarray, cfg: dict[str, Any],
                 rng: np.random.Generator, gen: torch.Generator, iteration: int,
                 device: torch.device, period: int) -> tuple[float, int, int]:
    """`epochs` passes of the triplet loss on the current labels."""
    y_all = torch.from_numpy(labels)
    batches = [organise(labels, cfg["batch_size"], cfg["chunk"], rng)
               for _ in range(cfg["epochs"])]
    progress = bar(f"period {period} CNN", total=sum(map(len, batches)), unit="batch")
    loss_sum, count, triplets = 0.0, 0, 0
    model.train()
    for epoch_batches in batches:
        for idx in epoch_batches:
            for group in opt.param_groups:
                group["lr"] = lr_at(cfg, iteration)
            z = model(images[idx].to(device))
            loss, n_t = triplet_loss(z, y_all[idx].to(device), cfg["negatives"], cfg["gamma"],
                                     cfg["margin"], gen)
            iteration += 1
            progress.update(1)
            if n_t == 0:
                continue
            if not torch.isfinite(loss):
                raise DcbenchError(f"the JULE loss became {float(loss)} in period {period}; "
                                   f"stopped, the last period's checkpoint is kept; lower --lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * n_t
            count += n_t
            triplets += n_t
    progress.close()
    return loss_sum / max(1, count), triplets, iteration


