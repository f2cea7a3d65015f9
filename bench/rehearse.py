"""Rehearse the paper's evaluation recipes at the size users run them, on this machine.

Builds realistic trees in the real on-disk layouts (VOC2007 / VOC2012 devkits of 500 x
350-500 px JPEGs with palette masks and void, ImageNet with its flat val/ and the devkit's
labels, Places205 as distributed, Oxford5k / Paris6k at 1024 px), writes released-format
AlexNet / VGG16 files, then runs `dcbench preflight` on every recipe x trunk, each in its own
process: seconds per step, images per second, peak RSS, loss finite and falling. The full
recipe's time here is the measured rate times the steps the full recipe takes on the real
data set (its size below). Writes bench/results/rehearsal.json and the table in
docs/REHEARSAL.md.

    python bench/rehearse.py --work /tmp/rehearsal              # everything (about an hour)
    python bench/rehearse.py --work /tmp/rehearsal --only voc-seg --trunks random:alexnet
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from dcbench.data.registry import resolve_root  # noqa: E402
from dcbench.preflight import duration  # noqa: E402

# real data set sizes the full recipes run on (steps scale with them where the data sets them)
IMAGENET_TRAIN, PLACES_TRAIN = 1_281_167, 2_448_873
OXFORD, PARIS = 5_063 + 55, 6_392 + 55          # database + queries
VOC07_TRAINVAL, VOC07_TEST = 5_011, 4_952

# name -> (task, --set options, the full recipe's steps in the metered phase, what that is)
RECIPES: dict[str, tuple[str, list[str], int | None, str]] = {
    "voc-cls": ("voc-cls", ["dataset=voc2007"], None, "80,000 it x 16 images, per setting"),
    "voc-det": ("voc-det", ["dataset=voc2007"], None,
                "Fast R-CNN iterations per setting (multi-scale 480-800 px, 2 images)"),
    "voc-seg": ("voc-seg", ["dataset=voc2012"], None, "100,000 it x 1 image, per setting"),
    "linear-imagenet": ("linear-imagenet", [], 90 * math.ceil(IMAGENET_TRAIN / 256),
                        "90 epochs x 5,005 batches of 256"),
    "linear-places": ("linear-places", [], 90 * math.ceil(PLACES_TRAIN / 256),
                      "90 epochs x 9,567 batches of 256"),
    "knn": ("knn", ["dataset=imagenet"], math.ceil(IMAGENET_TRAIN / 256),
            "1 pass over ImageNet train at 224 px"),
    "clustering": ("clustering", ["dataset=places205"], math.ceil(20_500 / 256),
                   "1 pass over Places205 val (20,500) at 224 px"),
    "retrieval-oxford": ("retrieval-oxford", ["dataset=oxford5k", "max_side=1024"],
                         OXFORD + PARIS, "Oxford + Paris (whitening) images at 1024 px"),
    "retrieval-paris": ("retrieval-paris", ["dataset=paris6k", "max_side=1024"],
                        PARIS + OXFORD, "Paris + Oxford (whitening) images at 1024 px"),
    "retrieval-oxford-multiscale": (
        "retrieval-oxford", ["dataset=oxford5k", "max_side=1024", "scales=1,0.707,0.5"],
        OXFORD + PARIS, "Oxford + Paris at 1024 px; the 724 and 512 px passes, about 3/4 "
        "as much again by pixels, not metered"),
}
# pretraining: name -> (data set, method, the archs rehearsed); trunks start at random
PRETRAIN: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "pretrain-deepcluster-imagenet": ("imagenet", "deepcluster", ("alexnet", "vgg16")),
    "pretrain-deepcluster-places205": ("places205", "deepcluster", ("alexnet",)),
    "pretrain-deepcluster-yfcc1m": ("yfcc1m", "deepcluster", ("alexnet",)),
    "pretrain-supervised-imagenet": ("imagenet", "supervised", ("alexnet",)),
    "pretrain-supervised-places205": ("places205", "supervised", ("alexnet",)),
}
RAM_GIB = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
PRETRAIN_IMAGES = {"imagenet": IMAGENET_TRAIN, "places205": PLACES_TRAIN, "yfcc1m": 1_000_000}
TRUNKS = ("random:alexnet", "released:alexnet", "released:vgg16", "random:vgg16")
TREE_SIZES = {"voc": {"train": 24, "val": 12, "test": 24}, "imagenet": (5200, 60),
              "places": (5200, 410)}     # Places205's val: every class twice (k = 205 < n)


def cpu_name() -> str:
    """The CPU's model name and core count (what a time here depends on)."""
    try:
        model = next(line.split(":", 1)[1].strip() for line in
                     Path("/proc/cpuinfo").read_text().splitlines()
                     if line.startswith("model name"))
    except (OSError, StopIteration):
        model = platform.processor() or platform.machine()
    amx = "amx_tile" in Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() \
        else False
    return f"{model}, {os.cpu_count()} cores, {'AMX' if amx else 'no AMX'}"


