"""What `dcbench eval` is asked, checked before torch loads (about a second): the flags
against the schema, the task, its settings and `--set` options, the results folder, and
whether the task can run under torchrun; and `dcbench tasks`'s table. A typo costs a fraction
of a second; dcbench.evaluate runs the checked request.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from dcbench import plugins, tasks
from dcbench.atomic import check_writable_dir
from dcbench.data.registry import candidate_roots, resolve_root
from dcbench.errors import DcbenchError
from dcbench.layer_names import ROLE_DEFAULTS
from dcbench.results import results_dir
from dcbench.schema import EVAL, check_values


@dataclass
class EvalRequest:
    opts: dict[str, Any]              # the flags, converted by the schema
    task: tasks.Task
    settings: list[str]
    options: dict[str, Any]           # the task's --set options, checked
    first_seed: int
    n_seeds: int
    results: str | None


def parse_value(text: str) -> Any:
    """'5' -> 5, '0.1' -> 0.1, 'true'/'false' -> bool, 'none' -> None, else the string."""
    low = text.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_overrides(task: tasks.Task, overrides: tuple[str, ...] | list[str]
                    ) -> dict[str, Any]:
    """`--set KEY=VALUE` pairs checked against the task's options and their declared fields
    (dcbench.schema: type, range, choices)."""
    from dcbench.schema import check_value, option_field

    out: dict[str, Any] = {}
    valid = task.options
    listing = ", ".join(f"{k}={v}" for k, v in valid.items()) or "none"
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise DcbenchError(f"--set expects KEY=VALUE, got '{item}'; e.g. --set epochs=5")
        if key not in valid:
            raise DcbenchError(f"task '{task.name}' has no option '{key}'; its options: "
                               f"{listing}")
        field = option_field(task, key)
        if text.strip().lower() in ("none", "null"):
            value = None                            # the task's default
        else:
            value = text.strip() if field.kind in (str, tuple) else parse_value(text)
        out[key] = check_value(f"--set {key}", value, field, sep="=")
    return out


def check_request(opts: dict[str, Any]) -> EvalRequest:
    """Refuse a bad request before any work and before torch is imported."""
    opts = check_values(opts, EVAL)
    task = tasks.get_task(opts["task"])
    settings = tasks.expand_settings(task, list(opts.get("settings") or ()))
    options = parse_overrides(task, opts.get("overrides") or ())
    results = opts.get("results")
    check_writable_dir(results_dir(results), "--results")
    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not task.shards:
        raise DcbenchError(f"task '{task.name}' does not split its work across torchrun's "
                           f"ranks (every rank would repeat it); run it in one process, "
                           f"without torchrun")
    return EvalRequest(opts, task, settings, options,
                       0 if opts.get("seed") is None else int(opts["seed"]),
                       1 if opts.get("seeds") is None else int(opts["seeds"]), results)


def _data_status(name: str, data_root: str | None) -> str:
    try:
        looked = ", ".join(str(c) for c in candidate_roots(name, data_root=data_root))
    except DcbenchError:
        return f"{name} (not a registered dataset)"
    try:
        return f"{name} (found: {resolve_root(name, data_root=data_root)})"
    except DcbenchError:
        from dcbench.data import get_dataset_spec

        if get_dataset_spec(name).builder is not None:
            first = looked.split(", ")[0]
            return f"{name} (embedded, not built yet: built on first use at {first})"
        if not looked:
            return f"{name} (MISSING: no location known; pass --data-root DIR holding DIR/{name})"
        return f"{name} (MISSING; looked in: {looked})"


def task_table(data_root: str | None = None) -> str:
    """Every registered task (built-ins and plugins): settings, options, data found or not."""
    tasks.load_plugins()
    lines = []
    for name in sorted(tasks.TASKS):
        task = tasks.TASKS[name]()
        default = task.default_settings or task.settings
        lines.append(f"{name}  -  {task.description or (type(task).__doc__ or '').strip()}")
        default_text = " ".join(default) + (
            f"; {ROLE_DEFAULTS[task.layer_role]}" if task.layer_role else "")
        lines.append(f"    settings: {' '.join(task.settings)} (default: {default_text})")
        data = [_data_status(d, data_root) for d in task.datasets]
        lines.append(f"    data:     {'; '.join(data) or 'none'}")
        if task.options:
            opts = " ".join(task.shown_options())
            lines.append(f"    options:  {opts}")
    lines.extend(f"warning: {e}" for e in plugins.ERRORS)
    return "\n".join(lines)
