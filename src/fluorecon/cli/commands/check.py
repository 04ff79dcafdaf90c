"""`fluorecon check BUNDLE INPUT`: print the trust summary of a learned prediction (nothing is written)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fluorecon.cli.common import EXIT_OK, emit_json, expand_inputs, handle_errors
from fluorecon.cli.options import AxesOpt, InputArg, JsonOpt, QuietOpt


def check_one(bundle, path: Path, axes: str | None, *, uncertainty: bool = True, shift: bool = True,
              consistency: bool = True) -> dict:
    """Predict with ``bundle`` on one file and return the JSON-able trust summary."""
    from fluorecon.io import read_image
    from fluorecon.learn.predict import predict
    from fluorecon.trust.summary import assess

    img = read_image(path, axes=axes)
    pred = predict(bundle, img.data, img.axes)
    summary = assess(img.data, img.axes, bundle=bundle, prediction=pred, uncertainty=uncertainty,
                     consistency=consistency, shift=shift)
    return {"input": str(path), "axes": img.axes, **summary.to_dict()}


def _print(result: dict) -> None:
    from rich.console import Console

    console = Console()
    sc = result.get("scores", {})
    console.print(f"[bold]{result['input']}[/bold] ({result['axes']})")
    c = sc.get("consistency", {})
    if "excess" in c:
        console.print(f"  consistency: excess over noise {c['excess']:+.3f}, "
                      f"{100 * c['inconsistent_fraction']:.2f}% of pixels beyond 4 noise SD")
    elif c:
        console.print(f"  consistency: skipped ({c.get('skipped')})")
    u = sc.get("uncertainty", {})
    if "median_sd" in u:
        console.print(f"  uncertainty ({u.get('source')}): median SD {u['median_sd']:.4g} "
                      f"= {100 * u['relative_median']:.1f}% of the intensity range")
    elif u:
        console.print(f"  uncertainty: skipped ({u.get('skipped')})")
    s = sc.get("shift", {})
    if "worst_ratio" in s:
        parts = ", ".join(f"{k} {v:.2f}× threshold" for k, v in s["ratios"].items())
        console.print(f"  distribution shift: {parts}")
    elif s:
        console.print(f"  distribution shift: skipped ({s.get('skipped')})")
    if result["warnings"]:
        for w in result["warnings"]:
            console.print(f"  [yellow]warning:[/yellow] {w}")
    else:
        console.print("  [green]no warnings[/green]")


EPILOG = """Examples:

  fluorecon check model/ cells.tif

  fluorecon check model/ cells.tif --json > trust.json

  fluorecon check model/ "plates/*.tif" --no-uncertainty
"""


def register(app: typer.Typer) -> None:
    """Add ``check`` to ``app``."""

    @app.command("check", epilog=EPILOG)
    def check(
        bundle: Annotated[Path, typer.Argument(help="Model bundle folder (from `fluorecon train`).")],
        input: InputArg,
        axes: AxesOpt = None,
        no_uncertainty: Annotated[bool, typer.Option("--no-uncertainty", help="Skip the uncertainty estimate.")] = False,
        no_shift: Annotated[bool, typer.Option("--no-shift", help="Skip the distribution-shift check.")] = False,
        json_out: JsonOpt = False,
        quiet: QuietOpt = False,
    ) -> None:
        """Predict with BUNDLE on INPUT and print the trust summary only.

        Forward-model consistency, uncertainty and distribution shift, with plain-language warnings.
        Exit code 0 even when there are warnings (they are findings, not errors); 2 for bad input.
        """
        with handle_errors():
            from fluorecon.errors import FluoreconError
            from fluorecon.learn.bundle import Bundle

            if not bundle.exists():
                raise FluoreconError(f"bundle {str(bundle)!r} does not exist",
                                     hint="give the folder written by `fluorecon train`")
            b = Bundle.load(bundle)
            files = expand_inputs(input)
            results = [check_one(b, f, axes, uncertainty=not no_uncertainty, shift=not no_shift) for f in files]
            if json_out:
                emit_json(results[0] if len(results) == 1 else results)
            elif not quiet:
                for r in results:
                    _print(r)
        raise typer.Exit(EXIT_OK)
