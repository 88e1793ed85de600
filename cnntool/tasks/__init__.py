"""The tasks, one folder each: a task's decode and payload, drawing, loss, metrics, training object and
evaluation live in cnntool/tasks/<name>/, whose __init__ defines its cnntool.engine.task.Task.

This module is the one list of tasks (stdlib only, so `--help` and `cnntool models` stay torch-free): the name
every command, registry entry and weights file uses, and the folder that implements it. Adding a task is one
folder, one `register` line here, and one command in cnntool/cli.py (CONTRIBUTING.md).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cnntool.engine.task import Task

_FOLDERS: dict[str, str] = {}
# Names weights files written before the task had its one name still carry.
ALIASES = {"face-embed": "verify-face"}


def register(name: str, module: str) -> None:
    if name in _FOLDERS:
        raise ValueError(f"task {name!r} is already registered")
    _FOLDERS[name] = module


register("classify", "cnntool.tasks.classify")
register("localize", "cnntool.tasks.localize")
register("landmarks", "cnntool.tasks.landmarks")
register("detect", "cnntool.tasks.detect")
register("verify-face", "cnntool.tasks.verify")


def names() -> list[str]:
    return list(_FOLDERS)


def canonical(name: str) -> str:
    """A task name as registered (old aliases mapped); ValueError that lists the tasks when unknown."""
    name = ALIASES.get(name, name)
    if name not in _FOLDERS:
        raise ValueError(f"unknown task {name!r}; valid tasks: {', '.join(_FOLDERS)}")
    return name


def get(name: str) -> "Task":
    module = importlib.import_module(_FOLDERS[canonical(name)])
    return module.TASK