def build_trees(work: Path) -> Path:
    """The data root (built once; a finished tree is reused)."""
    from dcbench.data.embedded.retrieval_builder import build_fmnist_retrieval
    from dcbench.rehearsal.class_trees import (
        build_imagenet_tree,
        build_places_tree,
        build_yfcc_tree,
    )
    from dcbench.rehearsal.retrieval_tree import upscale_retrieval_tree
    from dcbench.rehearsal.voc_tree import build_voc_size_tree

    data, fmnist = work / "data", resolve_root("fashion-mnist")
    builders = {
        "voc2007": lambda out: build_voc_size_tree(out, fmnist, TREE_SIZES["voc"], seed=7),
        "voc2012": lambda out: build_voc_size_tree(out, fmnist, {"train": 24, "val": 12},
                                                   seed=12),
        "imagenet": lambda out: build_imagenet_tree(out, fmnist, *TREE_SIZES["imagenet"]),
        "places205": lambda out: build_places_tree(out, fmnist, *TREE_SIZES["places"]),
        "yfcc1m": lambda out: build_yfcc_tree(out, fmnist, 3400),
        "oxford5k": lambda out: upscale_retrieval_tree(
            build_fmnist_retrieval(work / "src" / "fmnist-oxford-quick", "fmnist-oxford", fmnist,
                                   quick=True, show_progress=False), out, "oxford5k"),
        "paris6k": lambda out: upscale_retrieval_tree(
            build_fmnist_retrieval(work / "src" / "fmnist-paris-quick", "fmnist-paris", fmnist,
                                   quick=True, show_progress=False), out, "paris6k"),
    }
    for name, build in builders.items():
        if (data / name / ".complete").is_file():
            continue
        t0 = time.perf_counter()
        build(data / name)
        (data / name / ".complete").write_text("")
        print(f"built {name} in {time.perf_counter() - t0:.0f} s", flush=True)
    return data


def checkpoint(work: Path, trunk: str) -> str:
    from dcbench.rehearsal.released_files import write_released

    kind, arch = trunk.split(":")
    if kind == "random":
        return trunk
    path = work / "ckpt" / arch / "checkpoint.pth.tar"
    if not path.is_file():
        write_released(arch, path, seed=1)
    return str(path)


def preflight(recipe: str, trunk: str, work: Path, data: Path, steps: int) -> dict:
    out = work / "reports" / f"{recipe}__{trunk.replace(':', '_')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    if recipe in PRETRAIN:
        name, method, _ = PRETRAIN[recipe]
        cmd = ["dcbench", "pretrain", "--method", method, "--data", name, "--arch", trunk,
               "--data-root", str(data), "--preflight", str(steps), "--json", str(out)]
    else:
        task, sets, _, _ = RECIPES[recipe]
        cmd = ["dcbench", "preflight", "--task", task, "--ckpt", checkpoint(work, trunk),
               "--data-root", str(data), "--steps", str(steps), "--json", str(out)]
        for s in sets:
            cmd += ["--set", s]
    out.unlink(missing_ok=True)
    t0 = time.perf_counter()
    run = subprocess.run([sys.executable, "-m", "dcbench", *cmd[1:]], capture_output=True,
                         text=True, env={**os.environ, "DCBENCH_NO_PROGRESS": "1"})
    wall = time.perf_counter() - t0
    print(run.stdout + run.stderr[-2000:], flush=True)
    report = json.loads(out.read_text()) if out.is_file() else {}
    error = run.stderr.strip().splitlines()[-1:] if run.returncode > 0 else []
    return {"recipe": recipe, "trunk": trunk, "command": " ".join(cmd), "rc": run.returncode,
            "wall_seconds": round(wall, 1), "error": error, "report": report}


def full_steps(row: dict, phase: dict, proposals_seen: int) -> tuple[int, str]:
    """The steps of `phase` in the full recipe on the real data set, and what they are."""
    if phase["name"].startswith("selective search"):            # voc-det: trainval, test
        n = (VOC07_TRAINVAL, VOC07_TEST)[min(proposals_seen, 1)]
        return n, f"selective search, {n:,} VOC2007 images, once"
    if row["recipe"] in PRETRAIN:
        data, epochs = PRETRAIN[row["recipe"]][0], row["report"]["epochs"]
        tree, real = row["report"]["images"], PRETRAIN_IMAGES[data]
        steps = math.ceil(phase["planned"] * real / tree)
        return steps, f"{epochs} epochs x {real:,} images / 256"
    if row["recipe"] == "knn" and "queries" in phase["name"]:
        return math.ceil(50_000 / 256), "1 pass over ImageNet val (50,000) at 224 px"
    _, _, full, what = RECIPES[row["recipe"]]
    return (full or phase["planned"]), what


