"""The command line as a user meets it: `python -m dcbench` in a fresh process, its exit
status, and one `error:` line on stderr for anything the user can fix.

Only the commands that exist at the foundation are covered here: --help and `data`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dcbench.cli import main
from dcbench.data import DATASETS


def dcbench(*args: str) -> subprocess.CompletedProcess:
    """`python -m dcbench ARGS` in a fresh process. Each one spends seconds importing torch, so
    only the exit status / stderr contract and one real validation go through here."""
    env = {k: v for k, v in os.environ.items() if k not in ("DCBENCH_DATA", "DCBENCH_PRETRAINED")}
    return subprocess.run([sys.executable, "-m", "dcbench", *args], capture_output=True,
                          text=True, timeout=300, env={**env, "DCBENCH_NO_PROGRESS": "1"})


def dcbench_in_process(args: list[str], monkeypatch, capsys) -> tuple[int, str, str]:
    """The same entry point, main(), called in this process: for option handling only."""
    monkeypatch.setattr(sys, "argv", ["dcbench", *args])
    code = 0
    try:
        main()
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


def _error_lines(stderr: str) -> list[str]:
    # a DeprecationWarning printed by a dependency is not part of dcbench's message
    return [ln for ln in stderr.splitlines() if "Warning" not in ln]


def test_help_lists_every_command() -> None:
    run = dcbench("--help")
    assert run.returncode == 0, run.stderr
    for command in ("pretrain", "eval", "report", "tasks", "data", "demo"):
        assert f"\n  {command} " in run.stdout, command


def test_validate_fashion_mnist_prints_counts() -> None:
    run = dcbench("data", "validate", "fashion-mnist")
    assert run.returncode == 0, run.stderr
    assert "train: 60000 images" in run.stdout and "test: 10000 images" in run.stdout
    assert "Ankle boot: 6000" in run.stdout and "Ankle boot: 1000" in run.stdout


def test_validate_missing_root_is_one_error_line(tmp_path: Path) -> None:
    run = dcbench("data", "validate", "imagenet", "--root", str(tmp_path / "nope"))
    assert run.returncode == 2
    lines = _error_lines(run.stderr)
    assert len(lines) == 1 and lines[0].startswith("error:"), run.stderr
    assert str(tmp_path / "nope") in lines[0]
    assert run.stdout == ""


def test_validate_unknown_dataset_lists_known_ones(monkeypatch, capsys) -> None:
    code, out, err = dcbench_in_process(["data", "validate", "nope"], monkeypatch, capsys)
    lines = _error_lines(err)
    assert code == 2 and out == ""
    assert len(lines) == 1 and lines[0].startswith("error: unknown dataset 'nope'"), err
    assert all(name in lines[0] for name in DATASETS)


def test_data_list_names_every_dataset(monkeypatch, capsys) -> None:
    code, out, err = dcbench_in_process(["data", "list"], monkeypatch, capsys)
    assert code == 0, err
    assert [line.split()[0] for line in out.splitlines()] == sorted(DATASETS)


@pytest.mark.parametrize("how", ["option", "env"])
def test_validate_through_data_root(tiny_image_folder: Path, tmp_path: Path, monkeypatch,
                                    capsys, how: str) -> None:
    (tmp_path / "places205").symlink_to(tiny_image_folder)
    args = ["data", "validate", "places205"]
    if how == "option":
        args += ["--data-root", str(tmp_path)]
    else:
        monkeypatch.setenv("DCBENCH_DATA", str(tmp_path))
    code, out, err = dcbench_in_process(args, monkeypatch, capsys)
    assert code == 0, err
    assert f"places205 at {tmp_path / 'places205'}" in out
    assert "T-shirt_top: 3" in out and "val: 20 images" in out


def test_in_process_error_is_one_line_too(tmp_path: Path, monkeypatch, capsys) -> None:
    code, out, err = dcbench_in_process(["data", "validate", "places205"], monkeypatch, capsys)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and "DCBENCH_DATA" in err


@pytest.mark.parametrize(("args", "message"), [
    (["--set", "eta=0.5"], "--set is for JULE's options; deepcluster takes its options"),
    (["--method", "jule", "--data", "digits", "--set", "eta"], "expected KEY=VALUE"),
    (["--method", "jule", "--data", "digits", "--set", "eta=2"],
     "--set eta=2 is out of range: expected a number in (0, 1]"),
])
def test_pretrain_set_is_checked_before_any_work(args, message, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    code, _, err = dcbench_in_process(["pretrain", "--out", str(out), *args], monkeypatch, capsys)
    assert code == 2
    last = _error_lines(err)[-1]
    assert last.startswith("error: ") and message in last and not out.exists()


def test_listing_tasks_and_refusing_a_bad_request_do_not_import_torch() -> None:
    """`dcbench tasks` and eval's request checks start in a fraction of a second because
    nothing on their path imports torch (about a second), torchvision, scikit-learn, scipy,
    pandas or faiss: a module-level import of one of them in a task declaration fails this."""
    code = ("import sys\n"
            "from dcbench.eval_request import check_request, task_table\n"
            "assert 'knn  -  ' in task_table()\n"
            "try:\n"
            "    check_request({'task': 'knn', 'ckpt': 'x', 'overrides': ('k=-5',)})\n"
            "except Exception as e:\n"
            "    assert 'k=-5' in str(e), e\n"
            "heavy = ('torch', 'torchvision', 'sklearn', 'scipy', 'pandas', 'faiss')\n"
            "print(sorted(m for m in heavy if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"
