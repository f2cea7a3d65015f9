"""Every name a user types (arch, method, task, dataset, setting) and the one place it is
defined, read from the registries themselves: `python -m dcbench.names` prints docs/NAMES.md,
and a test keeps that file in step with the code."""

from __future__ import annotations

import inspect
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _where(obj: object) -> str:
    path = Path(inspect.getsourcefile(obj) or "?").resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def rows() -> list[tuple[str, str, str]]:
    """(kind, name, file that defines it), in the order each registry lists them (built-in
    names only: plugins define theirs in their own packages)."""
    from dcbench.data.catalog import BUILTIN
    from dcbench.methods.catalog import BUILTIN as BUILTIN_METHODS
    from dcbench.methods.catalog import METHODS
    from dcbench.models import MODELS
    from dcbench.tasks import TASKS

    builtin = {n: c for n, c in TASKS.items() if c.__module__.startswith("dcbench.tasks.")}
    out = [("arch", name, _where(cls)) for name, cls in MODELS.items()
           if cls.__module__.startswith("dcbench.")]
    out += [("method", name, f"dcbench/methods/catalog.py (runs in {m.runner.split(':')[0]})")
            for name, m in METHODS.items() if name in BUILTIN_METHODS]
    out += [("task", name, _where(cls)) for name, cls in builtin.items()]
    out += [("dataset", spec.name, _where(module)) for module in BUILTIN
            for spec in module.SPECS]
    out += [("setting", f"{name}: {', '.join(cls.settings)}", _where(cls))
            for name, cls in builtin.items()]
    return out


def markdown() -> str:
    lines = ["# Names and where each is defined",
             "",
             "Written by `python -m dcbench.names > docs/NAMES.md` from the registries "
             "(tests/test_house.py keeps it in step). An arch is named by its trunk class "
             "(`ARCH`), a method in the methods catalog, a task by its `@register_task` "
             "declaration (with its settings; the VOC tasks' two settings are the constants "
             "`FC6_8` and `ALL` of tasks/voc/task.py), a dataset by the `SPECS` of its loader, "
             "which dcbench/data/catalog.py registers in one list.",
             "",
             "| kind | name | defined in |",
             "|---|---|---|"]
    lines += [f"| {kind} | `{name}` | {where} |" for kind, name, where in rows()]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
