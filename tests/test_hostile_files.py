"""Hostile and damaged files (issue 33): a ground-truth pickle that would run a command, a
checkpoint with a flipped byte or values of the wrong type, a run folder two processes want.
Each row runs the real CLI in-process (tests/test_bad_inputs.py's harness) and asserts exit
code 2, one line naming the file (and field), no traceback, nothing in the workspace changed,
and, for the hostile pickles, that the payload's marker file was never created.
"""

from __future__ import annotations

import gzip
import json
import os
import pickle
import re
import shutil
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from test_bad_inputs import (
    RND,
    Row,
    _record,
    assert_readme_lists,
    check_row,
    run_cli,
    snapshot,
)
from test_pretrain import in_process

from dcbench.checkpoint import save_checkpoint
from dcbench.data.embedded.build_digests import write_digests
from dcbench.data.embedded.retrieval_builder import build_fmnist_retrieval
from dcbench.data.retrieval.oxford_paris import load_retrieval_set
from dcbench.errors import DataError
from dcbench.models import build_model

FMNIST = "/usr/share/datasets/fashion-mnist"
OX, PA = "fmnist-oxford-quick", "fmnist-paris-quick"
GND = "gnd_roxford5k.pkl"


class _Shell:
    """Pickles as a call of os.system (the classic payload): unpickling runs `command`."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class _Exec:
    """Pickles as a call of builtins.exec: unpickling runs Python that writes a file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def plant(root: Path, payload: object) -> None:
    """Replace root's gnd pickle by the genuine ground truth plus `payload` under an extra key
    (so a plain pickle.load would run it and carry on with correct numbers)."""
    with open(root / GND, "rb") as f:
        genuine = pickle.load(f)
    (root / GND).write_bytes(pickle.dumps({**genuine, "notes": payload}))


def tiny_state() -> dict[str, torch.Tensor]:
    return build_model("alexnet-small", sobel=True, seed=0).state_dict()


def flip_a_weight_byte(path: Path) -> None:
    """Flip one byte inside the first tensor's data (torch's zip stores members uncompressed,
    so the file still loads; only the member's CRC tells)."""
    with zipfile.ZipFile(path) as z:
        info = next(i for i in z.infolist() if re.search(r"/data/\d+$", i.filename))
    data = bytearray(path.read_bytes())
    head = info.header_offset        # local header: 30 bytes, then the name and extra field
    name_len = int.from_bytes(data[head + 26:head + 28], "little")
    extra_len = int.from_bytes(data[head + 28:head + 30], "little")
    start = head + 30 + name_len + extra_len
    data[start + 3] ^= 0xFF                      # the top byte of the first float32
    path.write_bytes(bytes(data))


def _make(ws: Path, sets: Path) -> None:
    (ws / "results").mkdir()
    (ws / "results" / "records.jsonl").write_text(json.dumps(_record()) + "\n")
    # an Oxford-layout dataset root (the embedded build's jpg/, gt/ and gnd pickle, as a user's
    # own copy of oxford5k would hold them), with a hostile gnd pickle
    for case, payload in (("shell", _Shell(f"touch {ws / 'MARKER'}")),
                          ("exec", _Exec(ws / "MARKER"))):
        root = ws / case / "oxford5k"
        shutil.copytree(sets / OX, root)
        for name in ("BUILD_INFO.json", "DIGESTS.json", "scenes.json"):
            (root / name).unlink()
        plant(root, payload)
    state = tiny_state()
    save_checkpoint(ws / "flipped.pth", build_model("alexnet-small", sobel=True, seed=0),
                    epoch=1, method="deepcluster")
    flip_a_weight_byte(ws / "flipped.pth")
    torch.save({"state_dict": {**state, "features.0.weight":
                               state["features.0.weight"].to(torch.int64)}}, ws / "int64.pth")
    torch.save({"state_dict": state, "epoch": "abc"}, ws / "epoch_abc.pth")
    torch.save({**state, "classifier.9.weight\nerror: all is fine": torch.zeros(1)},
               ws / "newline_key.pth")
    torch.save({"weights": state, "epoch": 3}, ws / "no_state_dict.pth")
    torch.save({"state_dict": [1, 2, 3]}, ws / "state_list.pth")


@pytest.fixture(scope="module")
def sets(tmp_path_factory) -> Path:
    """Both quick retrieval sets, built once (copied, never modified)."""
    base = tmp_path_factory.mktemp("sets")
    for name in ("fmnist-oxford", "fmnist-paris"):
        build_fmnist_retrieval(base / f"{name}-quick", name, FMNIST, quick=True,
                               show_progress=False)
    return base


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, sets: Path) -> Path:
    ws = tmp_path_factory.mktemp("hostile")
    _make(ws, sets)
    return ws


