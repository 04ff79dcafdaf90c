"""``fluorecon info``: what is in an image file (shape, dtype, axes, voxel size, value range)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from fluorecon.cli.common import echo_warnings, emit_json, expand_inputs, handle_errors, run_batch
from fluorecon.cli.options import AllowIncompleteOpt, AxesOpt, JsonOpt, QuietOpt
from fluorecon.io import allow_incomplete

EPILOG = """Examples:

  fluorecon info cells.tif

  fluorecon info stack.ome.zarr --json

  fluorecon info "data/*.tif"          (one line per file)

  fluorecon info frames.npy --axes TYX
"""


def describe(path: Path, axes: str | None = None) -> dict:
    """Summarise one image file as a JSON-able dict (no validation: NaN/Inf are counted, not refused)."""
    from fluorecon.io import read_image

    img = read_image(path, axes=axes)
    d = img.data
    finite = np.isfinite(d) if d.dtype.kind == "f" else None
    vals = d[finite] if finite is not None else d
    out = {
        "path": str(path),
        "format": img.metadata.get("format"),
        "shape": list(d.shape),
        "dtype": str(d.dtype),
        "axes": img.axes,
        "axes_guessed": bool(img.metadata.get("axes_guessed", False)),
        "voxel_size_um": list(img.voxel_size) if img.voxel_size else None,
        "min": float(vals.min()) if vals.size else None,
        "max": float(vals.max()) if vals.size else None,
        "mean": float(vals.mean(dtype=np.float64)) if vals.size else None,
        "std": float(vals.std(dtype=np.float64)) if vals.size else None,
        "nan_count": int(np.isnan(d).sum()) if d.dtype.kind == "f" else 0,
        "inf_count": int(np.isinf(d).sum()) if d.dtype.kind == "f" else 0,
        "size_mb": round(d.nbytes / 2**20, 3),
    }
    if d.dtype.kind in "ui" and vals.size:
        out["saturated_count"] = int((d == np.iinfo(d.dtype).max).sum())
    if img.metadata.get("rgb"):
        out["note"] = img.metadata.get("note", "RGB image")
    if "voxel_size_partial" in img.metadata:
        out["voxel_size_partial"] = img.metadata["voxel_size_partial"]
    return out


def _print(info: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=info["path"], show_header=False)
    t.add_column("field", style="bold")
    t.add_column("value")
    vs = info["voxel_size_um"]
    rows = [
        ("format", str(info["format"])),
        ("shape", " × ".join(str(s) for s in info["shape"])),
        ("axes", info["axes"] + (" (guessed from ndim; set --axes)" if info["axes_guessed"] else "")),
        ("dtype", info["dtype"]),
        ("voxel size", ("unknown" if vs is None else " × ".join(f"{v:.4g}" for v in vs) + " µm")),
        ("range", f"{info['min']:.6g} … {info['max']:.6g}" if info["min"] is not None else "no finite values"),
        ("mean ± std", f"{info['mean']:.6g} ± {info['std']:.6g}" if info["mean"] is not None else "—"),
        ("NaN / Inf", f"{info['nan_count']} / {info['inf_count']}"),
        ("size", f"{info['size_mb']} MiB"),
    ]
    if "saturated_count" in info:
        rows.append(("pixels at dtype max", str(info["saturated_count"])))
    if "note" in info:
        rows.append(("note", info["note"]))
    for k, v in rows:
        t.add_row(k, v)
    Console().print(t)


InputsArg = Annotated[list[str], typer.Argument(help="Input image file(s), folder(s) or glob(s) (TIFF, OME-TIFF, OME-Zarr, NPY, PNG).",
                                                metavar="INPUT...")]


def info(
    inputs: InputsArg,
    axes: AxesOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
    allow_incomplete_store: AllowIncompleteOpt = False,
) -> None:
    """Show shape, dtype, axes, voxel size (µm), value range, mean and NaN/Inf counts of images."""
    with handle_errors(), echo_warnings(), allow_incomplete(allow_incomplete_store):
        files = [f for spec in inputs for f in expand_inputs(spec)]
        if len(files) == 1:
            d = describe(files[0], axes)
            if json_out:
                emit_json(d)
            elif not quiet:
                _print(d)
            return

        def process(f: Path) -> dict:
            d = describe(f, axes)
            d.pop("path")
            if not json_out and not quiet:
                vs = d["voxel_size_um"]
                typer.echo(f"{f}: {d['axes']} {tuple(d['shape'])} {d['dtype']} range {d['min']:.6g}…{d['max']:.6g}"
                           f" voxel {vs if vs else 'unknown'} NaN {d['nan_count']}")
            return d

        code = run_batch(files, process, quiet=True, json_out=json_out, label="info")
        if code:
            raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add ``fluorecon info`` to ``app``."""
    app.command("info", epilog=EPILOG, help=info.__doc__)(info)


