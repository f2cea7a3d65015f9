"""dcbench.atomic's destination check and lock wait, in process, on cases where the mutants
bench/mutation.py found not reached (or surviving) give another outcome."""

from __future__ import annotations

import re
import threading
from pathlib import Path

import pytest

from dcbench.atomic import check_writable_dir, locked
from dcbench.errors import DcbenchError


def test_a_file_is_refused_as_a_folder(tmp_path: Path) -> None:
    f = tmp_path / "a_file"
    f.write_text("x")
    with pytest.raises(DcbenchError) as info:
        check_writable_dir(f, "--out")
    assert str(info.value) == f"--out {f} is a file, not a folder; pass a folder path"


def test_a_folder_below_a_file_cannot_be_created(tmp_path: Path) -> None:
    f = tmp_path / "a_file"
    f.write_text("x")
    with pytest.raises(DcbenchError) as info:
        check_writable_dir(f / "sub" / "run", "--results")
    assert str(info.value) == (f"--results {f}/sub/run cannot be created: {f} is a file; "
                               f"pass a folder path")


def test_an_unwritable_folder_is_refused_with_the_reason() -> None:
    with pytest.raises(DcbenchError) as info:
        check_writable_dir("/proc/dcbench/run", "--out")
    # the OS's reason in words (its strerror), not the exception's "[Errno N] ..." text
    assert re.fullmatch(r"--out /proc/dcbench/run is not writable \(cannot create a file in "
                        r"/proc: [A-Z][a-z ]+\); choose a folder you can write to",
                        str(info.value)), str(info.value)


def test_a_writable_destination_passes_and_leaves_nothing(tmp_path: Path) -> None:
    check_writable_dir(tmp_path / "new" / "run", "--out")     # probed in tmp_path
    check_writable_dir(tmp_path, "--out")
    assert list(tmp_path.iterdir()) == []


def test_on_wait_is_called_once_when_another_holder_has_the_lock(tmp_path: Path) -> None:
    target = tmp_path / "records.jsonl"
    calls: list[Path] = []
    waiting, done = threading.Event(), threading.Event()

    def second() -> None:
        with locked(target, on_wait=lambda p: (calls.append(p), waiting.set())):
            done.set()

    with locked(target):
        t = threading.Thread(target=second)
        t.start()
        assert waiting.wait(10)
        assert not done.is_set()                    # it blocks until the first lets go
    t.join(10)
    assert done.is_set() and calls == [tmp_path / ".records.jsonl.lock"]
    with locked(target, on_wait=calls.append):      # free: on_wait is not called
        pass
    assert len(calls) == 1
