"""``fluorecon isotropic``: self-supervised isotropic restoration of anisotropic 3D stacks."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from fluorecon.cli.common import EXIT_OK, emit_json, expand_inputs, handle_errors, plan_outputs, run_batch
from fluorecon.cli.options import (
    AxesOpt,
    BudgetOpt,
    DeviceOpt,
    InputArg,
    JsonOpt,
    OptionalOutputOpt,
    OverwriteOpt,
    PsfFileOpt,
    QuietOpt,
    SchedulerOpt,
    SeedOpt,
    VoxelSizeOpt,
    parse_voxel_size,
)

EPILOG = """Examples:

  fluorecon isotropic stack.tif --z-factor 4 -o iso.tif

  fluorecon isotropic stack.tif --voxel-size 0.3 0.13 0.13 --psf psf.tif -o iso.tif

  fluorecon isotropic stack.tif --z-factor 4 --axial-psf 0.8 --voxel-size 0.4 0.1 0.1 -o iso.tif

  fluorecon isotropic stack.tif --z-factor 4 --method rl -o iso_rl.tif      (baseline)

The network is trained on the stack itself (lateral slices degraded to look axial) for --budget seconds, then applied to all XZ and YZ slices; both predictions are fused. Writes OUT plus OUT_uncertainty.tif (disagreement of the two orientations) for --method learned.

Exit codes: 0 success, 1 a file of a batch failed, 2 bad input or parameters.
"""

MethodArg = Annotated[str, typer.Option("--method", help="learned (default) | linear | cubic | rl (baselines).")]
ZFactorOpt = Annotated[float | None, typer.Option("--z-factor", help="Z step / lateral pixel size (from --voxel-size when omitted).")]
AxialPsfOpt = Annotated[str | None, typer.Option("--axial-psf", help="Extra axial blur: FWHM in µm (a number) or a file with a 1D profile in lateral pixels.")]
IterOpt = Annotated[str, typer.Option("--iterations", help="RL iterations for --method rl (a number or 'auto').")]
SaveModelOpt = Annotated[Path | None, typer.Option("--save-model", help="Also save the trained restorer as a bundle folder.")]
ModelOpt = Annotated[Path | None, typer.Option("--model", help="Use a restorer bundle trained before (skips training).")]


def register(app: typer.Typer) -> None:
    @app.command("isotropic", epilog=EPILOG)
    def isotropic_cmd(
        input: InputArg,
        output: OptionalOutputOpt = None,
        z_factor: ZFactorOpt = None,
        axial_psf: AxialPsfOpt = None,
        psf: PsfFileOpt = None,
        method: MethodArg = "learned",
        voxel_size: VoxelSizeOpt = None,
        axes: AxesOpt = None,
        budget: BudgetOpt = 120.0,
        iterations: IterOpt = "20",
        seed: SeedOpt = 0,
        device: DeviceOpt = "auto",
        model: ModelOpt = None,
        save_model: SaveModelOpt = None,
        scheduler: SchedulerOpt | None = None,
        overwrite: OverwriteOpt = False,
        json_out: JsonOpt = False,
        quiet: QuietOpt = False,
    ) -> None:
        """Restore isotropic resolution of a Z stack sampled coarsely along Z."""
        with handle_errors():
            files = expand_inputs(input)
            from fluorecon.errors import FluoreconError

            if output is None:
                raise FluoreconError("no output given", hint="add -o OUT (a file, or a folder for several inputs)")
            outs = plan_outputs(files, output, overwrite=overwrite, suffix=".tif", tag="_iso", scheduler=scheduler)
            files = list(outs)
            vs_cli = parse_voxel_size(voxel_size)
            if vs_cli is not None and len(vs_cli) != 3:
                raise FluoreconError("--voxel-size needs 3 values (Z Y X) for a 3D stack", hint="e.g. --voxel-size 0.4 0.1 0.1")
            its: int | str = iterations if iterations == "auto" else int(iterations)
            params = dict(z_factor=z_factor, method=method, budget_s=budget, iterations=its, seed=seed,
                          device=getattr(device, "value", device))

        def process(path: Path) -> dict:
            import numpy as np

            from fluorecon.errors import FluoreconError
            from fluorecon.io import read_image, write_image
            from fluorecon.tasks.isotropic import isotropic

            out_path = outs[path]
            if scheduler is not None or str(out_path).endswith(".zarr"):
                from fluorecon.scale.bridge import run_out_of_core

                p = dict(params)
                if model is not None:
                    p["model"] = str(model)
                if axial_psf is not None:
                    try:
                        p["axial_fwhm"] = float(axial_psf)
                    except ValueError:
                        raise FluoreconError("out of core, --axial-psf must be a FWHM in µm (a number)",
                                             hint="give the FWHM, or process in memory (no --scheduler / .zarr output)") from None
                if psf is not None:
                    raise FluoreconError("out of core, the axial blur is given by --axial-psf FWHM_UM, not --psf",
                                         hint="estimate the FWHM once in memory or pass --axial-psf")
                return run_out_of_core("isotropic", path, out_path, p, scheduler=scheduler or "threads",
                                       overwrite=overwrite, quiet=quiet)
            img = read_image(path, axes=axes)
            if img.data.ndim != 3 or (img.axes and img.axes.upper() != "ZYX"):
                raise FluoreconError(f"isotropic restoration needs a 3D ZYX stack, got axes {img.axes!r} "
                                     f"and shape {img.data.shape}", hint="pass a single Z stack (use --axes ZYX if the axes were guessed wrong)")
            vs = vs_cli or img.voxel_size
            kw: dict = {}
            if axial_psf is not None:
                try:
                    kw["axial_fwhm"] = float(axial_psf)
                except ValueError:
                    kw["axial_psf"] = np.asarray(read_image(axial_psf).data, np.float64).squeeze()
            if psf is not None:
                pimg = read_image(psf)
                kw["psf"] = pimg.data
                kw["psf_voxel_size"] = pimg.voxel_size if pimg.voxel_size and len(pimg.voxel_size) == 3 else None
            mdl = None
            if model is not None:
                from fluorecon.learn.bundle import Bundle

                mdl = Bundle.load(model)
            res = isotropic(img.data, axes="ZYX", voxel_size=vs, model=mdl, progress=not quiet, **params, **kw)
            write_image(out_path, res.volume, axes="ZYX", voxel_size=res.voxel_size)
            row = {"output": str(out_path), "shape": list(res.volume.shape),
                   "consistency_excess": round(float(res.info["consistency_excess"]), 4),
                   "seconds": res.info["seconds"]}
            if res.uncertainty is not None:
                up = out_path.with_name(out_path.name.replace(".tif", "") + "_uncertainty.tif")
                write_image(up, res.uncertainty, axes="ZYX", voxel_size=res.voxel_size)
                row["uncertainty"] = str(up)
            if save_model is not None and res.bundle is not None and hasattr(res.bundle, "save"):
                res.bundle.save(save_model)
                row["model"] = str(save_model)
            return row

        code = run_batch(files, process, quiet=quiet, json_out=json_out, label="isotropic")
        if code != EXIT_OK:
            raise typer.Exit(code)
        if not json_out and not quiet:
            typer.echo(f"wrote {output}", err=False)
        sys.stdout.flush()


__all__ = ["register", "emit_json"]
