"""``fluorecon noise``: fit a Poisson–Gaussian camera noise model (gain, offset, read noise)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fluorecon.cli.common import echo_warnings, emit_json, expand_inputs, handle_errors, run_batch
from fluorecon.cli.options import AxesOpt, InputArg, JsonOpt, QuietOpt
from fluorecon.errors import FluoreconError
from fluorecon.io import read_image
from fluorecon.physics.noise_model import estimate_poisson_gaussian, photon_transfer
from fluorecon.validation import as_image

EPILOG = """Examples:

  fluorecon noise frames.tif                       (time-lapse of a still field: photon-transfer fit)

  fluorecon noise frames.tif --frames-axis 0 --offset 100 --json

  fluorecon noise single_image.tif --single        (one raw image: Foi-style fit, less precise)

  fluorecon noise "data/*.tif"                     (one fit per file and a summary table)

Repeated frames (a T axis, or --frames-axis) give the photon-transfer fit from consecutive-frame
differences; otherwise the single-image estimator is used. The data fix the gain (slope of variance
vs mean) and the intercept; offset and read noise separate only with a known --offset.
"""

FramesAxisOpt = Annotated[int | None, typer.Option("--frames-axis", help="Axis holding repeated frames (default: the T axis if there is one).")]
SingleOpt = Annotated[bool, typer.Option("--single", help="Fit each image alone (no repeated frames), plane by plane.")]
RawOpt = Annotated[bool, typer.Option("--raw", help="Photon transfer on raw frame differences (static scene, or noise that is itself spatially correlated) instead of their high-pass.")]
OffsetOpt = Annotated[float | None, typer.Option("--offset", help="Known camera offset/baseline in ADU (otherwise the darkest level is used).")]


def fit_file(path: Path, axes: str | None = None, frames_axis: int | None = None, single: bool = False,
             offset: float | None = None, raw: bool = False) -> dict:
    """Fit the noise model of one file; returns a JSON-able dict."""
    import numpy as np


    img = read_image(path, axes=axes)
    data = np.asarray(img.data)
    if data.dtype.kind not in "biuf":
        raise FluoreconError(f"{path.name}: data type {data.dtype} is not numeric", hint="pass raw camera data")
    as_image(data, img.axes, name=path.name)  # size, NaN/Inf, axes checks with clear messages
    if frames_axis is None and not single and "T" in img.axes:
        frames_axis = img.axes.index("T")
    if frames_axis is not None and not single:
        if not -data.ndim <= frames_axis < data.ndim:
            raise FluoreconError(f"--frames-axis {frames_axis} does not exist for {path.name} of shape {data.shape}",
                                 hint=f"use an axis between 0 and {data.ndim - 1}")
        nm = photon_transfer(data, axis=frames_axis, offset=offset, highpass=not raw)
    else:
        nm = estimate_poisson_gaussian(data, offset=offset)
    d = nm.to_dict()
    d.pop("bins", None) if not d.get("bins") else None
    out = {"file": str(path), "axes": img.axes, "shape": list(data.shape), **d}
    return out


def _print(res: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"noise model: {res['file']}", show_header=False)
    t.add_column("field", style="bold")
    t.add_column("value")
    se = res.get("gain_stderr")
    rows = [
        ("method", res["method"] + f" ({res['n_samples']} samples)"),
        ("gain (var/mean slope)", f"{res['gain']:.4g}" + (f" ± {se:.2g}" if se is not None else "") + " ADU/e-"),
        ("intercept (var at 0)", f"{res['intercept']:.4g} ADU²"),
        ("offset", f"{res['offset']:.4g} ADU" + ("" if res["offset_known"] else " (assumed: darkest level)")),
        ("read noise", f"{res['read_noise_adu']:.4g} ADU = {res['read_noise_electrons']:.3g} e-"),
        ("fit R²", f"{res['r2']:.4f}" if res.get("r2") is not None else "—"),
        ("mean range fitted", f"{res['mean_range'][0]:.5g} … {res['mean_range'][1]:.5g} ADU" if res.get("mean_range") else "—"),
    ]
    if res.get("noise_correlation") is not None:
        c = res["noise_correlation"]
        rows.append(("frame-diff. neighbour corr.",
                     f"{c:.2f}" + ("  (specimen changes between frames, or correlated noise: the fit uses "
                                   "the high-pass of the differences)" if c > 0.2 else "  (≈ white)")))
    for k, v in rows:
        t.add_row(k, v)
    Console().print(t)


def noise(
    input: InputArg,
    frames_axis: FramesAxisOpt = None,
    single: SingleOpt = False,
    offset: OffsetOpt = None,
    raw: RawOpt = False,
    axes: AxesOpt = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Fit a Poisson–Gaussian noise model (gain, offset, read noise) to raw camera data."""
    with handle_errors(), echo_warnings(quiet):
        files = expand_inputs(input)
        if len(files) == 1:
            res = fit_file(files[0], axes, frames_axis, single, offset, raw)
            if json_out:
                emit_json(res)
            elif not quiet:
                _print(res)
            return

        def process(f: Path) -> dict:
            r = fit_file(f, axes, frames_axis, single, offset, raw)
            r.pop("file")
            r.pop("bins", None)
            if not json_out and not quiet:
                typer.echo(f"{f}: gain {r['gain']:.4g} ADU/e-, offset {r['offset']:.4g}, read noise "
                           f"{r['read_noise_adu']:.4g} ADU ({r['method']})")
            return r

        code = run_batch(files, process, quiet=True, json_out=json_out, label="noise")
        if code:
            raise typer.Exit(code)


def register(app: typer.Typer) -> None:
    """Add ``fluorecon noise`` to ``app``."""
    app.command("noise", epilog=EPILOG, help=noise.__doc__)(noise)
