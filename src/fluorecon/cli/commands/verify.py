"""`fluorecon verify RECORDING RECONSTRUCTION`: is a reconstruction — from any software — supported by its recording?

Prints the verdict and the regions where the reconstruction holds more (``added``) or less (``missing``)
signal than the recording supports, with p-values corrected for every place looked at. Nothing is
written unless ``--report FILE`` is given. Exit code 0 whatever the verdict (a finding is not an
error); 2 for bad input.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from fluorecon.cli.common import EXIT_OK, echo_warnings, emit_json, handle_errors, load_image
from fluorecon.cli.options import (
    DEFAULT_REFRACTIVE_INDEX,
    AxesOpt,
    JsonOpt,
    NaOpt,
    PsfFileOpt,
    PsfModelOpt,
    QuietOpt,
    RefractiveIndexOpt,
    VoxelSizeOpt,
    WavelengthOpt,
    parse_voxel_size,
)
from fluorecon.errors import FluoreconError

EPILOG = """Examples:

  fluorecon verify raw.tif denoised.tif                       # denoising: f is the identity

  fluorecon verify raw.tif decon.tif --psf psf.tif --gain 0.46 --offset 100 --read-noise 1.6

  fluorecon verify stack.tif decon.tif --psf-model widefield --na 1.4 --wavelength 0.52 \\
      --voxel-size 0.2 0.065 0.065 --json > verify.json

  fluorecon verify raw.tif result.tif --report verify.html
