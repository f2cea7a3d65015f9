"""Bad data files (issue 33), as a table: every row builds its bad file in a workspace, runs
the real CLI in-process (tests/test_bad_inputs.py's harness) and asserts exit code 2, ONE
line on stderr starting "error: " that names the file (and field), no traceback, and that
nothing under the workspace changed. Files the report reads on past (a bad run folder) are
warnings instead: the tests after the table check that the rest of the report is produced.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import scipy.io
from PIL import Image
from test_bad_inputs import RND, Row, _record, assert_readme_lists, check_row, run_cli

from dcbench.data.embedded.build_digests import DIGESTS, write_digests
from dcbench.data.embedded.builders import export_image_folder

FMNIST = "/usr/share/datasets/fashion-mnist"
VOC = "fmnist-voc-quick"


def bomb_png() -> bytes:
    """A valid PNG header claiming 50000 x 50000 pixels (2.5 G), with a tiny body."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)
    header = struct.pack(">IIBBBBB", 50000, 50000, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def voc_copy(ws: Path, case: str, base: Path, folder: str = VOC) -> Path:
    """A copy of the quick fmnist-voc at <ws>/<case>/<folder>; returns the devkit folder."""
    root = ws / case / folder
    shutil.copytree(base, root)
    return root


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


def edit_mask(path: Path, change) -> None:
    with Image.open(path) as m:
        palette, mask = m.getpalette(), np.array(m)
    out = Image.fromarray(change(mask), mode="P")
    out.putpalette(palette)
    out.save(path)


def put_77(mask: np.ndarray) -> np.ndarray:
    """One pixel of class index 77 (the quick set has classes 1-10)."""
    mask = mask.copy()
    mask[0, 0] = 77
    return mask


def proposals_mat(path: Path, n: int) -> None:
    """Fast R-CNN's selective_search_data layout without an `images` list: n cells of boxes
    (y1 x1 y2 x2, 1-based) that fit the quick set's scenes."""
    cells = np.empty((1, n), dtype=object)
    for k in range(n):
        cells[0, k] = np.array([[1, 1, 10, 12], [2, 3, 20, 30]], dtype=np.float64)
    path.parent.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(str(path), {"boxes": cells})


def garbage_mat(path: Path) -> None:
    """A MATLAB 5 header followed by junk: scipy raises TypeError on it, not ValueError."""
    path.parent.mkdir(parents=True, exist_ok=True)
    proposals_mat(path, 1)
    path.write_bytes(path.read_bytes()[:128] + bytes(range(256)) * 2)


def _make(ws: Path, voc: Path) -> None:
    """Every bad file of the rows below, each in its own folder."""
    (ws / "results").mkdir()
    (ws / "results" / "records.jsonl").write_text(json.dumps(_record()) + "\n")
    ann = "Annotations/000001.xml"
    edit(voc_copy(ws, "width", voc) / ann, "<width>56</width>", "<width>wide</width>")
    edit(voc_copy(ws, "difficult", voc) / ann, "<difficult>0</difficult>",
         "<difficult>yes</difficult>")
    edit(voc_copy(ws, "unicorn", voc) / ann, "<name>tshirt</name>", "<name>unicorn</name>")
    with open(voc_copy(ws, "split_bytes", voc) / "ImageSets/Main/train.txt", "ab") as f:
        f.write(b"\xff\xfe000001\n")
    with open(voc_copy(ws, "gt_bytes", voc) / "ImageSets/Main/tshirt_train.txt", "ab") as f:
        f.write(b"000001 \xe9\n")
    root = voc_copy(ws, "empty_test", voc)
    for listing in root.glob("ImageSets/*/*test.txt"):
        listing.write_text("")
    edit_mask(voc_copy(ws, "mask77", voc) / "SegmentationClass/000001.png", put_77)
    edit_mask(voc_copy(ws, "mask_size", voc) / "SegmentationClass/000001.png",
              lambda m: np.pad(m, ((0, 0), (0, 3))))
    (voc_copy(ws, "bomb_voc", voc) / "JPEGImages/000002.jpg").write_bytes(bomb_png())
    # Fast R-CNN's proposals for a voc2007-named copy (max_train picks 16 of its trainval)
    for case in ("ss_garbage", "ss_no_images"):
        voc_copy(ws, f"{case}/voc2007", voc, folder="VOC2007")
    ss = "voc2007/VOC2007/selective_search"
    garbage_mat(ws / "ss_garbage" / ss / "voc_2007_trainval.mat")
    trainval = (ws / "ss_no_images/voc2007/VOC2007/ImageSets/Main/trainval.txt").read_text()
    proposals_mat(ws / "ss_no_images" / ss / "voc_2007_trainval.mat", len(trainval.split()))
    garbage_mat(ws / "ss_no_images" / ss / "voc_2007_test.mat")
    # The copies' digests are rewritten after the edits so that each row reaches the parser
    # (as a real VOC tree, which has no digests, does); test_hostile_files.py checks that an
    # edited embedded set is refused by its digests.
    for digests in ws.glob(f"*/{VOC}/{DIGESTS}"):
        digests.unlink()
        write_digests(digests.parent)
    folder = export_image_folder(ws / "bomb_folder" / "image-folder", 3, 1, FMNIST)
    first = sorted((folder / "train").iterdir())[0]
    sorted(first.iterdir())[0].write_bytes(bomb_png())
    coil = ws / "bomb_coil"
    coil.mkdir()
    for k in range(1, 21):
        Image.new("L", (8, 8), k).save(coil / f"obj{k}__0.png")
    (coil / "obj1__5.png").write_bytes(bomb_png())
    (ws / "no_records").mkdir()
    (ws / "no_records" / "records.jsonl").write_text('[]\n{"task": 1}\n{not json\n')
    run = ws / "runs" / "list_config"
    run.mkdir(parents=True)
    (run / "config.json").write_text("[1, 2]\n")
    (run / "log.jsonl").write_text(json.dumps({"epoch": 1, "loss": 2.0}) + "\n")


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, voc_quick_root: Path) -> Path:
    ws = tmp_path_factory.mktemp("bad_data_files")
    _make(ws, voc_quick_root / VOC)
    return ws


