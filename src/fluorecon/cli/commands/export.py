"""`fluorecon export`: package a trained model bundle for other tools (bioimage.io model zoo)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fluorecon._atomic import check_output
from fluorecon.cli.common import emit_json, handle_errors
from fluorecon.cli.options import AxesOpt, JsonOpt, OverwriteOpt, QuietOpt
from fluorecon.errors import FluoreconError

HELP = """Export a trained model BUNDLE (the folder written by `fluorecon train`) as a bioimage.io model package.

The package (a .zip) holds TorchScript and PyTorch state-dict weights, rdf.yaml (tensor axes, the intensity normalisation as pre/post-processing), test tensors, citations of the methods, a README and a cover image. It runs in bioimage.io consumers (bioimageio.core, deepImageJ, ilastik). --validate also runs bioimage.io's own model test, offline.

Examples:

  fluorecon export runs/n2v-bundle --bioimageio n2v.zip

  fluorecon export runs/care-bundle --bioimageio care.zip --name "CARE nuclei 3D" --author "Ada Lovelace" --validate

  fluorecon export runs/old-bundle --bioimageio old.zip --test-image sample.tif

The package also carries the bundle itself (safetensors weights + bundle.json), so `fluorecon predict PACKAGE.zip` gives exactly the bundle's results without unpickling anything. No local path is written: training data appear as file name + SHA-256, and paths in the recorded command are reduced to file names.

Under-trained bundles are exported with a warning (stderr, the JSON's "warnings", the package README and rdf.yaml), judged from the bundle's training history: fewer than 500 steps, a loss still falling by more than 5 % between the last two quarters of training (validation loss when recorded), or no validation loss at all.

Exit codes: 0 written, 1 the package failed bioimage.io's test, 2 bad input (no bundle, no test tensors, optional packages missing).
"""


def register(app: typer.Typer) -> None:
    """Add ``fluorecon export`` to ``app``."""

    @app.command("export", help=HELP, short_help="Export a model bundle as a bioimage.io model package (.zip).")
    def export(
        bundle: Annotated[Path, typer.Argument(help="Model bundle folder (contains bundle.json).", metavar="BUNDLE")],
        bioimageio: Annotated[Path | None, typer.Option("--bioimageio", help="Write a bioimage.io model package (.zip) here.")] = None,
        name: Annotated[str | None, typer.Option("--name", help="Model name shown in the model zoo.")] = None,
        author: Annotated[list[str] | None, typer.Option("--author", help="Author name (repeatable).")] = None,
        test_image: Annotated[Path | None, typer.Option("--test-image", help="Test input when the bundle has no test tensors.")] = None,
        axes: AxesOpt = None,
        validate: Annotated[bool, typer.Option("--validate", help="Run bioimage.io's model test on the package (offline).")] = False,
        overwrite: OverwriteOpt = False,
        json_out: JsonOpt = False,
        quiet: QuietOpt = False,
    ) -> None:
        with handle_errors():
            if bioimageio is None:
                raise FluoreconError("nothing to export to", hint="give --bioimageio OUT.zip")
            check_output(bioimageio, overwrite=overwrite, kind="file", suffixes=(".zip",))
            if not (bundle / "bundle.json").exists():
                raise FluoreconError(f"no model bundle at {bundle}", hint="give the folder written by `fluorecon train` (it holds bundle.json)")
            from fluorecon.bioimageio import export_model, spec_from_bundle, validate_package

            img = None
            if test_image is not None:
                from fluorecon.io import read_image

                if not test_image.exists():
                    raise FluoreconError(f"test image not found: {test_image}", hint="check the path given to --test-image")
                img = read_image(test_image, axes=axes).data
            spec = spec_from_bundle(bundle, name=name, authors=author, test_image=img)
            out = export_model(spec, bioimageio)
            result = {"output": str(out), "warnings": list(spec.warnings)}
            if not quiet and not json_out:
                for w in spec.warnings:
                    typer.echo(f"warning: {w}", err=True)
            if validate:
                res = validate_package(out)
                result["bioimageio_test"] = res["status"]
                if res["status"] != "passed":
                    if json_out:
                        emit_json({**result, "errors": res["errors"]})
                    typer.echo(f"error: the package failed bioimage.io's test: {'; '.join(res['errors'][:3])}", err=True)
                    raise typer.Exit(1)
            if json_out:
                emit_json(result)
            elif not quiet:
                typer.echo(str(out))
