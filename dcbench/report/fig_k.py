"""Paper Fig. 2 (c): downstream quality against the number of k-means clusters k.

Read from the records of DeepCluster checkpoints (method deepcluster, k recorded): the VOC
classification mAP (tasks starting 'voc-cls', one line per VOC set and setting) when those
records cover at least two values of k, else the Fashion-MNIST linear probe (top-1 of each
checkpoint's best conv layer). Cells follow the tables' rules (dcbench.report.measured:
latest config, mean over seeds); checkpoints sharing a k are averaged, with their std.

The paper (ImageNet, 1000 classes) finds the best k well above the number of classes,
k = 10,000, i.e. about 10x: some over-segmentation helps. The figure marks 10x the number of
classes of the pretraining set and says whether our best k is the measured k nearest to it.

Pixel size: 100 dpi x FIGSIZE = 600 x 400 px.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from dcbench.report.measured import select, summarize
from dcbench.report.plot import Plot

NAME = "fig2c_k"
TITLE = "Fig. 2 (c): downstream quality against the number of clusters k"
FIGSIZE = (6.0, 4.0)
CONV_LAYERS = ("conv1", "conv2", "conv3", "conv4", "conv5")
# classes of the pretraining sets, for the paper's 10x rule (unlisted sets: rule not drawn)
PRETRAIN_CLASSES = {"fashion-mnist": 10, "mnist": 10, "usps": 10, "digits": 10, "coil20": 20,
                    "coil100": 100, "imagenet": 1000, "places205": 205}
PAPER = ("Paper: on ImageNet (1,000 classes) the best k is 10,000, about 10x the number of "
         "classes; some over-segmentation of the data helps.")
# k = 100 is the default demo's own run (same recipe and seed); `dcbench demo --full` runs
# the sweep with its longer recipe
SWEEP = ("for k in 10 30 300 1000; do dcbench pretrain --data fashion-mnist --k $k "
         "--epochs 3 --reassign 2 --out results/runs/dc-k$k --resume && dcbench eval --task "
         "voc-cls --setting fc6-8 --ckpt results/runs/dc-k$k/checkpoint.pth.tar && dcbench "
         "eval --task linear-fmnist --ckpt results/runs/dc-k$k/checkpoint.pth.tar; done")


def deepcluster_records(frame: pd.DataFrame, best: bool = False) -> pd.DataFrame:
    """Non-quick records of DeepCluster checkpoints whose k is recorded."""
    records = select(frame, best)
    if records.empty:
        return records
    k = pd.to_numeric(records["ckpt_k"], errors="coerce")
    keep = (records["ckpt_method"] == "deepcluster") & k.notna() & records["shown"].notna()
    return records[keep].assign(k=k[keep].astype(int))


def checkpoint_scores(records: pd.DataFrame, metric: str, best_layer: bool) -> pd.DataFrame:
    """One score per checkpoint (k, score): its cell, or its best layer's cell."""
    rows = []
    for key, mine in records.groupby("ckpt_key"):
        cells = []
        for setting, cell in mine.groupby("setting"):
            got = summarize(cell, metric, f"{key} {setting}")
            if got is not None:
                cells.append(got[0])
        if cells:
            rows.append({"k": int(mine["k"].iloc[0]),
                         "score": max(cells) if best_layer else cells[0]})
    return pd.DataFrame(rows, columns=["k", "score"])


def per_k(scores: pd.DataFrame) -> pd.DataFrame:
    """k, mean, std (NaN for one checkpoint), n, sorted by k."""
    grouped = scores.groupby("k")["score"]
    out = pd.DataFrame({"mean": grouped.mean(), "std": grouped.std(ddof=1), "n": grouped.size()})
    return out.reset_index().sort_values("k")


def k_series(frame: pd.DataFrame, best: bool = False) -> tuple[str, dict[str, pd.DataFrame]]:
    """(y-axis label, {series label: per_k table}): VOC classification when it covers two
    k values, else the linear probe; ({}) when neither does."""
    records = deepcluster_records(frame, best)
    if records.empty:
        return "", {}
    voc = records[records["task"].astype(str).str.startswith("voc-cls")
                  & (records["metric"] == "map")]
    series = {}
    for (task, dataset, setting), group in voc.groupby(["task", "dataset", "setting"]):
        series[f"{task} {setting} on {dataset}"] = per_k(checkpoint_scores(group, "map", False))
    if any(len(t) >= 2 for t in series.values()):
        return "VOC classification mAP (%)", series
    probe = records[(records["task"] == "linear-fmnist") & (records["metric"] == "top1")
                    & records["setting"].isin(CONV_LAYERS)]
    if probe.empty:
        return "", {}
    table = per_k(checkpoint_scores(probe, "top1", True))
    return "linear probe top-1 (%), best conv layer", {"linear-fmnist": table}


