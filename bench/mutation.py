"""Mutation testing of the modules that carry the README's claims (run on demand, not in CI).

    .venv/bin/pip install mutmut            # 3.x; not a dependency of dcbench
    .venv/bin/python bench/mutation.py                          # every module below
    .venv/bin/python bench/mutation.py clustering.metrics clustering.sampler

For each module, mutmut (https://github.com/boxed/mutmut) makes small changes to its code
(an operator, a constant, an argument dropped, ...) one at a time and runs only that module's
targeted test files against each: a mutant no test fails on "survived". The work happens in a
scratch copy of the working tree (nothing here is touched), laid out as the installed package
sees it (tasks/ -> dcbench/tasks/, pretrained/ -> dcbench/pretrained/). The per-module summary,
with every survivor's diff, is merged into bench/results/mutation.json; modules not run keep
their previous entry. Survivors are either killed by a new test or explained as equivalent:
bench/results/mutation_explained.json maps module -> {mutant name: one-line reason}, kept by
hand across reruns. Each module's entry in mutation.json carries the "explained" map of its
current survivors and not-reached mutants (mutmut's "no tests") that have a reason, and lists
the rest as "unexplained"; a reason whose mutant no longer survives is dropped from the entry
(not from the reasons file) and listed under "stale_reasons".

    .venv/bin/python bench/mutation.py --explain-only   # re-apply the reasons, no mutmut run

Cost: each mutant runs the tests that reach the mutated function in a forked process, about
0.4 mutants/s with two workers on two cores (clustering.metrics: 96 mutants, ~5 min).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "bench" / "results" / "mutation.json"
EXPLAINED = REPO / "bench" / "results" / "mutation_explained.json"

# The in-process tests of tests/test_bad_inputs.py that reach results.py and atomic.py. Not
# the whole file: its README check reads README.md, which mutmut does not copy into its
# mutants/ folder (FileNotFoundError there, so the clean run failed; also_copy below now
# copies it), the subprocess test runs `python -m dcbench`, outside the process whose
# trampoline hits mutmut records, and the 60-row CLI table would run per mutant for minutes.
BAD_INPUTS = [
    "tests/test_bad_inputs.py::test_records_that_are_not_records_are_skipped_with_a_warning",
    "tests/test_bad_inputs.py::test_a_failed_write_of_records_keeps_the_computed_result",
]

# module -> (its path in the package layout, the test files that target it)
MODULES: dict[str, tuple[str, list[str]]] = {
    "clustering.metrics": ("dcbench/clustering/metrics.py",
                           ["tests/test_bite_metrics.py", "tests/test_properties_metrics.py",
                            "tests/test_clustering.py"]),
    "clustering.sampler": ("dcbench/clustering/sampler.py",
                           ["tests/test_properties_samplers.py", "tests/test_clustering.py"]),
    "clustering.pca": ("dcbench/clustering/pca.py",
                       ["tests/test_bite_pca.py", "tests/test_properties_pca.py",
                        "tests/test_clustering.py"]),
    "clustering.kmeans": ("dcbench/clustering/kmeans.py",
                          ["tests/test_bite_kmeans.py", "tests/test_properties_kmeans.py",
                           "tests/test_clustering.py"]),
    "results": ("dcbench/results.py",
                ["tests/test_bite_results.py", "tests/test_bite_records.py", *BAD_INPUTS]),
    "atomic": ("dcbench/atomic.py",
               ["tests/test_bite_atomic.py", "tests/test_bite_records.py",
                "tests/test_checkpoint.py", *BAD_INPUTS]),
    "retrieval.metrics": ("dcbench/retrieval/metrics.py",
                          ["tests/test_properties_eval_metrics.py",
                           "tests/test_retrieval_method.py"]),
    "voc.metrics": ("dcbench/tasks/voc/metrics.py",
                    ["tests/test_bite_voc.py", "tests/test_properties_eval_metrics.py",
                     "tests/test_voc_det_metrics.py",
                     "tests/test_voc_cls.py", "tests/test_voc_seg.py"]),
}


def scratch_copy(dest: Path) -> None:
    """The working tree's files (tracked and untracked, not ignored) in the package layout."""
    files = subprocess.run(["git", "-C", str(REPO), "ls-files", "-co", "--exclude-standard"],
                           capture_output=True, text=True, check=True).stdout.splitlines()
    for rel in files:
        src = REPO / rel
        if rel.startswith("results/") or not src.is_file():
            continue
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, target)
    for top in ("tasks", "pretrained"):
        if (dest / top).is_dir():
            shutil.move(str(dest / top), str(dest / "dcbench" / top))


def mutmut_config(path: str, tests: list[str]) -> str:
    return "\n".join([
        "", "[tool.mutmut]",
        'source_paths = ["dcbench"]',
        'also_copy = ["README.md"]',          # tests that read the README find it
        f"only_mutate = {json.dumps([path])}",
        f"pytest_add_cli_args_test_selection = {json.dumps(tests)}",
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-x"]',
        'process_isolation = "forkserver"',    # torch is not fork-safe after a test run
        "use_git_change_detection = false", "",
    ])


