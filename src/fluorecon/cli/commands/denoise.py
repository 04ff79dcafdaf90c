"""``fluorecon denoise``: calibrated classical denoisers and self-supervised single-image networks."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from fluorecon._atomic import check_output
from fluorecon.cli.common import EXIT_OK, expand_inputs, handle_errors, plan_outputs, run_batch
from fluorecon.cli.options import (
    AxesOpt,
    BudgetOpt,
    DeviceOpt,
    InputArg,
    JsonOpt,
    OptionalOutputOpt,
    OverwriteOpt,
    QuietOpt,
    ReportOpt,
    SchedulerOpt,
    SeedOpt,
)

EPILOG = """Examples:

  fluorecon denoise noisy.tif -o clean.tif                       (best calibrated classical method)

  fluorecon denoise noisy.tif -o clean.tif --method bm3d --vst   (Poisson–Gaussian data)

  fluorecon denoise noisy.tif -o clean.tif --method n2v --budget 120

  fluorecon denoise 'raw/*.tif' -o denoised/ --method tv --json

  fluorecon denoise big.ome.zarr -o big_denoised.ome.zarr --method nlm --scheduler threads

Classical methods (auto, nlm, tv, wavelet, bm3d) tune their parameters on the image itself
(J-invariant / Noise2Self calibration) and run at once. Learned methods (n2v, n2v2, structn2v,
nb2nb) train a network on the input alone for --budget seconds, then predict it. The output is
float32 in the input's intensity units.
"""

MethodChoice = Annotated[str, typer.Option("--method", help="auto | nlm | tv | wavelet | bm3d (classical, self-calibrated) "
                                                            "| n2v | n2v2 | structn2v | nb2nb (self-supervised, trained on the input).")]
VstOpt = Annotated[bool, typer.Option("--vst", help="Generalised Anscombe transform before and exact unbiased inverse after "
                                                    "(Poisson–Gaussian camera data); noise model estimated from the image.")]
GainOpt = Annotated[float | None, typer.Option("--gain", help="Camera gain (ADU/e-) for --vst (default: estimated).")]
OffsetOpt = Annotated[float | None, typer.Option("--offset", help="Camera offset (ADU) for --vst (default: estimated).")]
ReadNoiseOpt = Annotated[float | None, typer.Option("--read-noise", help="Read noise (ADU rms) for --vst (default: estimated).")]
SaveModelOpt = Annotated[Path | None, typer.Option("--save-model", help="Learned methods: also save the trained network as a bundle folder.")]


def _noise_model(gain, offset, read_noise):
    from fluorecon.errors import FluoreconError

    given = [v is not None for v in (gain, offset, read_noise)]
    if not any(given):
        return None
    if not all(given):
        raise FluoreconError("--gain, --offset and --read-noise go together",
                             hint="give all three (ADU units), or none to estimate the noise model from the image")
    from fluorecon.classical.vst import PoissonGaussian

    return PoissonGaussian(gain=gain, offset=offset, read_noise=read_noise)


def register(app: typer.Typer) -> None:
    @app.command("denoise", epilog=EPILOG)
    def denoise_cmd(
        input: InputArg,
        output: OptionalOutputOpt = None,
        method: MethodChoice = "auto",
        budget: BudgetOpt = 120.0,
        vst: VstOpt = False,
        gain: GainOpt = None,
        offset: OffsetOpt = None,
        read_noise: ReadNoiseOpt = None,
        axes: AxesOpt = None,
        seed: SeedOpt = 0,
        device: DeviceOpt = "auto",
        save_model: SaveModelOpt = None,
        report: ReportOpt = False,
        scheduler: SchedulerOpt | None = None,
        overwrite: OverwriteOpt = False,
        json_out: JsonOpt = False,
        quiet: QuietOpt = False,
    ) -> None:
        """Denoise images: self-calibrated classical methods or self-supervised networks."""
        from fluorecon.errors import FluoreconError

        with handle_errors():
            if output is None:
                raise FluoreconError("no output given", hint="add -o OUT (a file, or a folder for several inputs)")
            from fluorecon.tasks.denoise import CLASSICAL, learned_methods

            m = method.lower()
            known = CLASSICAL + learned_methods()
            if m not in known and learned_methods():
                raise FluoreconError(f"unknown method {method!r}", hint=f"use one of {', '.join(known)}")
            if budget <= 0:
                raise FluoreconError(f"--budget must be positive, got {budget}", hint="e.g. --budget 120")
            nm = _noise_model(gain, offset, read_noise)
            if nm is not None and not vst:
                raise FluoreconError("--gain/--offset/--read-noise only apply with --vst", hint="add --vst")
            files = expand_inputs(input)
            outs = plan_outputs(files, output, overwrite=overwrite, suffix=".tif", tag="_denoised", scheduler=scheduler)
            files = list(outs)
            if save_model is not None:
                check_output(save_model, overwrite=overwrite, kind="dir", label="--save-model folder")
            dev = getattr(device, "value", device)
            command = "fluorecon " + " ".join(shlex.quote(a) for a in sys.argv[1:])

        def process(path: Path) -> dict:
            from fluorecon.io import write_image
            from fluorecon.tasks.denoise import denoise

            out_path = outs[path]
            if scheduler is not None or str(out_path).endswith(".zarr"):
                from fluorecon.scale.bridge import run_out_of_core

                p = {"method": m, "vst": vst}
                if nm is not None:
                    p["noise_model"] = nm.to_dict()
                if m not in CLASSICAL:
                    p.update(budget_s=budget, seed=seed, device=dev)
                return run_out_of_core("denoise", path, out_path, p, scheduler=scheduler or "threads",
                                       overwrite=overwrite, quiet=quiet, axes=axes)
            from fluorecon.cli.common import load_image

            img, arr, ax = load_image(path, axes=axes)
            y, info = denoise(arr, ax, method=m, budget_s=budget, seed=seed, device=dev, vst=vst,
                              progress=not quiet, noise_model=nm)
            if len(files) > 1:
                out_path.parent.mkdir(parents=True, exist_ok=True)
            meta = {"fluorecon": {"command": "denoise", "method": info["method"], "kind": info["kind"]}}
            write_image(out_path, y, axes=ax, voxel_size=img.voxel_size, metadata=meta)
            row = {"output": str(out_path), "method": info["method"], "kind": info["kind"],
                   "seconds": round(float(info["seconds"]), 3), "shape": list(y.shape)}
            if info["kind"] == "classical":
                row.update(params=info.get("method_params"), losses=info.get("losses"), sigma=info.get("sigma"))
            else:
                row.update({k: info[k] for k in ("steps", "train_s", "predict_s", "steps_per_s") if k in info})
            if info.get("vst"):
                row["vst"] = info["vst"]
            bundle = info.get("bundle")
            if save_model is not None and bundle is not None and hasattr(bundle, "save"):
                dest = save_model if len(files) == 1 else Path(save_model) / out_path.stem
                bundle.save(dest)
                row["model"] = str(dest)
            if report:
                from fluorecon.report import write_report

                html = out_path.with_name(out_path.name.split(".")[0] + "_report.html")
                params = {k: v for k, v in info.items() if k not in ("bundle", "calibration", "_lo", "_scale")}
                write_report(html, title=f"Denoising ({info['method']})", input=arr, output=y, axes=ax,
                             voxel_size=img.voxel_size, params=params, command=command, input_path=str(path))
                row["report"] = str(html)
            return row

        with handle_errors():
            code = run_batch(files, process, quiet=quiet, json_out=json_out, label="denoise")
        if code != EXIT_OK:
            raise typer.Exit(code)
        if not json_out and not quiet:
            typer.echo(f"wrote {output}")


__all__ = ["register"]
