"""``fluorecon simulate``: a phantom through the forward model f → truth, observed, PSF and parameters."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from fluorecon._atomic import atomic_path
from fluorecon.cli.common import echo_warnings, emit_json, handle_errors
from fluorecon.cli.options import (
    DEFAULT_NA,
    DEFAULT_REFRACTIVE_INDEX,
    DEFAULT_WAVELENGTH,
    BackgroundOpt,
    BitDepthOpt,
    EmGainOpt,
    GainOpt,
    JsonOpt,
    NaOpt,
    OffsetOpt,
    OutDirOpt,
    OverwriteOpt,
    PhantomOpt,
    PsfFileOpt,
    PsfModelOpt,
    QuietOpt,
    ReadNoiseOpt,
    RefractiveIndexOpt,
    SeedOpt,
    ShapeOpt,
    VoxelSizeOpt,
    WavelengthOpt,
    parse_shape,
    parse_voxel_size,
)
from fluorecon.errors import FluoreconError
from fluorecon.io import write_image
from fluorecon.physics.simulate import json_default, simulate_acquisition

OUTPUT_FILES = ("truth.tif", "observed.tif", "psf.tif", "parameters.json")
DEFAULT_SHAPE_2D = (256, 256)
DEFAULT_SHAPE_3D = (32, 128, 128)
DEFAULT_VOXEL_3D = (0.2, 0.065, 0.065)

EPILOG = """Examples:

  fluorecon simulate --out sim                       (2D filaments, widefield PSF, 100 photons, seed 0)

  fluorecon simulate --out sim3d --3d --phantom nuclei --voxel-size 0.3 0.1 0.1

  fluorecon simulate --out low --photons 10 --read-noise 2 --em-gain 300 --seed 1

  fluorecon simulate --out bead --psf measured_psf.tif --shape 32,128,128

