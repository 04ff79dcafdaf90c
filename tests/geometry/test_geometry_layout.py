"""Grid layouts and Fiji TileConfiguration files."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.errors import FluoreconError
from fluorecon.geometry.layout import (
    grid_positions,
    parse_tile_configuration,
    read_tile_configuration,
    write_tile_configuration,
)


def test_grid_orders():
    p = grid_positions((2, 3), (100, 200), overlap=0.1)
    assert p.tolist()[:4] == [[0, 0], [0, 180], [0, 360], [90, 0]]
    s = grid_positions((2, 3), (100, 100), 0.0, order="snake")
    assert s[3].tolist() == [100, 200]
    c = grid_positions((2, 3), (100, 100), 0.0, order="column-by-column")
    assert c[1].tolist() == [100, 0]
    with pytest.raises(FluoreconError, match="holds 6 tiles but 5"):
        grid_positions((2, 3), (10, 10), n_tiles=5)
    with pytest.raises(FluoreconError):
        grid_positions((2, 3), (10, 10, 10))


def test_tile_configuration_roundtrip(tmp_path):
    for name in ("a.tif", "b.tif"):
        (tmp_path / name).touch()
    pos = np.array([[0.0, 0.0], [1.25, 90.5]])
    path = write_tile_configuration(tmp_path / "TileConfiguration.txt", ["a.tif", "b.tif"], pos)
    cfg = read_tile_configuration(path)
    assert np.allclose(cfg["positions"], pos) and [p.name for p in cfg["paths"]] == ["a.tif", "b.tif"]
    # Fiji writes (x, y): check the order on a hand-written file with 3D coordinates and comments
    text = "# comment\ndim = 3\nt0.tif; ; (1.0, 2.0, 3.0)\n"
    assert parse_tile_configuration(text)["positions"].tolist() == [[3.0, 2.0, 1.0]]


def test_tile_configuration_errors(tmp_path):
    with pytest.raises(FluoreconError, match="not found"):
        read_tile_configuration(tmp_path / "missing.txt")
    p = tmp_path / "TileConfiguration.txt"
    p.write_text("dim = 2\nnope.tif; ; (0.0, 0.0)\n")
    with pytest.raises(FluoreconError, match="do not exist"):
        read_tile_configuration(p)
    with pytest.raises(FluoreconError, match="dim = 2"):
        parse_tile_configuration("dim = 2\na.tif; ; (0, 0, 0)\n")
    with pytest.raises(FluoreconError, match="line 1"):
        parse_tile_configuration("garbage\n")
