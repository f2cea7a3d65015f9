"""Third-party names, through one entry-point group per registry:

- `dcbench.tasks`: a module that registers its tasks with `@register_task`;
- `dcbench.datasets`: a module whose `SPECS` lists its DatasetSpec entries;
- `dcbench.models`: a Trunk subclass, named by its `ARCH`;
- `dcbench.methods`: a `dcbench.methods.catalog.Method` (the options it reads, its runner).

Each group is loaded once, when its registry is first built. A plugin that fails to load is
kept as a warning (`dcbench tasks` prints them) and never breaks dcbench itself.
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

ERRORS: list[str] = []
_loaded: set[str] = set()


def load_group(group: str) -> list[tuple[str, Any]]:
    """(entry point name, loaded object) of every plugin of `group`, once per process."""
    if group in _loaded:
        return []
    _loaded.add(group)
    out = []
    for ep in entry_points(group=group):
        try:
            out.append((ep.name, ep.load()))
        except Exception as e:  # noqa: BLE001  (a broken plugin must not break dcbench)
            ERRORS.append(f"plugin '{ep.name}' ({ep.value}) failed to load: {e}")
    return out


def reject(group: str, name: str, why: str) -> None:
    """Keep a plugin that loaded but cannot be registered as a warning."""
    ERRORS.append(f"plugin '{name}' ({group}) not registered: {why}")