def verdict_of(phase: dict, failure: str) -> str:
    """The preflight's verdict on a recorded phase, by today's rule (dcbench.preflight)."""
    from dcbench.preflight import SettingReport
    from dcbench.step_meter import Phase

    losses = [math.nan if v is None else v for v in phase["losses"]]
    return SettingReport("", [Phase(phase["name"], phase["planned"], losses=losses)],
                         None, None, failure).verdict()


def table(rows: list[dict]) -> str:
    head = ("| recipe | trunk | setting | phase | rehearsed | s/step | images/s | peak RSS | "
            "full recipe (steps) | projected here |\n"
            "|---|---|---|---|---|---|---|---|---|---|\n")
    lines = []
    for row in rows:
        settings = row["report"].get("settings", [])
        if not settings:
            why = (f"killed by signal {-row['rc']} after {row['wall_seconds']:.0f} s (SIGKILL: "
                   f"the kernel's out-of-memory killer, {RAM_GIB:.0f} GiB here)"
                   if row["rc"] < 0 else " ".join(row["error"])[:160])
            lines.append(f"| {row['recipe']} | {row['trunk']} | | | no: {why} | | | | | |")
            continue
        for s in settings:
            phases = [p for p in s["phases"] if p["steps"]]
            if not phases:
                lines.append(f"| {row['recipe']} | {row['trunk']} | {s['setting']} | | no "
                             f"step: {s['verdict']} {s['failure'][:100]} | | | | | |")
            proposals = 0
            for phase in phases:
                steps, what = full_steps(row, phase, proposals)
                proposals += phase["name"].startswith("selective search")
                proj = (phase["seconds_per_step"] or math.nan) * steps
                verdict = verdict_of(phase, s["failure"]) if phase["losses"] else "timed"
                lines.append(
                    f"| {row['recipe']} | {row['trunk']} | {s['setting']} | {phase['name']} | "
                    f"yes, {phase['steps']} steps: {verdict} | "
                    f"{phase['seconds_per_step']:.2f} | {phase['images_per_second']:.1f} | "
                    f"{s['peak_rss_bytes'] / 2**30:.1f} GiB | {steps:,} ({what}) | "
                    f"{duration(proj)} |")
    return head + "\n".join(lines) + "\n"


DOC, MARK = REPO / "docs/REHEARSAL.md", "<!-- rehearsal-table -->"


def write_doc(rows: list[dict], cpu: str) -> None:
    """Put the table between the two markers of docs/REHEARSAL.md."""
    text = DOC.read_text()
    head, _, rest = text.partition(MARK)
    _, _, tail = rest.partition(MARK)
    work = os.path.commonpath([r["command"].split("--data-root ")[1].split()[0]
                               for r in rows]).rsplit("/data", 1)[0]
    commands = "\n".join(f"- {r['recipe']}, {r['trunk']}: `{r['command'].replace(work, '$WORK')}`"
                          for r in rows)
    body = (f"\nMeasured on {cpu}; `bench/results/rehearsal.json` holds every step's loss "
            f"and time.\n\n{table(rows)}\nThe command of each row (`$WORK`: the --work "
            f"folder):\n\n{commands}\n\n")
    DOC.write_text(head + MARK + body + MARK + tail)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", type=Path, required=True, help="trees, files and reports")
    ap.add_argument("--only", nargs="*", default=[*RECIPES, *PRETRAIN],
                    choices=[*RECIPES, *PRETRAIN])
    ap.add_argument("--trunks", nargs="*", default=list(TRUNKS), choices=list(TRUNKS))
    ap.add_argument("--archs", nargs="*", default=["alexnet", "vgg16"],
                    choices=["alexnet", "vgg16"], help="the pretraining rows' archs")
    ap.add_argument("--steps", type=int, default=12, help="steps per setting (AlexNet)")
    ap.add_argument("--vgg-steps", type=int, default=6, help="steps per setting (VGG16)")
    ap.add_argument("--out", type=Path, default=REPO / "bench/results/rehearsal.json")
    args = ap.parse_args()
    data = build_trees(args.work)
    done = json.loads(args.out.read_text())["rows"] if args.out.is_file() else []
    rows = {(r["recipe"], r["trunk"]): r for r in done}
    order = [*RECIPES, *PRETRAIN]
    for recipe in args.only:
        trunks = ([a for a in PRETRAIN[recipe][2] if a in args.archs] if recipe in PRETRAIN
                  else args.trunks)
        for trunk in trunks:
            steps = args.vgg_steps if "vgg16" in trunk else args.steps
            rows[(recipe, trunk)] = preflight(recipe, trunk, args.work, data, steps)
            ordered = sorted(rows.values(), key=lambda r: (
                order.index(r["recipe"]), r["trunk"].split(":")[-1], r["trunk"]))
            args.out.write_text(json.dumps({"cpu": cpu_name(), "rows": ordered}, indent=1)
                                + "\n")
            write_doc(ordered, cpu_name())
            print(table(ordered), flush=True)


if __name__ == "__main__":
    main()
