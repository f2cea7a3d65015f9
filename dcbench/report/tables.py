"""One function per paper table: published rows (as printed) beside measured rows.

Every function takes the records frame of `dcbench.results.load_frame` and `best` (show
best-epoch instead of final values) and returns a Table, also when no record fills it: the
published rows are then shown with a `<ckpt>` row whose cells say how to measure them.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from dcbench.report import published as pub
from dcbench.report.assemble import STD_NOTE, assemble, value_note
from dcbench.report.gap_table import table1_headroom
from dcbench.report.measured import (
    Column,
    MeasuredRow,
    checkpoint_label,
    measured_rows,
    select,
    summarize,
)
from dcbench.report.paired_table import paired_table
from dcbench.report.table import Table

LINEAR_TASKS = {"ImageNet": "linear-imagenet", "Places": "linear-places",
                "Fashion-MNIST": "linear-fmnist"}
VOC_TASKS = {"Classification": ("voc-cls", "map"), "Detection": ("voc-det", "map"),
             "Segmentation": ("voc-seg", "miou")}
VOC_SETTINGS = {"FC6-8": "fc6-8", "ALL": "all"}
CLUSTERING_METRICS = {"nmi_geometric": "NMI (geometric)", "nmi_arithmetic": "NMI (arithmetic)",
                      "acc": "ACC (%)", "ari": "ARI"}


def linear_columns(metric: str = "top1") -> list[Column]:
    return [Column(pub.probe_column(probe, layer), task, metric, setting=layer)
            for probe, task in LINEAR_TASKS.items() for layer in pub.LAYERS]


def table1(frame: pd.DataFrame, best: bool = False, metric: str = "top1") -> Table:
    """Linear probes on frozen conv1..conv5 (paper Table 1), one column group per probe set."""
    records = select(frame, best)
    columns = linear_columns(metric)
    suffix = "" if metric == "top1" else f"_{metric}"
    notes = ["Fashion-MNIST is dcbench's embedded probe set; the paper has no numbers for it."]
    if metric != "top1":
        notes.append(f"The paper reports top-1 only; this is the measured {metric}.")
    return assemble(f"table1_linear{suffix}",
                    f"Table 1: linear classification on frozen layers ({metric}, %)",
                    columns, pub.TABLE1 if metric == "top1" else [],
                    measured_rows(records, columns), best, notes)


VOC_SET = "VOC set"
PUBLISHED_VOC_SET = "VOC07 (seg: VOC12)"


def voc_columns(dataset: str | None = None) -> list[Column]:
    options = (f"dataset={dataset}",) if dataset else ()
    return [Column(pub.voc_column(group, label), task, metric, setting=setting,
                   dataset=dataset, fill_options=options)
            for group, (task, metric) in VOC_TASKS.items()
            for label, setting in VOC_SETTINGS.items()]


def voc_rows(records: pd.DataFrame, lead: dict[str, str] | None = None,
             columns: Callable[[str | None], list[Column]] = voc_columns) -> list[MeasuredRow]:
    """Measured rows per checkpoint AND VOC set (the embedded fmnist-voc, its quick twin and
    real VOC years never share a cell), the set named in the lead column."""
    tasks = [task for task, _ in VOC_TASKS.values()]
    sets = sorted(records.loc[records["task"].isin(tasks), "dataset"].dropna().astype(str)
                  .unique())
    rows = []
    for name in sets:
        for row in measured_rows(records, columns(name), lead=lead):
            row.lead = {VOC_SET: name, **row.lead}
            rows.append(row)
    return rows


def _published_voc(rows: list[pub.PublishedRow]) -> list[pub.PublishedRow]:
    return [pub.PublishedRow(r.method, r.source, r.values, {VOC_SET: PUBLISHED_VOC_SET,
                                                            **r.lead}) for r in rows]


def table2(frame: pd.DataFrame, best: bool = False) -> Table:
    """PASCAL VOC classification / detection / segmentation, FC6-8 and ALL (paper Table 2)."""
    notes = ["Classification: mean over classes of sklearn's non-interpolated AP (%); "
             "detection: VOC mAP@0.5 (%); segmentation: mIoU (%).",
             "VOC set: the data a row was measured on; fmnist-voc is dcbench's embedded "
             "VOC-layout set (Fashion-MNIST scenes, `dcbench data build fmnist-voc`), not "
             "comparable in value with the published VOC rows, only in ranking.",
             *pub.TABLE2_NOTES]
    return assemble("table2_voc", "Table 2: PASCAL VOC transfer", voc_columns(),
                    _published_voc(pub.TABLE2), voc_rows(select(frame, best)), best, notes,
                    lead=(VOC_SET,))


def table3(frame: pd.DataFrame, best: bool = False) -> Table:
    """Table 2's tasks by pretraining set (paper Table 3: ImageNet vs YFCC100M)."""
    records = select(frame, best)
    records = records[records["ckpt_data"].notna()]
    columns = voc_columns()
    rows = voc_rows(records, lead={"training set": "ckpt_data"})
    for row in rows:
        row.lead["training set"] = pub.dataset_label(row.lead["training set"])
    notes = ["Measured rows: checkpoints whose pretraining set is recorded (checkpoint data); "
             "the others are in Table 2 only.",
             "Published DeepCluster/ImageNet FC6-8 classification is 72.0 here as printed "
             "(BatchNorm trained); see the erratum under Table 2."]
    return assemble("table3_training_set", "Table 3: PASCAL VOC transfer by pretraining set",
                    columns, _published_voc(pub.TABLE3), rows, best, notes,
                    lead=(VOC_SET, "training set"))