def pretrain_classes(frame: pd.DataFrame, best: bool = False) -> tuple[str | None, int | None]:
    """The most common recorded pretraining set of the DeepCluster checkpoints, its classes."""
    data = deepcluster_records(frame, best)
    data = data["ckpt_data"].dropna().astype(str) if not data.empty else pd.Series([], dtype=str)
    if data.empty:
        return None, None
    name = data.value_counts().index[0]
    return name, PRETRAIN_CLASSES.get(name)


def agreement(table: pd.DataFrame, rule_k: int) -> str:
    """Whether the best measured k is the measured k nearest to rule_k (on a log scale)."""
    ks = table["k"].to_numpy()
    means = table["mean"].to_numpy()
    best_k = int(ks[int(np.argmax(means))])
    text = f"best k = {best_k} ({means.max():.1f})"
    if not ks.min() <= rule_k <= ks.max():
        return (f"{text}; the measured k ({ks.min()}..{ks.max()}) do not bracket {rule_k}: "
                f"cannot tell")
    nearest = int(ks[int(np.argmin(np.abs(np.log(ks) - math.log(rule_k))))])
    if best_k == nearest:
        return f"{text}: agrees with the paper (best at the k nearest {rule_k})"
    gap = float(means.max() - means[ks == nearest][0])
    spread = table["std"].dropna()
    noise = (f"; k={nearest} is within one std ({spread.max():.1f}) of the best"
             if not spread.empty and gap <= float(spread.max()) else "")
    return f"{text}: does not agree (the k nearest {rule_k} is {nearest}, {gap:.1f} lower){noise}"


def fig_k(frame: pd.DataFrame, best: bool = False) -> Plot:
    """Downstream score against k (log axis), the paper's 10x-classes k marked."""
    ylabel, series = k_series(frame, best)
    drawable = {label: t for label, t in series.items() if len(t) >= 2}
    notes = [PAPER]
    if not drawable:
        seen = sorted({int(k) for t in series.values() for k in t["k"]})
        have = (f"only k = {', '.join(map(str, seen))} recorded" if seen
                else "no voc-cls or linear-fmnist records of DeepCluster checkpoints with "
                "a recorded k")
        return Plot(NAME, TITLE, None, f"{have}; it needs at least 2 values of k",
                    notes + [f"To fill it: `{SWEEP}`"])
    data, classes = pretrain_classes(frame, best)
    rule_k = 10 * classes if classes else None
    fig = Figure(figsize=FIGSIZE, layout="constrained")
    ax = fig.subplots()
    ks = sorted({int(k) for t in drawable.values() for k in t["k"]})
    for label, table in drawable.items():
        std = table["std"].fillna(0.0).to_numpy()
        ax.errorbar(table["k"], table["mean"], yerr=std if std.any() else None, marker="o",
                    capsize=3, label=label)
        if rule_k:
            notes.append(f"Ours, {label}: {agreement(table, rule_k)}.")
    if rule_k:
        ax.axvline(rule_k, color="gray", linestyle="--",
                   label=f"10 x {classes} classes ({data}): k = {rule_k}")
    else:
        notes.append("The pretraining set of these checkpoints is not recorded or has no known "
                     "class count: the 10x-classes rule is not checked.")
    ax.set_xscale("log")
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.minorticks_off()
    ax.set_xlabel("k (k-means clusters during pretraining)")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    counts = ", ".join(f"k={int(r.k)}: {int(r.n)}" for r in
                       next(iter(drawable.values())).itertuples())
    notes.insert(0, "What to see: how much the number of clusters matters, and whether the "
                    "best k is about 10x the number of classes as in the paper.")
    notes.append(f"Checkpoints per k ({next(iter(drawable))}): {counts}; error bars: std over "
                 "checkpoints of the same k.")
    return Plot(NAME, TITLE, fig, notes=notes)
