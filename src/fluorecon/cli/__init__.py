"""The ``fluorecon`` command line: a thin typer app over the public API.

Two kinds of commands:

- one per registered reconstruction task (:func:`fluorecon.tasks.registry.all_tasks`), generated
  from the task's contract by :func:`fluorecon.cli.taskcmd.register_task` — adding a task adds its
  command, nothing to edit here;
- special verbs (demo, simulate, metrics, report, export, info, noise, train, predict, check, verify,
  tasks, ...): every module ``fluorecon.cli.commands.<name>`` exposing ``register(app)``. A module
  named like a task replaces the generated command.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys

import typer

import fluorecon.cli.commands as _commands
from fluorecon.cli.taskcmd import register_broken_task, register_task
from fluorecon.tasks.registry import all_tasks

app = typer.Typer(
    name="fluorecon",
    help="Fluorescence image reconstruction: simulate, denoise, deconvolve, restore, and check the result.\n\n"
    "Exit codes: 0 success, 1 processing failure, 2 bad input or parameters.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Order of the special verbs in --help (other command modules follow alphabetically, then the tasks).
_ORDER = ["info", "simulate", "metrics", "demo", "train", "predict", "check", "verify", "report", "export", "noise",
          "tasks"]
_found = sorted(m.name for m in pkgutil.iter_modules(_commands.__path__) if not m.name.startswith("_"))
COMMAND_MODULES = [n for n in _ORDER if n in _found] + [n for n in _found if n not in _ORDER]

for _name in COMMAND_MODULES:
    _mod = importlib.import_module(f"fluorecon.cli.commands.{_name}")
    _mod.register(app)

#: tasks whose command is generated from the registry
TASK_COMMANDS = [t.name for t in all_tasks() if t.name not in COMMAND_MODULES]
for _task in all_tasks():
    if _task.name in TASK_COMMANDS:
        try:
            register_task(app, _task)
        except TypeError as _e:  # a misdeclared task must not take the other commands down with it
            register_broken_task(app, _task, _e)


def _join_voxel_size(argv: list[str]) -> list[str]:
    """``--voxel-size 0.3 0.1 0.1`` → ``--voxel-size 0.3,0.1,0.1`` (typer options take one token)."""
    out: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a in ("--voxel-size",):
            vals = []
            j = i + 1
            while j < len(argv) and len(vals) < 3:
                try:
                    float(argv[j])
                except ValueError:
                    break
                vals.append(argv[j])
                j += 1
            out += [a, ",".join(vals) if vals else ""]
            i = j
            continue
        out.append(a)
        i += 1
    return out


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    args = _join_voxel_size(list(sys.argv[1:] if argv is None else argv))
    app(args=args, prog_name="fluorecon")