VALIDATE = f"data validate {VOC} --data-root {{ws}}"
QUICK = f"--ckpt {RND} --quick --workers 0"
DET = f"eval --task voc-det {QUICK} --set dataset=voc2007"
PRE = "pretrain --data fashion-mnist --out {ws}/new_run --epochs 1"
ROWS = [
    # --- A: VOC annotations and lists -------------------------------------------------------
    Row(f"{VALIDATE}/width", r"width/fmnist-voc-quick/Annotations/000001.xml: <size><width> is "
        r"'wide', expected a whole number of pixels"),
    Row(f"{VALIDATE}/difficult", r"difficult/fmnist-voc-quick/Annotations/000001.xml: "
        r"<object><difficult> is 'yes', expected 0 or 1"),
    Row(f"{VALIDATE}/split_bytes",
        r"split_bytes/fmnist-voc-quick/ImageSets/Main/train.txt:65 is not UTF-8 text"),
    Row(f"{VALIDATE}/gt_bytes",
        r"gt_bytes/fmnist-voc-quick/ImageSets/Main/tshirt_train.txt:65 is not UTF-8 text"),
    Row(f"{VALIDATE}/unicorn", r"unicorn/fmnist-voc-quick/Annotations/000001.xml: object "
        r"'unicorn' is not a class of the per-class files \(ankleboot, bag, .*, tshirt\)"),
    Row(f"eval --task voc-cls {QUICK} --data-root {{ws}}/empty_test",
        r"empty_test/fmnist-voc-quick/ImageSets/Main/test.txt lists no images"),
    # --- B: segmentation masks ------------------------------------------------------------
    Row(f"{VALIDATE}/mask77", r"mask77/fmnist-voc-quick/SegmentationClass/000001.png holds "
        r"class index 77 \(1 pixel\); valid: 0 \(background\), 1-10 .*255 \(void\)"),
    Row(f"eval --task voc-seg {QUICK} --data-root {{ws}}/mask77",
        r"mask77/fmnist-voc-quick/SegmentationClass/000001.png holds class index 77"),
    Row(f"{VALIDATE}/mask_size", r"mask_size/fmnist-voc-quick/SegmentationClass/000001.png is "
        r"59x48, its image .*JPEGImages/000001.jpg is 56x48"),
    Row(f"eval --task voc-seg {QUICK} --data-root {{ws}}/mask_size",
        r"mask_size/fmnist-voc-quick/SegmentationClass/000001.png is 59x48"),
    # --- C: proposals .mat ------------------------------------------------------------------
    Row(f"{DET} --data-root {{ws}}/ss_garbage", r"cannot read .*ss_garbage/voc2007/VOC2007/"
        r"selective_search/voc_2007_trainval.mat as a MATLAB .mat"),
    # the trainval file (no `images`, 128 cells) is accepted for 16 of its images; the
    # garbage test file is then named
    Row(f"{DET} --set max_train=16 --data-root {{ws}}/ss_no_images",
        r"cannot read .*ss_no_images/.*/voc_2007_test.mat as a MATLAB .mat"),
    # --- D: decompression bombs -------------------------------------------------------------
    Row(f"{VALIDATE}/bomb_voc", r"bomb_voc/fmnist-voc-quick/JPEGImages/000002.jpg claims "
        r"2,500,000,000 pixels, over the 178,956,970 that PIL decodes safely"),
    Row("eval --task knn --ckpt random:alexnet:0 --quick --workers 1 --set dataset=image-folder"
        " --data-root {ws}/bomb_folder", r"image-folder/train/Ankle_boot/00000.png claims "
        r"2,500,000,000 pixels"),     # raised in a DataLoader worker: still one line
    Row("pretrain --method jule --data coil20 --root {ws}/bomb_coil --out {ws}/new_run",
        r"bomb_coil/obj1__5.png claims 2,500,000,000 pixels"),
    # --- E, F, G, H: report, results store, seeds, run folders ------------------------------
    Row("report --results {ws}/no_records", r"no_records/records.jsonl holds no dcbench record: "
        r"none of its 3 lines is one \(line 1: a JSON list"),
    Row(f"eval --task clustering {QUICK} --setting pixels",
        r"DCBENCH_RESULTS is set but empty; set it to a results folder",
        env=lambda: {"DCBENCH_RESULTS": ""}),
    Row(f"eval --task knn {QUICK} --seed 100000000000000000000",
        r"--seed 100000000000000000000 is out of range: expected an integer in \[0, 4294967295\]"),
    Row(f"{PRE} --seed 100000000000000000000",
        r"--seed 100000000000000000000 is out of range: expected an integer in \[0, 4294967295\]"),
    Row("pretrain --data fashion-mnist --out {ws}/runs/list_config --epochs 1 --resume",
        r"runs/list_config/config.json holds a JSON list, not a run config"),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.args.replace("{ws}/", "")[:70] for r in ROWS])
