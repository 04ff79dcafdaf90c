"""The one registry of reconstruction tasks, read by every front end (CLI, napari, scale, report).

A task module in ``fluorecon/tasks/`` registers its :class:`~fluorecon.tasks.contract.Task` with the
:func:`register` decorator; :func:`all_tasks` discovers every module of the package (no list to
edit), so a new task needs only its module, its test and its doc page.

Examples
--------
>>> names = [t.name for t in all_tasks()]
>>> "denoise" in names and "deconvolve" in names
True
>>> get("denoise").title
'Denoise'
"""

from __future__ import annotations

import importlib
import pkgutil

from fluorecon.errors import FluoreconError
from fluorecon.tasks.contract import Task

__all__ = ["all_tasks", "get", "register"]

_REGISTRY: dict[str, Task] = {}
# Modules of fluorecon.tasks that hold no task.
_NOT_TASKS = {"contract", "registry"}
_discovered = False


def register(cls: type[Task]) -> type[Task]:
    """Class decorator: add a task (one instance per name) to the registry."""
    if not cls.name:
        raise TypeError(f"{cls.__name__} has no name")
    existing = _REGISTRY.get(cls.name)
    if existing is not None and type(existing).__qualname__ != cls.__qualname__:
        raise TypeError(f"two tasks are named {cls.name!r}: {type(existing).__qualname__} and {cls.__qualname__}")
    _REGISTRY[cls.name] = cls()
    return cls


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    import fluorecon.tasks as pkg

    # Task modules import heavy layers (torch): importing them on first use keeps `import fluorecon`
    # and `fluorecon --help` of unrelated verbs fast, and lets task modules import this registry.
    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.name.startswith("_") or mod.name in _NOT_TASKS:
            continue
        importlib.import_module(f"fluorecon.tasks.{mod.name}")
    _discovered = True


def all_tasks() -> list[Task]:
    """Every registered task, sorted by name."""
    _discover()
    return [_REGISTRY[k] for k in sorted(_REGISTRY)]


def get(name: str) -> Task:
    """The task called ``name``; a clear error listing the others when there is none."""
    _discover()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise FluoreconError(f"no task named {name!r}", hint=f"tasks: {', '.join(sorted(_REGISTRY))}") from None
