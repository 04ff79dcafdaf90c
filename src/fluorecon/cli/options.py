"""Options shared by every command, defined once so that commands cannot drift.

Use them as type annotations in a typer command::

    @app.command()
    def denoise(input: InputArg, output: OutputOpt, axes: AxesOpt = None, seed: SeedOpt = 0): ...

``--voxel-size`` takes 2 or 3 numbers (µm, order Z Y X, or Y X for 2D) separated by spaces; ``main()``
joins them into one token before typer parses the line (typer options cannot take a variable count).
"""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Annotated

import typer

from fluorecon.errors import FluoreconError


class Device(str, Enum):
    cpu = "cpu"
    cuda = "cuda"
    auto = "auto"


class PsfModel(str, Enum):
    gaussian = "gaussian"
    widefield = "widefield"
    gibson_lanni = "gibson-lanni"


class Scheduler(str, Enum):
    threads = "threads"
    processes = "processes"
    distributed = "distributed"


def parse_voxel_size(value: str | None) -> tuple[float, ...] | None:
    """Parse ``"0.3,0.1,0.1"`` (as joined by ``main``) into a tuple of positive floats (µm)."""

    if value is None or value == "":
        return None
    parts = [p for p in value.replace(",", " ").split() if p]
    try:
        vals = tuple(float(p) for p in parts)
    except ValueError:
        raise FluoreconError(f"--voxel-size {value!r} is not a list of numbers",
                             hint="give 2 (Y X) or 3 (Z Y X) sizes in µm, e.g. --voxel-size 0.3 0.1 0.1") from None
    if len(vals) not in (2, 3) or any(v <= 0 for v in vals):
        raise FluoreconError(f"--voxel-size needs 2 or 3 positive numbers (µm), got {value!r}",
                             hint="e.g. --voxel-size 0.3 0.1 0.1 for ZYX or --voxel-size 0.1 0.1 for YX")
    return vals


InputArg = Annotated[str, typer.Argument(help="Input image file, folder or glob (TIFF, OME-TIFF, OME-Zarr, NPY, PNG).")]
OutputOpt = Annotated[Path, typer.Option("-o", "--output", help="Output file (or folder for several inputs).")]
OptionalOutputOpt = Annotated[Path | None, typer.Option("-o", "--output", help="Output file or folder.")]
AxesOpt = Annotated[str | None, typer.Option("--axes", help="Axes of the input, e.g. YX, ZYX, CYX, TZYX (default: from metadata or shape).")]
VoxelSizeOpt = Annotated[str | None, typer.Option("--voxel-size", help="Voxel size in µm: Z Y X (3 values) or Y X (2 values).", metavar="Z Y X")]
MethodOpt = Annotated[str, typer.Option("--method", help="Algorithm to use (see the command's help).")]
PsfFileOpt = Annotated[Path | None, typer.Option("--psf", help="Measured PSF file (centred, normalised and cropped automatically).")]
PsfModelOpt = Annotated[PsfModel | None, typer.Option("--psf-model", help="Theoretical PSF model when no --psf file is given.")]
NaOpt = Annotated[float, typer.Option("--na", help="Numerical aperture of the objective.")]
WavelengthOpt = Annotated[float, typer.Option("--wavelength", help="Emission wavelength in µm (e.g. 0.52).")]
RefractiveIndexOpt = Annotated[float, typer.Option("--refractive-index", help="Immersion refractive index.")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed (every random process is seeded).")]
DeviceOpt = Annotated[Device, typer.Option("--device", help="Compute device.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a machine-readable JSON result on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or informational output.")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")]
SchedulerOpt = Annotated[str, typer.Option("--scheduler", help="threads | processes | distributed | ADDRESS of a dask scheduler.")]
ReportOpt = Annotated[bool, typer.Option("--report", help="Also write an HTML report next to the output.")]
BudgetOpt = Annotated[float, typer.Option("--budget", help="Training wall-time budget in seconds.")]
# `Annotated[...] | None` would drop the option's help text: optional variants are declared whole.
OptionalBudgetOpt = Annotated[float | None, typer.Option("--budget", help="Training wall-time budget in seconds (instead of --steps).")]
OptionalSchedulerOpt = Annotated[str | None, typer.Option("--scheduler", help="Run out of core on dask: threads | processes | distributed | ADDRESS of a dask scheduler.")]

DEFAULT_NA = 1.4
DEFAULT_WAVELENGTH = 0.52
DEFAULT_REFRACTIVE_INDEX = 1.518

# --- added by the foundation CLI (info / simulate / metrics); reuse them in other commands ---------
OutDirOpt = Annotated[Path, typer.Option("-o", "--output", "--out", help="Output folder (created if missing).")]
DataRangeOpt = Annotated[float | None, typer.Option("--data-range", help="Dynamic range for PSNR/SSIM (default: the target's max − min, reported in the output).")]
ShapeOpt = Annotated[str | None, typer.Option("--shape", help="Image shape: Y X or Z Y X, e.g. 256,256 or 32,128,128 (also 256x256).", metavar="[Z,]Y,X")]
PhantomOpt = Annotated[str, typer.Option("--phantom", help="Phantom kind: filaments, membranes, puncta, nuclei (fluorecon.physics.phantoms.KINDS).")]
PhotonsOpt = Annotated[float, typer.Option("--photons", help="Expected photons per pixel at intensity 1.0 of the (normalised) signal.")]
ReadNoiseOpt = Annotated[float, typer.Option("--read-noise", help="Camera read noise in electrons rms.")]
GainOpt = Annotated[float, typer.Option("--gain", help="Camera gain in ADU per electron.")]
OffsetOpt = Annotated[float, typer.Option("--offset", help="Camera offset (baseline) in ADU.")]
EmGainOpt = Annotated[float | None, typer.Option("--em-gain", help="EMCCD multiplication gain (>1); omit for sCMOS/CCD.")]
BitDepthOpt = Annotated[int | None, typer.Option("--bit-depth", help="ADC bit depth (quantise and saturate); 0 = float output.")]
BackgroundOpt = Annotated[float, typer.Option("--background", help="Background photons per pixel (autofluorescence, out-of-focus light).")]


def parse_shape(value: str | None, default: tuple[int, ...]) -> tuple[int, ...]:
    """Parse ``"32,128,128"`` / ``"256x256"`` / ``"256 256"`` into a shape of 2 or 3 positive ints."""

    if value is None or value == "":
        return default
    parts = [p for p in value.lower().replace("x", ",").replace(" ", ",").split(",") if p]
    try:
        vals = tuple(int(p) for p in parts)
    except ValueError:
        raise FluoreconError(f"--shape {value!r} is not a list of integers", hint="e.g. --shape 256,256 or --shape 32,128,128") from None
    if len(vals) not in (2, 3) or any(v < 8 for v in vals[-2:]) or any(v < 1 for v in vals):
        raise FluoreconError(f"--shape needs 2 (Y,X) or 3 (Z,Y,X) sizes (Y, X ≥ 8), got {value!r}",
                             hint="e.g. --shape 256,256 or --shape 32,128,128")
    return vals

# --- issue 11: reading interrupted stores ---------------------------------------------------------
AllowIncompleteOpt = Annotated[bool, typer.Option("--allow-incomplete", help="Read an interrupted fluorecon OME-Zarr "
                                                  "store (complete: false) anyway; unwritten chunks read as zeros.")]
