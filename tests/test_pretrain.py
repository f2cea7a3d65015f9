"""`dcbench pretrain` end to end on small Fashion-MNIST subsets: outputs, exact resume after
a kill at any point, the supervised baseline, the clustering variants and bad input."""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from sklearn.metrics import normalized_mutual_info_score
from sklearn.metrics.cluster import contingency_matrix

from dcbench.checkpoint import load_trunk
from dcbench.data import build_dataset, subset, targets_of
from dcbench.faults import KILLED_EXIT

TINY = ["--max-images", "256", "--k", "8", "--batch-size", "64", "--workers", "0",
        "--pca-dim", "32"]
TINY_SUPERVISED = TINY[:2] + TINY[4:8]         # no clusters: --k and --pca-dim are refused


def pretrain(out: Path, *args: str, fault: str | None = None,
             check: bool = True) -> subprocess.CompletedProcess:
    """`dcbench pretrain` on a tiny recipe. With a fault (a kill at a named point) it runs in
    a process of its own; without one, in this process: the same CLI, without the ~13 s a
    fresh interpreter spends importing torch (and torch._dynamo, which the optimizer loads),
    scikit-learn and faiss before a 5-second run."""
    argv = ["pretrain", "--out", str(out),
            *(TINY_SUPERVISED if "supervised" in args else TINY), *args]
    if fault is None:
        proc = in_process(argv)
    else:
        env = {**os.environ, "DCBENCH_NO_PROGRESS": "1", "DCBENCH_FAULT": fault}
        proc = subprocess.run([sys.executable, "-m", "dcbench", *argv], capture_output=True,
                              text=True, env=env, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def in_process(argv: list[str]) -> subprocess.CompletedProcess:
    """Run the dcbench CLI in this process as `dcbench ARGV` runs it: its exit status,
    stdout and stderr; the run folder's lock released afterwards (as at a process's end)."""
    import contextlib
    import gc
    import io
    from unittest import mock

    from dcbench import cli

    out, err, code = io.StringIO(), io.StringIO(), 0
    env = {k: v for k, v in os.environ.items() if k != "DCBENCH_FAULT"}
    with mock.patch.dict(os.environ, {**env, "DCBENCH_NO_PROGRESS": "1"}, clear=True), \
            mock.patch.object(sys, "argv", ["dcbench", *argv]), \
            contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            cli.main()
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else int(e.code is not None)
    gc.collect()
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def assert_same_run(a: Path, b: Path, epochs: int) -> None:
    wa, wb = weights(a / "checkpoint.pth.tar"), weights(b / "checkpoint.pth.tar")
    assert wa.keys() == wb.keys()
    for k in wa:
        assert torch.equal(wa[k], wb[k]), f"{k} differs after resume"
    for e in range(1, epochs + 1):
        name = f"assignments/epoch_{e:04d}.npy"
        assert np.array_equal(np.load(a / name), np.load(b / name)), name
    la = [json.loads(x) for x in (a / "log.jsonl").read_text().splitlines()]
    lb = [json.loads(x) for x in (b / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in lb] == list(range(1, epochs + 1))
    for ra, rb in zip(la, lb):
        for key in ("loss", "nmi_prev", "nmi_labels", "assignment_sha256", "clusters"):
            assert ra[key] == rb[key], key


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ref") / "run"
    pretrain(out, "--epochs", "2")
    return out


def test_a_run_leaves_checkpoint_assignments_log_and_config(reference_run: Path):
    out = reference_run
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["method"] == "deepcluster" and cfg["k"] == 8 and cfg["arch"] == "alexnet-small"
    rows = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    labels = targets_of(subset(build_dataset("fashion-mnist", "train", None), 256, 31))
    saved = [np.load(out / f"assignments/epoch_{e:04d}.npy").astype(np.int64) for e in (1, 2)]
    for r, a in zip(rows, saved):
        # the logged label metrics are those of the saved assignment: geometric NMI,
        # Hungarian ACC (percent), recomputed here with sklearn / scipy
        assert np.isfinite(r["loss"])
        assert r["nmi_labels"] == pytest.approx(
            normalized_mutual_info_score(labels, a, average_method="geometric"), abs=1e-12)
        assert r["nmi_labels_arithmetic"] == pytest.approx(
            normalized_mutual_info_score(labels, a, average_method="arithmetic"), abs=1e-12)
        table = contingency_matrix(labels, a)
        matched = table[linear_sum_assignment(-table)].sum()
        assert r["acc_labels"] == pytest.approx(100.0 * matched / 256, abs=1e-9)
        stats = json.loads((out / f"assignments/epoch_{r['epoch']:04d}.json").read_text())
        assert r["clusters"]["nonempty"] == 8 and r["empty_reseeded"] == stats["empty_reseeded"]
        assert set(r["seconds"]) >= {"features", "pca", "cluster", "train", "epoch"}
    assert rows[0]["nmi_prev"] is None
    assert rows[1]["nmi_prev"] == pytest.approx(
        normalized_mutual_info_score(saved[1], saved[0], average_method="geometric"), abs=1e-12)
    a = np.load(out / "assignments/epoch_0002.npy")
    assert a.shape == (256,) and a.min() >= 0 and len(np.unique(a)) == 8
    trunk, info = load_trunk(str(out / "checkpoint.pth.tar"))
    assert (info.format, info.method, info.epoch, info.k, info.data) == \
        ("dcbench", "deepcluster", 2, 8, "fashion-mnist")
    ckpt = torch.load(out / "checkpoint.pth.tar", weights_only=True)
    assert {"epoch", "arch", "state_dict", "optimizer", "config", "seed", "code_version"} <= \
        set(ckpt)


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["after-assignment:2", "checkpoint-write:2", "log-write:2",
                                   "mid-train:1"])
def test_resume_is_bit_exact_whatever_the_kill_point(reference_run: Path, tmp_path: Path,
                                                       fault: str):
    out = tmp_path / "run"
    killed = pretrain(out, "--epochs", "2", fault=fault, check=False)
    assert killed.returncode == KILLED_EXIT
    resumed = pretrain(out, "--epochs", "2", "--resume")
    if fault.startswith("after-assignment"):
        assert "restored the saved assignment" in resumed.stderr
    assert_same_run(reference_run, out, 2)


# `python -c SIGKILL_AT_FAULT pretrain ...`: dcbench with its fault points delivering a real
# SIGKILL to the process (instead of os._exit(77)), patched in before the methods import them.
SIGKILL_AT_FAULT = """
import os, signal, sys
import dcbench.faults as faults
def kill(name, epoch):
    if faults.fault_active(name, epoch):
        os.kill(os.getpid(), signal.SIGKILL)
faults.fault_point = kill
from dcbench.cli import main
sys.argv[0] = "dcbench"
main()
"""


@pytest.mark.slow
# the fault point's own exit (KILLED_EXIT) is resumed from in the test above; here a real
# SIGKILL, which no handler sees, in the middle of the second epoch
@pytest.mark.parametrize("how, ended", [("sigkill", -signal.SIGKILL)])
def test_resume_after_a_kill_inside_the_second_epoch(reference_run: Path, tmp_path: Path,
                                                      how: str, ended: int):
    """Killed half-way through epoch 2's training (fault point mid-train:2), by the fault
    point's os._exit(77) or by a real SIGKILL at that moment: epoch 1 is on disk, epoch 2 is
    not, and the resume completes the run with the bits of an uninterrupted one."""
    out = tmp_path / "run"
    env = {**os.environ, "DCBENCH_NO_PROGRESS": "1", "DCBENCH_FAULT": "mid-train:2"}
    launcher = ["-m", "dcbench"] if how == "exit" else ["-c", SIGKILL_AT_FAULT]
    proc = subprocess.run([sys.executable, *launcher, "pretrain", "--out", str(out), *TINY,
                           "--epochs", "2"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == ended, proc.stderr[-2000:]
    assert torch.load(out / "checkpoint.pth.tar", weights_only=True)["epoch"] == 1
    assert [json.loads(x)["epoch"] for x in (out / "log.jsonl").read_text().splitlines()] == [1]
    assert (out / "assignments/epoch_0002.npy").exists()
    pretrain(out, "--epochs", "2", "--resume")
    assert_same_run(reference_run, out, 2)


def test_nan_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path: Path):
    out = tmp_path / "run"
    proc = pretrain(out, "--epochs", "2", fault="nan-loss:2", check=False)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: the loss became nan at epoch 2") and "last good" in last
    assert torch.load(out / "checkpoint.pth.tar", weights_only=True)["epoch"] == 1


def test_supervised_baseline_learns_the_labels(tmp_path: Path):
    out = tmp_path / "sup"
    pretrain(out, "--method", "supervised", "--epochs", "2", "--max-images", "1024")
    rows = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    assert rows[-1]["method"] == "supervised" and rows[-1]["train_acc"] > 20.0   # chance: 10
    assert rows[-1]["loss"] < rows[0]["loss"]
    _, info = load_trunk(str(out / "checkpoint.pth.tar"))
    assert info.method == "supervised" and info.k == 10


@pytest.mark.parametrize("extra", [["--clustering", "pic"], ["--sampler", "released"],
                                   ["--no-sobel", "--reassign", "0.5"]])
def test_variants_run(tmp_path: Path, extra: list[str]):
    out = tmp_path / "run"
    pretrain(out, "--epochs", "1", *extra)
    row = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    assert row["clustering"] == ("pic" if "pic" in extra else "kmeans")
    _, info = load_trunk(str(out / "checkpoint.pth.tar"))
    assert info.sobel == ("--no-sobel" not in extra)


def test_deepcluster_pretrains_a_resnet(tmp_path: Path):
    """`--arch resnet18`: RGB by default, Fashion-MNIST served at 224 px, res5avg clustered."""
    out = tmp_path / "r18"
    pretrain(out, "--arch", "resnet18", "--epochs", "1", "--max-images", "48", "--k", "4",
             "--batch-size", "16")
    row = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    assert row["clusters"]["k"] == 4 and math.isfinite(row["loss"])
    trunk, info = load_trunk(str(out / "checkpoint.pth.tar"))
    assert (info.arch, info.sobel, info.k, info.format) == ("resnet18", False, 4, "dcbench")


@pytest.mark.parametrize("args, message", [
    (["--data", "nope"], "unknown dataset 'nope'"),
    (["--arch", "resnet"],
     "'resnet' is not one of 'alexnet', 'alexnet-small', 'alexnet-small-wide', 'vgg16'"),
    (["--arch", "alexnet-small", "--data", "imagenet"], "use --arch alexnet or vgg16"),
    (["--k", "300"], "--k 300 is larger than the 256 images"),
    (["--method", "simclr"], "'simclr' is not one of 'deepcluster', 'supervised', 'jule'"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, args: list[str], message: str):
    proc = pretrain(tmp_path / "run", "--epochs", "1", *args, check=False)
    assert proc.returncode == 2, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error:") and message in last


def test_an_existing_run_is_refused_unless_resume_matches(reference_run: Path, tmp_path: Path):
    proc = pretrain(reference_run, "--epochs", "2", check=False)
    assert proc.returncode == 2 and "pass --resume" in proc.stderr
    proc = pretrain(reference_run, "--epochs", "2", "--resume", "--lr", "0.1", check=False)
    assert proc.returncode == 2 and "lr: 0.05 -> 0.1" in proc.stderr
    finished = pretrain(reference_run, "--epochs", "2", "--resume")
    assert "already has 2 epochs" in finished.stderr
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    proc = pretrain(tmp_path / "other", "--epochs", "1", check=False)
    assert proc.returncode == 2 and "holds no dcbench run" in proc.stderr


def _kill_after_assignment(tmp_path: Path) -> Path:
    out = tmp_path / "run"
    killed = pretrain(out, "--epochs", "2", fault="after-assignment:2", check=False)
    assert killed.returncode == KILLED_EXIT
    return out


def test_resume_trains_on_the_saved_assignment_not_a_recomputed_one(tmp_path: Path):
    """The saved epoch-2 assignment is relabelled on disk (cluster c -> (c + 1) % 8: the
    same partition, other pseudo-labels); a resume that re-clustered would log the original
    digest, one that restores logs the relabelled file's."""
    out = _kill_after_assignment(tmp_path)
    path = out / "assignments/epoch_0002.npy"
    changed = (np.load(path).astype(np.int64) + 1) % 8
    np.save(path, changed.astype(np.int32))
    resumed = pretrain(out, "--epochs", "2", "--resume")
    assert "epoch 2: restored the saved assignment" in resumed.stderr
    row = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()][1]
    digest = hashlib.sha256(changed.astype(np.int64).tobytes()).hexdigest()[:16]
    assert row["assignment_sha256"] == digest


def test_an_assignment_from_another_model_state_is_ignored(reference_run: Path,
                                                            tmp_path: Path):
    out = _kill_after_assignment(tmp_path)
    meta = out / "assignments/epoch_0002.json"
    stats = json.loads(meta.read_text())
    stats["model_sha256"] = "0" * 64                  # as if another run had written it
    meta.write_text(json.dumps(stats))
    np.save(out / "assignments/epoch_0002.npy", np.zeros(256, np.int32))
    resumed = pretrain(out, "--epochs", "2", "--resume")
    assert "ignoring" in resumed.stderr and "another model state" in resumed.stderr
    assert_same_run(reference_run, out, 2)


def test_a_fresh_start_never_uses_leftover_assignments(reference_run: Path, tmp_path: Path):
    """A folder like the committed showcase: config and assignments, no checkpoint."""
    out = tmp_path / "run"
    out.mkdir()
    shutil.copy(reference_run / "config.json", out / "config.json")
    cfg = json.loads((out / "config.json").read_text())
    cfg["out"] = str(out)
    (out / "config.json").write_text(json.dumps(cfg))
    shutil.copytree(reference_run / "assignments", out / "assignments")
    np.save(out / "assignments/epoch_0001.npy", np.zeros(256, np.int32))
    run = pretrain(out, "--epochs", "2", "--resume")
    assert "nothing to resume" in run.stderr and "never completed an epoch" in run.stderr
    assert_same_run(reference_run, out, 2)


def test_runs_saved_before_empty_clusters_existed_resume_as_paper_rule() -> None:
    from dcbench.methods.config import differences, resolve

    new = resolve({"data": "fashion-mnist", "out": "x"})
    old = {k: v for k, v in new.items() if k != "empty_clusters"}
    assert new["empty_clusters"] == "paper" and differences(old, new) == []
    released = {**new, "empty_clusters": "released"}
    assert differences(old, released) == ["empty_clusters"]
    paper_data = resolve({"data": "imagenet", "out": "x"})
    assert paper_data["empty_clusters"] == "released"      # the released code's rule


def test_yfcc1m_end_to_end_skips_and_counts_bad_entries(tiny_file_list: Path, tmp_path: Path,
                                                        tiny_sizes) -> None:
    """`pretrain --data yfcc1m` on a list holding a corrupt image, a zero-byte image and a
    missing path: the two unreadable files get no cluster and are never trained on, the
    missing one is left out; all three are counted in log.jsonl and said on screen."""
    root = tmp_path / "yfcc"
    shutil.copytree(tiny_file_list, root)
    (root / "images" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    (root / "images" / "zero.png").write_bytes(b"")
    with open(root / "yfcc1m.txt", "a") as f:
        f.write("images/corrupt.png\nimages/zero.png\nimages/gone.png\n")
    out = tmp_path / "run"
    proc = in_process(["pretrain", "--data", "yfcc1m", "--root", str(root), "--out", str(out),
                       "--epochs", "1", "--k", "3", "--batch-size", "4", "--workers", "0",
                       "--pca-dim", "8"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = [json.loads(x) for x in (out / "log.jsonl").read_text().splitlines()]
    n = tiny_sizes.list_size
    assert (row["missing_images"], row["skipped_in_clustering"], row["skipped_images"]) == \
        (1, 2, 2)
    assert row["images_trained"] == n                 # reassign 1: each readable image once
    assignment = np.load(out / "assignments" / "epoch_0001.npy")
    assert len(assignment) == n + 2 and (assignment == -1).sum() == 2
    assert "1 listed images do not exist" in proc.stderr
    assert "2 of 14 images could not be read" in proc.stderr


def test_bf16_only_where_the_hardware_computes_it(monkeypatch) -> None:
    """auto picks bf16 on a bf16 GPU and on an AMX CPU, float32 elsewhere; off always keeps
    float32; bf16 on hardware that would emulate it is refused; evaluations on CPU stay
    float32 whatever the CPU."""
    from dcbench.errors import DcbenchError
    from dcbench.precision import amp_name, autocast, eval_amp_name

    cpu, gpu = torch.device("cpu"), torch.device("cuda", 0)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert amp_name(cpu) == "off"
    with pytest.raises(DcbenchError, match="no native bf16.*--amp off"):
        amp_name(cpu, "bf16")
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert (amp_name(cpu), amp_name(cpu, "bf16"), amp_name(cpu, "off")) == ("bf16", "bf16", "off")
    assert eval_amp_name(cpu) == "off"
    with autocast(cpu, "off"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    with autocast(cpu, "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert amp_name(gpu) == eval_amp_name(gpu) == "bf16"
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert amp_name(gpu) == eval_amp_name(gpu) == "off"   # float32, never fp16 unscaled


def test_the_reference_run_records_its_precision(reference_run: Path) -> None:
    """auto: bf16 on a CPU with AMX (this machine), float32 on others."""
    saved = json.loads((reference_run / "config.json").read_text())["amp"]
    assert saved == ("bf16" if torch.cpu._is_amx_tile_supported() else "off")


def test_the_supervised_baseline_is_reproducible(tmp_path: Path) -> None:
    """Two supervised runs with the same seed train the same network (the head was drawn
    from torch's unseeded default generator, so the baseline changed run to run)."""
    for name in ("a", "b"):
        pretrain(tmp_path / name, "--method", "supervised", "--epochs", "1")
    wa, wb = weights(tmp_path / "a" / "checkpoint.pth.tar"), weights(tmp_path / "b" /
                                                                    "checkpoint.pth.tar")
    assert wa.keys() == wb.keys() and "top_layer.weight" in wa
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
