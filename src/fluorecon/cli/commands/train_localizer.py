"""``fluorecon train-localizer``: train a DECODE-style or Deep-STORM-style localizer on matched simulations."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fluorecon.cli.common import emit_json, handle_errors

EPILOG = """Examples:

  fluorecon train-localizer -o model/ --pixel-size 100 --psf-sigma 130 --gain 0.0222 --em-gain 300
      --read-noise 74.4 --density 2 --photons 2000 --background 20 --budget 600

  fluorecon train-localizer movie.tif -o model/ --density 2 --budget 600
      (photons and background estimated from the movie with an MLE pass)

  fluorecon localize movie.tif -o locs.csv --method decode --model model/

The simulation is matched to the camera (baseline ADU, gain ADU/e-, EM gain, read noise e-), the
Gaussian PSF, the expected density (active emitters per µm² per frame), photons and background.
"""


def train_localizer_cmd(
    movie: Annotated[Path | None, typer.Argument(help="Optional movie (TYX) to estimate photons/background and "
                                                      "the pixel size from.")] = None,
    output: Annotated[Path | None, typer.Option("-o", "--output", help="Model folder to write.")] = None,
    method: Annotated[str, typer.Option("--method", help="decode or deepstorm.")] = "decode",
    pixel_size: Annotated[float | None, typer.Option("--pixel-size", help="Camera pixel size (nm).")] = None,
    psf_sigma: Annotated[float | None, typer.Option("--psf-sigma", help="Gaussian PSF sigma (nm).")] = None,
    baseline: Annotated[float, typer.Option("--baseline", help="Camera baseline (ADU).")] = 100.0,
    gain: Annotated[float, typer.Option("--gain", help="ADU per electron.")] = 1.0,
    em_gain: Annotated[float | None, typer.Option("--em-gain", help="EM gain (> 1) of an EMCCD.")] = None,
    read_noise: Annotated[float, typer.Option("--read-noise", help="Read noise (e- rms).")] = 1.0,
    density: Annotated[float, typer.Option("--density", help="Active emitters per µm² per frame.")] = 1.0,
    photons: Annotated[float | None, typer.Option("--photons", help="Mean photons per emitter and frame.")] = None,
    background: Annotated[float | None, typer.Option("--background", help="Background photons per pixel.")] = None,
    budget: Annotated[float, typer.Option("--budget", help="Training time budget (s).")] = 300.0,
    steps: Annotated[int | None, typer.Option("--steps", help="Exact number of training steps.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 0,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing model folder.")] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print the training summary as JSON.")] = False,
    quiet: Annotated[bool, typer.Option("-q", "--quiet", help="No progress output.")] = False,
) -> None:
    """Train a learned SMLM localizer (DECODE-style or Deep-STORM-style) on simulations matched to your data."""
    with handle_errors():
        from fluorecon._atomic import check_output
        from fluorecon.errors import FluoreconError
        from fluorecon.learn.smlm_nets import SimConfig, train_localizer
        from fluorecon.tasks.localize import LocalizeParams, LocalizeTask, _movie, _pixel_size

        if output is None:
            raise FluoreconError("no output folder", hint="give -o MODEL_DIR")
        if method not in ("decode", "deepstorm"):
            raise FluoreconError(f"--method must be decode or deepstorm, got {method!r}")
        check_output(output, overwrite=overwrite, kind="dir", label="model folder")
        p = LocalizeParams(method=method, pixel_size=pixel_size, psf_sigma=psf_sigma, baseline=baseline, gain=gain,
                           em_gain=em_gain, read_noise=read_noise, density=density, photons=photons,
                           background=background)
        cam = p.camera()
        if psf_sigma is None:
            raise FluoreconError("the PSF sigma is missing", hint="give --psf-sigma in nm")
        if movie is not None:
            from fluorecon.io import read_image

            img = read_image(movie)
            px = _pixel_size(img, pixel_size)
            est = LocalizeTask._estimate(_movie(img), cam, px, psf_sigma, p)
        else:
            if pixel_size is None:
                raise FluoreconError("the pixel size is missing", hint="give --pixel-size in nm (or a movie)")
            if photons is None or background is None:
                raise FluoreconError("without a movie, --photons and --background are needed")
            px = pixel_size
            est = {"photons": photons, "background": background}
        sim = SimConfig(pixel_size=px, psf_sigma=psf_sigma, density=density, photons=est["photons"],
                        background=est["background"], camera=cam.model_dump(mode="json"))

        def progress(f: float, msg: str) -> None:
            if not quiet:
                typer.echo(f"\r{100 * f:5.1f}% {msg}", nl=False, err=True)

        model = train_localizer(method, sim, budget_s=budget, steps=steps, seed=seed, progress=progress)
        if not quiet:
            typer.echo("", err=True)
        model.save(output)
        summary = {"model": str(output), "kind": method, "simulation": est, "training": model.training}
        if json_out:
            emit_json(summary)
        elif not quiet:
            typer.echo(f"wrote {output} ({model.training['steps']} steps in {model.training['seconds']} s)")


def register(app: typer.Typer) -> None:
    """Add ``fluorecon train-localizer`` to ``app``."""
    app.command("train-localizer", epilog=EPILOG, help=train_localizer_cmd.__doc__)(train_localizer_cmd)