EVAL = "eval --task knn --quick --ckpt {ws}/"
ROWS = [
    Row("data validate oxford5k --root {ws}/shell/oxford5k",
        r"shell/oxford5k/gnd_roxford5k.pkl is refused: it names posix.system, which a file of "
        r"plain data and numeric arrays never does"),
    Row("eval --task retrieval-oxford --quick --ckpt random:alexnet-small:0 --set "
        "dataset=oxford5k --set whiten_on=fmnist-paris-quick --data-root {ws}/exec",
        r"exec/oxford5k/gnd_roxford5k.pkl is refused: it names builtins.exec"),
    Row(f"{EVAL}flipped.pth", r"flipped.pth is corrupt: its member '.*/data/\d+' fails the zip "
        r"CRC check"),
    Row(f"{EVAL}int64.pth", r"int64.pth: state_dict entry 'features.0.weight' holds "
        r"torch.int64 values; weights and buffers are floating point"),
    Row(f"{EVAL}epoch_abc.pth", r"epoch_abc.pth: field 'epoch' is 'abc' \(str\); expected a "
        r"whole number of epochs"),
    Row(f"{EVAL}newline_key.pth", r"newline_key.pth: cannot tell the architecture .* it has "
        r"unexpected classifier.9.weight\\nerror: all is fine;"),
    Row(f"{EVAL}no_state_dict.pth", r"no_state_dict.pth has no state dict and is not a state "
        r"dict itself \(entry 'weights' is of type OrderedDict, not a tensor\)"),
    Row(f"{EVAL}state_list.pth", r"state_list.pth: field 'state_dict' is \[1, 2, 3\] \(list\); "
        r"expected a dict of parameter name -> tensor"),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.args.split("{ws}/")[-1][:50] for r in ROWS])