def mutmut(work: Path, *args: str, log: Path | None = None) -> str:
    env = {**os.environ, "DCBENCH_NO_PROGRESS": "1", "DCBENCH_MUTATION": "1"}
    env.pop("DCBENCH_FAULT", None)
    proc = subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=work, env=env,
                          capture_output=True, text=True)
    if log is not None:
        log.write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        spinner = set("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")
        text = "\n".join(line for line in (proc.stdout + proc.stderr).splitlines()
                         if line.strip() and not spinner & set(line))
        raise SystemExit(f"mutmut {' '.join(args)} failed ({proc.returncode}) in {work}:\n"
                         f"{text[-3000:]}")
    return proc.stdout


def run_module(name: str, work_root: Path, max_children: int) -> dict:
    path, tests = MODULES[name]
    work = work_root / name
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    scratch_copy(work)
    with open(work / "pyproject.toml", "a") as f:
        f.write(mutmut_config(path, tests))
    t0 = time.time()
    mutmut(work, "run", "--max-children", str(max_children), log=work / "mutmut-run.log")
    seconds = time.time() - t0
    statuses: dict[str, str] = {}
    for line in mutmut(work, "results", "--all", "true").splitlines():
        key, sep, status = line.strip().rpartition(": ")
        if sep and "__mutmut_" in key:
            statuses[key] = status.strip()
    counts: dict[str, int] = {}
    for status in statuses.values():
        counts[status] = counts.get(status, 0) + 1
    survivors, not_reached = [], []
    for key in sorted(k for k, s in statuses.items() if s in ("survived", "no tests")):
        diff = mutmut(work, "show", key)
        (survivors if statuses[key] == "survived" else not_reached).append(
            {"mutant": key, "diff": diff.strip()})
    return {"path": path, "tests": tests, "mutants": len(statuses),
            "killed": counts.get("killed", 0), "survived": counts.get("survived", 0),
            "other": {k: v for k, v in counts.items() if k not in ("killed", "survived")},
            "seconds": round(seconds, 1), "survivors": survivors,
            "not_reached": not_reached}


def short(key: str) -> str:
    """mutmut's key without the module prefix: 'x_kmeans__mutmut_3', 'xǁClsǁf__mutmut_1'."""
    return key.rpartition(".")[2]


def apply_reasons(result: dict, reasons: dict[str, str]) -> dict:
    """Split a module's survivors and not-reached mutants into explained and unexplained."""
    open_ = [short(s["mutant"]) for s in result.get("survivors", [])]
    open_ += [short(s["mutant"]) for s in result.get("not_reached", [])]
    result["explained"] = {m: reasons[m] for m in open_ if m in reasons}
    result["unexplained"] = [m for m in open_ if m not in reasons]
    result["stale_reasons"] = sorted(set(reasons) - set(open_))
    return result


def load_reasons() -> dict[str, dict[str, str]]:
    return json.loads(EXPLAINED.read_text()) if EXPLAINED.exists() else {}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("modules", nargs="*", help=f"default: all of {', '.join(MODULES)}")
    parser.add_argument("--max-children", type=int, default=2, help="parallel mutant runs")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="scratch folder (default: a temporary one, removed at the end)")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--explain-only", action="store_true",
                        help="only re-apply bench/results/mutation_explained.json")
    args = parser.parse_args()
    if args.explain_only:
        summary = json.loads(args.out.read_text())
        reasons = load_reasons()
        for name, result in summary["modules"].items():
            apply_reasons(result, reasons.get(name, {}))
            print(f"{name}: {len(result['explained'])} explained, "
                  f"{len(result['unexplained'])} unexplained"
                  + (f", stale reasons {result['stale_reasons']}" if result["stale_reasons"]
                     else ""))
        args.out.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
        return
    names = args.modules or list(MODULES)
    unknown = [n for n in names if n not in MODULES]
    if unknown:
        parser.error(f"unknown module(s) {unknown}; choose from {', '.join(MODULES)}")
    try:
        import mutmut  # noqa: F401
    except ImportError:
        raise SystemExit("mutmut is not installed: .venv/bin/pip install mutmut") from None
    from importlib.metadata import version

    summary = json.loads(args.out.read_text()) if args.out.exists() else {}
    summary.setdefault("modules", {})
    work_root = args.workdir or Path(tempfile.mkdtemp(prefix="dcbench-mutation-"))
    try:
        for name in names:
            print(f"{name}: mutating {MODULES[name][0]} against {len(MODULES[name][1])} test "
                  f"file(s)...", flush=True)
            result = run_module(name, work_root, args.max_children)
            result["run"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
            apply_reasons(result, load_reasons().get(name, {}))
            summary["modules"][name] = result
            summary.update(tool=f"mutmut {version('mutmut')}",
                           command="python bench/mutation.py [MODULE ...]")
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(summary, indent=2, sort_keys=True) + "\n")
            print(f"  {result['mutants']} mutants: {result['killed']} killed, "
                  f"{result['survived']} survived"
                  + (f", {result['other']}" if result["other"] else "")
                  + f" ({result['seconds']:.0f} s)", flush=True)
            for m in result["unexplained"]:
                print(f"    unexplained: {m}", flush=True)
    finally:
        if args.workdir is None:
            shutil.rmtree(work_root, ignore_errors=True)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