Writes DIR/truth.tif (the phantom, float32), DIR/observed.tif (camera ADU), DIR/psf.tif and DIR/parameters.json (every parameter, seeds and the forward model). The same seed gives byte-identical files.
"""


def build(*, shape, voxel, phantom, psf_file, psf_model, na, wavelength, refractive_index, photons, read_noise,
          gain, offset, em_gain, bit_depth, background, seed) -> dict:
    """Run the simulation in memory (:func:`fluorecon.physics.simulate.simulate_acquisition`)."""
    return simulate_acquisition(shape=shape, voxel=voxel, phantom=phantom, psf_file=psf_file, psf_model=psf_model,
                                na=na, wavelength=wavelength, refractive_index=refractive_index, photons=photons,
                                read_noise=read_noise, gain=gain, offset=offset, em_gain=em_gain,
                                bit_depth=bit_depth, background=background, seed=seed)


def simulate(
    output: OutDirOpt,
    phantom: PhantomOpt = "filaments",
    shape: ShapeOpt = None,
    three_d: bool = typer.Option(False, "--3d", help=f"3D stack (default shape {DEFAULT_SHAPE_3D[0]},{DEFAULT_SHAPE_3D[1]},{DEFAULT_SHAPE_3D[2]})."),
    voxel_size: VoxelSizeOpt = None,
    psf: PsfFileOpt = None,
    psf_model: PsfModelOpt = None,
    na: NaOpt = DEFAULT_NA,
    wavelength: WavelengthOpt = DEFAULT_WAVELENGTH,
    refractive_index: RefractiveIndexOpt = DEFAULT_REFRACTIVE_INDEX,
    photons: Annotated[float | None, typer.Option("--photons", help="Expected photons per pixel at intensity 1.0 of the phantom (default 100 in 2D, 1000 in 3D, where the blur spreads the light over many planes).")] = None,
    read_noise: ReadNoiseOpt = 1.5,
    gain: GainOpt = 1.0,
    offset: OffsetOpt = 100.0,
    em_gain: EmGainOpt = None,
    bit_depth: BitDepthOpt = 16,
    background: BackgroundOpt = 0.0,
    seed: SeedOpt = 0,
    overwrite: OverwriteOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Simulate a microscope recording of a phantom: blur (PSF), then camera noise; write it to a folder."""
    with handle_errors(), echo_warnings():
        out = Path(output)
        if out.exists() and not out.is_dir():
            raise FluoreconError(f"--out {out} exists and is not a folder", hint="give a folder path")
        existing = [f for f in OUTPUT_FILES if (out / f).exists()]
        if existing and not overwrite:
            raise FluoreconError(f"{out} already holds {', '.join(existing)}", hint="pass --overwrite or choose another --out folder")
        shp = parse_shape(shape, DEFAULT_SHAPE_3D if three_d else DEFAULT_SHAPE_2D)
        vox = parse_voxel_size(voxel_size)
        if vox is None:
            vox = DEFAULT_VOXEL_3D[-len(shp):]
        elif len(vox) != len(shp):
            if len(vox) == 3 and len(shp) == 2:
                vox = vox[1:]
            else:
                raise FluoreconError(f"--voxel-size has {len(vox)} values but the image is {len(shp)}D {shp}",
                                     hint="give Z Y X sizes for a 3D --shape (or add --3d)")
        if psf is not None and not Path(psf).exists():
            raise FluoreconError(f"PSF file not found: {psf}", hint="check the --psf path")
        if photons is None:
            photons = 1000.0 if len(shp) == 3 else 100.0
        res = build(shape=shp, voxel=tuple(vox), phantom=phantom, psf_file=psf, psf_model=psf_model, na=na,
                    wavelength=wavelength, refractive_index=refractive_index, photons=photons, read_noise=read_noise,
                    gain=gain, offset=offset, em_gain=em_gain, bit_depth=bit_depth, background=background, seed=seed)
        params = res["params"]
        _write_all(out, res, tuple(vox))
        obs = res["observed"]
        summary = {"output": str(out), "files": [str(out / f) for f in OUTPUT_FILES],
                   "shape": params["shape"], "observed_range": [float(obs.min()), float(obs.max())],
                   "observed_mean": float(obs.mean(dtype=np.float64)), "seed": seed}
        if json_out:
            emit_json(summary)
        elif not quiet:
            typer.echo(f"simulated {phantom} {'×'.join(map(str, shp))} (seed {seed}); observed {obs.dtype} "
                       f"range {obs.min():.6g}…{obs.max():.6g}, mean {obs.mean(dtype=np.float64):.6g}")
            for f in OUTPUT_FILES:
                typer.echo(f"  wrote {out / f}")


def _write_all(out: Path, res: dict, vox: tuple[float, ...]) -> None:
    """Write the four outputs; on any failure remove what this run wrote (and the folder if it made it)."""

    made_dir = not out.exists()
    written: list[Path] = []
    axes = res["params"]["axes"]
    try:
        out.mkdir(parents=True, exist_ok=True)
        for name, key in (("truth.tif", "truth"), ("observed.tif", "observed"), ("psf.tif", "psf")):
            arr = res[key]
            pvox = vox[-arr.ndim:]
            write_image(out / name, arr, axes=axes[-arr.ndim:], voxel_size=pvox,
                        metadata={"role": key, "seed": res["params"]["seed"]})
            written.append(out / name)
        with atomic_path(out / "parameters.json") as tmp:
            tmp.write_text(json.dumps(res["params"], indent=2, sort_keys=True, default=json_default) + "\n")
        written.append(out / "parameters.json")
    except BaseException:
        for p in written:
            p.unlink(missing_ok=True)
        if made_dir and out.exists() and not any(out.iterdir()):
            out.rmdir()
        raise


def register(app: typer.Typer) -> None:
    """Add ``fluorecon simulate`` to ``app``."""
    app.command("simulate", epilog=EPILOG, help=simulate.__doc__)(simulate)


