"""Run several dcbench commands in one process: `python tests/cli_sequence.py JSON`, JSON a
list of argument lists. One interpreter start (about 13 s of imports on 2 cores) instead of
one per command; under torchrun, one launch and one process group for all of them. Stops at
the first command that fails, with its exit status."""

from __future__ import annotations

import json
import sys

from dcbench import distributed
from dcbench.cli import main


def run_all(commands: list[list[str]]) -> None:
    """Each command as `dcbench ARGS` runs it, except that the process group (torchrun) is
    kept for the next one and shut down once at the end."""
    shutdown, distributed.shutdown = distributed.shutdown, lambda: None
    try:
        _run(commands)
    finally:
        shutdown()


def _run(commands: list[list[str]]) -> None:
    for command in commands:
        sys.argv = ["dcbench", *command]
        try:
            main()
        except SystemExit as e:
            if e.code not in (0, None):
                print(f"cli_sequence: `dcbench {' '.join(command)}` exited {e.code}",
                      file=sys.stderr)
                sys.exit(e.code)


if __name__ == "__main__":
    run_all(json.loads(sys.argv[1]))
