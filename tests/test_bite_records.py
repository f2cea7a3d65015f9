"""Records from concurrent writers (issue 20, row 4): several processes appending to one
records.jsonl keep every record exactly once and whole, because append_records goes through
dcbench.atomic.atomic_append_lines, which rewrites the file under an exclusive lock."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from dcbench import atomic, results
from dcbench.results import Record, append_records, read_records, records_path

WRITERS = 4
PER_WRITER = 50
PAYLOAD = 2000          # characters of padding per record: a torn line would be visible


def make_record(writer: int, i: int) -> Record:
    return Record(task="toy", setting=f"w{writer}", dataset="d", split="test", metric="m",
                  value=float(i), best=None, best_epoch=None, epochs=None,
                  checkpoint={"path": "random:alexnet-small:0", "sha256": f"{writer:064d}"},
                  seed=i, config={"writer": writer, "i": i}, config_hash=f"h{writer}-{i}",
                  code_version="git:0", dcbench_version="0.1.0",
                  started="2024-01-01T00:00:00+00:00", seconds=1.0, device="cpu",
                  world_size=1, extra={"pad": f"{writer}-{i}:" + "x" * PAYLOAD})


def _writer(results_dir: str, writer: int, start: mp.synchronize.Barrier) -> None:
    start.wait()
    for i in range(PER_WRITER):
        append_records([make_record(writer, i)], results_dir)


def test_concurrent_writers_keep_every_record_exactly_once_and_whole(tmp_path: Path):
    ctx = mp.get_context("fork")
    start = ctx.Barrier(WRITERS)
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), w, start)) for w in range(WRITERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0] * WRITERS
    lines = records_path(tmp_path).read_text().split("\n")
    assert lines[-1] == ""                                  # ends with a newline, no partial
    lines = lines[:-1]
    assert len(lines) == WRITERS * PER_WRITER
    seen = [(json.loads(x)["config"]["writer"], json.loads(x)["config"]["i"]) for x in lines]
    assert sorted(seen) == [(w, i) for w in range(WRITERS) for i in range(PER_WRITER)]
    for line, (w, i) in zip(lines, seen):
        assert line == make_record(w, i).to_json()           # whole, byte for byte
    # each writer's own records stay in the order it appended them
    for w in range(WRITERS):
        assert [i for ww, i in seen if ww == w] == list(range(PER_WRITER))
    assert len(read_records(records_path(tmp_path))) == WRITERS * PER_WRITER


def test_append_records_goes_through_atomic_append_lines(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch):
    calls: list[tuple[Path, list[str]]] = []
    real = atomic.atomic_append_lines

    def spy(path, lines):
        calls.append((Path(path), list(lines)))
        real(path, lines)

    monkeypatch.setattr(results, "atomic_append_lines", spy)
    monkeypatch.setattr(atomic, "atomic_append_lines", spy)
    recs = [make_record(0, 0), make_record(1, 1)]
    path = append_records(recs, tmp_path)
    assert path == tmp_path / "records.jsonl"
    assert calls == [(path, [r.to_json() for r in recs])]
    assert path.read_text() == "".join(r.to_json() + "\n" for r in recs)


def test_an_append_waits_for_the_lock_another_writer_holds(tmp_path: Path):
    """While the lock is held, append_records neither writes nor returns; it writes once the
    lock is released."""
    path = records_path(tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(make_record(9, 9).to_json() + "\n")
    done = threading.Event()

    def append() -> None:
        append_records([make_record(0, 0)], tmp_path)
        done.set()

    with atomic.locked(path):
        t = threading.Thread(target=append, daemon=True)
        t.start()
        assert not done.wait(0.5), "append_records wrote while another writer held the lock"
        assert path.read_text() == make_record(9, 9).to_json() + "\n"
    assert done.wait(30)
    t.join(30)
    assert path.read_text() == make_record(9, 9).to_json() + "\n" + make_record(0, 0).to_json() \
        + "\n"


def test_a_file_missing_its_last_newline_gets_one_before_the_new_lines(tmp_path: Path):
    path = records_path(tmp_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(make_record(5, 5).to_json())              # no trailing newline
    append_records([make_record(6, 6)], tmp_path)
    assert path.read_text().split("\n") == [make_record(5, 5).to_json(),
                                           make_record(6, 6).to_json(), ""]


def test_a_failed_write_leaves_the_file_as_it_was(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch):
    path = records_path(tmp_path)
    append_records([make_record(1, 1)], tmp_path)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        append_records([make_record(2, 2)], tmp_path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


# ------------------------------------------------- the atomic writes under the records


def test_lines_are_appended_exactly_as_given_but_for_their_newline(tmp_path: Path):
    """Only a trailing newline is dropped (and one added): trailing spaces, tabs or other
    characters are part of the line."""
    path = tmp_path / "lines.txt"
    atomic.atomic_append_lines(path, ["a b \t", "endsX", "nl\n", "ünï"])
    assert path.read_bytes() == "a b \t\nendsX\nnl\nünï\n".encode()


def test_the_temporary_file_is_hidden_beside_the_target_and_renamed_over_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    renames: list[tuple[Path, Path]] = []
    real_replace = atomic.os.replace

    def spy(src, dst):
        renames.append((Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", spy)
    target = tmp_path / "records.jsonl"
    atomic.atomic_write_bytes(target, b"x\n")
    (src, dst), = renames
    assert dst == target and src.parent == tmp_path               # same folder: atomic rename
    assert src.name.startswith(".records.jsonl.") and src.name.endswith(".tmp")
    assert not src.exists() and target.read_bytes() == b"x\n"


def test_missing_parent_folders_are_created(tmp_path: Path):
    target = tmp_path / "a" / "b" / "c" / "records.jsonl"
    atomic.atomic_write_bytes(target, b"x")
    assert target.read_bytes() == b"x"


def test_text_and_numpy_writes_round_trip(tmp_path: Path):

    atomic.atomic_write_text(tmp_path / "t.txt", "ünïcode\n")
    assert (tmp_path / "t.txt").read_bytes() == "ünïcode\n".encode()
    a = np.arange(12, dtype=np.int32).reshape(3, 4)
    atomic.atomic_numpy_save(tmp_path / "a.npy", a)
    b = np.load(tmp_path / "a.npy", allow_pickle=False)
    assert b.dtype == np.int32 and np.array_equal(a, b)
    with pytest.raises(ValueError):            # no pickled objects in an assignment file
        atomic.atomic_numpy_save(tmp_path / "o.npy", np.array([{"a": 1}], dtype=object))
    assert not (tmp_path / "o.npy").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_new_files_get_the_umask_mode_not_mkstemps_0600(tmp_path: Path):
    old = os.umask(0o027)
    try:
        atomic.atomic_write_bytes(tmp_path / "f", b"x")
    finally:
        os.umask(old)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o640


def test_a_record_is_one_line_of_sorted_keys_with_other_values_as_text():
    r = make_record(3, 4)
    r.extra = {"where": Path("/x/y"), "b": 1, "a": 2}
    line = r.to_json()
    assert "\n" not in line
    obj = json.loads(line)
    assert list(obj) == sorted(obj) and list(obj["extra"]) == ["a", "b", "where"]
    assert obj["extra"]["where"] == "/x/y"                 # default=str, not a TypeError


def test_the_results_folder_is_the_option_then_dcbench_results_then_results(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("DCBENCH_RESULTS", raising=False)
    assert results.results_dir() == Path("results")
    assert results.records_path() == Path("results") / "records.jsonl"
    monkeypatch.setenv("DCBENCH_RESULTS", str(tmp_path / "env"))
    assert results.results_dir() == tmp_path / "env"
    assert results.results_dir(tmp_path / "opt") == tmp_path / "opt"
    assert results.records_path(tmp_path / "opt") == tmp_path / "opt" / "records.jsonl"


FRAME_COLUMNS = ["task", "setting", "dataset", "split", "metric", "value", "best", "best_epoch",
                 "epochs", "seed", "config_hash", "code_version", "started", "seconds",
                 "device", "world_size", "quick", "command", "ckpt_path", "ckpt_sha256",
                 "ckpt_arch", "ckpt_method", "ckpt_epoch", "ckpt_format", "ckpt_sobel",
                 "ckpt_k", "ckpt_data", "config", "extra"]


def test_an_empty_frame_still_has_every_column(tmp_path: Path):
    frame = results.load_frame(tmp_path / "none.jsonl")
    assert len(frame) == 0 and list(frame.columns) == FRAME_COLUMNS
    assert all(frame[c].dtype == object for c in FRAME_COLUMNS)


def test_the_frame_flattens_the_checkpoint_and_keeps_config_and_extra(tmp_path: Path):
    r = make_record(2, 7)
    r.checkpoint = {"path": "random:alexnet-small:0", "sha256": "ab", "arch": "alexnet-small"}
    append_records([r], tmp_path)
    frame = results.load_frame(records_path(tmp_path))
    assert set(FRAME_COLUMNS) <= set(frame.columns) and "checkpoint" not in frame.columns
    row = frame.iloc[0]
    assert (row["task"], row["setting"], row["value"], row["seed"]) == ("toy", "w2", 7.0, 7)
    assert (row["ckpt_path"], row["ckpt_sha256"], row["ckpt_arch"]) == \
        ("random:alexnet-small:0", "ab", "alexnet-small")
    assert row["config"] == {"writer": 2, "i": 7} and row["extra"] == r.extra
    assert pd.isna(row["ckpt_epoch"]) and frame["ckpt_epoch"].dtype == object   # absent


def test_recorded_keys_are_the_cache_keys_of_the_records_on_disk(tmp_path: Path):
    assert results.recorded_keys(tmp_path) == set()
    a, b = make_record(1, 2), make_record(3, 4)
    append_records([a, b], tmp_path)
    assert a.key() == ("toy", "w1", f"{1:064d}", "h1-2", 2)
    assert results.cache_key("t", "s", "x", "h", np.int64(5)) == ("t", "s", "x", "h", 5)
    assert type(results.cache_key("t", "s", "x", "h", np.int64(5))[-1]) is int
    assert results.recorded_keys(tmp_path) == {a.key(), b.key()}
