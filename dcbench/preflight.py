"""`dcbench preflight`: before a run costs GPU days, check its data and checkpoint, run a few
of its real steps at full size, and say what the whole run would cost on this machine.

The request is checked exactly as `dcbench eval` checks it (task, settings, options,
checkpoint, data present), the datasets are validated, then each setting runs in one process
under dcbench.step_meter until its budget of steps: seconds per step, images per second, peak
memory (RSS; CUDA max allocated on a GPU), whether the loss is finite and falling, and the
planned steps times the measured rate. Nothing is recorded: a preflight's numbers are never
results.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dcbench import distributed, step_meter, tasks
from dcbench.atomic import atomic_write_text, check_writable_dir
from dcbench.data.registry import ensure_root, validate_dataset
from dcbench.errors import DcbenchError
from dcbench.evaluate import prepare_request, run_frozen_checked
from dcbench.precision import eval_amp_name

DEFAULT_STEPS = 20
FALLING = 1e-3      # the second half's mean loss this much below the first's: falling (the
#                     rehearsal's flat probe losses moved by up to 0.14%, upwards)


@dataclass
class SettingReport:
    """What one setting's metered run showed."""

    setting: str
    phases: list[step_meter.Phase]
    peak_rss: int | None            # bytes, this setting's high-water mark
    cuda_peak: int | None           # bytes, CUDA max allocated
    failure: str = ""               # the error that stopped it before its budget

    def as_dict(self) -> dict[str, Any]:
        """Plain values for `--json` (a preflight report, never a result record)."""
        return {"setting": self.setting, "verdict": self.verdict(), "failure": self.failure,
                "peak_rss_bytes": self.peak_rss, "cuda_max_allocated_bytes": self.cuda_peak,
                "phases": [{"name": p.name, "unit": p.unit, "planned": p.planned,
                            "steps": p.steps, "seconds_per_step": _number(p.seconds_per_step()),
                            "images_per_second": _number(p.images_per_second()),
                            "projected_seconds": _number(p.projected_seconds()),
                            "losses": [_number(v) for v in p.losses]}
                           for p in self.phases]}

    def verdict(self) -> str:
        if self.failure:
            return "FAILED"
        trained = [p for p in self.phases if p.losses]
        if not trained:
            return "ran (no loss)"
        bad = trained[-1].first_non_finite()
        if bad is not None:
            return f"loss not finite at step {bad}"
        trend = trained[-1].loss_trend()
        if trend is None:
            return "finite (too few steps to see a trend)"
        if trend[1] < trend[0] * (1 - FALLING):
            return "finite, falling"
        return f"finite, NOT falling yet (under {100 * FALLING:.1f}% lower)"


def _number(x: float) -> float | None:
    """JSON has no NaN: an unmeasured rate is null."""
    return x if math.isfinite(x) else None


def _precision(device: torch.device) -> str:
    return "bf16 autocast" if eval_amp_name(device) == "bf16" else "float32"


