"""Reading records on hand-made files where the mutants bench/mutation.py found surviving in
dcbench.results give another outcome: undecodable bytes, blank lines, the once-per-line
warning, the missing-sha256 reason, a folder given as the file, and a record without config
or extra."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dcbench import results
from dcbench.results import load_frame, read_records


def _record(**over) -> dict:
    r = {"task": "knn", "setting": "conv5", "metric": "top1", "value": 80.0,
         "checkpoint": {"path": "p", "sha256": "ab" * 32}, "seed": 0, "config_hash": "c0",
         "config": {"k": 1}, "extra": {}}
    r.update(over)
    return r


@pytest.fixture(autouse=True)
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(results, "_warned", set())


def test_undecodable_bytes_skip_their_line_and_keep_the_others(tmp_path: Path, capsys) -> None:
    p = tmp_path / "records.jsonl"
    p.write_bytes(b"\xff\xfe not utf-8\n" + json.dumps(_record()).encode() + b"\n")
    assert [r["task"] for r in read_records(p)] == ["knn"]
    assert f"warning: {p}:1 is not a dcbench record (not JSON" in capsys.readouterr().err


def test_a_blank_line_does_not_end_the_file(tmp_path: Path) -> None:
    p = tmp_path / "records.jsonl"
    p.write_text(json.dumps(_record(seed=1)) + "\n\n" + json.dumps(_record(seed=2)) + "\n")
    assert [r["seed"] for r in read_records(p)] == [1, 2]


def test_a_bad_line_warns_once_per_file(tmp_path: Path, capsys) -> None:
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    a.write_text("{}\n")
    b.write_text("{}\n")
    read_records(a)
    read_records(a)                         # the same line again: no second warning
    read_records(b)                         # the same line in another file: warned
    err = capsys.readouterr().err.splitlines()
    assert err == [f"warning: {a}:1 is not a dcbench record (no 'task'); skipped (fix or "
                   f"delete that line)",
                   f"warning: {b}:1 is not a dcbench record (no 'task'); skipped (fix or "
                   f"delete that line)"]


def test_a_checkpoint_without_sha256_is_named(tmp_path: Path, capsys) -> None:
    p = tmp_path / "records.jsonl"
    p.write_text(json.dumps(_record(checkpoint={"path": "p"})) + "\n")
    assert read_records(p) == []
    assert "(no checkpoint sha256)" in capsys.readouterr().err


def test_a_folder_in_place_of_the_file_is_refused_by_name(tmp_path: Path) -> None:
    from dcbench.errors import DcbenchError

    folder = tmp_path / "records.jsonl"
    folder.mkdir()
    with pytest.raises(DcbenchError, match=r"records.jsonl is not a file; --results must be"):
        read_records(folder)


def test_a_record_without_config_or_extra_gets_empty_dicts(tmp_path: Path) -> None:
    r = _record()
    del r["config"], r["extra"]
    p = tmp_path / "records.jsonl"
    p.write_text(json.dumps(r) + "\n")
    frame = load_frame(p)
    assert frame["config"].tolist() == [{}]
    assert frame["extra"].tolist() == [{}]


def _failing_append(monkeypatch: pytest.MonkeyPatch, fails) -> None:
    """atomic_append_lines raising ENOSPC for the paths `fails` picks, writing the others."""
    import errno

    real = results.atomic_append_lines

    def append(path, lines):
        if fails(Path(path)):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(path, lines)

    monkeypatch.setattr(results, "atomic_append_lines", append)


def _records() -> list[results.Record]:
    r = _record()
    return [results.Record(**{k: r[k] for k in ("task", "setting", "metric", "value",
                                                "checkpoint", "seed", "config", "config_hash",
                                                "extra")},
                           dataset="d", split="test", best=None, best_epoch=None, epochs=None,
                           code_version="git:0", dcbench_version="0", started="s",
                           seconds=1.0, device="cpu", world_size=1)]


def test_records_are_saved_in_the_folder_given(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DCBENCH_RESULTS", raising=False)
    saved = results.save_records(_records(), tmp_path / "res")
    assert saved == tmp_path / "res" / "records.jsonl"
    assert (tmp_path / "res" / "records.jsonl").exists() and not (tmp_path / "results").exists()


def test_a_failed_save_names_the_file_and_a_stamped_rescue_beside_the_cwd(
        tmp_path: Path, monkeypatch) -> None:
    import os
    import re

    from dcbench.errors import DcbenchError

    monkeypatch.chdir(tmp_path)
    _failing_append(monkeypatch, lambda p: p.name == "records.jsonl")
    res = tmp_path / "res"
    with pytest.raises(DcbenchError) as info:
        results.save_records(_records(), res)
    msg = str(info.value)
    rescue = (re.escape(str(tmp_path))
              + rf"/dcbench-unsaved-records-\d{{8}}-\d{{6}}-{os.getpid()}\.jsonl")
    assert re.fullmatch(
        rf"could not write {re.escape(str(res))}/records.jsonl \(No space left on device\); "
        rf"the 1 computed records are saved in {rescue}: append them with cat {rescue} >> "
        rf"{re.escape(str(res))}/records.jsonl", msg), msg


def test_the_rescue_falls_back_to_the_temporary_folder(tmp_path: Path, monkeypatch) -> None:
    import tempfile

    from dcbench.errors import DcbenchError

    cwd, tmp = tmp_path / "cwd", tmp_path / "tmp"
    cwd.mkdir()
    tmp.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    _failing_append(monkeypatch, lambda p: p.name == "records.jsonl" or p.parent == cwd)
    with pytest.raises(DcbenchError, match=f"saved in {tmp}/dcbench-unsaved-records-"):
        results.save_records(_records(), tmp_path / "res")
    assert len(list(tmp.glob("dcbench-unsaved-records-*.jsonl"))) == 1
