"""The paper's figures from run folders and records (matplotlib, no display needed).

Figures are built on matplotlib.figure.Figure directly rather than pyplot, so the report never
touches a GUI backend or pyplot's global state. A figure with nothing to draw is not written:
its Plot carries the reason instead, and report.md says why it is missing.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from dcbench.report import published as pub
from dcbench.report.fig_k import fig_k
from dcbench.report.measured import measured_rows, select
from dcbench.report.plot import Plot
from dcbench.report.runs import Run
from dcbench.report.tables import LINEAR_TASKS, linear_columns


def fig2_nmi(runs: list[Run]) -> Plot:
    """Paper Fig. 2 (a, b): NMI of the clusters against the labels, and against the previous
    epoch's clusters (how much the assignment still moves), over the epochs of each run."""
    title = "Fig. 2: clustering quality and stability over training"
    drawn = [r for r in runs if r.series("nmi_labels")[0] or r.series("nmi_prev")[0]]
    if not drawn:
        return Plot("fig2_nmi", title, None, "no run folder with NMI values in its log.jsonl "
                    "(supervised runs have none)")
    fig = Figure(figsize=(10, 4), layout="constrained")
    panels = fig.subplots(1, 2)
    for ax, key, ylabel in ((panels[0], "nmi_labels", "NMI t / labels"),
                            (panels[1], "nmi_prev", "NMI t-1 / t")):
        for run in drawn:
            epochs, values = run.series(key)
            if epochs:
                ax.plot(epochs, values, marker="o" if len(epochs) < 20 else None, label=run.name)
        if not ax.lines:
            ax.text(0.5, 0.5, "not logged", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
    panels[0].set_title("(a) clustering quality")
    panels[1].set_title("(b) cluster reassignment")
    if panels[0].lines:
        panels[0].legend(fontsize="small")
    notes = ["NMI with geometric normalisation, as logged by pretraining; the labels are never "
             "used for training."]
    return Plot("fig2_nmi", title, fig, notes=notes)


def sizes_label(run: Run, epoch: int, nonempty: int) -> str:
    """Legend entry of one Fig. 3 curve. PIC finds its own number of clusters (--k does not
    apply); k-means has k clusters, and the empty ones cannot be drawn on a log axis."""
    if run.clustering == "pic":
        return f"{run.name}: pic, {nonempty} clusters found, epoch {epoch}"
    k = max(run.k or nonempty, nonempty)
    return (f"{run.name}: {run.clustering or 'clustering?'}, k={k}, epoch {epoch}"
            f" ({k - nonempty} empty)")


def fig3_cluster_sizes(runs: list[Run]) -> Plot:
    """Paper Fig. 3: cluster sizes at the last recorded epoch, sorted, on a log axis; k-means
    gives fairly even clusters, PIC a few huge ones and many tiny ones."""
    title = "Fig. 3: sorted cluster sizes at the last epoch"
    curves, notes = [], []
    for run in runs:
        last = run.last_assignments()
        if last is None:
            continue
        epoch, assignment = last
        used = assignment[assignment >= 0]
        if used.size == 0:
            notes.append(f"{run.name}: epoch {epoch} assignment skips every image")
            continue
        sizes = np.sort(np.bincount(used))[::-1]
        sizes = sizes[sizes > 0]
        curves.append((sizes_label(run, epoch, sizes.size), sizes))
    if not curves:
        return Plot("fig3_cluster_sizes", title, None,
                    "no run folder with assignments/epoch_*.npy", notes)
    fig = Figure(figsize=(6, 4), layout="constrained")
    ax = fig.subplots()
    for label, sizes in curves:
        ax.plot(np.arange(1, sizes.size + 1), sizes, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("clusters, sorted by size")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("cluster size (images)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize="small")
    notes.append("Empty clusters cannot be drawn on a log axis; their count is in the legend.")
    return Plot("fig3_cluster_sizes", title, fig, notes=notes)


def probe_layers(frame: pd.DataFrame, best: bool = False) -> Plot:
    """Top-1 of the linear probe by layer, one line per checkpoint, one panel per probe set;
    the paper's DeepCluster and ImageNet-labels rows dashed where it has them."""
    title = "Linear probe top-1 by layer"
    columns = linear_columns("top1")
    rows = measured_rows(select(frame, best), columns)
    probes = [p for p in LINEAR_TASKS
              if any(pub.probe_column(p, layer) in r.means for r in rows for layer in pub.LAYERS)]
    if not probes:
        return Plot("probe_layers", title, None, "no linear-probe records")
    fig = Figure(figsize=(5 * len(probes), 4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(probes)))
    x = np.arange(len(pub.LAYERS))
    for ax, probe in zip(axes, probes):
        for row in rows:
            y = [row.means.get(pub.probe_column(probe, layer), np.nan) for layer in pub.LAYERS]
            if not np.all(np.isnan(y)):
                ax.plot(x, y, marker="o", label=row.label)
        for paper in pub.TABLE1:
            if paper.method not in ("DeepCluster", "ImageNet labels"):
                continue
            y = [float(paper.values.get(pub.probe_column(probe, layer), "nan"))
                 for layer in pub.LAYERS]
            if not np.all(np.isnan(y)):
                ax.plot(x, y, linestyle="--", color="gray" if paper.method == "DeepCluster"
                        else "black", alpha=0.7, label=f"{paper.method} (published)")
        ax.set_xticks(x, list(pub.LAYERS))
        ax.set_title(probe)
        ax.set_ylabel("top-1 (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="x-small")
    value = "best-epoch" if best else "final"
    return Plot("probe_layers", title, fig, notes=[f"{value} values; mean over seeds."])


def all_figures(runs: list[Run], frame: pd.DataFrame, best: bool = False) -> list[Plot]:
    return [fig2_nmi(runs), fig_k(frame, best), fig3_cluster_sizes(runs),
            probe_layers(frame, best)]