def _reset_peak_rss() -> None:
    """Start a new RSS high-water mark (Linux: writing 5 to clear_refs resets VmHWM)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def _peak_rss() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    except (ImportError, OSError):
        return None


def _gib(n: int | None) -> str:
    return "?" if n is None else f"{n / 2**30:.2f} GiB"


def duration(seconds: float) -> str:
    """Seconds as the unit a person plans with: 42 s, 12.5 min, 3.2 h, 4.1 days."""
    if not math.isfinite(seconds):
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.1f} min"
    if seconds < 3 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


@dataclass
class Peaks:
    rss: int | None = None          # bytes: the process's RSS high-water mark in the block
    cuda: int | None = None         # bytes: CUDA max allocated in the block


@contextmanager
def measure_peaks(device: torch.device) -> Iterator[Peaks]:
    """The peak memory of what runs inside the block (filled in when it ends)."""
    peaks = Peaks()
    _reset_peak_rss()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        yield peaks
    finally:
        peaks.rss = _peak_rss()
        if device.type == "cuda":
            peaks.cuda = torch.cuda.max_memory_allocated(device)


def measure_setting(task: tasks.Task, prep: Any, settings: list[str],
                    steps: int) -> SettingReport:
    """Run `settings` (one, or those a task runs in one pass) under the meter until `steps`
    steps (or a failure) and report them."""
    failure = ""
    with measure_peaks(prep.ctx.device) as peaks, step_meter.metering(steps) as meter:
        try:
            run_frozen_checked(task, prep.trunk, settings, prep.ctx)
        except step_meter.StepBudgetReached:
            pass
        except tasks.SettingsFinishedBeforeAFailure as e:
            if not isinstance(e.cause, step_meter.StepBudgetReached):
                failure = str(e.cause)
        except DcbenchError as e:           # a diverged loss, an unreadable split
            failure = str(e)
    return SettingReport("+".join(settings), meter.phases, peaks.rss, peaks.cuda, failure)


def table_lines(reports: list[SettingReport], not_measured: str) -> list[str]:
    """Per setting its phases (steps, s/step, images/s, loss trend, planned steps and their
    projected time), its verdict and peak memory; then the total and what it leaves out."""
    lines = [f"{'setting':11s} {'phase':40s} {'steps':>5s} {'s/step':>8s} {'img/s':>8s} "
             f"{'loss 1st half -> 2nd':>21s} {'planned':>12s} {'projected':>11s}"]
    total = 0.0
    for r in reports:
        for p in (p for p in r.phases if p.steps):
            trend = p.loss_trend()
            shown = "" if trend is None else f"{trend[0]:.4g} -> {trend[1]:.4g}"
            proj = p.projected_seconds()
            total += proj if math.isfinite(proj) else 0.0
            lines.append(f"{r.setting[:11]:11s} {p.name[:40]:40s} {p.steps:5d} "
                         f"{p.seconds_per_step():8.3f} {p.images_per_second():8.1f} "
                         f"{shown:>21s} {p.planned:>9d} {p.unit:<2s} {duration(proj):>11s}")
        cuda = "" if r.cuda_peak is None else f", CUDA max allocated {_gib(r.cuda_peak)}"
        lines.append(f"{r.setting} -> {r.verdict()}; peak RSS {_gib(r.peak_rss)} (this "
                     f"process; loader workers not counted){cuda}"
                     + (f": {r.failure}" if r.failure else ""))
    lines.append(f"projected: {duration(total)} for the phases above, at the measured rate "
                 f"on this machine; not measured: {not_measured}")
    lines.append("nothing was recorded: a preflight's numbers are never results")
    return lines


def machine(device: torch.device, amp: str | None = None) -> str:
    """The device, the precision the steps ran in (`amp`: a run's; else evaluation's) and
    the threads: what the rates depend on."""
    precision = _precision(device) if amp is None else (
        "bf16 autocast" if amp == "bf16" else "float32")
    return f"{device} ({precision}, {torch.get_num_threads()} threads)"


def report_lines(task: tasks.Task, prep: Any, reports: list[SettingReport],
                 steps: int) -> list[str]:
    """The table a task's preflight prints, and its projection."""
    info = prep.info
    return [f"preflight {task.name} on {info.path} ({info.arch}, sha256 {info.sha256[:12]}), "
            f"{machine(prep.ctx.device)}, up to {steps} steps per setting"] + table_lines(
        reports, "the test and evaluation passes after training, later extraction passes")


def run_preflight(opts: dict[str, Any], steps: int = DEFAULT_STEPS,
                  json_path: str | None = None) -> list[SettingReport]:
    """Check the request and its data, meter `steps` steps of each setting, print the table
    (and write it as JSON at `json_path`); a failed setting raises DcbenchError after."""
    from dcbench.progress import say

    if distributed.is_distributed():
        raise DcbenchError("preflight measures one process; run it without torchrun (the "
                           "projection is for one process: divide by the processes you use)")
    if steps < 1:
        raise DcbenchError(f"--steps must be at least 1 (got {steps})")
    if json_path:
        check_writable_dir(Path(json_path).resolve().parent, "--json's folder")
    with tempfile.TemporaryDirectory(prefix="dcbench-preflight-") as scratch:
        # nothing may be written where results live: the request points at a scratch folder
        prep = prepare_request({**opts, "results": scratch, "force": True})
        task = prep.request.task
        task.check(prep.trunk, prep.ctx)
        for name in task.data_needed(prep.ctx):
            ensure_root(name, data_root=prep.ctx.data_root)
            report = validate_dataset(name, data_root=prep.ctx.data_root)
            say(f"data {name} at {report.root}: " + ", ".join(
                f"{split} {n} images" for split, n in report.splits.items()))
        prep.ctx.out_dir = Path(scratch)
        groups = ([[s] for s in prep.settings] if task.settings_apart
                  else [prep.settings])         # a probe trains its layers in one pass
        reports = [measure_setting(task, prep, g, steps) for g in groups]
        print("\n".join(report_lines(task, prep, reports, steps)), flush=True)
        if json_path:
            atomic_write_text(Path(json_path), json.dumps(
                {"task": task.name, "checkpoint": prep.info.as_record(),
                 "device": str(prep.ctx.device), "precision": _precision(prep.ctx.device),
                 "threads": torch.get_num_threads(), "steps": steps,
                 "options": prep.request.options,
                 "settings": [r.as_dict() for r in reports]}, indent=1) + "\n")
    failed = [r for r in reports if r.failure or r.verdict().startswith("loss not finite")]
    if failed:
        raise DcbenchError(f"preflight {task.name}: {', '.join(r.setting for r in failed)} "
                           f"did not train ({failed[0].failure or failed[0].verdict()}); fix "
                           f"it before the full run")
    return reports
