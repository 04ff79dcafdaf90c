"""``fluorecon metrics``: compare a restoration with a ground truth (PSNR, RI-PSNR, SSIM, NRMSE)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from fluorecon._atomic import atomic_path, check_output
from fluorecon.cli.common import (
    echo_warnings,
    emit_json,
    expand_inputs,
    handle_errors,
    load_image,
    to_jsonable,
)
from fluorecon.cli.options import (
    AllowIncompleteOpt,
    AxesOpt,
    DataRangeOpt,
    JsonOpt,
    OptionalOutputOpt,
    OverwriteOpt,
    QuietOpt,
    SeedOpt,
    VoxelSizeOpt,
    parse_voxel_size,
)
from fluorecon.errors import FluoreconError
from fluorecon.evaluate import metrics as M
from fluorecon.evaluate.metrics import summarize, summary_table
from fluorecon.io import allow_incomplete

EPILOG = """Examples:

  fluorecon metrics restored.tif truth.tif

  fluorecon metrics restored.tif truth.tif --data-range 1 --json -o metrics.json

  fluorecon metrics results/ ground_truth/          (pairs files by name; mean with 95 % bootstrap CI)

  fluorecon metrics restored.tif truth.tif --frc --voxel-size 0.065 0.065

PSNR and SSIM use --data-range when given, else the target's max − min (printed). RI-PSNR fits the prediction to the percentile-normalised target by least squares first (as CSBDeep/CARE), so it ignores a global intensity scale/offset. --frc adds the single-image FRC resolution of PRED (checkerboard split, 1/7 threshold).
"""

PredArg = Annotated[str, typer.Argument(help="Restored image(s): file, folder or glob.")]
TargetArg = Annotated[str, typer.Argument(help="Ground-truth image(s): file, folder or glob (paired with PRED by file name).")]


def compare(pred_path: Path, target_path: Path, *, data_range: float | None = None, axes: str | None = None,
            with_frc: bool = False, voxel_size=None) -> dict:
    """All reference metrics for one (prediction, target) pair of files."""

    _, pred, pax = load_image(pred_path, axes, name=f"prediction {pred_path}")
    _, target, tax = load_image(target_path, axes, name=f"target {target_path}")
    if pred.shape != target.shape:
        raise FluoreconError(f"prediction {pred_path} has shape {pred.shape} but target {target_path} has {target.shape}",
                             hint="compare images of the same shape")
    if data_range is not None and not (np.isfinite(data_range) and data_range > 0):
        raise FluoreconError(f"--data-range must be a positive number, got {data_range}",
                             hint="e.g. --data-range 1 for [0, 1] images or 65535 for 16-bit data")
    dr = float(data_range) if data_range is not None else float(target.max() - target.min())
    if dr <= 0:
        raise FluoreconError(f"target {target_path} is constant; PSNR/SSIM need a data range",
                             hint="pass --data-range")
    row = {
        "prediction": str(pred_path), "target": str(target_path), "shape": list(target.shape), "axes": tax,
        "data_range": dr, "data_range_source": "--data-range" if data_range is not None else "target max - min",
        "psnr": M.psnr(pred, target, data_range=dr),
        "ri_psnr": M.ri_psnr(pred, target),
        "nrmse": M.nrmse(pred, target),
    }
    spatial = "".join(a for a in tax if a in "ZYX")
    if len(spatial) == target.ndim:
        row["ssim"] = M.ssim(pred, target, data_range=dr)
    else:  # SSIM over the spatial axes, averaged over leading T/C
        lead = target.shape[: target.ndim - len(spatial)]
        p2 = pred.reshape((-1, *target.shape[len(lead):]))
        t2 = target.reshape((-1, *target.shape[len(lead):]))
        row["ssim"] = float(np.mean([M.ssim(a, b, data_range=dr) for a, b in zip(p2, t2, strict=True)]))
    if with_frc:
        if len(spatial) != pred.ndim:
            raise FluoreconError("--frc needs a single 2D or 3D image (no T/C axes)", hint="select one channel/time point")
        vs = voxel_size
        if vs is not None and len(vs) != pred.ndim:
            vs = vs[-pred.ndim:] if len(vs) > pred.ndim else None
        r = M.single_image_frc(pred, voxel_size=vs)
        row["frc_resolution_px"] = r.resolution_px if np.isfinite(r.resolution_px) else None
        row["frc_resolution_um"] = list(r.resolution_um) if r.resolution_um else None
        row["frc_crossed"] = r.crossed
    return row


def _stem(p: Path) -> str:
    name = p.name
    for ext in (".ome.tiff", ".ome.tif", ".ome.zarr", ".tiff", ".tif", ".npy", ".png", ".zarr", ".jpg", ".jpeg"):
        if name.lower().endswith(ext):
            return name[: -len(ext)]
    return p.stem


def pair_by_stem(preds: list[Path], targets: list[Path]) -> list[tuple[Path, Path]]:
    """Pair each prediction with the target whose stem it starts with (the longest such stem).

    ``cell1_denoised.tif`` pairs with ``cell1.tif`` (what our batch commands write), ``cell1.tif`` with
    ``cell1.tif``; a prediction that matches no target, or two targets equally well, is left out.

    Examples
    --------
    >>> pair_by_stem([Path("a_denoised.tif"), Path("ab_denoised.tif")], [Path("a.tif"), Path("ab.tif")])
    [(PosixPath('a_denoised.tif'), PosixPath('a.tif')), (PosixPath('ab_denoised.tif'), PosixPath('ab.tif'))]
    """
    stems = {_stem(t): t for t in targets}
    pairs = []
    for p in preds:
        ps = _stem(p)
        cands = [s for s in stems if ps == s or ps.startswith(s + "_") or ps.startswith(s + "-")]
        if cands:
            best = max(cands, key=len)
            pairs.append((p, stems[best]))
    return pairs


def _pairs(pred: str, target: str) -> list[tuple[Path, Path]]:
    pf = expand_inputs(pred)
    tf = expand_inputs(target)
    if len(pf) == 1 and len(tf) == 1:
        return [(pf[0], tf[0])]
    pairs = pair_by_stem(pf, tf)
    if not pairs:
        raise FluoreconError(f"no prediction in {pred!r} matches a target in {target!r} by name",
                             hint="batch mode pairs 'NAME_suffix.tif' (e.g. cell1_denoised.tif) with 'NAME.tif'")
    return pairs


def metrics(
    pred: PredArg,
    target: TargetArg,
    data_range: DataRangeOpt = None,
    axes: AxesOpt = None,
    frc: bool = typer.Option(False, "--frc", help="Also report the single-image FRC resolution of PRED."),
    voxel_size: VoxelSizeOpt = None,
    output: OptionalOutputOpt = None,
    seed: SeedOpt = 0,
    overwrite: OverwriteOpt = False,
    allow_incomplete_store: AllowIncompleteOpt = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Compare restored image(s) with ground truth: PSNR, RI-PSNR, SSIM, NRMSE (and FRC)."""

    with handle_errors(), echo_warnings(), allow_incomplete(allow_incomplete_store):
        vs = parse_voxel_size(voxel_size)
        if output is not None and Path(output).suffix.lower() != ".json":
            raise FluoreconError(f"-o {output}: metrics are written as JSON", hint="use a .json file name, e.g. -o metrics.json")
        if output is not None:
            check_output(output, overwrite=overwrite, kind="file", suffixes=(".json",))
        pairs = _pairs(pred, target)
        rows = [compare(p, t, data_range=data_range, axes=axes, with_frc=frc, voxel_size=vs) for p, t in pairs]
        keys = ["psnr", "ri_psnr", "ssim", "nrmse"] + (["frc_resolution_px"] if frc else [])
        result: dict = {"pairs": rows} if len(rows) > 1 else dict(rows[0])
        if len(rows) > 1:
            vals = {k: [r[k] for r in rows if r.get(k) is not None and np.isfinite(r[k])] for k in keys}
            vals = {k: v for k, v in vals.items() if v}
            result["summary"] = summarize(vals, seed=seed)
        if output is not None:
            with atomic_path(output) as tmp:
                tmp.write_text(json.dumps(to_jsonable(result), indent=2, sort_keys=True) + "\n")
        if json_out:
            emit_json(result)
        elif not quiet:
            if len(rows) == 1:
                r = rows[0]
                typer.echo(f"{r['prediction']} vs {r['target']} (data range {r['data_range']:.6g}, {r['data_range_source']})")
                for k in keys:
                    v = r.get(k)
                    typer.echo(f"  {k:18s} {v:.4f}" if isinstance(v, float) else f"  {k:18s} {v}")
                if frc and r.get("frc_resolution_um"):
                    typer.echo(f"  {'frc_resolution_um':18s} {', '.join(f'{v:.4g}' for v in r['frc_resolution_um'])}")
            else:
                vals = {k: [r[k] for r in rows if r.get(k) is not None and np.isfinite(r[k])] for k in keys}
                typer.echo(summary_table({Path(pred).name or pred: {k: v for k, v in vals.items() if v}}, seed=seed))
            if output is not None:
                typer.echo(f"wrote {output}")


def register(app: typer.Typer) -> None:
    """Add ``fluorecon metrics`` to ``app``."""
    app.command("metrics", epilog=EPILOG, help=metrics.__doc__)(metrics)
