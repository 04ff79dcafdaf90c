"""``fluorecon simulate``: a phantom through the forward model f → truth, observed, PSF and parameters."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

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


def _psf_shape(shape: tuple[int, ...], voxel: tuple[float, ...], wavelength: float, na: float,
               refractive_index: float, widefield: bool) -> tuple[int, ...]:
    """PSF support holding the blur: the full depth in Z; laterally ±3 Airy radii, and for a 3D
    widefield PSF also the out-of-focus cone (radius |z|·tan θ, sin θ = NA/n) — cutting it would
    remove the haze that makes widefield stacks what they are. Capped at the image size (odd)."""
    airy = 0.61 * wavelength / na
    reach = 3 * airy
    if len(shape) == 3 and widefield:
        theta = math.asin(min(na / refractive_index, 0.999))
        reach = max(reach, 0.5 * shape[0] * voxel[0] * math.tan(theta))
    out = []
    for i, (n, v) in enumerate(zip(shape, voxel, strict=True)):
        cap = n if n % 2 else n - 1
        if len(shape) == 3 and i == 0:
            size = cap
        else:
            half = max(7, math.ceil(reach / v))
            size = min(2 * half + 1, cap)
        out.append(max(size, 1))
    return tuple(out)


def build(*, shape, voxel, phantom, psf_file, psf_model, na, wavelength, refractive_index, photons, read_noise,
          gain, offset, em_gain, bit_depth, background, seed) -> dict:
    """Run the simulation in memory; returns arrays and the parameter record (nothing is written)."""
    from fluorecon.physics import psf as psfmod
    from fluorecon.validation import check_psf

    if na <= 0 or refractive_index <= 0 or wavelength <= 0:
        raise FluoreconError(f"optical parameters must be positive (na={na}, wavelength={wavelength}, "
                             f"refractive index={refractive_index})", hint="e.g. --na 1.4 --wavelength 0.52 --refractive-index 1.518")
    if na >= refractive_index:
        raise FluoreconError(f"NA {na} must be smaller than the refractive index {refractive_index}",
                             hint="an objective's NA cannot exceed the immersion index (oil ≈1.518, water 1.33, air 1.0)")
    if photons < 0:
        raise FluoreconError(f"--photons must be ≥ 0, got {photons}", hint="the expected photon count per pixel at signal 1.0, e.g. 100")
    if read_noise < 0 or gain <= 0 or background < 0 or (em_gain is not None and em_gain < 1):
        raise FluoreconError(f"camera parameters out of range (read noise {read_noise}, gain {gain}, background "
                             f"{background}, EM gain {em_gain})",
                             hint="read noise ≥ 0 e-, gain > 0 ADU/e-, background ≥ 0 photons, EM gain ≥ 1 (or omit it)")
    if bit_depth is not None and not 0 <= bit_depth <= 32:
        raise FluoreconError(f"--bit-depth {bit_depth} is out of range", hint="e.g. 12 or 16, or 0 for float output")
    ndim = len(shape)
    if psf_file is not None:
        psf = psfmod.load_psf(psf_file)
        psf = check_psf(psf, ndim, shape, name=f"PSF {psf_file}")
        psf_record = {"kind": "file", "path": str(psf_file), "shape": list(psf.shape)}
    else:
        model = psf_model.value if psf_model is not None else "widefield"
        pshape = _psf_shape(shape, voxel, wavelength, na, refractive_index, widefield=model != "gaussian")
        if model == "gaussian":
            psf = psfmod.gaussian_psf_from_optics(pshape, voxel, na, wavelength, refractive_index)
            psf_record = {"kind": "gaussian_optics"}
        else:
            wf = "gibson-lanni" if model == "gibson-lanni" else "born-wolf"
            psf = psfmod.widefield_psf(pshape, voxel, na, wavelength, refractive_index, model=wf)
            psf_record = {"kind": "widefield", "model": wf}
        psf_record.update(shape=list(pshape), voxel_size=list(voxel), na=na, wavelength=wavelength,
                          refractive_index=refractive_index)
        psf = check_psf(psf, ndim, shape)
    # Imported after the cheap checks so that bad parameters fail fast.
    from fluorecon.physics import phantoms
    from fluorecon.physics.camera import Camera
    from fluorecon.physics.forward import Forward

    if phantom not in phantoms.KINDS:
        raise FluoreconError(f"unknown phantom {phantom!r}", hint=f"use one of {', '.join(phantoms.KINDS)}")
    ss = np.random.SeedSequence(seed)
    phantom_seed, noise_seed = (int(s.generate_state(1)[0]) for s in ss.spawn(2))
    truth = np.asarray(phantoms.phantom(phantom, shape, phantom_seed), dtype=np.float32)
    cam_kw = {"photons": photons, "gain": gain, "offset": offset, "read_noise": read_noise,
              "em_gain": em_gain, "bit_depth": bit_depth or None, "background": background}
    camera = Camera(**cam_kw)
    fwd = Forward(psf=psf, camera=camera)
    observed, truth_ref = fwd.simulate(truth, seed=noise_seed)
    observed = np.asarray(observed)
    truth_ref = np.asarray(truth_ref, dtype=np.float32)
    if bit_depth:
        dtype = np.uint8 if bit_depth <= 8 else np.uint16 if bit_depth <= 16 else np.float32
        if dtype is not np.float32:
            observed = np.clip(np.rint(observed), 0, np.iinfo(dtype).max).astype(dtype)
    else:
        observed = observed.astype(np.float32)
    params = {
        "command": "simulate",
        "seed": seed,
        "seeds": {"phantom": phantom_seed, "noise": noise_seed, "derivation": "numpy SeedSequence(seed).spawn(2)"},
        "phantom": phantom,
        "shape": list(shape),
        "axes": "ZYX" if ndim == 3 else "YX",
        "voxel_size_um": list(voxel),
        "psf": psf_record,
        "camera": camera.model_dump() if hasattr(camera, "model_dump") else cam_kw,
        "observed_dtype": str(observed.dtype),
        "files": {"truth": "truth.tif", "observed": "observed.tif", "psf": "psf.tif"},
    }
    try:
        fd = dict(fwd.to_dict())
        if isinstance(fd.get("psf"), dict) and "values" in fd["psf"]:
            # The PSF array lives in psf.tif; Forward.from_dict needs it put back as "values".
            fd["psf"] = {k: v for k, v in fd["psf"].items() if k != "values"} | {"file": "psf.tif"}
        params["forward"] = json.loads(json.dumps(fd, default=_json_default))
    except (TypeError, ValueError, AttributeError):
        params["forward_note"] = "Forward.to_dict() not serialisable; rebuild it from psf.tif + camera"
    return {"truth": truth_ref, "observed": observed, "psf": psf.astype(np.float32), "params": params}


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


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
    from fluorecon._atomic import atomic_path
    from fluorecon.io import write_image

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
            tmp.write_text(json.dumps(res["params"], indent=2, sort_keys=True, default=_json_default) + "\n")
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


