"""The README's two set-up commands stay true: CI runs the test command verbatim, and the
main-job command ends with the demo."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def command_after(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(rf"<!-- {marker} -->\s*```bash\n(.+?)\n```", text, re.S)
    assert match, f"README.md has no ```bash block after <!-- {marker} -->"
    return match.group(1).strip()


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()
    assert ci[-1] == command_after("test-command")


def test_main_job_installs_then_runs_the_demo():
    main = command_after("main-job")
    test = command_after("test-command")
    assert main.endswith(".venv/bin/dcbench demo")
    assert test.endswith(".venv/bin/python -m pytest")
    # both install the same way; only the extra and the final step differ
    assert main.split(" && .venv/bin/dcbench")[0] == \
        test.split(" && .venv/bin/python -m pytest")[0].replace("'.[dev]'", ".")