def test_bad_data_file_is_refused_in_one_line_and_changes_nothing(
        row: Row, workspace: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    check_row(row, workspace, monkeypatch, capsys, tmp_path / "cache")



def test_readme_lists_every_row() -> None:
    assert_readme_lists(ROWS)

def good_run(folder: Path) -> Path:
    """A DeepCluster run folder with NMI values and an assignment (Fig. 2 and 3 read it)."""
    (folder / "assignments").mkdir(parents=True)
    (folder / "config.json").write_text(json.dumps({"method": "deepcluster", "k": 4,
                                                    "clustering": "kmeans"}))
    (folder / "log.jsonl").write_text("".join(
        json.dumps({"epoch": e, "loss": 1.0 / e, "nmi_labels": 0.1 * e, "nmi_prev": 0.5})
        + "\n" for e in (1, 2)))
    np.save(folder / "assignments" / "epoch_0002.npy", np.arange(40) % 4)
    return folder


def test_bad_run_folders_are_warned_about_and_the_report_goes_on(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """report --runs reads each run folder as far as it goes: a JSON-list config, a log value
    "x", binary junk appended to a log, garbage and object-dtype assignments are each one
    warning naming the file (and line); the other folders still make the figures."""
    results = tmp_path / "results"
    results.mkdir()
    (results / "records.jsonl").write_text(json.dumps(_record()) + "\n")
    runs = {name: good_run(tmp_path / "runs" / name)
            for name in ("good", "list_config", "value_x", "junk", "npy_garbage", "npy_object")}
    (runs["list_config"] / "config.json").write_text("[1, 2]\n")
    edit(runs["value_x"] / "log.jsonl", '"nmi_labels": 0.1', '"nmi_labels": "x"')
    with open(runs["junk"] / "log.jsonl", "ab") as f:
        f.write(b"\x00\xff\xfe binary junk \x80\x81\n")
    (runs["npy_garbage"] / "assignments" / "epoch_0002.npy").write_bytes(b"\x93NUMPY junk" * 9)
    np.save(runs["npy_object"] / "assignments" / "epoch_0002.npy",
            np.array([1, "a", None], dtype=object), allow_pickle=True)
    args = ["report", "--results", str(results)]
    for folder in runs.values():
        args += ["--runs", str(folder)]
    code, err = run_cli(args, monkeypatch, capsys)
    assert code == 0 and "Traceback" not in err and "error:" not in err, err
    warnings = [x for x in err.splitlines() if x.strip()]
    assert all(w.startswith("warning: ") for w in warnings), err
    expected = [r"list_config/config.json holds a JSON list, not a run config",
                r"value_x/log.jsonl:1: nmi_labels is 'x', not a number",
                r"junk/log.jsonl:3 is not an epoch record",
                r"npy_garbage/assignments/epoch_0002.npy: not a .npy array dcbench can read",
                r"npy_object/assignments/epoch_0002.npy: not a .npy array dcbench can read"]
    for pattern in expected:
        assert sum(bool(re.search(pattern, w)) for w in warnings) == 1, (pattern, err)
    assert len(warnings) == len(expected), err
    report = (results / "report.md").read_text()
    assert "![Fig. 2: clustering quality and stability over training](figures/fig2_nmi.png)" \
        in report
    assert "figures/fig3_cluster_sizes.png" in report
    assert (results / "figures" / "fig3_cluster_sizes.png").stat().st_size > 0


def test_nan_and_inf_values_are_shown_not_blank(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    results = tmp_path / "results"
    results.mkdir()
    rows = []
    for setting, value in (("conv3", 50.0), ("conv4", float("inf")), ("conv5", float("nan"))):
        rows.append(dict(_record(), setting=setting, value=value, quick=False))
    (results / "records.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    code, err = run_cli(["report", "--results", str(results)], monkeypatch, capsys)
    assert code == 0, err
    csv = (results / "tables" / "other_records.csv").read_text().splitlines()
    shown = {line.split(",")[3]: line.split(",")[-1] for line in csv[1:]}
    assert shown == {"conv3": "50.0", "conv4": "inf", "conv5": "nan"}


def test_a_linked_records_file_stays_a_link(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """A records.jsonl that links to a shared store is appended through: the link stays,
    the store gets the records (the atomic rename used to replace the link by a file)."""
    store = tmp_path / "shared" / "records.jsonl"
    store.parent.mkdir()
    store.write_text(json.dumps(_record()) + "\n")
    results = tmp_path / "results"
    results.mkdir()
    (results / "records.jsonl").symlink_to(store)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DCBENCH_CACHE", str(tmp_path / "cache"))
    code, err = run_cli(["eval", "--task", "clustering", "--ckpt", RND, "--quick",
                         "--setting", "pixels", "--results", str(results)], monkeypatch, capsys)
    assert code == 0, err
    assert (results / "records.jsonl").is_symlink()
    metrics = [json.loads(x)["metric"] for x in store.read_text().splitlines()]
    assert metrics[0] == "top1" and sorted(metrics[1:]) == [
        "acc", "ari", "nmi_arithmetic", "nmi_geometric"]


def test_a_garbage_assignment_on_resume_is_named(tmp_path: Path) -> None:
    """RunDir.load_assignment (a --resume restoring an epoch's clusters) names a garbage or
    object-dtype .npy instead of failing inside numpy."""
    from dcbench.errors import DcbenchError
    from dcbench.methods.run_dir import RunDir

    run = RunDir(tmp_path)
    run.save_assignment(1, np.arange(6) % 2, {"k": 2})
    assert run.load_assignment(1)[0].tolist() == [0, 1, 0, 1, 0, 1]
    for data in (b"\x93NUMPY junk" * 9, None):
        if data is None:
            np.save(run.assignment_path(1), np.array([1, "a"], dtype=object), allow_pickle=True)
        else:
            run.assignment_path(1).write_bytes(data)
        with pytest.raises(DcbenchError, match=r"assignments/epoch_0001.npy \(or its .json\) "
                           r"is not a saved assignment"):
            run.load_assignment(1)
