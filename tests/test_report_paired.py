"""The report's low-label probe table paired by seed (dcbench/report/paired_table.py): each
trunk against the Random trunk of its own arch, differences taken seed by seed."""

from __future__ import annotations

from pathlib import Path

from test_report import read_csv, record, write_records

from dcbench.report import build_report


def ckpt(path: str, arch: str, method: str, sha: str) -> dict:
    return {"path": path, "sha256": sha * 64, "arch": arch, "sobel": True, "method": method,
            "format": "random" if method == "random" else "dcbench", "epoch": 1, "k": None,
            "data": None}


SMALL_RANDOM = ckpt("random:alexnet-small:0", "alexnet-small", "random", "a")
WIDE_RANDOM = ckpt("random:alexnet-small-wide:0", "alexnet-small-wide", "random", "b")
DC = ckpt("runs/dc/checkpoint.pth.tar", "alexnet-small", "deepcluster", "c")
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
                             *probe([62.0, 71.0, 83.0, 76.0], DC),
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
    write_records(tmp_path, probe([62.0, 71.0], DC))
    build_report(str(tmp_path))
    assert not (tmp_path / "tables" / "probe_paired.csv").exists()
