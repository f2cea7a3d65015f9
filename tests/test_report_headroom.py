"""The report's low-label tables: Table 1 with headroom and its gap-closed rows
(dcbench/report/gap_table.py), and the probes paired by seed (dcbench/report/paired_table.py):
each trunk against the Random trunk of its own arch, differences taken seed by seed."""

from __future__ import annotations

from pathlib import Path

from test_report import DC, RANDOM, read_csv, record, write_records

from dcbench.report import build_report


def ckpt(path: str, arch: str, method: str, sha: str) -> dict:
    return {"path": path, "sha256": sha * 64, "arch": arch, "sobel": True, "method": method,
            "format": "random" if method == "random" else "dcbench", "epoch": 1, "k": None,
            "data": None}


SMALL_RANDOM = ckpt("random:alexnet-small:0", "alexnet-small", "random", "a")
WIDE_RANDOM = ckpt("random:alexnet-small-wide:0", "alexnet-small-wide", "random", "b")
SMALL_DC = ckpt("runs/dc/checkpoint.pth.tar", "alexnet-small", "deepcluster", "c")
WIDE_DC = ckpt("runs/wide/checkpoint.pth.tar", "alexnet-small-wide", "deepcluster", "d")
ALONE = ckpt("runs/vgg/checkpoint.pth.tar", "vgg16", "deepcluster", "e")   # no Random of its arch


def probe(values: list[float], who: dict, first_seed: int = 0) -> list[dict]:
    return [record("linear-fmnist-10", "conv5", "top1", v, who, seed=first_seed + i,
                   dataset="fashion-mnist") for i, v in enumerate(values)]


def test_differences_are_taken_per_seed_against_the_random_trunk_of_the_same_arch(
        tmp_path: Path) -> None:
    """Random 60/70/80 and DeepCluster 62/71/83: the per-seed differences 2/1/3 give +2.0 ±
    1.0 (unpaired, the spread of either row would be about 10); the wide DeepCluster pairs
    with the wide Random (55/56/57 - 50 = +6.0 ± 1.0; against the small Random it would be
    -14.0 ± 9.0); a fourth DeepCluster seed counts in its mean, not in the differences; a
    trunk with no Random of its arch gets no row."""
    write_records(tmp_path, [*probe([60.0, 70.0, 80.0], SMALL_RANDOM),
                             *probe([50.0, 50.0, 50.0], WIDE_RANDOM),
                             *probe([62.0, 71.0, 83.0, 76.0], SMALL_DC),
                             *probe([55.0, 56.0, 57.0], WIDE_DC),
                             *probe([90.0, 91.0], ALONE)])
    build_report(str(tmp_path))
    frame = read_csv(tmp_path / "tables" / "probe_paired.csv").set_index("method")
    dc, wide = "deepcluster · runs/dc/checkpoint.pth.tar · cccccccc", \
        "deepcluster · runs/wide/checkpoint.pth.tar · dddddddd"
    assert frame.loc[dc, "10/class conv5"] == "73.0 (+2.0 ± 1.0)"
    assert frame.loc[dc, "paired with"] == "random · random:alexnet-small:0 · aaaaaaaa"
    assert frame.loc[wide, "10/class conv5"] == "56.0 (+6.0 ± 1.0)"
    assert frame.loc["random · random:alexnet-small:0 · aaaaaaaa", "10/class conv5"] == "70.0"
    assert not any("vgg" in m for m in frame.index)
    assert "probe_paired" in (tmp_path / "report.md").read_text()


def test_no_table_without_a_pair(tmp_path: Path) -> None:
    write_records(tmp_path, probe([62.0, 71.0], SMALL_DC))
    build_report(str(tmp_path))
    assert not (tmp_path / "tables" / "probe_paired.csv").exists()


def test_headroom_table_derives_the_gap_closed_per_column(tmp_path: Path) -> None:
    """DeepCluster 80, supervised 90, Random 70 -> 50 % of the gap closed; two seeds give a
    mean; the paper's ratios are computed from its printed Table 1 (conv3 78 %, conv5 60 %)."""
    sup = {**DC, "path": "runs/sup/checkpoint.pth.tar", "sha256": "5" * 64,
           "method": "supervised"}
    rnd = {**RANDOM, "method": "random"}
    rows = []
    for ckpt, values in ((DC, (79.0, 81.0)), (sup, (90.0, 90.0)), (rnd, (70.0, 70.0))):
        rows += [record("linear-fmnist-10", "conv3", "top1", v, ckpt, seed=s,
                        dataset="fashion-mnist") for s, v in enumerate(values)]
    write_records(tmp_path, rows)
    build_report(tmp_path, runs=[])
    frame = read_csv(tmp_path / "tables" / "table1_headroom.csv").set_index("method")
    derived = frame.loc["DeepCluster: % of the gap from Random to supervised closed"]
    assert derived["10/class conv3"] == "50" and derived["10/class conv5"] == ""
    dc_row = next(i for i in frame.index if i.startswith("deepcluster"))
    assert frame.loc[dc_row, "10/class conv3"] == "80.0 ± 1.4"
    md = (tmp_path / "tables" / "table1_headroom.md").read_text()
    assert "conv3 78 %" in md and "conv5 60 %" in md


