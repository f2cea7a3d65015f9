"""Bad inputs and faults, as a table: every row runs the real CLI entry point (in-process,
so 50 rows cost seconds, not 50 interpreter starts; tests/test_cli_basics.py covers the exit
code contract through a real subprocess) and asserts the exit code, ONE line on stderr that
names the problem, no traceback, and that nothing under the workspace (a results folder with
a record, a completed run folder) changed.

The README's troubleshooting table lists these rows (test_readme_lists_every_row keeps it
in step).
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from dcbench import cli
from dcbench.checkpoint import save_checkpoint
from dcbench.models import MODELS, build_model

FMNIST = "/usr/share/datasets/fashion-mnist"
RND = "random:alexnet-small:0"
README = Path(__file__).resolve().parents[1] / "README.md"


def _small():
    return build_model("alexnet-small", sobel=True, seed=0)


def _make(ws: Path) -> None:
    """Files the rows point at (built once per workspace, before the snapshot)."""
    (ws / "a_file").write_text("not a folder\n")
    (ws / "random.pth").write_bytes(bytes(range(256)) * 20)
    (ws / "empty.pth").write_bytes(b"")
    save_checkpoint(ws / "cut.pth.tar", _small(), epoch=1, method="deepcluster")
    data = (ws / "cut.pth.tar").read_bytes()
    (ws / "cut.pth.tar").write_bytes(data[: len(data) // 2])
    state = _small().state_dict()
    torch.save({k: v for k, v in state.items() if k != "features.0.weight"},
               ws / "missing_key.pth")
    nan = dict(state)
    nan["features.4.weight"] = nan["features.4.weight"].clone().fill_(float("nan"))
    torch.save({"state_dict": nan}, ws / "nan.pth")
    with open(ws / "pickled.pth", "wb") as f:       # a pickle of a non-tensor object
        pickle.dump({"state_dict": _Foreign()}, f, protocol=2)
    torch.save([1, 2, 3], ws / "a_list.pth")
    (ws / "not_empty").mkdir()
    (ws / "not_empty" / "notes.txt").write_text("mine\n")
    (ws / "no_log").mkdir()
    fm = ws / "fm_cut"
    fm.mkdir()
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
                 "train-labels-idx1-ubyte.gz"):
        (fm / name).write_bytes((Path(FMNIST) / name).read_bytes())
    (fm / "train-images-idx3-ubyte.gz").write_bytes(
        (Path(FMNIST) / "train-images-idx3-ubyte.gz").read_bytes()[:100_000])


class _Foreign:
    """Unpicklable under weights_only: stands for a checkpoint holding arbitrary objects."""


def _completed_run(ws: Path) -> Path:
    """A run folder as a finished `dcbench pretrain --out` leaves it (config + log)."""
    run = ws / "runs" / "dc"
    run.mkdir(parents=True)
    from dcbench.methods.config import resolve
    cfg = resolve({"data": "fashion-mnist", "out": str(run), "epochs": 1, "max_images": 256,
                   "k": 10})
    cfg["world_size"] = 1
    (run / "config.json").write_text(json.dumps(cfg, indent=2, sort_keys=True) + "\n")
    (run / "log.jsonl").write_text(json.dumps({"epoch": 1, "loss": 2.0}) + "\n")
    return run


def _record() -> dict:
    return {"task": "knn", "setting": "conv5", "dataset": "fashion-mnist", "split": "test",
            "metric": "top1", "value": 80.0, "best": None, "best_epoch": None, "epochs": None,
            "checkpoint": {"path": RND, "sha256": "ab" * 32, "arch": "alexnet-small"},
            "seed": 0, "config": {}, "config_hash": "c0", "code_version": "git:x",
            "dcbench_version": "0.1.0", "started": "2026-01-01T00:00:00+00:00",
            "seconds": 1.0, "device": "cpu", "world_size": 1, "quick": True, "command": "",
            "extra": {}}


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    ws = tmp_path_factory.mktemp("bad_inputs")
    _make(ws)
    _completed_run(ws)
    (ws / "results").mkdir()
    (ws / "results" / "records.jsonl").write_text(json.dumps(_record()) + "\n")
    return ws


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and ".locks" not in p.parts
            and not p.name.endswith(".lock")}


def run_cli(args: list[str], monkeypatch: pytest.MonkeyPatch,
            capsys: pytest.CaptureFixture) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["dcbench", *args])
    try:
        cli.main()
        code = 0
    except SystemExit as done:
        code = int(done.code or 0)
    return code, capsys.readouterr().err


@dataclass(frozen=True)
class Row:
    args: str                       # the command line after `dcbench` ({ws}: the workspace)
    message: str                    # a regular expression the one error line must match
    code: int = 2
    env: Callable[[], dict[str, str]] | None = None


EVAL = f"eval --task knn --ckpt {RND} --quick"
PRE = "pretrain --data fashion-mnist --out {ws}/new_run --epochs 1"
ROWS = [
    # --- eval: destinations, flags and task options ------------------------------------------
    Row(f"{EVAL} --results {{ws}}/a_file", r"--results .*a_file is a file, not a folder"),
    Row(f"{EVAL} --results /proc/dcbench", r"--results /proc/dcbench is not writable"),
    Row(f"{EVAL} --set k=-5", r"--set k=-5 is out of range: expected an integer in \[1, inf\)"),
    Row(f"{EVAL} --set k=100000", r"--set k=100000 is more than the \d+ training images"),
    Row(f"{EVAL} --set temperature=0", r"--set temperature=0 is out of range"),
    Row(f"{EVAL} --set max_train=0", r"--set max_train=0 is out of range"),
    Row(f"{EVAL} --set k=many", r"--set k=many: expected an integer"),
    Row(f"{EVAL} --set k=nan", r"--set k=nan: expected an integer"),
    Row(f"{EVAL} --set temperature=inf", r"--set temperature=inf: expected a finite number"),
    Row(f"{EVAL} --set kk=3", r"task 'knn' has no option 'kk'; its options: dataset="),
    Row(f"{EVAL} --set k", r"--set expects KEY=VALUE, got 'k'"),
    Row(f"{EVAL} --seeds 0", r"--seeds 0 is out of range: expected an integer in \[1, 100\]"),
    Row(f"{EVAL} --seed -1", r"--seed -1 is out of range"),
    Row(f"{EVAL} --workers -1", r"--workers -1 is out of range: expected an integer in \[0, 64\]"),
    Row(f"{EVAL} --setting conv9", r"task 'knn' has no setting 'conv9'"),
    Row(f"eval --task linear-fmnist --ckpt {RND} --quick --set lr=-1",
        r"--set lr=-1 is out of range: expected a number in \(0, inf\)"),
    Row(f"eval --task linear-fmnist --ckpt {RND} --quick --set schedule=linear",
        r"--set schedule=linear: expected one of sqrt, cosine, constant"),
    Row(f"eval --task clustering --ckpt {RND} --quick --setting pixels --set k=500",
        r"k = 500 clusters needs more than the \d+ images"),
    Row(f"eval --task retrieval-oxford --ckpt {RND} --quick --set scales=0,1",
        r"--set scales=0,1: expected comma-separated positive numbers"),
    Row(f"eval --task nosuch --ckpt {RND}", r"unknown task 'nosuch'; valid tasks: clustering"),
    Row(f"eval --task voc-seg --ckpt {RND} --quick --set batch_size=3",   # under torchrun, 2
        r"voc-seg: batch_size 3 does not split over 2 ranks .*pass --set batch_size=2",
        env=lambda: {"WORLD_SIZE": "2", "RANK": "0"}),
    # --- eval: checkpoints ----------------------------------------------------------------------
    Row("eval --task knn --quick --ckpt {ws}/random.pth", r"is not a PyTorch checkpoint"),
    Row("eval --task knn --quick --ckpt {ws}/empty.pth", r"empty.pth is empty \(0 bytes\)"),
    Row("eval --task knn --quick --ckpt {ws}/cut.pth.tar", r"cut.pth.tar is truncated or corrupt"),
    Row("eval --task knn --quick --ckpt {ws}/missing_key.pth",
        r"closest is alexnet-small \(sobel=True\), but it has missing features.0.weight"),
    Row("eval --task knn --quick --ckpt {ws}/nan.pth",
        r"nan.pth holds NaN or inf values in features.4.weight"),
    Row("eval --task knn --quick --ckpt {ws}/pickled.pth", r"holds Python objects beyond tensors"),
    Row("eval --task knn --quick --ckpt {ws}/a_list.pth", r"holds a list, not a checkpoint dict"),
    Row("eval --task knn --quick --ckpt {ws}/runs", r"--ckpt .*runs is a folder, not a checkpoint"),
    Row("eval --task knn --quick --ckpt {ws}/nope.pth", r"checkpoint not found: .*nope.pth"),
    Row("eval --task knn --quick --ckpt random:resnet:0", r"unknown arch 'resnet'"),
    # --- report ---------------------------------------------------------------------------------
    Row("report --results {ws}/nosuch", r"--results .*nosuch is not a folder"),
    Row("report --results {ws}/results --runs {ws}/nosuch", r"--runs .*nosuch is not a folder"),
    Row("report --results {ws}/results --runs {ws}/no_log", r"no_log holds no log.jsonl"),
    # --- pretrain -------------------------------------------------------------------------------
    Row(f"{PRE} --max-images -3", r"--max-images -3 is out of range: expected an integer"),
    Row(f"{PRE} --max-images 100000", r"--max-images 100000 is more than the 60000 images"),
    Row(f"{PRE} --momentum -1", r"--momentum -1.0 is out of range: expected a number in \[0, 1\)"),
    Row(f"{PRE} --workers -1", r"--workers -1 is out of range"),
    Row(f"{PRE} --reassign 0", r"--reassign 0.0 is out of range: expected a number in \(0, 100\]"),
    Row(f"{PRE} --min-scale 2", r"--min-scale 2.0 is out of range: expected a number in \(0, 1\]"),
    Row(f"{PRE} --save-every -1", r"--save-every -1 is out of range"),
    Row(f"{PRE} --k 1", r"--k 1 is out of range: expected an integer in \[2, inf\)"),
    Row(f"{PRE} --lr 0", r"--lr 0.0 is out of range: expected a number in \(0, inf\)"),
    Row(f"{PRE} --lr inf", r"--lr inf: expected a finite number"),
    Row(f"{PRE} --lr-schedule step", r"'step' is not one of 'constant', 'cosine'"),
    Row(f"{PRE} --seed-streams one", r"'one' is not one of 'independent', 'shared'"),
    Row(f"{PRE} --amp fp16", r"'fp16' is not one of 'auto', 'bf16', 'off'"),
    Row(f"{PRE} --epochs 0", r"--epochs 0 is out of range"),
    Row(f"{PRE} --batch-size 0", r"--batch-size 0 is out of range"),
    Row(f"{PRE} --arch resnet", r"'resnet' is not one of 'alexnet', 'alexnet-small', "
        r"'alexnet-small-wide', 'vgg16'"),
    Row(f"{PRE} --method simclr", r"'simclr' is not one of 'deepcluster', 'supervised', 'jule'"),
    Row(f"{PRE} --set eta=0.5", r"--set is for JULE's options"),
    Row(f"{PRE} --root {{ws}}/nosuch", r"--root .*nosuch is not a folder"),
    Row("pretrain --data nope --out {ws}/new_run", r"unknown dataset 'nope'"),
    Row("pretrain --out {ws}/a_file --epochs 1", r"--out .*a_file is a file, not a folder"),
    Row("pretrain --out /proc/dcbench/run --epochs 1", r"--out /proc/dcbench/run is not writable"),
    Row("pretrain --out {ws}/not_empty --epochs 1", r"not_empty is not empty and holds no"),
    Row("pretrain --out {ws}/runs/dc --epochs 1 --max-images 256 --k 10",
        r"runs/dc already holds a run; pass --resume"),
    Row("pretrain --out {ws}/runs/dc --epochs 1 --max-images 256 --k 20 --resume",
        r"--resume refused: .*different config \(k: 10 -> 20\)"),
    Row("pretrain --method jule --data digits --out {ws}/new_run --set eta=2",
        r"--set eta=2 is out of range: expected a number in \(0, 1\]"),
    Row("pretrain --method jule --data digits --out {ws}/new_run --k 10",
        r"--k is not an option of jule \(.*\); drop it: jule takes --set KEY=VALUE beside"),
    Row("pretrain --method jule --data digits --out {ws}/new_run --seed-streams shared",
        r"--seed-streams is not an option of jule"),
    Row("pretrain --method jule --data digits --out {ws}/new_run --amp off",
        r"--amp is not an option of jule"),
    Row("pretrain --method supervised --out {ws}/new_run --k 50",
        r"--k is not an option of supervised \(the same trunk and recipe trained on the true "
        r"labels, no clusters\); drop it: supervised takes --arch, --no-sobel"),
    Row("pretrain --method supervised --out {ws}/new_run --clustering pic --reassign 2",
        r"--clustering, --reassign are not options of supervised"),
    # --- data -----------------------------------------------------------------------------------
    Row("data validate fashion-mnist --root {ws}/fm_cut",
        r"train-images-idx3-ubyte.gz is truncated or corrupt"),
    Row("data validate nope", r"unknown dataset 'nope'"),
]


def check_row(row: Row, workspace: Path, monkeypatch: pytest.MonkeyPatch,
              capsys: pytest.CaptureFixture, cache: Path) -> None:
    """Run the row in `workspace`: its exit code, ONE line on stderr matching its message,
    no traceback, nothing in the workspace changed, no run folder started."""
    monkeypatch.chdir(workspace)
    monkeypatch.setenv("DCBENCH_CACHE", str(cache))
    monkeypatch.setenv("DCBENCH_RESULTS", str(workspace / "results"))
    for key, value in (row.env() if row.env else {}).items():
        monkeypatch.setenv(key, value)
    before = snapshot(workspace)
    code, err = run_cli(row.args.format(ws=workspace).split(), monkeypatch, capsys)
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == row.code, err
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    assert re.search(row.message, lines[0]), lines[0]
    assert snapshot(workspace) == before            # nothing written, nothing lost
    assert not (workspace / "new_run").exists()     # a refused start leaves no folder


@pytest.mark.parametrize("row", ROWS, ids=[r.args.replace("{ws}/", "")[:60] for r in ROWS])
def test_bad_input_is_refused_in_one_line_and_changes_nothing(
        row: Row, workspace: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    check_row(row, workspace, monkeypatch, capsys, tmp_path / "cache")


def test_bf16_where_the_cpu_would_emulate_it_is_refused_before_any_work(
        workspace: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture,
        tmp_path: Path) -> None:
    """`--amp bf16` on a CPU without AMX (simulated: this machine has AMX) is refused in one
    line that says what to pass instead; no run folder is started."""
    monkeypatch.chdir(workspace)
    monkeypatch.setenv("DCBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    before = snapshot(workspace)
    code, err = run_cli(f"{PRE} --amp bf16".format(ws=workspace).split(), monkeypatch, capsys)
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2 and len(lines) == 1, err
    assert re.fullmatch(r"error: --amp bf16: this CPU has no native bf16 .*use --amp auto or "
                        r"--amp off", lines[0]), lines[0]
    assert snapshot(workspace) == before and not (workspace / "new_run").exists()


def test_there_are_at_least_40_rows_and_arch_choices_match_the_models() -> None:
    assert len(ROWS) >= 40
    assert set(cli.ArchChoice().choices) == {a for a in MODELS if not a.startswith("jule-")}


def assert_readme_lists(rows: list[Row]) -> None:
    """Each row's command appears in the README's troubleshooting section."""
    text = README.read_text()
    section = text[text.index("## Troubleshooting"):]
    for row in rows:
        shown = row.args.replace("{ws}/", "").replace("{{ws}}/", "")
        assert f"`dcbench {shown}`" in section, shown


def test_readme_lists_every_row() -> None:
    assert_readme_lists(ROWS)


def test_records_that_are_not_records_are_skipped_with_a_warning(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    results = tmp_path / "results"
    results.mkdir()
    good = json.dumps(_record())
    (results / "records.jsonl").write_text("\n".join(
        ["[]", "{}", '{"task": 1}', good, "{not json"]) + "\n")
    before = (results / "records.jsonl").read_bytes()
    code, err = run_cli(["report", "--results", str(results)], monkeypatch, capsys)
    assert code == 0
    warnings = [x for x in err.splitlines() if x.startswith("warning:")]
    assert [re.search(r"records.jsonl:(\d)", w).group(1) for w in warnings] == \
        ["1", "2", "3", "5"]
    assert "a JSON list, not an object" in warnings[0] and "no 'task'" in warnings[1]
    assert "'task' is 1" in warnings[2] and "not JSON" in warnings[3]
    assert "records.jsonl` (1 records)" in (results / "report.md").read_text()
    assert (results / "records.jsonl").read_bytes() == before


def test_a_failed_write_of_records_keeps_the_computed_result(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """Disk full at the very end: the numbers go to a rescue file that the message names."""
    import errno

    import dcbench.results as results_mod

    def disk_full(path, lines):
        if Path(path).name == "records.jsonl":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, lines)

    real = results_mod.atomic_append_lines
    monkeypatch.setattr(results_mod, "atomic_append_lines", disk_full)
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(["eval", "--task", "clustering", "--ckpt", RND, "--quick",
                         "--setting", "pixels", "--results", str(tmp_path / "res")],
                        monkeypatch, capsys)
    line = err.strip().splitlines()[-1]
    assert code == 2 and "No space left on device" in line, err
    rescue = Path(re.search(r"saved in (\S+):", line).group(1))
    rows = [json.loads(x) for x in rescue.read_text().splitlines()]
    assert {r["metric"] for r in rows} == {"nmi_geometric", "nmi_arithmetic", "acc", "ari"}
    assert not (tmp_path / "res" / "records.jsonl").exists()


def test_two_identical_evals_started_together_record_once(tmp_path: Path) -> None:
    """Defect 10: both compute and both append. Now the second waits on the first's lock,
    then finds its records and skips."""
    cmd = [sys.executable, "-m", "dcbench", "eval", "--task", "clustering", "--ckpt", RND,
           "--quick", "--setting", "pixels", "--results", str(tmp_path / "res")]
    env = {**__import__("os").environ, "DCBENCH_NO_PROGRESS": "1",
           "DCBENCH_CACHE": str(tmp_path / "cache")}
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    lines = (tmp_path / "res" / "records.jsonl").read_text().splitlines()
    assert sorted(json.loads(x)["metric"] for x in lines) == [
        "acc", "ari", "nmi_arithmetic", "nmi_geometric"]
    assert sum("already recorded" in err for _, err in outs) == 1


def test_unreadable_images_fail_cleanly_and_do_not_poison_the_run_folder(
        tiny_file_list: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """Defects 3 and 4: a list whose images are all unreadable ended in a ValueError from the
    PCA, and its config.json then refused the corrected command. Now: one line, exit 2, and
    the corrected command (after fixing the images) runs in the same --out."""
    import shutil

    root = tmp_path / "yfcc"
    shutil.copytree(tiny_file_list, root)
    originals = {p: p.read_bytes() for p in (root / "images").iterdir()}
    for p in originals:
        p.write_bytes(b"\x00not an image" * 20)
    out = tmp_path / "run"
    args = ["pretrain", "--data", "yfcc1m", "--root", str(root), "--out", str(out),
            "--epochs", "1", "--k", "3", "--batch-size", "4", "--workers", "0"]
    code, err = run_cli(args, monkeypatch, capsys)
    last = err.strip().splitlines()[-1]
    assert code == 2 and "Traceback" not in err, err
    assert re.match(r"error: only 0 of the 12 images sampled for the PCA could be read", last)
    for p, data in originals.items():           # the user fixes the images ...
        p.write_bytes(data)
    code, err = run_cli(args[:-4] + ["--k", "4", "--batch-size", "4", "--workers", "0"],
                        monkeypatch, capsys)     # ... and reruns, with another k
    assert code == 0, err
    assert "replacing the config of a start that never completed an epoch" in err
    assert json.loads((out / "config.json").read_text())["k"] == 4
    assert [json.loads(x)["epoch"] for x in (out / "log.jsonl").read_text().splitlines()] == [1]
