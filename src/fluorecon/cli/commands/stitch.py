"""``fluorecon stitch``: register and fuse tiles; OME-Zarr out of core; writes TileConfiguration.registered.txt.

Hand-written (not generated from the ``stitch`` task) because it reads a Fiji ``TileConfiguration.txt``
as its positional input, fuses large mosaics chunk by chunk into OME-Zarr with bounded memory, and
writes the registered positions back for Fiji users. The algorithm is :mod:`fluorecon.geometry.stitch`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fluorecon.cli.common import emit_json, expand_inputs, handle_errors
from fluorecon.cli.options import JsonOpt, OverwriteOpt, QuietOpt

EPILOG = """Examples:

  fluorecon stitch TileConfiguration.txt -o mosaic.ome.zarr        (tiles relative to the file's folder)

  fluorecon stitch "tiles/*.tif" --grid 3,4 --overlap 0.1 -o mosaic.tif

  fluorecon stitch tiles/ --grid 10,10 --order snake -o mosaic.ome.zarr --chunks 1024

Writes the mosaic, <stem>_registration.json (links, confidences, rejected links) and
TileConfiguration.registered.txt (beside the input configuration, else beside the output). A
.zarr output is fused chunk by chunk (tiles read on demand): memory stays bounded for any mosaic size.
"""


def register(app: typer.Typer) -> None:
    @app.command("stitch", epilog=EPILOG)
    def stitch_cmd(
        inputs: Annotated[list[str], typer.Argument(help="A TileConfiguration.txt, or tile files / a folder / a glob "
                                                    "in grid order.")],
        output: Annotated[Path | None, typer.Option("-o", "--output", help="Mosaic file (.tif, .npy) or OME-Zarr "
                                                    "store (.ome.zarr: out of core).")] = None,
        grid: Annotated[str | None, typer.Option("--grid", help="Tile grid rows,cols (or planes,rows,cols) when no "
                                                 "TileConfiguration is given.")] = None,
        overlap: Annotated[float, typer.Option("--overlap", help="Nominal overlap fraction of the grid.")] = 0.1,
        order: Annotated[str, typer.Option("--order", help="Grid order: row-by-row, snake, column-by-column.")] = "row-by-row",
        pixel_scale: Annotated[float, typer.Option("--pixel-scale", help="TileConfiguration units per pixel.")] = 1.0,
        max_shift: Annotated[float | None, typer.Option("--max-shift", help="Largest stage error per axis in px "
                                                        "(default: a third of the overlap).")] = None,
        min_confidence: Annotated[float, typer.Option("--min-confidence", help="Overlap registrations below this "
                                                      "confidence (0-1) are not used.")] = 0.1,
        max_residual: Annotated[float, typer.Option("--max-residual", help="Reject links disagreeing with the "
                                                    "global solution by more than this (px).")] = 2.0,
        blending: Annotated[str, typer.Option("--blending", help="linear | content | none.")] = "linear",
        blend_width: Annotated[float | None, typer.Option("--blend-width", help="Blending ramp width in px.")] = None,
        chunks: Annotated[int, typer.Option("--chunks", help="OME-Zarr chunk size (px per axis).")] = 1024,
        scheduler: Annotated[str, typer.Option("--scheduler", help="dask scheduler for .zarr output.")] = "threads",
        overwrite: OverwriteOpt = False,
        json_out: JsonOpt = False,
        quiet: QuietOpt = False,
    ) -> None:
        """Stitch tiles: phase correlation of overlaps, global least squares with outlier rejection, blending."""
        import numpy as np

        from fluorecon._atomic import check_output
        from fluorecon.errors import FluoreconError
        from fluorecon.geometry.layout import write_tile_configuration
        from fluorecon.geometry.stitch import LazyTile, fuse, fuse_dask, stitch
        from fluorecon.io import write_image
        from fluorecon.tasks.stitch import StitchParams, resolve_layout

        with handle_errors():
            if output is None:
                raise FluoreconError("no output given", hint="add -o mosaic.ome.zarr (or mosaic.tif)")
            params = StitchParams(grid=grid, overlap=overlap, order=order, pixel_scale=pixel_scale,
                                  max_shift=max_shift, min_confidence=min_confidence, max_residual=max_residual,
                                  blending=blending, blend_width=blend_width)
            zarr_out = output.name.lower().endswith(".zarr")
            check_output(output, overwrite=overwrite, kind="store" if zarr_out else "file")
            layout = None
            if len(inputs) == 1 and inputs[0].lower().endswith(".txt"):
                layout = Path(inputs[0])
                tiles, nominal, names, vs, axes, _ = resolve_layout(None, layout, params)
            else:
                files = [f for s in inputs for f in expand_inputs(s)]
                lazy = [LazyTile(f) for f in files]
                from fluorecon.geometry.layout import grid_positions
                from fluorecon.tasks.stitch import parse_grid

                axes = lazy[0].file_axes
                if any(a in "TC" for a in axes):
                    raise FluoreconError(f"{files[0].name} has axes {axes}; stitching needs single-channel YX/ZYX tiles")
                g = parse_grid(params.grid) or (1,) * (len(lazy[0].shape) - 1) + (len(lazy),)
                nominal = grid_positions(g, lazy[0].shape, params.overlap, params.order, n_tiles=len(lazy))
                tiles, names, vs = lazy, [f.name for f in files], [t.voxel_size for t in lazy]
            # stitch() reports its problems in res.warnings (printed below)
            res = stitch(tiles, nominal, max_shift=params.max_shift, min_confidence=params.min_confidence,
                         max_residual=params.max_residual, blending=params.blending, fuse_mosaic=False,
                         names=names, voxel_sizes=vs)
            voxel = next((v for v in vs if v is not None), None)
            if zarr_out:
                from fluorecon.scale.ome_zarr_out import write_ome_zarr

                darr = fuse_dask(tiles, res.positions, chunks=chunks, blending=params.blending,
                                 blend_width=params.blend_width)
                write_ome_zarr(output, darr, axes, voxel, overwrite=overwrite, scheduler=scheduler,
                               metadata={"command": "stitch", "params": params.to_json()})
            else:
                mosaic = fuse(tiles, res.positions, blending=params.blending, blend_width=params.blend_width)
                write_image(output, mosaic, axes=axes, voxel_size=voxel,
                            metadata={"fluorecon": {"command": "stitch", "params": params.to_json()}})
            # registered positions for Fiji, relative to the first tile's nominal origin
            pos = res.positions
            if layout is not None:
                reg_path = layout.with_name(layout.stem + ".registered.txt")
                reg_names = [str(n) for n in names]
                pos_out = pos * params.pixel_scale
            else:
                reg_path = output.parent / "TileConfiguration.registered.txt"
                reg_names = [str(Path(f).resolve()) for f in (t.path for t in tiles)]
                pos_out = pos
            write_tile_configuration(reg_path, reg_names, pos_out, comment="registered by fluorecon stitch")
            import json

            from fluorecon._atomic import atomic_path
            from fluorecon.tasks.contract import to_json

            stem = output.name[: -len(".ome.zarr")] if output.name.lower().endswith(".ome.zarr") else output.stem
            reg_json = output.with_name(stem + "_registration.json")
            summary = {"output": str(output), "tile_configuration": str(reg_path), "registration": str(reg_json),
                       "n_tiles": len(tiles), "positions": np.round(pos, 4).tolist(), "warnings": res.warnings,
                       **{k: v for k, v in res.info.items() if k != "links"}}
            with atomic_path(reg_json) as tmp:
                Path(tmp).write_text(json.dumps(to_json({**summary, "links": res.info["links"], "files": names}),
                                                indent=2))
            if not quiet:
                for w in res.warnings:
                    typer.echo(f"warning: {w}", err=True)
            if json_out:
                emit_json(summary)
            elif not quiet:
                typer.echo(f"stitched {len(tiles)} tiles → {output} (mosaic {res.info['mosaic_shape']}); "
                           f"positions → {reg_path}", err=True)