"""


def _background(value: str) -> float | str | None:
    v = value.strip().lower()
    if v == "auto":
        return "auto"
    if v in ("none", "off"):
        return None
    try:
        return float(v)
    except ValueError:
        raise FluoreconError(f"--background {value!r} is neither 'auto', 'none' nor a number",
                             hint="e.g. --background auto or --background 0") from None


def build_forward(spatial_shape: tuple[int, ...], *, psf: Path | None, psf_model: str | None, na: float,
                  wavelength: float, refractive_index: float, voxel_size: tuple[float, ...] | None) -> Any:
    """The forward model for the check: None (identity) or a blur ``Forward`` with the given PSF."""
    if psf is None and psf_model is None:
        return None
    if psf is not None and psf_model is not None:
        raise FluoreconError("give either --psf or --psf-model, not both", hint="drop one of them")
    from fluorecon.physics.forward import Forward
    from fluorecon.tasks.deconvolve import make_psf_for_image

    if psf is not None:
        from fluorecon.physics.psf import load_psf

        if not psf.exists():
            raise FluoreconError(f"PSF file not found: {psf}", hint="check the --psf path")
        arr = load_psf(psf)
        if arr.ndim > len(spatial_shape):
            import numpy as np

            sq = np.squeeze(arr)
            if sq.ndim > len(spatial_shape):
                raise FluoreconError(f"the PSF has {arr.ndim} dimensions but the image has {len(spatial_shape)} "
                                     "spatial axes", hint="give a PSF with as many dimensions as the image (a 2D PSF "
                                     "for a 2D image), or check --axes")
            arr = sq
        p, _ = make_psf_for_image(spatial_shape, psf=arr)
    else:
        if voxel_size is None:
            raise FluoreconError(f"--psf-model {psf_model} needs --voxel-size",
                                 hint="e.g. --voxel-size 0.065 0.065 (Y X, µm) or --voxel-size 0.2 0.065 0.065")
        p, _ = make_psf_for_image(spatial_shape, psf_model=psf_model, na=na, wavelength=wavelength,
                                  refractive_index=refractive_index, voxel_size=voxel_size)
    return Forward(psf=p)


def _print(d: dict) -> None:
    from rich.console import Console

    console = Console()
    verdict = "[red]FLAGGED[/red]" if d["flagged"] else "[green]supported by the recording[/green]"
    console.print(f"[bold]{d['reconstruction']}[/bold] against [bold]{d['recording']}[/bold]: {verdict}")
    console.print(f"  fitted: reconstruction × {d['scale']:.4g} + background {d['background']:.4g} "
                  f"(noise model: {d['noise_model'].get('source')})")
    regions = d["regions"]
    if regions:
        console.print(f"  {d['n_added']} added / {d['n_missing']} missing region(s) at image-level "
                      f"false-alarm rate {d['alpha']:g}:")
        for r in regions[:15]:
            cen = ", ".join(f"{c:.1f}" for c in r["centroid"])
            console.print(f"    {r['kind']:<8} at ({cen})  extent {'×'.join(map(str, r['extent']))} px  "
                          f"z {r['z']:.1f}  p {r['p_value']:.2g}")
        if len(regions) > 15:
            console.print(f"    … and {len(regions) - 15} more (--json lists all)")
    else:
        console.print(f"  no region contradicts the recording (false-alarm rate {d['alpha']:g})")
    fm = d["forward_model"]
    scale = fm.get("psf_scale")
    extra = f", best-supported PSF scale {scale:.2f}×" if isinstance(scale, float) else ""
    colour = "yellow" if fm.get("flagged") else "green"
    console.print(f"  forward model: [{colour}]{fm.get('verdict')}[/{colour}]{extra}")
    frac = d.get("unconfirmed_fraction")
    if frac:
        console.print(f"  {100 * frac:.1f}% of the reconstruction's detail lies where the PSF passes nothing above "
                      "the noise: the recording cannot confirm it (see the 'unconfirmed' map in --report)")


def register(app: typer.Typer) -> None:
    """Add ``verify`` to ``app``."""

    @app.command("verify", epilog=EPILOG)
    def verify_cmd(
        recording: Annotated[str, typer.Argument(help="The raw recording (camera units).")],
        reconstruction: Annotated[str, typer.Argument(help="The reconstruction to check, in any units (from any software).")],
        psf: PsfFileOpt = None,
        psf_model: PsfModelOpt = None,
        na: NaOpt = 1.4,
        wavelength: WavelengthOpt = 0.52,
        refractive_index: RefractiveIndexOpt = DEFAULT_REFRACTIVE_INDEX,
        voxel_size: VoxelSizeOpt = None,
        gain: Annotated[float | None, typer.Option("--gain", help="Camera gain in ADU per electron (default: estimated from the recording).")] = None,
        offset: Annotated[float | None, typer.Option("--offset", help="Camera offset in ADU (default: estimated).")] = None,
        read_noise: Annotated[float | None, typer.Option("--read-noise", help="Read noise in electrons rms (default: estimated).")] = None,
        background: Annotated[str, typer.Option("--background", help="Constant background added to the re-imaged reconstruction: auto (fitted), none, or a number (ADU).")] = "auto",
        alpha: Annotated[float, typer.Option("--alpha", help="Image-level false-alarm rate (probability of any region when the reconstruction is right).")] = 0.05,
        no_fit_scale: Annotated[bool, typer.Option("--no-fit-scale", help="Use the reconstruction's units as they are (no global scale fit).")] = False,
        no_fit_shift: Annotated[bool, typer.Option("--no-fit-shift", help="Do not fit a global sub-pixel shift between recording and reconstruction (fitted by default, applied from 0.1 px, at most 1.5 px).")] = False,
        axes: AxesOpt = None,
        report: Annotated[Path | None, typer.Option("--report", help="Write an HTML report with the maps to this file.")] = None,
        json_out: JsonOpt = False,
        quiet: QuietOpt = False,
    ) -> None:
        """Check RECONSTRUCTION against RECORDING: where does it add or miss signal?

        With no PSF the forward model is the identity (a denoising result); with --psf or --psf-model the
        reconstruction is blurred with the PSF before comparing. The reconstruction may be in any units:
        a global scale and background are fitted and reported. Camera numbers not given are estimated.
        Exit code 0 whatever the verdict; 2 for bad input.
        """
        with handle_errors(), echo_warnings(quiet or json_out):
            import numpy as np

            from fluorecon.io import read_image
            from fluorecon.trust.verify import verify

            for p in (recording, reconstruction):
                if not Path(p).exists():
                    raise FluoreconError(f"file not found: {p}", hint="check the path")
            img, x, ax = load_image(recording, axes, name=f"recording {recording}")
            # read as is: verify itself reports where NaN or negative values are
            rec = read_image(reconstruction, axes=axes)
            y, ax_y = np.asarray(rec.data), rec.axes
            if y.shape != x.shape:
                raise FluoreconError(
                    f"the recording {recording} has shape {x.shape} ({ax}) but the reconstruction {reconstruction} "
                    f"has {y.shape} ({ax_y})",
                    hint="they must be on the same grid; if one file stores another axis order, give --axes "
                         "(e.g. --axes ZYX)")
            vs = parse_voxel_size(voxel_size) or img.voxel_size
            nd = sum(a in "ZYX" for a in ax)
            fwd = build_forward(tuple(x.shape[-nd:]), psf=psf, psf_model=None if psf_model is None else psf_model.value,
                                na=na, wavelength=wavelength, refractive_index=refractive_index,
                                voxel_size=None if vs is None else tuple(vs)[-nd:])
            res = verify(x, y, fwd, axes=ax, gain=gain, offset=offset, read_noise=read_noise,
                         background=_background(background), fit_scale=not no_fit_scale, fit_shift=not no_fit_shift, alpha=alpha)
            d = {"recording": recording, "reconstruction": reconstruction, "axes": ax, **res.to_dict()}
            if report is not None:
                from fluorecon.report import write_report

                table = {f"{i + 1}. {r['kind']}": f"centroid {[round(c, 1) for c in r['centroid']]}, "
                         f"extent {r['extent']}, z {r['z']:.1f}, p {r['p_value']:.2g}"
                         for i, r in enumerate(res.regions[:50])}
                write_report(report, title=f"verify: {Path(reconstruction).name}", input=x, output=y, axes=ax,
                             voxel_size=vs, params={k: v for k, v in d.items() if k in ("scale", "background", "alpha")},
                             command="fluorecon verify", maps={"verify z (+ missing, − added)": res.maps["z"],
                                                               "unconfirmed by the recording": res.maps["unconfirmed"]},
                             extra_sections=[("verdict", res.summary()), ("regions", table or "none"),
                                             ("forward model", {k: str(v) for k, v in res.forward_model.items()
                                                                if k != "peak_scales"})])
                d["report"] = str(report)
            if json_out:
                emit_json(d)
            elif not quiet:
                _print(d)
        raise typer.Exit(EXIT_OK)
