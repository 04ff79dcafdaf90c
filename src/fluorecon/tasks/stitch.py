"""Stitching and fusion of tiles as a registered task (``stitch``).

Layout from a grid description (``grid``, ``overlap``, ``order``), a Fiji/BigStitcher
``TileConfiguration.txt`` (input ``layout``; tiles relative to its folder), or — with neither — a
single row. Pairwise phase correlation with confidence, global weighted least squares with outlier
rejection, blended fusion (:mod:`fluorecon.geometry.stitch`). The command line (``fluorecon stitch``,
hand-written in :mod:`fluorecon.cli.commands.stitch`) adds the out-of-core OME-Zarr path and writes
``TileConfiguration.registered.txt``.

Examples
--------
>>> ex = StitchTask.example()
>>> res = StitchTask()(inputs=ex["inputs"], **ex["params"])
>>> res.image.ndim, len(res.outputs["positions"])
(2, 4)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import field_validator

from fluorecon.errors import FluoreconError
from fluorecon.geometry.layout import ORDERS, grid_positions, read_tile_configuration
from fluorecon.geometry.stitch import BLENDINGS, LazyTile, TileForward, stitch
from fluorecon.io import ImageData
from fluorecon.physics import motion
from fluorecon.tasks.contract import (
    InputSpec,
    OutputSpec,
    Result,
    Table,
    Task,
    TaskParams,
    as_progress,
    check_choice,
    param,
)
from fluorecon.tasks.registry import register

__all__ = ["StitchParams", "StitchTask", "parse_grid", "resolve_layout"]


def parse_grid(grid: str | Sequence[int] | None) -> tuple[int, ...] | None:
    """``"3,4"`` / ``"3x4"`` / ``(3, 4)`` → ``(3, 4)`` (rows, cols; or planes, rows, cols).

    Examples
    --------
    >>> parse_grid("3x4")
    (3, 4)
    """
    if grid is None or grid == "":
        return None
    if isinstance(grid, str):
        parts = [p for p in grid.replace("x", ",").replace("×", ",").split(",") if p.strip()]
        try:
            return tuple(int(p) for p in parts)
        except ValueError:
            raise FluoreconError(f"grid {grid!r} is not a list of integers", hint="e.g. --grid 3,4 (rows, cols)") from None
    return tuple(int(g) for g in grid)


class StitchParams(TaskParams):
    grid: str | None = param(None, "Tile grid as rows,cols (or planes,rows,cols) when there is no "
                             "TileConfiguration; default: one row.")
    overlap: float = param(0.1, "Nominal overlap between neighbouring tiles of the grid (fraction).", ge=0, lt=1)
    order: str = param("row-by-row", "Acquisition order of the tiles in the grid.", choices=ORDERS)
    pixel_scale: float = param(1.0, "TileConfiguration coordinates per pixel (1 for Fiji's pixel units).", gt=0,
                               advanced=True)
    max_shift: float | None = param(None, "Largest plausible stage error per axis; default a third of the overlap.",
                                    unit="px", gt=0, advanced=True)
    min_confidence: float = param(0.1, "Overlap registrations below this confidence (0–1) are not used.", ge=0, le=1)
    max_residual: float = param(2.0, "Links that disagree with the global solution by more than this are rejected.",
                                unit="px", gt=0)
    blending: str = param("linear", "Fusion weights: linear ramps, content (× local contrast) or none.",
                          choices=BLENDINGS)
    blend_width: float | None = param(None, "Width of the linear blending ramp; default half the overlap.",
                                      unit="px", gt=0, advanced=True)

    @field_validator("order")
    @classmethod
    def _order(cls, v: str) -> str:
        return check_choice(v, ORDERS, "order")

    @field_validator("blending")
    @classmethod
    def _blending(cls, v: str) -> str:
        return check_choice(v, BLENDINGS, "blending")


def resolve_layout(tiles: Sequence[Any] | None, layout: Path | None, params: StitchParams
                   ) -> tuple[list[Any], np.ndarray, list[str], list[Any], str, Path | None]:
    """Tiles, nominal positions (px), names, voxel sizes, axes and the configuration path.

    From a ``TileConfiguration.txt`` the tiles are :class:`~fluorecon.geometry.stitch.LazyTile` (read on
    demand); given tiles with a grid use :func:`~fluorecon.geometry.layout.grid_positions`.
    """
    if layout is not None:
        cfg = read_tile_configuration(layout)
        lazy = [LazyTile(p) for p in cfg["paths"]]
        nd = cfg["positions"].shape[1]
        axes = lazy[0].file_axes
        if sum(a in "ZYX" for a in axes) != nd or len(axes) != nd:
            raise FluoreconError(f"{layout.name} has {nd}-D positions but tile {cfg['paths'][0].name} has axes {axes}",
                                 hint="tiles must be single-channel 2D (YX) or 3D (ZYX) images")
        return (lazy, cfg["positions"] / params.pixel_scale, [str(f) for f in cfg["files"]],
                [t.voxel_size for t in lazy], axes, Path(layout))
    if not tiles:
        raise FluoreconError("no tiles given", hint="give tile images, or a TileConfiguration.txt")
    imgs = [t if isinstance(t, ImageData) else ImageData(np.asarray(t), "", None, {}) for t in tiles]
    arrays = [np.asarray(t.data) for t in imgs]
    axes = imgs[0].axes or "ZYX"[-arrays[0].ndim:]
    if any(a in "TC" for a in axes):
        raise FluoreconError(f"tiles have axes {axes}; stitching needs single-channel YX or ZYX tiles",
                             hint="split channels first and stitch each (same positions)")
    names = [str(t.metadata.get("path", f"tile {i}")) for i, t in enumerate(imgs)]
    grid = parse_grid(params.grid) or (1,) * (arrays[0].ndim - 1) + (len(arrays),)
    nominal = grid_positions(grid, arrays[0].shape, params.overlap, params.order, n_tiles=len(arrays))
    return arrays, nominal, names, [t.voxel_size for t in imgs], axes, None


@register
class StitchTask(Task):
    """Stitch tiles: pairwise phase correlation, global least squares with outlier rejection, blended fusion."""

    name = "stitch"
    title = "Stitch"
    summary = "Register overlapping tiles globally and fuse them into one mosaic."
    Params = StitchParams
    inputs = (InputSpec("tiles", "Tile images (same dtype and pixel size), in grid order.", kind="images",
                        required=False),
              InputSpec("layout", "Fiji/BigStitcher TileConfiguration.txt (tiles relative to its folder).",
                        kind="path", required=False, cli="--layout"))
    outputs = (OutputSpec("mosaic", "The fused mosaic (float32)."),
               OutputSpec("positions", "Registered tile positions (px) and nominal ones.", kind="table"),
               OutputSpec("registration", "Per-link offsets, confidences, rejected links (JSON).", kind="transform"))
    trust = ("verify",)
    accepts = ("YX", "ZYX")
    doc = "geometry"
    default_suffix = ".ome.zarr"
    examples = ("fluorecon stitch tile_*.tif --grid 3,4 --overlap 0.1 -o mosaic.tif",
                "fluorecon stitch TileConfiguration.txt -o mosaic.ome.zarr")

    @classmethod
    def example(cls, seed: int = 0) -> dict[str, Any]:
        sim = motion.simulate_tiling(grid=(2, 2), tile_shape=(64, 64), overlap=0.25, jitter=1.0, seed=seed)
        return {"inputs": {"tiles": [ImageData(t, "YX", None, {}) for t in sim["tiles"]]},
                "params": {"grid": "2,2", "overlap": 0.25}}

    def run(self, inputs: Mapping[str, Any], params: StitchParams, progress: Any = None) -> Result:
        report = as_progress(progress)
        layout = inputs.get("layout")
        tiles, nominal, names, vs, axes, _ = resolve_layout(inputs.get("tiles"), Path(layout) if layout else None,
                                                            params)
        res = stitch(tiles, nominal, max_shift=params.max_shift, min_confidence=params.min_confidence,
                     max_residual=params.max_residual, blending=params.blending, blend_width=params.blend_width,
                     names=names, voxel_sizes=vs, progress=report.span(0, 0.8))
        report(1.0, "fused")
        table = Table(res.table(), meta={"units": "px", "names": names})
        reg = {"schema": "fluorecon.stitch", "version": 1, "files": names, "axes": axes,
               "positions": res.positions.tolist(), "nominal": res.nominal.tolist(), **res.info}
        voxel = next((v for v in vs if v is not None), None)
        shapes = [tuple(t.shape) for t in tiles]
        used = {**params.to_json(), "n_tiles": len(tiles), "rms_residual_px": res.info["rms_residual"],
                "rejected_links": len(res.info["rejected"]), "unlinked_tiles": res.info["unlinked"],
                "mosaic_shape": res.info["mosaic_shape"]}
        return Result(outputs={"mosaic": res.mosaic, "positions": table, "registration": reg}, main="mosaic",
                      axes={"mosaic": axes}, voxel_size={"mosaic": voxel}, params_used=used,
                      forward=TileForward(res.offsets, shapes), warnings=res.warnings)
