"""``fluorecon tasks``: every registered reconstruction task, its inputs, outputs and parameters."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table

from fluorecon.cli.common import emit_json, handle_errors
from fluorecon.cli.options import JsonOpt
from fluorecon.tasks.registry import all_tasks

EPILOG = """Examples:

  fluorecon tasks

  fluorecon tasks --json

Each task is also a command (fluorecon <task> --help), a napari widget and, where "out of core" says
yes, runs blockwise on OME-Zarr (-o out.ome.zarr). "trust" lists the checks that apply to its result.
"""


def describe_all() -> list[dict]:
    """``task.describe()`` of every registered task, sorted by name.

    Examples
    --------
    >>> "denoise" in [d["name"] for d in describe_all()]
    True
    """
    return [t.describe() for t in all_tasks()]


def register(app: typer.Typer) -> None:
    @app.command("tasks", epilog=EPILOG)
    def tasks_cmd(json_out: JsonOpt = False) -> None:
        """List the reconstruction tasks: inputs, outputs, out-of-core support, trust checks, parameters."""
        with handle_errors():
            rows = describe_all()
            if json_out:
                emit_json(rows)
                return
            table = Table(title=f"{len(rows)} reconstruction tasks")
            for col in ("task", "inputs", "outputs", "out of core", "trust", "parameters"):
                table.add_column(col)
            for d in rows:
                ins = ", ".join(f"{i['name']} ({i['kind']}{'' if i['required'] else ', optional'})" for i in d["inputs"])
                outs = ", ".join(f"{o['name']} ({o['kind']})" for o in d["outputs"])
                table.add_row(f"{d['name']}\n{d['summary']}", ins, outs, "yes" if d["out_of_core"] else "no",
                              ", ".join(d["trust"]) or "-", ", ".join(d["params"]))
            Console().print(table)


__all__ = ["describe_all", "register"]