def table4(frame: pd.DataFrame, best: bool = False) -> Table:
    """VOC2007 detection (ALL) by architecture (paper Table 4)."""
    records = select(frame, best)
    archs = dict.fromkeys(["alexnet", "vgg16"])
    archs.update(dict.fromkeys(sorted(records.loc[records["task"] == "voc-det", "ckpt_arch"]
                                      .dropna().astype(str).unique())))

    def columns(dataset: str | None = None) -> list[Column]:
        options = (f"dataset={dataset}",) if dataset else ()
        return [Column(pub.ARCH_LABELS.get(a, a), "voc-det", "map", setting="all", arch=a,
                       dataset=dataset, fill_options=options) for a in archs]

    notes = ["Detection mAP (%), all layers fine-tuned (setting all).",
             "A measured row is one checkpoint: it fills its own arch's column only; in the "
             "`<ckpt>` row use a checkpoint of the column's arch.",
             "VOC set as in Table 2: fmnist-voc-quick rows are --quick runs (20 iterations on "
             "64 images), there to show the arch's path runs, not to compare values."]
    published = [pub.PublishedRow(r.method, r.source, r.values, {VOC_SET: "VOC07", **r.lead})
                 for r in pub.TABLE4]
    return assemble("table4_arch", "Table 4: detection by architecture", columns(), published,
                    voc_rows(records, columns=columns), best, notes, lead=(VOC_SET,))


RETRIEVAL_SETS = {"fmnist-oxford / fmnist-paris": ("fmnist-oxford", "fmnist-paris"),
                  "quick twins": ("fmnist-oxford-quick", "fmnist-paris-quick"),
                  "Oxford5k / Paris6k": ("oxford5k", "paris6k")}


def retrieval_columns(sets: tuple[str, str] | None = None) -> list[Column]:
    """Original mAP per set (the paper's columns), then revisited Medium / Hard (measured only)."""
    ox, pa = sets or (None, None)
    cols = [Column("Oxford5k", "retrieval-oxford", "map", setting="rmac", dataset=ox),
            Column("Paris6k", "retrieval-paris", "map", setting="rmac", dataset=pa)]
    for name, task, ds in (("ROxford", "retrieval-oxford", ox), ("RParis", "retrieval-paris", pa)):
        cols += [Column(f"{name} {level.title()}", task, f"map_{level}", setting="rmac",
                        dataset=ds) for level in ("medium", "hard")]
    return cols


def table5(frame: pd.DataFrame, best: bool = False) -> Table:
    """Instance retrieval mAP on Oxford5k / Paris6k with R-MAC (paper Table 5), measured rows
    per pair of sets (the embedded ones and the real ones never share a cell)."""
    records = select(frame, best)
    rows = []
    for label, sets in RETRIEVAL_SETS.items():
        if records["dataset"].isin(sets).any():
            for row in measured_rows(records, retrieval_columns(sets)):
                row.lead = {"sets": label, **row.lead}
                rows.append(row)
    published = [pub.PublishedRow(r.method, r.source, r.values, {"sets": "Oxford5k / Paris6k",
                                                                 **r.lead}) for r in pub.TABLE5]
    notes = ["mAP (%). Oxford5k / Paris6k columns: the original protocol (good+ok positive, "
             "junk ignored, queries in the database, as DeepCluster ran it); R* columns: the "
             "revisited protocol's Medium and Hard (queries cropped first, not in the "
             "database), measured only. PCA-whitening learned on the other dataset.",
             "fmnist-oxford / fmnist-paris are dcbench's embedded instance-retrieval sets "
             "(`dcbench data build fmnist-oxford`): comparable with the published rows in "
             "ranking only."]
    return assemble("table5_retrieval", "Table 5: instance retrieval", retrieval_columns(),
                    published, rows, best, notes, lead=("sets",))


