"""``fluorecon predict``: apply a model bundle to images (tiled), optionally with trust maps and a report."""

from __future__ import annotations

import contextlib
import shlex
import sys
from pathlib import Path
from typing import Annotated

import typer

from fluorecon._atomic import atomic_path, check_output
from fluorecon.bioimageio import is_package, open_package
from fluorecon.cli.common import expand_inputs, handle_errors, plan_outputs, run_batch
from fluorecon.cli.options import (
    AxesOpt,
    DeviceOpt,
    JsonOpt,
    OptionalOutputOpt,
    OptionalSchedulerOpt,
    OverwriteOpt,
    QuietOpt,
    ReportOpt,
)
from fluorecon.errors import FluoreconError
from fluorecon.io import read_image, write_image
from fluorecon.learn.predict import predict

EPILOG = """Examples:

  fluorecon predict care_model noisy.tif -o restored.tif

  fluorecon predict care_model big.tif -o restored.tif --tile 512,512 --tta

  fluorecon predict ens_model noisy.tif -o restored.tif --uncertainty --check --report

  fluorecon predict care_model 'raw/*.tif' -o restored/

  fluorecon predict care_model a.tif b.tif -o restored/

  fluorecon predict care_model --verify        (recompute the bundle's stored test tensors)

  fluorecon predict care.zip noisy.tif -o restored.tif      (a bioimage.io package, e.g. from fluorecon export)

MODEL is a bundle folder (fluorecon train) or a bioimage.io model package (.zip, or a folder with rdf.yaml).
Packages are read without unpickling: those written by `fluorecon export` (they carry the bundle's
safetensors weights; results are identical to the bundle's), and others whose weights are a
fluorecon.learn.nets.UNet state dict in .safetensors. TorchScript, pickled .pt/.pth state dicts, ONNX
and TensorFlow weights are refused (exit 2) with the formats the package holds.

--tile takes 'auto' (from free memory), 'none', or sizes per spatial axis separated by commas
(Y,X or Z,Y,X). --uncertainty and --check write <out>_uncertainty.tif, <out>_consistency.tif and
<out>_trust.json beside the output.
"""

BundleArg = Annotated[Path, typer.Argument(help="Model bundle folder (fluorecon train) or bioimage.io package (.zip or folder with rdf.yaml).",
                                            metavar="MODEL")]
OptInputArg = Annotated[list[str] | None, typer.Argument(help="Input image file(s), folder(s) or glob(s).", metavar="[INPUT]...")]
TileOpt = Annotated[str, typer.Option("--tile", help="auto | none | Y,X | Z,Y,X tile size in pixels.")]
OverlapOpt = Annotated[int | None, typer.Option("--overlap", help="Tile overlap in pixels (default from the network's receptive field).")]
TtaOpt = Annotated[bool, typer.Option("--tta", help="Test-time augmentation: average over 8 flips/rotations.")]
UncOpt = Annotated[bool, typer.Option("--uncertainty", help="Write a per-pixel uncertainty map (ensemble spread / probabilistic head).")]
CheckOpt = Annotated[bool, typer.Option("--check", help="Forward-model consistency map and distribution-shift warning.")]
VerifyOpt = Annotated[bool, typer.Option("--verify", help="Recompute the bundle's stored test tensors and compare.")]
BatchOpt = Annotated[int, typer.Option("--batch-size", help="Tiles per forward pass.")]


def parse_tile(value: str | None):
    """``"auto"`` → "auto"; ``"none"`` → None; ``"512,512"`` / ``"512x512"`` / ``"512 512"`` → tuple."""

    if value is None or value.lower() == "none":
        return None
    if value.lower() == "auto":
        return "auto"
    parts = [p for p in value.replace("x", ",").replace(" ", ",").split(",") if p]
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        raise FluoreconError(f"--tile {value!r} is not 'auto', 'none' or sizes", hint="e.g. --tile 512,512") from None
    if not sizes or any(s < 8 for s in sizes):
        raise FluoreconError(f"--tile {value!r}: sizes must be ≥ 8 pixels", hint="e.g. --tile 512,512")
    return sizes