def test_hostile_or_damaged_file_is_refused_and_runs_nothing(
        row: Row, workspace: Path, sets: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    shutil.copytree(sets / PA, cache / PA)            # whitening set, not to be rebuilt
    check_row(row, workspace, monkeypatch, capsys, cache)
    assert not (workspace / "MARKER").exists()



def test_readme_lists_every_row() -> None:
    assert_readme_lists(ROWS)

@pytest.mark.parametrize("rewrite_digests", [False, True], ids=["as built", "digests forged"])
def test_hostile_pickle_in_the_embedded_cache_runs_nothing(
        rewrite_digests: bool, sets: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    """The plain `eval --task retrieval-oxford --quick` the issue used: the planted file is
    refused by the build's digests; with the digests forged to match, by the safe reader."""
    cache, marker = tmp_path / "cache", tmp_path / "MARKER"
    for name in (OX, PA):
        shutil.copytree(sets / name, cache / name)
    plant(cache / OX, _Shell(f"touch {marker}"))
    if rewrite_digests:
        write_digests(cache / OX)
    monkeypatch.setenv("DCBENCH_CACHE", str(cache))
    monkeypatch.setenv("DCBENCH_RESULTS", str(tmp_path / "results"))
    code, err = run_cli(["eval", "--task", "retrieval-oxford", "--ckpt", RND, "--quick"],
                        monkeypatch, capsys)
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2 and len(lines) == 1, err
    expected = ("is refused: it names posix.system" if rewrite_digests
                else "differs from the file the build wrote (sha256 mismatch)")
    assert f"{OX}/{GND} {expected}" in lines[0], lines[0]
    assert not marker.exists() and not (tmp_path / "results" / "records.jsonl").exists()


def _gnd_edit(cfg: dict, case: str) -> None:
    g = cfg["gnd"]
    if case == "entry_not_dict":
        g[1] = [1, 2, 3]
    elif case == "string_indices":
        g[0]["easy"] = ["3", "4"]
    elif case == "float_indices":
        g[0]["easy"] = np.array([0.5, 2.0])
    elif case == "bool_indices":
        g[0]["junk"] = [True]
    elif case == "duplicate_imlist":
        cfg["imlist"][1] = cfg["imlist"][0]
    elif case == "no_positives":
        g[2]["easy"], g[2]["hard"] = [], []
    elif case == "object_array":
        g[0]["easy"] = np.array([1, "x"], dtype=object)


GND_CASES = {
    "entry_not_dict": r"gnd\[1\] \(\w+\) is a list, expected a dict with bbx, easy, hard and "
                      r"junk",
    "string_indices": r"gnd\[0\] \(\w+\) 'easy' holds .*'3'.*; expected whole-number indices",
    "float_indices": r"gnd\[0\] \(\w+\) 'easy' holds .*0.5.*; expected whole-number indices",
    "bool_indices": r"gnd\[0\] \(\w+\) 'junk' holds .*True.*; expected whole-number indices",
    "duplicate_imlist": r"'imlist' names image \w+ twice",
    "no_positives": r"gnd\[2\] \(\w+\) has no easy and no hard positive",
    "object_array": r"holds a numpy array of dtype object; expected numeric arrays only",
}


@pytest.mark.parametrize("case", GND_CASES)
def test_bad_revisited_ground_truth_is_named_with_its_field(
        case: str, sets: Path, tmp_path: Path) -> None:
    root = tmp_path / "oxford5k"
    shutil.copytree(sets / OX, root)
    with open(root / GND, "rb") as f:
        cfg = pickle.load(f)
    _gnd_edit(cfg, case)
    (root / GND).write_bytes(pickle.dumps(cfg))
    with pytest.raises(DataError) as e:
        load_retrieval_set(root)
    msg = str(e.value)
    assert "\n" not in msg and str(root / GND) in msg
    assert re.search(GND_CASES[case], msg), msg


# --- run folders: resume from a damaged checkpoint, two runs into one --out ------------------
PRE = ["pretrain", "--data", "fashion-mnist", "--max-images", "256", "--k", "10",
       "--workers", "0"]


@pytest.fixture(scope="module")
def one_epoch_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("run") / "dc"
    proc = in_process([*PRE, "--out", str(out), "--epochs", "1"])      # test_pretrain's
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.parametrize("damage", ["optimizer_none", "nan_weights"])
def test_resume_from_a_damaged_checkpoint_is_refused_naming_it(
        damage: str, one_epoch_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "dc"
    shutil.copytree(one_epoch_run, out)
    ckpt = torch.load(out / "checkpoint.pth.tar", weights_only=True)
    if damage == "optimizer_none":
        ckpt["optimizer"] = None
    else:
        ckpt["state_dict"]["features.0.weight"].fill_(float("nan"))
    torch.save(ckpt, out / "checkpoint.pth.tar")
    before = snapshot(out)
    code, err = run_cli([*PRE, "--out", str(out), "--epochs", "2", "--resume"], monkeypatch,
                        capsys)
    lines = [x for x in err.splitlines() if x.strip() and x.startswith("error")]
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    expected = (r"checkpoint.pth.tar has no optimizer \(None\), so the run cannot resume "
                r"exactly from it" if damage == "optimizer_none" else
                r"checkpoint.pth.tar holds NaN or inf values in features.0.weight: the run "
                r"diverged before it was saved")
    assert re.search(expected, lines[0]), lines[0]
    assert snapshot(out) == before


def test_two_pretraining_runs_into_one_out_one_runs_the_other_is_refused(
        tmp_path: Path) -> None:
    out = tmp_path / "dc"
    env = {**os.environ, "DCBENCH_NO_PROGRESS": "1"}
    cmd = [sys.executable, "-m", "dcbench", *PRE, "--out", str(out), "--epochs", "2"]
    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True)
    lock = tmp_path / ".dc.lock"
    deadline = time.time() + 120
    while not (lock.exists() and lock.read_text().strip() == str(first.pid)):
        assert first.poll() is None and time.time() < deadline, first.communicate()
        time.sleep(0.05)
    second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    out1, err1 = first.communicate(timeout=600)
    assert first.returncode == 0, err1
    lines = [x for x in second.stderr.splitlines() if x.strip()]
    assert second.returncode == 2 and len(lines) == 1, second.stderr
    assert lines[0] == (f"error: --out {out} is in use by another dcbench process (pid "
                        f"{first.pid}); wait for it to finish or choose another --out")
    log = (out / "log.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in log] == [1, 2]
    assert torch.load(out / "checkpoint.pth.tar", weights_only=True)["epoch"] == 2


def test_jule_k_s_above_the_images_is_refused(tmp_path: Path, monkeypatch, capsys) -> None:
    code, err = run_cli(["pretrain", "--method", "jule", "--data", "fashion-mnist",
                         "--max-images", "300", "--set", "k_s=1000000000", "--out",
                         str(tmp_path / "j")], monkeypatch, capsys)
    lines = [x for x in err.splitlines() if x.strip()]
    assert code == 2 and lines == ["error: k_s 1000000000: each image has only 299 neighbours "
                                   "among the 300 images; expected k_s in 1..299 (JULE uses "
                                   "20)"], err
    assert not (tmp_path / "j").exists()


def test_an_idx_header_or_gzip_bomb_cannot_exhaust_memory(tmp_path: Path) -> None:
    """A header claiming 10^11 bytes is refused before reading; a stream longer than its
    header promises (a gzip bomb behind a small header) is read only as far as promised."""
    from dcbench.data.idx import read_idx

    path = tmp_path / "train-images-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">IIII", 2051, 100_000, 1000, 1000))
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: its header claims "
                       r"100000 x 1000 x 1000 = 100,000,000,000 bytes, over the"):
        read_idx(path, 2051)
    with gzip.open(path, "wb") as f:
        f.write(struct.pack(">IIII", 2051, 2, 2, 2) + bytes(range(8)) + bytes(50_000_000))
    got = read_idx(path, 2051)
    assert got.shape == (2, 2, 2) and got.ravel().tolist() == list(range(8))


def test_an_entity_expansion_annotation_is_refused_quickly(tmp_path: Path) -> None:
    """'Billion laughs': 10^9 characters from a 600-byte file; expat's amplification limit
    stops it, and the error names the file."""
    from dcbench.data.voc.devkit import read_annotation

    entities = "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">'
                       for i in range(9))
    path = tmp_path / "000001.xml"
    path.write_text(f'<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa">{entities}]>'
                    f'<annotation><filename>&j;</filename></annotation>')
    start = time.time()
    with pytest.raises(DataError, match=r"000001.xml is not valid XML \(limit on input "
                       r"amplification factor"):
        read_annotation(path)
    assert time.time() - start < 10


def test_a_checkpoint_zip_that_unpacks_far_beyond_its_size_is_refused(
        tmp_path: Path) -> None:
    """torch.save stores members uncompressed; a deflated 1 GB member is a bomb, refused from
    the zip's directory before anything is unpacked."""
    from dcbench.checkpoint_file import CheckpointError, read_file

    good = tmp_path / "good.pth"
    torch.save({"state_dict": {"w": torch.zeros(3)}}, good)
    bomb = tmp_path / "bomb.pth"
    with zipfile.ZipFile(good) as src, zipfile.ZipFile(bomb, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, src.read(info))
        member = zipfile.ZipInfo("archive/data/9")
        member.compress_type = zipfile.ZIP_DEFLATED
        with dst.open(member, "w", force_zip64=True) as f:
            for _ in range(1024):
                f.write(bytes(2**20))
    assert zipfile.ZipFile(bomb).getinfo("archive/data/9").file_size == 2**30
    assert bomb.stat().st_size < 2**23
    with pytest.raises(CheckpointError, match=r"bomb.pth unpacks to 1,07\d,\d{3},\d{3} bytes"):
        read_file(bomb)


def test_an_oxford_gt_file_with_bytes_that_are_not_utf8_is_named_with_its_line(
        sets: Path, tmp_path: Path) -> None:
    root = tmp_path / "oxford5k"
    shutil.copytree(sets / OX, root)
    good = sorted((root / "gt").glob("*_good.txt"))[0]
    with open(good, "ab") as f:
        f.write(b"caf\xe9\n")
    lines = good.read_bytes().count(b"\n")
    with pytest.raises(DataError) as e:
        load_retrieval_set(root)
    assert str(e.value).startswith(f"{good}:{lines} is not UTF-8 text (byte 0xe9)"), e.value


def test_pretraining_that_diverges_stops_in_one_line(tmp_path: Path, monkeypatch,
                                                     capsys) -> None:
    """--lr 1e30 (issue 33: 'unexpected RuntimeError: index -1 is out of bounds'): the one
    batch of epoch 1 throws the weights far out, epoch 2's clustering pass finds its features
    not finite and says so."""
    out = tmp_path / "dc"
    code, err = run_cli([*PRE, "--out", str(out), "--epochs", "2", "--lr", "1e30"],
                        monkeypatch, capsys)
    errors = [x for x in err.splitlines() if x.startswith("error")]
    assert code == 2 and "Traceback" not in err, err
    assert errors == ["error: the trunk's features hold NaN or inf at the clustering pass (the "
                      "weights diverged, or overflowed in reduced precision): lower --lr, or "
                      "pass --amp off"], err