def clustering(frame: pd.DataFrame, best: bool = False, metric: str = "nmi_geometric"
               ) -> Table:
    """Clustering quality against labels, JULE's shape: rows = methods, columns = datasets."""
    records = select(frame, best)
    records = records.assign(dataset=records["dataset"].map(pub.dataset_label))
    measured = records.loc[(records["task"] == "clustering") & (records["metric"] == metric),
                           "dataset"].astype(str).unique()
    raw = {pub.dataset_label(name): name for name in pub.DATASET_LABELS}
    labels = dict.fromkeys([*pub.CLUSTER_SETS, "Fashion-MNIST", *sorted(measured)])
    columns = [Column(label, "clustering", metric, dataset=label,
                      fillable=label == "Fashion-MNIST" or label in measured,
                      fill_options=(f"dataset={raw.get(label, label)}",))
               for label in labels]
    notes = [f"{CLUSTERING_METRICS.get(metric, metric)} of the clusters against the labels; "
             "measured rows: one per checkpoint and layer (the clustered features).",
             "Empty cells of datasets dcbench has no records for stay blank; the fill command "
             "selects the dataset with --set dataset=NAME.", *pub.CLUSTERING_NOTES]
    return assemble(f"clustering_{metric}",
                    f"Clustering: {CLUSTERING_METRICS.get(metric, metric)} by dataset",
                    columns, pub.CLUSTERING.get(metric, []),
                    measured_rows(records, columns, per_setting=True), best, notes,
                    lead=("layer",))


def modern_trunks(frame: pd.DataFrame, best: bool = False) -> Table:
    """ResNet-50 and ViT checkpoints on ImageNet linear and kNN, beside the numbers their
    papers publish (each on the tap the paper reports)."""
    records = select(frame, best)
    columns = [Column(pub.MODERN_LINEAR[arch], "linear-imagenet", "top1", setting=tap, arch=arch)
               for arch, tap in pub.MODERN_TAPS.items()]
    columns += [Column(label, "knn", "top1", setting="res5avg" if arch == "resnet50" else "cls",
                       dataset="imagenet", arch=arch, fill_options=("dataset=imagenet",))
                for arch, label in pub.MODERN_KNN.items()]
    columns += [Column(pub.MODERN_DET, "voc-det", "map", fillable=False, arch="resnet50")]
    notes = ["Published: ImageNet linear top-1 with each paper's own probe recipe (MoCo: lr "
             "30, 100 epochs; DINO: its eval_linear.py); measured: dcbench's (the paper's "
             "eval_linear.py recipe), so measured and published rows compare in ranking only.",
             "The R50-C4 detection column is published only: dcbench's voc-det takes "
             "DeepCluster's conv-fc trunks (a ResNet is refused before any work)."]
    return assemble("modern_trunks", "ResNet-50 and ViT checkpoints (any checkpoint)",
                    columns, pub.MODERN, measured_rows(records, columns), best, notes)


def other_records(frame: pd.DataFrame, best: bool, covered: set[tuple[str, str]]
                  ) -> Table | None:
    """Records no paper table shows (e.g. knn, top-5 of other tasks), so none is hidden."""
    records = select(frame, best)
    pairs = list(zip(records["task"], records["metric"]))
    records = records[[p not in covered for p in pairs]]
    if records.empty:
        return None
    data, notes, commands = [], [], []
    keys = ["ckpt_key", "task", "setting", "dataset", "metric"]
    for _, group in records.sort_values("started").groupby(keys, dropna=False, sort=True):
        last = group.iloc[-1]
        label = checkpoint_label(last)
        where = f"{last['task']} {last['setting']} {last['metric']} of {label}"
        cell = summarize(group, str(last["metric"]), where)
        if cell is None:
            continue
        notes += cell[3]
        commands += [c for c in cell[4] if c not in commands]
        data.append({"method": label, "source": "measured", "task": last["task"],
                     "setting": last["setting"], "dataset": last["dataset"],
                     "metric": last["metric"], "value": cell[2]})
    frame = pd.DataFrame(data, columns=["method", "source", "task", "setting", "dataset",
                                        "metric", "value"], dtype=object).fillna("")
    return Table(name="other_records", title="Other records (no paper table)", frame=frame,
                 value_columns=["value"], notes=[value_note(best), STD_NOTE, *notes],
                 commands=commands, has_measured=True)


def paper_tables(frame: pd.DataFrame, best: bool = False) -> list[Table]:
    """Every table of the report, in the order report.md shows them."""
    paired = paired_table(frame, best)
    always = [table1(frame, best), table1_headroom(frame, best),
              *([paired] if paired is not None else []), table2(frame, best),
              table3(frame, best),
              table4(frame, best), table5(frame, best), clustering(frame, best, "nmi_geometric"),
              clustering(frame, best, "acc"), clustering(frame, best, "ari")]
    if_measured = [table1(frame, best, metric="top5"), clustering(frame, best, "nmi_arithmetic")]
    tables = always + [t for t in if_measured if t.has_measured]
    covered = set().union(*(t.covers for t in always + if_measured))
    other = other_records(frame, best, covered)
    # the modern table shows only ResNet / ViT rows: what it covers stays in "other" as well
    return tables + [modern_trunks(frame, best)] + ([other] if other is not None else [])
