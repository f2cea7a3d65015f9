"""`dcbench report` on hand-written records and run folders: exact cells, published rows,
fill commands, --best, quick records left out, and figures that are real PNGs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from dcbench.errors import DcbenchError
from dcbench.report import build_report
from dcbench.report.tables import paper_tables
from dcbench.results import load_frame

DC = {"path": "runs/dc/checkpoint.pth.tar", "sha256": "1a2b3c4d" + "0" * 56, "arch": "alexnet",
      "sobel": True, "format": "dcbench", "epoch": 100, "method": "deepcluster", "k": 100,
      "data": "fashion-mnist"}
VGG = {"path": "runs/vgg/checkpoint.pth.tar", "sha256": "feedbeef" + "1" * 56, "arch": "vgg16",
       "sobel": True, "format": "deepcluster", "epoch": 500, "method": "deepcluster",
       "k": 10000, "data": "imagenet"}
RANDOM = {"path": "random:alexnet:0", "sha256": "abcdef01" + "2" * 56, "arch": "alexnet",
          "sobel": True, "format": "random", "epoch": 0, "method": "random", "k": None,
          "data": None}
DC_ROW = "deepcluster · runs/dc/checkpoint.pth.tar · 1a2b3c4d"
VGG_ROW = "deepcluster · runs/vgg/checkpoint.pth.tar · feedbeef"
RANDOM_ROW = "random · random:alexnet:0 · abcdef01"


def record(task: str, setting: str, metric: str, value: float, ckpt: dict, *, best=None,
           seed: int = 0, config_hash: str = "c0", started: str = "2024-01-01T00:00:00Z",
           quick: bool = False, dataset: str = "imagenet") -> dict:
    return {"task": task, "setting": setting, "dataset": dataset, "split": "val",
            "metric": metric, "value": value, "best": best,
            "best_epoch": None if best is None else 20, "epochs": None if best is None else 30,
            "checkpoint": ckpt, "seed": seed, "config": {"epochs": 30},
            "config_hash": config_hash, "code_version": "git:abc", "dcbench_version": "0.1.0",
            "started": started, "seconds": 1.0, "device": "cpu", "world_size": 1,
            "quick": quick, "command": f"dcbench eval --task {task} --ckpt {ckpt['path']} "
                                       f"--seed {seed}", "extra": {}}


RECORDS = [
    # two seeds of one cell, each with a best epoch above its final value
    record("linear-imagenet", "conv3", "top1", 40.85, DC, best=41.0, seed=0),
    record("linear-imagenet", "conv3", "top1", 41.55, DC, best=42.0, seed=1),
    record("linear-imagenet", "conv5", "top1", 30.0, DC, best=35.0),
    # a quick record: its cell must stay empty
    record("linear-imagenet", "conv1", "top1", 99.0, DC, quick=True),
    # two configs of one cell: the most recent one is shown
    record("linear-imagenet", "conv4", "top1", 10.0, DC, config_hash="old",
           started="2024-01-01T00:00:00Z"),
    record("linear-imagenet", "conv4", "top1", 38.3, DC, config_hash="new",
           started="2024-02-01T00:00:00Z"),
    # a task without epochs (best is null) and a task no paper table shows
    record("voc-cls", "fc6-8", "map", 30.0, RANDOM, dataset="voc2007"),
    record("knn", "conv5", "top1", 55.5, DC, dataset="fashion-mnist"),
    record("voc-det", "all", "map", 60.12, VGG, dataset="voc2007"),
    record("clustering", "conv5", "nmi_geometric", 0.51234, DC, dataset="fashion-mnist"),
    record("clustering", "conv5", "acc", 55.62, DC, dataset="fashion-mnist"),
]


def write_records(root: Path, records: list[dict]) -> None:
    root.mkdir(parents=True, exist_ok=True)
    (root / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def read_csv(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def csv_cell(root: Path, name: str, method: str, column: str, source: str = "measured") -> str:
    frame = read_csv(root / "tables" / f"{name}.csv")
    hit = frame[(frame["method"] == method) & frame["source"].str.startswith(source)]
    assert len(hit) == 1, f"{method} ({source}) rows in {name}: {len(hit)}"
    return hit.iloc[0][column]


@pytest.fixture
def results(tmp_path: Path) -> Path:
    write_records(tmp_path, RECORDS)
    return tmp_path


def test_cells_final_values(results: Path) -> None:
    report = build_report(results, runs=[])
    assert report == results / "report.md"
    assert csv_cell(results, "table1_linear", DC_ROW, "ImageNet conv3") == "41.2 ± 0.5"
    assert csv_cell(results, "table1_linear", DC_ROW, "ImageNet conv5") == "30.0"
    assert csv_cell(results, "table1_linear", DC_ROW, "ImageNet conv4") == "38.3"
    assert csv_cell(results, "table2_voc", RANDOM_ROW, "Classification FC6-8") == "30.0"
    assert csv_cell(results, "table4_arch", VGG_ROW, "VGG-16") == "60.1"
    assert csv_cell(results, "table4_arch", VGG_ROW, "AlexNet") == ""     # another arch's
    assert csv_cell(results, "table3_training_set", VGG_ROW, "training set") == "ImageNet"
    assert csv_cell(results, "clustering_nmi_geometric", DC_ROW, "Fashion-MNIST") == "0.512"
    assert csv_cell(results, "clustering_acc", DC_ROW, "Fashion-MNIST") == "55.6"
    assert csv_cell(results, "clustering_acc", DC_ROW, "layer") == "conv5"
    assert csv_cell(results, "other_records", DC_ROW, "value") == "55.5"


def test_best_switches_cells(results: Path) -> None:
    build_report(results, runs=[], best=True)
    assert csv_cell(results, "table1_linear", DC_ROW, "ImageNet conv3") == "41.5 ± 0.7"
    assert csv_cell(results, "table1_linear", DC_ROW, "ImageNet conv5") == "35.0"
    # no best recorded: the final value stands
    assert csv_cell(results, "table2_voc", RANDOM_ROW, "Classification FC6-8") == "30.0"


def test_published_rows_marked(results: Path) -> None:
    build_report(results, runs=[])
    assert csv_cell(results, "table1_linear", "DeepCluster", "ImageNet conv3",
                    source="published") == "38.2"
    assert csv_cell(results, "table1_linear", "Places labels", "ImageNet conv1",
                    source="published") == ""
    assert csv_cell(results, "table2_voc", "DeepCluster", "Classification FC6-8",
                    source="published") == "70.4"
    assert csv_cell(results, "table5_retrieval", "DeepCluster", "Oxford5k",
                    source="published") == "61.0"
    assert csv_cell(results, "clustering_nmi_geometric", "JULE-RC", "FRGC",
                    source="published") == "0.574 (u)"
    notes = (results / "tables" / "table2_voc.md").read_text()
    assert "70.4 with BatchNorm frozen" in notes and "72.0" in notes


def test_quick_records_left_out_and_fill_commands(results: Path) -> None:
    report = build_report(results, runs=[]).read_text()
    fill = "dcbench eval --task linear-imagenet --ckpt runs/dc/checkpoint.pth.tar --setting conv1"
    assert csv_cell(results, "table1_linear", DC_ROW, "ImageNet conv1") == fill
    assert "99.0" not in (results / "tables" / "table1_linear.csv").read_text()
    # markdown: the empty cell shows a letter, the letter's command is listed under the table
    md = (results / "tables" / "table1_linear.md").read_text()
    header = next(ln for ln in md.splitlines() if ln.startswith("| method"))
    row = next(ln for ln in md.splitlines() if ln.startswith(f"| {DC_ROW} "))
    cell = dict(zip(header.split(" | "), row.split(" | ")))["ImageNet conv1"]
    assert cell.startswith("(") and cell.endswith(")")
    assert f"- {cell} `{fill}" in md
    assert "1 quick records" in report
    assert csv_cell(results, "table2_voc", RANDOM_ROW, "Classification ALL") == (
        "dcbench eval --task voc-cls --ckpt random:alexnet:0 --setting all "
        "--set dataset=voc2007")
    # the filling commands are listed under the table
    assert "dcbench eval --task linear-imagenet --ckpt runs/dc/checkpoint.pth.tar --seed 1" \
        in report
    assert "--seed 0`" in report and "--task linear-imagenet --ckpt runs/dc/checkpoint" \
        ".pth.tar --setting conv1 --setting conv2" in report


def test_notes_name_the_config_shown(results: Path) -> None:
    tables = {t.name: t for t in paper_tables(load_frame(results / "records.jsonl"))}
    table1 = tables["table1_linear"]
    assert table1.cell(DC_ROW, "ImageNet conv3") == "41.2 ± 0.5"
    assert any("2 configs recorded" in n and "(new," in n for n in table1.notes)
    assert any("ddof=1" in n for n in table1.notes)


def test_empty_results_still_write_every_table(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    report = build_report(tmp_path / "empty", runs=None).read_text()
    tables = tmp_path / "empty" / "tables"
    for name in ("table1_linear", "table2_voc", "table3_training_set", "table4_arch",
                 "table5_retrieval", "clustering_nmi_geometric", "clustering_acc",
                 "clustering_ari"):
        for suffix in ("md", "csv", "tex"):
            assert (tables / f"{name}.{suffix}").stat().st_size > 0
    assert csv_cell(tmp_path / "empty", "table1_linear", "DeepCluster", "Places conv5",
                    source="published") == "33.1"
    assert csv_cell(tmp_path / "empty", "table5_retrieval", "<ckpt>", "Paris6k") == (
        "dcbench eval --task retrieval-paris --ckpt <ckpt> --setting rmac")
    assert not (tmp_path / "empty" / "figures").exists() or not any(
        (tmp_path / "empty" / "figures").iterdir())
    assert report.count("Skipped:") == 4
    assert not (tables / "other_records.csv").exists()


def write_run(folder: Path, clustering: str | None, sizes: list[int] | None,
              epochs: int = 3) -> None:
    """A pretraining run folder as `dcbench pretrain --out` leaves it."""
    folder.mkdir(parents=True)
    method = "deepcluster" if clustering else "supervised"
    config = {"method": method, "data": "fashion-mnist", "arch": "alexnet-small",
              "k": len(sizes) + 1 if sizes else None, "epochs": epochs, "clustering": clustering,
              "seed": 31}
    (folder / "config.json").write_text(json.dumps(config))
    lines = []
    for epoch in range(1, epochs + 1):
        nmi = None if clustering is None else 0.2 + 0.1 * epoch
        lines.append(json.dumps({
            "epoch": epoch, "loss": 4.0 / epoch, "nmi_prev": None if epoch == 1 or nmi is None
            else nmi + 0.2, "nmi_labels": nmi, "clustering": clustering, "method": method,
            "seconds": {"epoch": 1.0}, "skipped_images": 0, "images_per_second": 100.0}))
    (folder / "log.jsonl").write_text("\n".join(lines) + "\n{\"epoch\": 4, \"lo")  # cut line
    if sizes:
        (folder / "assignments").mkdir()
        for epoch in range(1, epochs + 1):
            labels = np.repeat(np.arange(len(sizes)), sizes)
            np.save(folder / "assignments" / f"epoch_{epoch:04d}.npy",
                    np.concatenate([labels, [-1]]).astype(np.int64))


def assert_png(path: Path) -> None:
    assert path.stat().st_size > 0
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = np.asarray(Image.open(path).convert("L"))
    assert pixels.std() > 0, f"{path} is a blank image"


def test_figures_from_run_folders(results: Path) -> None:
    runs = results / "runs"
    write_run(runs / "dc-kmeans", "kmeans", [30, 25, 20, 18, 7])
    write_run(runs / "dc-pic", "pic", [90, 5, 3, 1, 1])
    write_run(runs / "supervised", None, None)
    (runs / "not-a-run").mkdir()
    report = build_report(results, runs=None).read_text()
    for name in ("fig2_nmi", "fig3_cluster_sizes", "probe_layers"):
        assert_png(results / "figures" / f"{name}.png")
        assert f"figures/{name}.png" in report
    assert "log.jsonl:4 is not an epoch record" in report
    assert report.count("Skipped:") == 1
    assert "Skipped: no voc-cls or linear-fmnist records" in report


def test_cluster_size_labels_count_empty_clusters_only_for_kmeans() -> None:
    from dcbench.report.figures import sizes_label
    from dcbench.report.runs import Run

    kmeans = Run(Path("dc"), "dc", {"clustering": "kmeans", "k": 100}, [])
    pic = Run(Path("pic"), "pic", {"clustering": "pic", "k": 100}, [])
    assert sizes_label(kmeans, 5, 97) == "dc: kmeans, k=100, epoch 5 (3 empty)"
    assert sizes_label(pic, 2, 2111) == "pic: pic, 2111 clusters found, epoch 2"


def test_explicit_runs_and_stale_figures(results: Path, tmp_path: Path) -> None:
    write_run(tmp_path / "elsewhere" / "dc", "kmeans", [4, 3, 2])
    build_report(results, runs=[str(tmp_path / "elsewhere" / "dc")])
    assert_png(results / "figures" / "fig3_cluster_sizes.png")
    # a misspelt or foreign --runs is refused before anything is written
    before = (results / "report.md").read_bytes()
    with pytest.raises(DcbenchError, match="--runs .*missing is not a folder"):
        build_report(results, runs=[str(tmp_path / "missing")])
    (tmp_path / "no_log").mkdir()
    with pytest.raises(DcbenchError, match="--runs .*no_log holds no log.jsonl"):
        build_report(results, runs=[str(tmp_path / "no_log")])
    assert (results / "report.md").read_bytes() == before
    # a figure with nothing left to draw is removed
    write_run(tmp_path / "elsewhere" / "sup", None, None)
    build_report(results, runs=[str(tmp_path / "elsewhere" / "sup")])
    assert not (results / "figures" / "fig3_cluster_sizes.png").exists()
    assert (results / "figures" / "probe_layers.png").exists()


def test_runs_found_from_recorded_checkpoints(tmp_path: Path) -> None:
    run = tmp_path / "pretrain" / "dc"
    write_run(run, "kmeans", [5, 4, 3])
    (run / "checkpoint.pth.tar").write_bytes(b"not read by the report")
    ckpt = {**DC, "path": str(run / "checkpoint.pth.tar")}
    write_records(tmp_path / "results", [record("knn", "conv5", "top1", 50.0, ckpt)])
    report = build_report(tmp_path / "results", runs=None).read_text()
    assert_png(tmp_path / "results" / "figures" / "fig2_nmi.png")
    assert f"`{run}`" in report


def random_and_published(results: Path, table: str, lead: str):
    """Build the report, then read one table: the Random rows indexed by the `lead` column,
    and the published rows."""
    build_report(str(results), [], best=False, include_quick=False)
    frame = read_csv(results / "tables" / f"{table}.csv")
    return (frame[frame["method"] == RANDOM_ROW].set_index(lead),
            frame[frame["source"].str.startswith("published")])


def test_table2_keeps_voc_sets_apart(tmp_path: Path) -> None:
    """One checkpoint measured on the embedded set and on VOC2007: two rows, each cell from
    its own set (a mixed mean would read 50.0), the embedded row's fill command naming
    its set."""
    write_records(tmp_path, [
        record("voc-cls", "fc6-8", "map", 30.0, RANDOM, dataset="voc2007"),
        record("voc-cls", "fc6-8", "map", 70.0, RANDOM, dataset="fmnist-voc"),
        record("voc-cls", "all", "map", 72.5, RANDOM, dataset="fmnist-voc")])
    rows, published = random_and_published(tmp_path, "table2_voc", "VOC set")
    assert rows.loc["voc2007", "Classification FC6-8"] == "30.0"
    assert rows.loc["fmnist-voc", "Classification FC6-8"] == "70.0"
    assert rows.loc["fmnist-voc", "Classification ALL"] == "72.5"
    assert rows.loc["voc2007", "Classification ALL"] == (
        "dcbench eval --task voc-cls --ckpt random:alexnet:0 --setting all --set dataset=voc2007")
    assert set(published["VOC set"]) == {"VOC07 (seg: VOC12)"}


def test_table5_rows_per_retrieval_set_pair_with_revisited_columns(tmp_path: Path) -> None:
    """The embedded pair and the real pair never share a cell; revisited Medium/Hard sit
    beside the original mAP; the published rows stay on the real pair."""
    write_records(tmp_path, [
        record("retrieval-oxford", "rmac", "map", 9.0, RANDOM, dataset="fmnist-oxford"),
        record("retrieval-oxford", "rmac", "map_hard", 1.5, RANDOM, dataset="fmnist-oxford"),
        record("retrieval-paris", "rmac", "map", 12.0, RANDOM, dataset="fmnist-paris"),
        record("retrieval-oxford", "rmac", "map", 40.0, RANDOM, dataset="oxford5k")])
    rows, published = random_and_published(tmp_path, "table5_retrieval", "sets")
    embedded = rows.loc["fmnist-oxford / fmnist-paris"]
    assert (embedded["Oxford5k"], embedded["Paris6k"]) == ("9.0", "12.0")
    assert embedded["ROxford Hard"] == "1.5"         # a percentage: one decimal
    assert rows.loc["Oxford5k / Paris6k", "Oxford5k"] == "40.0"
    assert set(published["sets"]) == {"Oxford5k / Paris6k"}


def test_a_bit_identical_retraining_is_one_row_keyed_on_its_weights(tmp_path: Path) -> None:
    """Two checkpoint files of the same weights (the second run took another time, which the
    file records) hash differently; their records are one checkpoint in the report, the
    latest records shown. Keyed on the file hash, the table had two rows."""
    from dcbench.checkpoint import load_trunk, save_checkpoint
    from dcbench.evaluate import run_eval
    from dcbench.models import build_model
    from dcbench.report.measured import select

    paths = []
    for seconds in (1.0, 2.0):
        path = tmp_path / f"run{int(seconds)}" / "checkpoint.pth.tar"
        path.parent.mkdir()
        save_checkpoint(path, build_model("alexnet-small", seed=3), epoch=1,
                        method="deepcluster", extra={"seconds": seconds})
        paths.append(path)
    infos = [load_trunk(str(p))[1] for p in paths]
    assert infos[0].sha256 != infos[1].sha256
    assert infos[0].weights_sha256 == infos[1].weights_sha256 is not None
    for p in paths:
        run_eval({"task": "clustering", "ckpt": str(p), "settings": ("conv1",),
                  "results": str(tmp_path / "res"), "overrides": ("max_images=60",),
                  "workers": 0})
    frame = select(load_frame(tmp_path / "res" / "records.jsonl"), best=False)
    assert len(frame) == 8 and frame["ckpt_key"].nunique() == 1
    text = Path(build_report(str(tmp_path / "res"), [], best=False)).read_text()
    rows = [line for line in text.splitlines() if "/checkpoint.pth.tar · " in line]
    assert rows and all("run2/checkpoint.pth.tar" in line for line in rows)   # no run1 row


MOCO = {"path": "moco_v2_800ep.pth.tar", "sha256": "0c0c0c0c" + "3" * 56, "arch": "resnet50",
        "sobel": False, "format": "moco", "epoch": 800, "method": "moco", "k": None,
        "data": None}
DINO_S = {"path": "dino_deitsmall16.pth", "sha256": "d1d1d1d1" + "4" * 56, "arch": "vit-s16",
          "sobel": False, "format": "timm", "epoch": None, "method": None, "k": None,
          "data": None}


def test_modern_trunks_sit_beside_their_published_numbers_on_their_own_taps(
        tmp_path: Path) -> None:
    """Each arch's cell reads the tap its paper reports; an AlexNet gets no row; a ViT is not
    offered the ResNet columns (nor the reverse); published rows are labelled."""
    write_records(tmp_path, [
        record("linear-imagenet", "res5avg", "top1", 60.25, MOCO),
        record("linear-imagenet", "res4", "top1", 99.0, MOCO),        # not the paper's tap
        record("knn", "cls", "top1", 70.04, DINO_S),
        record("linear-imagenet", "conv5", "top1", 30.0, DC)])
    build_report(tmp_path, runs=[])
    frame = read_csv(tmp_path / "tables" / "modern_trunks.csv").set_index("method")
    moco = frame.loc["moco · moco_v2_800ep.pth.tar · 0c0c0c0c"]
    assert moco["ImageNet linear, res5avg"] == "60.2" and moco["ImageNet linear, cls4"] == ""
    assert moco["ImageNet 20-NN, res5avg"] == (
        "dcbench eval --task knn --ckpt moco_v2_800ep.pth.tar --setting res5avg "
        "--set dataset=imagenet")
    dino = frame.loc["foreign · dino_deitsmall16.pth · d1d1d1d1"]     # no method recorded
    assert dino["ImageNet 20-NN, cls (ViT-S)"] == "70.0"
    assert dino["ImageNet linear, res5avg"] == dino["ImageNet 20-NN, cls (ViT-B)"] == ""
    assert not any("runs/dc" in m for m in frame.index)
    published = frame[frame["source"].str.startswith("published")]
    assert published.loc["MoCo v2, 800 epochs", "ImageNet linear, res5avg"] == "71.1"
    assert published.loc["DINO ViT-S/16", "ImageNet 20-NN, cls (ViT-S)"] == "74.5"
