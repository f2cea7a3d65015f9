"""`dcbench pretrain ... --preflight STEPS`: the same command, checked as a run is, then one
epoch's phases metered at full size on a seeded subset (STEPS batches and one more), and the
full run's time projected from the measured rates: the clustering pass and the training pass
each scale with the data set (its full size, or --max-images), times --epochs.

The subset clusters into at most a quarter as many clusters as it has images, so its k-means
says nothing of k-means on the full set (bench/bench_kmeans.py measures that) and its top
layer is smaller than the full run's k-way one. Nothing is written where --out points.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import torch

from dcbench import distributed as dist
from dcbench import step_meter
from dcbench.atomic import atomic_write_text, check_writable_dir
from dcbench.data import build_dataset
from dcbench.errors import DcbenchError
from dcbench.methods.catalog import get_method
from dcbench.methods.config import resolve
from dcbench.methods.run import runner
from dcbench.methods.session import build_session
from dcbench.precision import amp_name
from dcbench.preflight import SettingReport, machine, measure_peaks, table_lines
from dcbench.threads import configure_threads


def subset_options(opts: dict[str, Any], cfg: dict[str, Any], n_full: int,
                   steps: int) -> tuple[dict[str, Any], int]:
    """The options of the metered subset run and its image count."""
    n_sub = min(n_full, cfg["batch_size"] * (steps + 1))
    sub = {**opts, "max_images": n_sub, "epochs": 1, "resume": False}
    if cfg["method"] == "deepcluster":
        sub["k"] = min(cfg["k"], max(2, n_sub // 4))
        sub["pca_sample"] = min(cfg["pca_sample"], n_sub)
    return sub, n_sub


def preflight_pretraining(opts: dict[str, Any], steps: int,
                          json_path: str | None = None) -> SettingReport:
    """Meter `steps` training steps (and the clustering pass before them) of the run `opts`
    describes; print the table and the projection (and write them as JSON at `json_path`);
    raise DcbenchError if it did not train."""
    method = get_method(opts.get("method"))
    if method.own_loop:
        raise DcbenchError(f"--preflight meters DeepCluster and the supervised baseline; "
                           f"{method.name} runs on its small data sets in minutes: run it")
    if dist.is_distributed():
        raise DcbenchError("--preflight measures one process; run it without torchrun")
    if steps < 1:
        raise DcbenchError(f"--preflight takes a number of steps >= 1 (got {steps})")
    if json_path:
        check_writable_dir(Path(json_path).resolve().parent, "--json's folder")
    with tempfile.TemporaryDirectory(prefix="dcbench-preflight-") as scratch:
        opts = {**opts, "out": str(Path(scratch) / "run")}     # --out is left untouched
        cfg = resolve(opts)                                     # every option checked
        data = build_dataset(cfg["data"], "train", None, cfg["root"], cfg["data_root"])
        n_full = min(len(data), cfg["max_images"] or len(data))
        sub_opts, n_sub = subset_options(opts, cfg, n_full, steps)
        sub = resolve(sub_opts)
        device = dist.init()
        sub["world_size"] = 1
        sub["amp"] = amp_name(device, opts.get("amp") or "auto")
        configure_threads()
        session = build_session(sub, "", device, resume=False)
        failure = ""
        with measure_peaks(device) as peaks, step_meter.metering(steps) as meter:
            try:
                runner(method)(session, 1)
            except step_meter.StepBudgetReached:
                pass
            except DcbenchError as e:                           # a diverged loss
                failure = str(e)
    scale = n_full / n_sub * cfg["epochs"]
    for phase in meter.phases:                  # the subset's steps -> the full run's
        phase.planned = math.ceil(phase.planned * scale)
    report = SettingReport(method.name, meter.phases, peaks.rss, peaks.cuda, failure)
    print("\n".join([
        f"preflight pretrain {method.name} on {cfg['data']} ({n_full:,} images; metered on "
        f"{n_sub:,}), {cfg['arch']}, batch {cfg['batch_size']}, {cfg['epochs']} epochs, "
        f"{machine(device, sub['amp'])}, up to {steps} training steps",
        *table_lines([report], (
            f"k-means on the full set (bench/bench_kmeans.py) and checkpoint writes; the "
            f"subset's top layer has {sub['k']} outputs, the run's {cfg['k']}")
            if "k" in cfg else "checkpoint writes")]), flush=True)
    if json_path:
        atomic_write_text(Path(json_path), json.dumps(
            {"task": f"pretrain {method.name}", "data": cfg["data"], "images": n_full,
             "metered_images": n_sub, "arch": cfg["arch"], "epochs": cfg["epochs"],
             "device": str(device), "threads": torch.get_num_threads(), "steps": steps,
             "settings": [report.as_dict()]}, indent=1) + "\n")
    if failure or report.verdict().startswith("loss not finite"):
        raise DcbenchError(f"preflight pretrain: {failure or report.verdict()}; fix it before "
                           f"the full run")
    return report

