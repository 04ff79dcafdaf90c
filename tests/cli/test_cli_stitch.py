"""fluorecon stitch (hand-written: TileConfiguration in, OME-Zarr out of core, registered positions back)."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from fluorecon.cli import app
from fluorecon.geometry.layout import read_tile_configuration, write_tile_configuration
from fluorecon.io import read_image, write_image
from fluorecon.physics import motion

runner = CliRunner()


def _tiles(tmp_path, dtype=np.float32):
    sim = motion.simulate_tiling(grid=(2, 2), tile_shape=(96, 96), overlap=0.2, jitter=1.5, seed=4)
    names = []
    for k, t in enumerate(sim["tiles"]):
        write_image(tmp_path / f"tile_{k}.tif", (t * 1000).astype(dtype))
        names.append(f"tile_{k}.tif")
    return sim, names


def test_stitch_tile_configuration_to_ome_zarr(tmp_path):
    sim, names = _tiles(tmp_path)
    cfg = write_tile_configuration(tmp_path / "TileConfiguration.txt", names, sim["nominal"])
    out = tmp_path / "mosaic.ome.zarr"
    r = runner.invoke(app, ["stitch", str(cfg), "-o", str(out), "--chunks", "64", "--json", "--quiet"])
    assert r.exit_code == 0, r.output
    summary = json.loads(r.stdout)
    reg = read_tile_configuration(tmp_path / "TileConfiguration.registered.txt")
    d = reg["positions"][3] - reg["positions"][0]
    assert np.allclose(d, sim["positions"][3] - sim["positions"][0], atol=0.5)
    img = read_image(out)
    assert list(img.data.shape) == summary["mosaic_shape"]


def test_stitch_grid_to_tif_and_bad_dtype(tmp_path):
    sim, names = _tiles(tmp_path)
    out = tmp_path / "m.tif"
    r = runner.invoke(app, ["stitch", str(tmp_path / "tile_*.tif"), "--grid", "2,2", "--overlap", "0.2", "-o",
                            str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    assert out.exists() and (tmp_path / "TileConfiguration.registered.txt").exists()
    write_image(tmp_path / "tile_3.tif", np.zeros((96, 96), np.uint16))
    r = runner.invoke(app, ["stitch", str(tmp_path / "tile_*.tif"), "--grid", "2,2", "-o", str(tmp_path / "n.tif")])
    assert r.exit_code == 2 and "dtype" in r.output