def test_headroom_table_derives_one_gap_row_per_supervised_ceiling(tmp_path: Path) -> None:
    """Two supervised checkpoints (the DeepCluster-recipe one at 90, a standard-recipe one at
    95): DeepCluster 80 over Random 70 closes 50 % of the first gap and 40 % of the second,
    each row naming its ceiling (with one row per method only, the rows vanished)."""
    sup = {**DC, "path": "runs/sup/checkpoint.pth.tar", "sha256": "5" * 64,
           "method": "supervised"}
    std = {**DC, "path": "runs/sup-std/checkpoint.pth.tar", "sha256": "6" * 64,
           "method": "supervised"}
    rnd = {**RANDOM, "method": "random"}
    sweep = {**DC, "path": "runs/dc-k30/checkpoint.pth.tar", "sha256": "7" * 64}
    rows = [record("linear-fmnist-10", "conv3", "top1", v, ckpt, dataset="fashion-mnist")
            for ckpt, v in ((DC, 80.0), (sup, 90.0), (std, 95.0), (rnd, 70.0))]
    # a k-sweep DeepCluster checkpoint with the full-label probe only: the gap rows use the
    # DeepCluster checkpoint measured on more columns (before: two DeepCluster rows, no row)
    rows += [record("linear-fmnist", "conv3", "top1", v, ckpt, dataset="fashion-mnist")
             for ckpt, v in ((DC, 90.0), (sweep, 99.0), (sup, 91.0), (std, 92.0),
                             (rnd, 89.0))]
    write_records(tmp_path, rows)
    build_report(tmp_path, runs=[])
    frame = read_csv(tmp_path / "tables" / "table1_headroom.csv").set_index("method")
    gaps = {i: frame.loc[i, "10/class conv3"] for i in frame.index if "gap" in i}
    assert sorted(gaps.values()) == ["40", "50"]
    forty = [i for i, v in gaps.items() if v == "40"][0]
    assert "ceiling: supervised · runs/sup-std/checkpoint.pth.tar · 66666666" in forty
    assert f"of deepcluster · {DC['path']}" in forty
    assert frame.loc[forty, "all labels conv3"] == "33"        # (90 - 89) / (92 - 89)


def test_headroom_table_derives_gap_rows_for_each_low_label_deepcluster(tmp_path: Path) -> None:
    """Two DeepCluster checkpoints with the 10-labels probe (the demo's run at 80, a longer
    run at 86; Random 70, supervised 90): 50 % and 80 %, each row naming its checkpoint; a
    k-sweep checkpoint with the full-label probe only gets none (with one row picked, the
    longer run's 80 % was missing)."""
    sup = {**DC, "path": "runs/sup/checkpoint.pth.tar", "sha256": "5" * 64,
           "method": "supervised"}
    long = {**DC, "path": "runs/dc-long/checkpoint.pth.tar", "sha256": "8" * 64}
    sweep = {**DC, "path": "runs/dc-k30/checkpoint.pth.tar", "sha256": "7" * 64}
    rnd = {**RANDOM, "method": "random"}
    rows = [record("linear-fmnist-10", "conv3", "top1", v, ckpt, dataset="fashion-mnist")
            for ckpt, v in ((DC, 80.0), (long, 86.0), (sup, 90.0), (rnd, 70.0))]
    rows += [record("linear-fmnist", "conv3", "top1", v, ckpt, dataset="fashion-mnist")
             for ckpt, v in ((DC, 90.0), (sweep, 99.0), (sup, 91.0), (rnd, 89.0))]
    write_records(tmp_path, rows)
    build_report(tmp_path, runs=[])
    frame = read_csv(tmp_path / "tables" / "table1_headroom.csv").set_index("method")
    gaps = {i: frame.loc[i, "10/class conv3"] for i in frame.index if "gap" in i}
    assert sorted(gaps.values()) == ["50", "80"]
    assert "of deepcluster · runs/dc-long/checkpoint.pth.tar" in \
        [i for i, v in gaps.items() if v == "80"][0]
    assert not any("dc-k30" in i for i in gaps)


def test_the_headroom_note_says_how_many_images_the_full_label_probe_trained_on() -> None:
    """The default demo's probe trains on 10,000 of the 60,000 (--set max_train=10000); the
    note said "all 60,000" whatever the records held."""
    import pandas as pd

    from dcbench.report.gap_table import full_label_images

    def frame(*sizes: int) -> pd.DataFrame:
        return pd.DataFrame({"task": ["linear-fmnist"] * len(sizes) + ["knn"],
                             "extra": [{"n_train": n} for n in sizes] + [{"n_train": 5}]})

    assert full_label_images(frame(60000, 60000)) == "all 60,000"
    assert full_label_images(frame(10000)) == "10,000 of the 60,000"
    assert full_label_images(frame(10000, 60000)).startswith("10,000 or 60,000 of the 60,000")
