"""`fluorecon report`: an HTML report comparing an input image with its restoration."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from fluorecon.cli.common import expand_inputs, handle_errors, is_batch, output_for, run_batch
from fluorecon.cli.options import (
    AxesOpt,
    InputArg,
    JsonOpt,
    OptionalOutputOpt,
    QuietOpt,
    VoxelSizeOpt,
    parse_voxel_size,
)
from fluorecon.errors import FluoreconError
from fluorecon.io import read_image
from fluorecon.report import write_report

HELP = """Write a self-contained HTML report comparing INPUT (the recording) with OUTPUT (its restoration).

The report shows input, output and difference on one display range, zoomed crops, intensity profiles, extra maps (uncertainty, consistency residuals), the FRC of the input, metrics with confidence intervals when a --target is given, and the provenance of the files. It opens from disk in any browser.

INPUT may be a folder or a glob: OUTPUT is then the folder holding restorations with the same file names, and -o a folder receiving one NAME_report.html per input (default: next to each restoration).

Examples:

  fluorecon report raw.tif restored.tif -o report.html

  fluorecon report raw.tif restored.tif --target truth.tif --map uncertainty=std.tif -o report.html

  fluorecon report 'raw/*.tif' restored/ -o reports/

Exit codes: 0 written, 1 some files of a batch failed, 2 bad input (missing file, shape mismatch).
"""


def _match_output(inp: Path, output_spec: Path, batch: bool) -> Path:
    if not batch:
        return output_spec
    cand = output_spec / inp.name
    if cand.exists():
        return cand
    stem = output_for(inp, None, 2, suffix="").name
    matches = sorted(q for q in output_spec.glob(f"{stem}*") if q.is_file() or q.suffix == ".zarr")
    if not matches:
        raise FluoreconError(f"no restoration of {inp.name} found in {output_spec}",
                             hint="OUTPUT must be a folder holding files named like the inputs")
    return matches[0]


def _read(path: Path, axes: str | None):

    if not Path(path).exists():
        raise FluoreconError(f"file not found: {path}", hint="check the path")
    return read_image(path, axes=axes)


def make_report(input_path: Path, output_path: Path, report_path: Path, *, axes: str | None = None,
                voxel_size: tuple[float, ...] | None = None, target_path: Path | None = None,
                maps: dict[str, Path] | None = None, title: str | None = None, params: dict | None = None,
                command: str = "") -> Path:
    """Read the files and write the report (the CLI's whole job, callable from Python)."""

    inp = _read(input_path, axes)
    out = _read(output_path, inp.axes)
    tgt = _read(target_path, inp.axes).data if target_path is not None else None
    map_arrays = {name: _read(p, None).data for name, p in (maps or {}).items()}
    vs = voxel_size or inp.voxel_size or out.voxel_size
    p = dict(params or {})
    p.setdefault("input", str(input_path))
    p.setdefault("output", str(output_path))
    if target_path is not None:
        p.setdefault("target", str(target_path))
    meta = getattr(out, "metadata", None) or {}
    if isinstance(meta, dict):
        # A restoration written by fluorecon carries its own parameters; show them.
        for k in ("fluorecon", "parameters", "params"):
            if isinstance(meta.get(k), dict):
                p.update({f"output.{kk}": vv for kk, vv in meta[k].items()})
    return write_report(report_path, title=title or f"fluorecon report: {Path(output_path).name}", input=inp.data,
                        output=out.data, axes=inp.axes, voxel_size=vs, params=p, command=command, maps=map_arrays,
                        target=tgt, input_path=input_path)


def _parse_maps(items: list[str] | None) -> dict[str, Path]:
    maps: dict[str, Path] = {}
    for it in items or []:
        if "=" not in it:
            raise FluoreconError(f"--map {it!r} is not NAME=FILE", hint="e.g. --map uncertainty=std.tif")
        name, f = it.split("=", 1)
        if not Path(f).exists():
            raise FluoreconError(f"map file not found: {f}", hint="check the path given to --map")
        maps[name.strip()] = Path(f)
    return maps


def register(app: typer.Typer) -> None:
    """Add ``fluorecon report`` to ``app``."""

    @app.command("report", help=HELP, short_help="Write a self-contained HTML report comparing an image with its restoration.")
    def report(
        input: InputArg,
        output_image: Annotated[str, typer.Argument(metavar="OUTPUT", help="The restored image (or a folder of them for a batch).")],
        output: OptionalOutputOpt = None,
        target: Annotated[Path | None, typer.Option("--target", help="Ground truth, enables metrics with CIs.")] = None,
        map_: Annotated[list[str] | None, typer.Option("--map", help="Extra map as NAME=FILE (repeatable).")] = None,
        title: Annotated[str | None, typer.Option("--title", help="Report title.")] = None,
        axes: AxesOpt = None,
        voxel_size: VoxelSizeOpt = None,
        json_out: JsonOpt = False,
        quiet: QuietOpt = False,
    ) -> None:
        with handle_errors():
            vs = parse_voxel_size(voxel_size)
            files = expand_inputs(input)
            batch = is_batch(input) or len(files) > 1
            out_spec = Path(output_image)
            if not batch and not out_spec.exists():
                raise FluoreconError(f"file not found: {out_spec}", hint="OUTPUT must be the restored image")
            if batch and not out_spec.is_dir():
                raise FluoreconError(f"OUTPUT {out_spec} must be a folder when INPUT is a folder or a glob",
                                     hint="give the folder holding the restorations")
            if target is not None and not target.exists():
                raise FluoreconError(f"target file not found: {target}", hint="check the path given to --target")
            maps = _parse_maps(map_)

            def one(f: Path) -> dict:
                o = _match_output(f, out_spec, batch)
                if output is None:
                    dest = output_for(o, None, 2, suffix=".html", tag="_report")
                else:
                    dest = output_for(f, output, len(files), suffix=".html", tag="_report")
                cmd = ["fluorecon", "report", str(f), str(o), "-o", str(dest)]
                if target is not None:
                    cmd += ["--target", str(target)]
                for k, v in maps.items():
                    cmd += ["--map", f"{k}={v}"]
                if axes:
                    cmd += ["--axes", axes]
                if vs:
                    cmd += ["--voxel-size", *map(str, vs)]
                if title:
                    cmd += ["--title", title]
                path = make_report(f, o, dest, axes=axes, voxel_size=vs, target_path=target, maps=maps, title=title,
                                   command=shlex.join(cmd))
                if not quiet and not json_out and len(files) == 1:
                    typer.echo(str(path))
                return {"output": str(path)}

            code = run_batch(files, one, quiet=quiet, json_out=json_out, label="report")
            if code:
                raise typer.Exit(code)

