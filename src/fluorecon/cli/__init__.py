"""The ``fluorecon`` command line: a thin typer app over the public API.

Each command lives in ``fluorecon.cli.commands.<name>`` and exposes ``register(app)``.
"""

from __future__ import annotations

import importlib
import sys

import typer

app = typer.Typer(
    name="fluorecon",
    help="Fluorescence image reconstruction: simulate, denoise, deconvolve, restore, and check the result.\n\n"
    "Exit codes: 0 success, 1 processing failure, 2 bad input or parameters.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# Order here is the order in --help.
COMMAND_MODULES = [
    "info", "simulate", "metrics", "demo", "denoise", "train", "predict", "deconvolve",
    "isotropic", "check", "report", "export", "noise",
]

for _name in COMMAND_MODULES:
    _mod = importlib.import_module(f"fluorecon.cli.commands.{_name}")
    _mod.register(app)


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
