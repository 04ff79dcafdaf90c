"""Tile layouts: regular grids and Fiji/BigStitcher ``TileConfiguration.txt`` files.

Positions are in **pixels**, one row per tile, in the order of the spatial axes (``(y, x)`` or
``(z, y, x)``) — note that ``TileConfiguration.txt`` writes them the other way round (``(x, y[, z])``);
:func:`read_tile_configuration` and :func:`write_tile_configuration` convert.

Examples
--------
>>> grid_positions((2, 3), (100, 100), overlap=0.1)[:3].tolist()
[[0.0, 0.0], [0.0, 90.0], [0.0, 180.0]]
>>> text = format_tile_configuration(["a.tif", "b.tif"], np.array([[0.0, 0.0], [0.0, 90.5]]))
>>> parse_tile_configuration(text)["positions"].tolist()
[[0.0, 0.0], [0.0, 90.5]]
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fluorecon.errors import FluoreconError

__all__ = [
    "format_tile_configuration",
    "grid_positions",
    "neighbour_pairs",
    "parse_tile_configuration",
    "read_tile_configuration",
    "write_tile_configuration",
]

ORDERS = ("row-by-row", "snake", "column-by-column")


def grid_positions(grid: Sequence[int], tile_shape: Sequence[int], overlap: float | Sequence[float] = 0.1,
                   order: str = "row-by-row", n_tiles: int | None = None) -> np.ndarray:
    """Nominal positions (px) of tiles acquired on a regular grid.

    Parameters
    ----------
    grid : tuple of int
        Tiles per spatial axis, e.g. ``(rows, cols)`` or ``(planes, rows, cols)``.
    tile_shape : tuple of int
        Tile size (px).
    overlap : float or tuple
        Overlap fraction between neighbours, per axis or one for all.
    order : {"row-by-row", "snake", "column-by-column"}
        Acquisition order of the tiles (snake: every other row reversed).
    n_tiles : int, optional
        Check that the grid holds exactly this many tiles.

    Examples
    --------
    >>> grid_positions((2, 2), (10, 10), 0.2, order="snake").tolist()
    [[0.0, 0.0], [0.0, 8.0], [8.0, 8.0], [8.0, 0.0]]
    """
    grid = tuple(int(g) for g in grid)
    tile_shape = tuple(int(s) for s in tile_shape)
    if len(grid) != len(tile_shape):
        raise FluoreconError(f"grid {grid} has {len(grid)} axes but tiles have {len(tile_shape)} spatial axes",
                             hint="give one grid count per spatial axis, e.g. --grid 3,4 for 2D tiles")
    if any(g < 1 for g in grid):
        raise FluoreconError(f"grid counts must be ≥ 1, got {grid}")
    ov = np.broadcast_to(np.asarray(overlap, float), (len(grid),))
    if np.any(ov < 0) or np.any(ov >= 1):
        raise FluoreconError(f"overlap must be in [0, 1), got {overlap}")
    if order not in ORDERS:
        raise FluoreconError(f"unknown tile order {order!r}", hint=f"use one of {', '.join(ORDERS)}")
    n = int(np.prod(grid))
    if n_tiles is not None and n_tiles != n:
        raise FluoreconError(f"a {'×'.join(map(str, grid))} grid holds {n} tiles but {n_tiles} were given",
                             hint="check --grid")
    step = np.array([s * (1 - o) for s, o in zip(tile_shape, ov, strict=True)])
    idx = []
    if order == "column-by-column" and len(grid) >= 2:
        for c in range(grid[-1]):
            for r in np.ndindex(*grid[:-1]):
                idx.append((*r, c))
    else:
        for k in np.ndindex(*grid):
            k = list(k)
            if order == "snake" and len(grid) >= 2 and k[-2] % 2 == 1:
                k[-1] = grid[-1] - 1 - k[-1]
            idx.append(tuple(k))
    return np.round(np.array(idx, float) * step, 6)


def neighbour_pairs(positions: np.ndarray, tile_shape: Sequence[int], min_overlap: float = 0.02) -> list[tuple[int, int]]:
    """Pairs ``(i, j)``, ``i < j``, of tiles whose boxes overlap by at least ``min_overlap`` of a tile along
    every axis.

    Examples
    --------
    >>> neighbour_pairs(grid_positions((2, 2), (10, 10), 0.2), (10, 10))
    [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    """
    p = np.asarray(positions, float)
    ts = np.asarray(tile_shape, float)
    out = []
    for i in range(len(p)):
        for j in range(i + 1, len(p)):
            ov = ts - np.abs(p[j] - p[i])
            if np.all(ov >= np.maximum(min_overlap * ts, 1.0)):
                out.append((i, j))
    return out


_LINE = re.compile(r"^\s*([^;]+?)\s*;\s*([^;]*?)\s*;\s*\(([^)]*)\)\s*$")


def parse_tile_configuration(text: str) -> dict[str, Any]:
    """Parse the text of a Fiji ``TileConfiguration.txt``.

    Returns
    -------
    dict
        ``files`` (names as written), ``positions`` (n × ndim, px, order ``(y, x)``/``(z, y, x)``),
        ``dim``, ``series`` (the middle field per line, often empty).

    Examples
    --------
    >>> parse_tile_configuration("dim = 2\\nt0.tif; ; (1.0, 2.0)\\n")["positions"].tolist()
    [[2.0, 1.0]]
    """
    dim = None
    files, pos, series = [], [], []
    for k, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.match(r"^dim\s*=\s*(\d+)$", line)
        if m:
            dim = int(m.group(1))
            continue
        if line.lower().startswith("multiseries"):
            continue
        m = _LINE.match(line)
        if not m:
            raise FluoreconError(f"TileConfiguration line {k} is not 'name; ; (x, y[, z])': {raw!r}")
        try:
            xyz = [float(v) for v in m.group(3).split(",")]
        except ValueError:
            raise FluoreconError(f"TileConfiguration line {k} has non-numeric coordinates: {raw!r}") from None
        if dim is not None and len(xyz) != dim:
            raise FluoreconError(f"TileConfiguration line {k} has {len(xyz)} coordinates but dim = {dim}")
        files.append(m.group(1))
        series.append(m.group(2))
        pos.append(xyz[::-1])
    if not files:
        raise FluoreconError("TileConfiguration lists no tiles", hint="lines look like 'tile_0.tif; ; (0.0, 0.0)'")
    if len({len(p) for p in pos}) > 1:
        raise FluoreconError("TileConfiguration mixes 2D and 3D coordinates")
    return {"files": files, "positions": np.array(pos, float), "dim": dim or len(pos[0]), "series": series}


def read_tile_configuration(path: str | Path) -> dict[str, Any]:
    """Read a ``TileConfiguration.txt``; ``paths`` are the tile files resolved relative to its folder.

    Raises
    ------
    FluoreconError
        Missing file, malformed lines or tiles that do not exist.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp()); (d / "t0.tif").touch()
    >>> _ = (d / "TileConfiguration.txt").write_text("dim = 2\\nt0.tif; ; (0.0, 0.0)\\n")
    >>> read_tile_configuration(d / "TileConfiguration.txt")["paths"][0].name
    't0.tif'
    """
    path = Path(path)
    if not path.is_file():
        raise FluoreconError(f"tile configuration {path} not found")
    cfg = parse_tile_configuration(path.read_text(encoding="utf-8", errors="replace"))
    paths = [(path.parent / f).resolve() for f in cfg["files"]]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise FluoreconError(f"{len(missing)} tile(s) named in {path.name} do not exist: {', '.join(missing[:3])}",
                             hint="tile names are relative to the configuration's folder")
    cfg["paths"] = paths
    cfg["source"] = str(path)
    return cfg


def format_tile_configuration(files: Sequence[str], positions: np.ndarray, comment: str | None = None) -> str:
    """The text of a ``TileConfiguration.txt`` (positions given as ``(y, x)``/``(z, y, x)`` px).

    Examples
    --------
    >>> print(format_tile_configuration(["a.tif"], np.array([[1.0, 2.0]])).splitlines()[-1])
    a.tif; ; (2.000, 1.000)
    """
    p = np.asarray(positions, float)
    lines = []
    if comment:
        lines += [f"# {c}" for c in comment.splitlines()]
    lines += ["# Define the number of dimensions we are working on", f"dim = {p.shape[1]}", "",
              "# Define the image coordinates"]
    for f, row in zip(files, p, strict=True):
        lines.append(f"{f}; ; (" + ", ".join(f"{v:.3f}" for v in row[::-1]) + ")")
    return "\n".join(lines) + "\n"


def write_tile_configuration(path: str | Path, files: Sequence[str], positions: np.ndarray,
                             comment: str | None = None) -> Path:
    """Write a ``TileConfiguration.txt`` atomically (e.g. ``TileConfiguration.registered.txt``).

    Examples
    --------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "TileConfiguration.registered.txt"
    >>> write_tile_configuration(p, ["a.tif"], np.zeros((1, 2))).exists()
    True
    """
    from fluorecon._atomic import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(format_tile_configuration(files, positions, comment), encoding="utf-8")
    return path