def register(app: typer.Typer) -> None:
    @app.command("predict", epilog=EPILOG)
    def predict_cmd(
        bundle: BundleArg,
        input: OptInputArg = None,
        output: OptionalOutputOpt = None,
        axes: AxesOpt = None,
        tile: TileOpt = "auto",
        overlap: OverlapOpt = None,
        tta: TtaOpt = False,
        uncertainty: UncOpt = False,
        check: CheckOpt = False,
        report: ReportOpt = False,
        verify: VerifyOpt = False,
        batch_size: BatchOpt = 4,
        device: DeviceOpt = "auto",
        scheduler: OptionalSchedulerOpt = None,
        overwrite: OverwriteOpt = False,
        json_out: JsonOpt = False,
        quiet: QuietOpt = False,
    ) -> None:
        """Restore images with a trained bundle."""
        with handle_errors(), contextlib.ExitStack() as stack:
            from fluorecon.cli.common import emit_json
            from fluorecon.errors import FluoreconError
            from fluorecon.learn.bundle import Bundle

            if is_package(bundle):  # read safely into a temporary bundle folder that lives for this command
                bundle = stack.enter_context(open_package(bundle))
            b = Bundle.load(bundle)
            dev = device.value if hasattr(device, "value") else str(device)
            if verify:
                res = b.verify(device="cpu")
                if json_out:
                    emit_json(res)
                else:
                    typer.echo(f"bundle verify: {'OK' if res['ok'] else 'MISMATCH'} (max abs error "
                               f"{res['max_abs_error']:.3g}, tolerance {res['atol']:.3g})", err=True)
                if not input:
                    raise typer.Exit(0 if res["ok"] else 1)
            if not input:
                raise FluoreconError("no INPUT given", hint="fluorecon predict BUNDLE INPUT -o OUT")
            tile_v = parse_tile(tile)
            files = [f for spec in input for f in expand_inputs(spec)]
            outs = plan_outputs(files, output, overwrite=overwrite, suffix=".tif", tag="_restored", scheduler=scheduler)
            files = list(outs)
            side = (["_trust.json"] if (uncertainty or check) else []) + (["_report.html"] if report else [])
            for o in outs.values():  # side outputs follow the same rule, checked before predicting
                if scheduler is None and not str(o).endswith(".zarr"):
                    for tail in side:
                        check_output(_stem(o).with_name(_stem(o).name + tail), overwrite=overwrite)
            command = "fluorecon " + " ".join(shlex.quote(a) for a in sys.argv[1:])

            def process(path: Path) -> dict:
                out = outs[path]
                if scheduler is not None or str(out).endswith(".zarr"):
                    # Out of core (dask): the bundle is loaded once per worker, blocks carry the network's halo.
                    from fluorecon.scale.bridge import run_out_of_core

                    params = {"model": str(bundle), "tta": tta, **({"tile": list(tile_v)} if isinstance(tile_v, tuple) else {})}
                    return run_out_of_core("predict", path, out, params, scheduler=scheduler or "threads",
                                           overwrite=overwrite, quiet=quiet)
                return _predict_one(b, path, out, axes, tile_v,
                                    overlap, tta, uncertainty, check, report, batch_size, dev, command)

            rows: list[dict] = []

            def process_and_keep(path: Path) -> dict:
                row = process(path)
                rows.append(row)
                return row

            code = run_batch(files, process_and_keep, quiet=quiet, json_out=json_out, label="predict")
            if not json_out and not quiet:
                for row in rows:
                    written = [row[k] for k in ("output", "uncertainty", "consistency", "trust", "report") if k in row]
                    typer.echo("wrote " + ", ".join(str(w) for w in written))
                    for w in row.get("warnings", []):
                        typer.echo(f"trust warning: {w}", err=True)
                    if "warnings" in row and not row["warnings"]:
                        typer.echo("trust: no warning (see the _trust.json for the scores)")
        raise typer.Exit(code)


def _stem(p: Path) -> Path:
    name = p.name
    for ext in (".ome.tif", ".ome.tiff", ".ome.zarr", ".tif", ".tiff", ".npy", ".png", ".zarr"):
        if name.lower().endswith(ext):
            return p.with_name(name[: -len(ext)])
    return p.with_suffix("")


def _predict_one(b, path: Path, out: Path, axes, tile, overlap, tta, uncertainty, check, report, batch_size, device,
                 command) -> dict:
    import json

    import numpy as np


    im = read_image(path, axes=axes)
    want_scale = uncertainty and (bool(b.model.head) or len(b.members) > 1)
    res = predict(b, im.data, im.axes, tile=tile, overlap=overlap, batch_size=batch_size, device=device, tta=tta,
                  return_scale=want_scale)
    pred, scale = (res if want_scale else (res, None))
    write_image(out, pred, axes=im.axes, voxel_size=im.voxel_size,
                metadata={"fluorecon": {"bundle_scheme": b.config.get("scheme"), "command": command}})
    row: dict = {"output": str(out)}
    trust_dict = None
    maps = None
    if uncertainty or check:
        from fluorecon.trust.summary import assess

        ts = assess(im.data, im.axes, bundle=b, prediction=pred, uncertainty=uncertainty, consistency=check,
                    shift=check, uncertainty_map=scale)
        stem = _stem(out)
        maps = dict(ts.maps)
        for key in ("uncertainty", "consistency"):
            if key in maps and maps[key] is not None:
                p = stem.with_name(stem.name + f"_{key}.tif")
                write_image(p, np.asarray(maps[key], np.float32), axes=im.axes if np.ndim(maps[key]) == pred.ndim else None)
                row[key] = str(p)
        trust_dict = ts.to_dict()
        jp = stem.with_name(stem.name + "_trust.json")
        from fluorecon.cli.common import to_jsonable

        with atomic_path(jp) as tmp:
            tmp.write_text(json.dumps(to_jsonable(trust_dict), indent=2, sort_keys=True))
        row["trust"] = str(jp)
        row["warnings"] = list(ts.warnings)
    if report:
        from fluorecon.report import write_report

        html = _stem(out).with_name(_stem(out).name + "_report.html")
        write_report(html, title=f"fluorecon predict: {path.name}", input=im.data, output=pred, axes=im.axes,
                     voxel_size=im.voxel_size, params={"bundle": b.config.get("scheme"), "tile": tile, "tta": tta,
                                                       "provenance_steps": b.provenance.get("steps")},
                     command=command, trust=trust_dict, maps=maps)
        row["report"] = str(html)
    return row
