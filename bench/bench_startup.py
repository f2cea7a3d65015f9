"""How long a command takes before it does anything: the CLI's start-up, measured as ratios to
`python -c "import torch"` in one run (median of 5 fresh processes each).

    python bench/bench_startup.py            # ~1 minute on 2 cores

Rows: `dcbench --help` (click only), `dcbench tasks` (the registry and every task
declaration: no torch), `dcbench eval` refusing an unknown task and a bad `--set` value (the
time a typo costs: checked before torch loads), `dcbench eval` of a well-formed request up to
its checkpoint (torch loaded: where a real evaluation starts working), and the bare
`import torch`. Writes bench/results/startup.json.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

DCBENCH = [sys.executable, "-m", "dcbench"]
CASES = {
    "import torch": [sys.executable, "-c", "import torch"],
    "dcbench --help": DCBENCH + ["--help"],
    "dcbench tasks": DCBENCH + ["tasks"],
    "dcbench eval --task nosuch": DCBENCH + ["eval", "--task", "nosuch", "--ckpt", "x"],
    "dcbench eval --set k=-5": DCBENCH + ["eval", "--task", "knn", "--ckpt",
                                          "random:alexnet-small", "--set", "k=-5"],
    # a well-formed request whose checkpoint is missing: refused once torch has loaded (the
    # checkpoint checks need it), i.e. the start of a real evaluation
    "dcbench eval --ckpt missing.pth": DCBENCH + ["eval", "--task", "knn", "--ckpt",
                                                  "missing.pth"],
}


def seconds(cmd: list[str], repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run(cmd, capture_output=True, check=False)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    rows = {name: seconds(cmd) for name, cmd in CASES.items()}
    base = rows["import torch"]
    print(f"{'command':32s} {'seconds':>8s} {'x import torch':>15s}")
    for name, s in rows.items():
        print(f"{name:32s} {s:8.2f} {s / base:15.2f}")
    out = Path(__file__).parent / "results" / "startup.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"seconds": rows, "ratio_to_import_torch":
                               {k: v / base for k, v in rows.items()}}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
