"""stitch task: example, forward model (tiles ≈ crops of the mosaic), TileConfiguration layout."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.errors import FluoreconError
from fluorecon.geometry.layout import write_tile_configuration
from fluorecon.io import ImageData, write_image
from fluorecon.physics import motion
from fluorecon.tasks.registry import get


def test_example_and_forward_model():
    task = get("stitch")
    ex = task.example()
    res = task(inputs=ex["inputs"], **ex["params"])
    tiles = np.stack([t.data for t in ex["inputs"]["tiles"]])
    pred = res.forward.expected(res.image)
    assert pred.shape == tiles.shape
    # tiles agree with their crop of the mosaic up to shading/noise
    assert np.abs(pred - tiles).mean() < 0.2 * tiles.mean()
    assert res.outputs["positions"].names[0] == "tile"
    assert res.outputs["registration"]["schema"] == "fluorecon.stitch"


def test_layout_from_tile_configuration(tmp_path):
    sim = motion.simulate_tiling(grid=(1, 2), tile_shape=(96, 96), overlap=0.2, seed=2)
    names = []
    for k, t in enumerate(sim["tiles"]):
        write_image(tmp_path / f"tile_{k}.tif", t)
        names.append(f"tile_{k}.tif")
    cfg = write_tile_configuration(tmp_path / "TileConfiguration.txt", names, sim["nominal"])
    res = get("stitch")(inputs={"layout": cfg})
    d = res.outputs["registration"]["positions"]
    assert np.allclose(np.subtract(d[1], d[0]), sim["positions"][1] - sim["positions"][0], atol=0.3)


def test_bad_grid():
    t = [ImageData(np.zeros((32, 32), np.float32), "YX", None, {})] * 3
    with pytest.raises(FluoreconError, match="holds 4 tiles but 3"):
        get("stitch")(inputs={"tiles": t}, grid="2,2")
    with pytest.raises(FluoreconError, match="no tiles"):
        get("stitch")(inputs={"tiles": []})
