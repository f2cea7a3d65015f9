"""dcbench's tasks (importable as dcbench.tasks): importing this registers every built-in task."""

from . import clustering_task, knn, linear_probe, retrieval, voc  # noqa: F401  (they register)
from .registry import (
    TASKS,
    Measurement,
    RunContext,
    SettingsFinishedBeforeAFailure,
    Task,
    expand_settings,
    get_task,
    load_plugins,
    register_task,
)

__all__ = ["TASKS", "Measurement", "RunContext", "SettingsFinishedBeforeAFailure", "Task",
           "expand_settings", "get_task", "load_plugins", "register_task"]
