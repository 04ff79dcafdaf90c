"""Stitching: pairwise offsets of overlapping tiles, global optimisation, blending fusion (in memory or on dask).

Pipeline (MIST / ASHLAR style):

1. **pairwise offsets** — for every pair of tiles that overlap at their nominal (stage) positions,
   phase-correlate the two overlap strips (:func:`fluorecon.geometry.pairwise.phase_correlation`)
   → measured offset ``p_j − p_i`` with a confidence;
2. **global optimisation** — weighted least squares over all links (weight = confidence), tile 0
   anchored, plus weak links at the nominal offsets (weight ``prior_weight``) so that tiles without a
   reliable link follow the stage; links whose residual exceeds ``max_residual`` px are rejected one
   at a time (largest first) and the system re-solved;
3. **fusion** — every output pixel is the weighted mean of the tiles covering it; weights ramp
   linearly from 0 at a tile's edge to 1 at ``blend_width`` px inside (``"linear"``), optionally times a
   local-contrast term (``"content"``: sharper, better-focused data wins), or ``"none"`` (last tile wins
   by mean of equal weights).

:func:`fuse_dask` builds the same mosaic lazily, one output chunk at a time (each chunk reads only
the tiles that touch it), so mosaics larger than memory are written to OME-Zarr with bounded memory
(:func:`fluorecon.scale.ome_zarr_out.write_ome_zarr`).

Examples
--------
>>> from fluorecon.physics import motion
>>> sim = motion.simulate_tiling(grid=(2, 2), tile_shape=(96, 96), overlap=0.15, seed=0)
>>> res = stitch(sim["tiles"], sim["nominal"])
>>> err = res.positions - (sim["positions"] - sim["positions"][0] + res.positions[0])
>>> bool(np.abs(err).max() < 1.0), res.mosaic.ndim
(True, 2)
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from fluorecon.errors import FluoreconError
from fluorecon.geometry.pairwise import phase_correlation

__all__ = [
    "BLENDINGS",
    "LazyTile",
    "Link",
    "StitchResult",
    "TileForward",
    "check_tiles",
    "fuse",
    "fuse_dask",
    "mosaic_geometry",
    "optimize_positions",
    "pairwise_offsets",
    "stitch",
]

BLENDINGS = ("linear", "content", "none")


# ------------------------------------------------------------------------------------------------ tiles
class LazyTile:
    """A tile read from a file only when needed (small shared LRU cache), for out-of-core stitching.

    Examples
    --------
    >>> import tempfile
    >>> from fluorecon.io import write_image
    >>> p = Path(tempfile.mkdtemp()) / "t.tif"
    >>> write_image(p, np.ones((8, 8), np.float32))
    >>> t = LazyTile(p); t.shape, float(t.read().sum())
    ((8, 8), 64.0)
    """

    _cache: OrderedDict[str, np.ndarray] = OrderedDict()
    _lock = threading.Lock()
    cache_size = 8

    def __init__(self, path: str | Path, axes: str | None = None):
        from fluorecon.io import read_image

        self.path = Path(path)
        self.axes = axes
        img = read_image(self.path, axes=axes)
        self.shape = tuple(int(s) for s in img.data.shape)
        self.dtype = img.data.dtype
        self.voxel_size = img.voxel_size
        self.file_axes = img.axes

    def read(self) -> np.ndarray:
        from fluorecon.io import read_image

        key = str(self.path)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        arr = np.asarray(read_image(self.path, axes=self.axes).data)
        with self._lock:
            self._cache[key] = arr
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return arr

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        a = self.read()
        return a.astype(dtype) if dtype is not None else a


def _read(tile: Any) -> np.ndarray:
    return tile.read() if isinstance(tile, LazyTile) else np.asarray(tile)


def check_tiles(tiles: Sequence[Any], voxel_sizes: Sequence[Any] | None = None, names: Sequence[str] | None = None
                ) -> list[tuple[int, ...]]:
    """Check that tiles share dimension, dtype and pixel size; return their shapes.

    Raises
    ------
    FluoreconError
        Naming the first tile that differs.

    Examples
    --------
    >>> check_tiles([np.zeros((8, 8)), np.zeros((8, 9))])
    [(8, 8), (8, 9)]
    """
    if len(tiles) < 1:
        raise FluoreconError("no tiles to stitch")
    names = list(names) if names is not None else [f"tile {i}" for i in range(len(tiles))]
    shapes = [tuple(int(s) for s in t.shape) for t in tiles]
    dts = [np.dtype(t.dtype) for t in tiles]
    for i in range(1, len(tiles)):
        if len(shapes[i]) != len(shapes[0]):
            raise FluoreconError(f"{names[i]} is {len(shapes[i])}-D but {names[0]} is {len(shapes[0])}-D",
                                 hint="all tiles must have the same axes")
        if dts[i] != dts[0]:
            raise FluoreconError(f"{names[i]} has dtype {dts[i]} but {names[0]} has {dts[0]}",
                                 hint="tiles of one mosaic come from one acquisition; convert them to one dtype first")
    if voxel_sizes is not None:
        vs = [None if v is None else tuple(float(x) for x in v) for v in voxel_sizes]
        known = [(i, v) for i, v in enumerate(vs) if v is not None]
        for i, v in known[1:]:
            if not np.allclose(v, known[0][1], rtol=1e-3):
                raise FluoreconError(f"{names[i]} has pixel size {v} µm but {names[known[0][0]]} has {known[0][1]} µm",
                                     hint="resample the tiles to one pixel size before stitching")
    if any(min(s) < 8 for s in shapes):
        raise FluoreconError("tiles must be at least 8 px along every axis")
    return shapes


# ------------------------------------------------------------------------------------------------ pairwise
@dataclass
class Link:
    """A measured offset ``p_j − p_i`` (px) between two tiles with its confidence."""

    i: int
    j: int
    offset: np.ndarray
    nominal: np.ndarray
    confidence: float
    ncc: float
    significance: float
    low_confidence: bool
    rejected: str | None = None
    residual: float | None = None
    axis_weight: np.ndarray | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"i": self.i, "j": self.j, "offset": [float(v) for v in self.offset],
                "nominal": [float(v) for v in self.nominal], "confidence": self.confidence, "ncc": self.ncc,
                "significance": self.significance, "low_confidence": self.low_confidence, "rejected": self.rejected,
                "residual": self.residual,
                "axis_weight": None if self.axis_weight is None else [float(v) for v in self.axis_weight]}


def pairwise_offsets(tiles: Sequence[Any], nominal: np.ndarray, pairs: Sequence[tuple[int, int]] | None = None, *,
                     max_shift: float | None = None, min_confidence: float = 0.1, upsample: int = 20,
                     flatfield: np.ndarray | None = None, progress: Callable[[float, str], Any] | None = None
                     ) -> list[Link]:
    """Measure ``p_j − p_i`` for overlapping tiles by phase correlation of their nominal overlap strips.

    Parameters
    ----------
    tiles : sequence of arrays (or :class:`LazyTile`)
    nominal : ndarray
        (n, ndim) nominal positions in px.
    pairs : list of (i, j), optional
        Default: every pair that overlaps at the nominal positions.
    max_shift : float, optional
        Largest plausible stage error (px) per axis; default: a third of the thinnest overlap, at least 3.
    min_confidence, upsample
        See :func:`fluorecon.geometry.pairwise.phase_correlation`.
    flatfield : ndarray, optional
        Divide every tile by it first (shading correction).

    Examples
    --------
    >>> from fluorecon.physics import motion
    >>> sim = motion.simulate_tiling(grid=(1, 2), tile_shape=(128, 128), overlap=0.2, seed=0)
    >>> link = pairwise_offsets(sim["tiles"], sim["nominal"])[0]
    >>> bool(np.allclose(link.offset, sim["positions"][1] - sim["positions"][0], atol=0.5))
    True
    """
    nominal = np.asarray(nominal, float)
    shapes = [tuple(t.shape) for t in tiles]
    if pairs is None:
        pairs = _pairs(nominal, shapes)
    out = []
    pi_all = np.round(nominal).astype(int)
    for k, (i, j) in enumerate(pairs):
        pi, pj = pi_all[i], pi_all[j]
        lo = np.maximum(pi, pj)
        hi = np.minimum(pi + np.array(shapes[i]), pj + np.array(shapes[j]))
        ext = hi - lo
        if np.any(ext < 4):
            continue
        ti, tj = _read(tiles[i]).astype(np.float32), _read(tiles[j]).astype(np.float32)
        if flatfield is not None:
            ti, tj = ti / flatfield, tj / flatfield
        si = ti[tuple(slice(a, b) for a, b in zip(lo - pi, hi - pi, strict=True))]
        sj = tj[tuple(slice(a, b) for a, b in zip(lo - pj, hi - pj, strict=True))]
        ms = max_shift if max_shift is not None else max(3.0, float(ext.min()) / 3)
        r = phase_correlation(si, sj, upsample=upsample, min_confidence=min_confidence, max_shift=ms)
        offset = (pj - pi) + np.asarray(r.shift)
        out.append(Link(int(i), int(j), offset, nominal[j] - nominal[i], r.confidence, r.ncc, r.significance,
                        r.low_confidence, axis_weight=np.asarray(r.info.get("sharpness", np.ones(len(ext))))))
        if progress is not None:
            progress((k + 1) / len(pairs), f"pairwise offsets {k + 1}/{len(pairs)}")
    return out


def _pairs(nominal: np.ndarray, shapes: Sequence[tuple[int, ...]], face_only: bool = True) -> list[tuple[int, int]]:
    """Overlapping pairs; ``face_only`` keeps face neighbours (overlap ≥ half a tile along all axes but one)."""
    out = []
    for i in range(len(nominal)):
        for j in range(i + 1, len(nominal)):
            lo = np.maximum(nominal[i], nominal[j])
            hi = np.minimum(nominal[i] + np.array(shapes[i]), nominal[j] + np.array(shapes[j]))
            ext = hi - lo
            if not np.all(ext >= 4):
                continue
            if face_only and len(ext) > 1:
                frac = ext / np.minimum(np.array(shapes[i]), np.array(shapes[j]))
                if np.sum(frac < 0.5) > 1:
                    continue
            out.append((i, j))
    return out


# ------------------------------------------------------------------------------------------------ global
def optimize_positions(nominal: np.ndarray, links: Sequence[Link], *, max_residual: float = 2.0,
                       prior_weight: float = 1e-3, anchor: int = 0) -> tuple[np.ndarray, dict[str, Any]]:
    """Globally consistent positions from pairwise links: weighted least squares with outlier rejection.

    Minimises ``Σ w_ij |p_j − p_i − d_ij|²`` (``w`` = confidence × per-axis sharpness of the link relative
    to its sharpest axis, so an overlap showing only an edge constrains mainly the axis across it;
    low-confidence links are excluded)
    plus ``prior_weight · |p_j − p_i − nominal_ij|²`` over all links (ties tiles without a reliable
    link to their stage position). While an accepted link's residual exceeds ``max_residual`` px, the
    worst one is rejected (near-ties, as in a single loop, broken by the distance of the measured
    offset from the stage offset) and the system re-solved.

    Returns
    -------
    positions, info
        (n, ndim) px (tile ``anchor`` keeps its nominal position); info: ``rejected`` (links),
        ``unlinked`` (tiles with no accepted link: placed from the stage), ``rms_residual``, ``iterations``.

    Examples
    --------
    >>> nom = np.array([[0.0, 0], [0, 90], [0, 180]])
    >>> L = [Link(0, 1, np.array([1.0, 91]), nom[1] - nom[0], 0.9, 0.9, 20, False),
    ...      Link(1, 2, np.array([0.0, 89]), nom[2] - nom[1], 0.9, 0.9, 20, False),
    ...      Link(0, 2, np.array([9.0, 170]), nom[2] - nom[0], 0.9, 0.9, 20, False)]
    >>> pos, info = optimize_positions(nom, L)
    >>> (pos.round(1) + 0.0).tolist(), [(r["i"], r["j"]) for r in info["rejected"]]
    ([[0.0, 0.0], [1.0, 91.0], [1.0, 180.0]], [(0, 2)])
    """
    nominal = np.asarray(nominal, float)
    n, nd = nominal.shape
    active = [lk for lk in links if not lk.low_confidence and lk.rejected is None]
    for lk in links:
        if lk.low_confidence and lk.rejected is None:
            lk.rejected = "low confidence"
    prior_pairs = [(lk.i, lk.j, lk.nominal) for lk in links]
    # also tie every tile to its stage position relative to the anchor (keeps the system regular)
    prior_pairs += [(anchor, k, nominal[k] - nominal[anchor]) for k in range(n) if k != anchor]
    rejected: list[Link] = [lk for lk in links if lk.rejected is not None]
    it = 0
    while True:
        it += 1
        rows, rhs, w = [], [], []
        for lk in active:
            rows.append((lk.i, lk.j))
            rhs.append(lk.offset)
            aw = np.ones(nd)
            if lk.axis_weight is not None and np.max(lk.axis_weight) > 0:  # anisotropy only (edges)
                aw = np.clip(np.asarray(lk.axis_weight) / np.max(lk.axis_weight), 0.05, 1.0)
            w.append(max(lk.confidence, 1e-3) * aw)
        pairs_set = {(lk.i, lk.j) for lk in links}
        for i, j, d in prior_pairs:
            rows.append((i, j))
            rhs.append(d)
            w.append(np.full(nd, prior_weight * (1.0 if (i, j) in pairs_set else 0.1)))
        m = len(rows)
        a = np.zeros((m + 1, n))
        for r, (i, j) in enumerate(rows):
            a[r, i] -= 1
            a[r, j] += 1
        a[m, anchor] = 1
        b = np.vstack([np.array(rhs, float).reshape(m, nd), nominal[anchor][None]])
        wts = np.vstack([np.array(w, float).reshape(m, nd), np.full((1, nd), 1e3)])
        pos = np.zeros((n, nd))
        for d in range(nd):  # axes decouple for translations: one weighted solve per axis
            sw = np.sqrt(wts[:, d])[:, None]
            pos[:, d] = np.linalg.lstsq(a * sw, b[:, d:d + 1] * sw, rcond=None)[0][:, 0]
        if not active:
            break
        res = np.array([np.linalg.norm(pos[lk.j] - pos[lk.i] - lk.offset) for lk in active])
        for lk, r in zip(active, res, strict=True):
            lk.residual = float(r)
        if res.max() <= max_residual:
            break
        # in a loop the inconsistency spreads over all its links: break near-ties by the deviation from
        # the stage (nominal) offset — a wrong correlation peak is usually far from where the stage says
        dev = np.array([np.linalg.norm(lk.offset - lk.nominal) for lk in active])
        worst = int(np.argmax(np.where(res > max_residual, res + 0.25 * dev, -np.inf)))
        bad = active.pop(worst)
        bad.rejected = f"residual {res[worst]:.2f} px > {max_residual} px"
        rejected.append(bad)
    linked = set()
    for lk in active:
        linked.update((lk.i, lk.j))
    unlinked = [k for k in range(n) if k not in linked] if n > 1 else []
    rms = float(np.sqrt(np.mean([lk.residual**2 for lk in active]))) if active else None
    return pos, {"rejected": [lk.to_dict() for lk in rejected], "unlinked": unlinked, "rms_residual": rms,
                 "iterations": it, "accepted": len(active)}


# ------------------------------------------------------------------------------------------------ fusion
def mosaic_geometry(positions: np.ndarray, shapes: Sequence[Sequence[int]]) -> tuple[np.ndarray, tuple[int, ...]]:
    """Integer tile offsets in the mosaic (min at 0) and the mosaic shape.

    Examples
    --------
    >>> off, shp = mosaic_geometry(np.array([[1.4, 0.0], [0.0, 90.6]]), [(100, 100)] * 2)
    >>> off.tolist(), shp
    ([[1, 0], [0, 91]], (101, 191))
    """
    p = np.round(np.asarray(positions, float) - np.asarray(positions, float).min(axis=0)).astype(int)
    p = p - p.min(axis=0)
    shape = tuple(int(v) for v in (p + np.asarray(shapes)).max(axis=0))
    return p, shape


def _weights(shape: Sequence[int], blend_width: float) -> np.ndarray:
    w = np.ones(tuple(shape), np.float32)
    for d, n in enumerate(shape):
        x = np.arange(n, dtype=np.float32)
        r = np.minimum(x + 0.5, n - x - 0.5)
        wd = np.clip(r / max(blend_width, 1.0), 1e-3, 1.0)
        sh = [1] * len(shape)
        sh[d] = n
        w = w * wd.reshape(sh)
    return w


def _content(tile: np.ndarray) -> np.ndarray:
    lap = ndimage.gaussian_laplace(tile.astype(np.float32), 1.5)
    c = ndimage.gaussian_filter(lap * lap, 8.0)
    return (c / max(float(c.mean()), 1e-12) + 0.05).astype(np.float32)


def _fuse_region(tiles: Sequence[Any], offsets: np.ndarray, shapes: Sequence[tuple[int, ...]], lo: np.ndarray,
                 hi: np.ndarray, blending: str, blend_width: float, flatfield: np.ndarray | None) -> np.ndarray:
    out_shape = tuple(int(v) for v in hi - lo)
    acc = np.zeros(out_shape, np.float32)
    wsum = np.zeros(out_shape, np.float32)
    for k, (off, shp) in enumerate(zip(offsets, shapes, strict=True)):
        a = np.maximum(lo, off)
        b = np.minimum(hi, off + np.array(shp))
        if np.any(b <= a):
            continue
        t = _read(tiles[k]).astype(np.float32)
        if flatfield is not None:
            t = t / flatfield
        if blending == "none":
            w = np.ones(shp, np.float32)
        else:
            w = _weights(shp, blend_width)
            if blending == "content":
                w = w * _content(t)
        src = tuple(slice(int(x - o), int(y - o)) for x, y, o in zip(a, b, off, strict=True))
        dst = tuple(slice(int(x - q), int(y - q)) for x, y, q in zip(a, b, lo, strict=True))
        acc[dst] += t[src] * w[src]
        wsum[dst] += w[src]
    return np.where(wsum > 0, acc / np.maximum(wsum, 1e-12), 0).astype(np.float32)


def _check_blending(blending: str) -> None:
    if blending not in BLENDINGS:
        raise FluoreconError(f"unknown blending {blending!r}", hint=f"use one of {', '.join(BLENDINGS)}")


def fuse(tiles: Sequence[Any], positions: np.ndarray, *, blending: str = "linear", blend_width: float | None = None,
         flatfield: np.ndarray | None = None) -> np.ndarray:
    """Fuse tiles at (rounded) positions into one mosaic, in memory.

    Examples
    --------
    >>> m = fuse([np.ones((10, 10)), 3 * np.ones((10, 10))], np.array([[0, 0], [0, 8]]))
    >>> m.shape, float(m[5, 0]), float(m[5, -1])
    ((10, 18), 1.0, 3.0)
    """
    _check_blending(blending)
    shapes = [tuple(t.shape) for t in tiles]
    off, shape = mosaic_geometry(positions, shapes)
    bw = _auto_blend(positions, shapes) if blend_width is None else blend_width
    return _fuse_region(tiles, off, shapes, np.zeros(len(shape), int), np.array(shape), blending, bw, flatfield)


def _auto_blend(positions: np.ndarray, shapes: Sequence[tuple[int, ...]]) -> float:
    pairs = _pairs(np.asarray(positions, float), shapes)
    if not pairs:
        return 1.0
    ov = []
    for i, j in pairs:
        d = np.abs(np.asarray(positions[j]) - np.asarray(positions[i]))
        ext = np.minimum(np.array(shapes[i]), np.array(shapes[j])) - d
        ov.append(float(ext.min()))
    return max(float(np.median(ov)) / 2, 1.0)


def fuse_dask(tiles: Sequence[Any], positions: np.ndarray, *, chunks: int | Sequence[int] = 1024,
              blending: str = "linear", blend_width: float | None = None, flatfield: np.ndarray | None = None):
    """The fused mosaic as a lazy dask array: each output chunk reads only the tiles touching it.

    Peak memory ≈ (chunks in flight) × (chunk + the tiles it touches); with :class:`LazyTile` tiles
    nothing is held in memory between chunks except a small tile cache.

    Examples
    --------
    >>> d = fuse_dask([np.ones((10, 10)), np.ones((10, 10))], np.array([[0, 0], [0, 8]]), chunks=8)
    >>> d.chunks, float(d.compute().mean())
    (((8, 2), (8, 8, 2)), 1.0)
    """
    import dask.array as da

    _check_blending(blending)
    shapes = [tuple(t.shape) for t in tiles]
    off, shape = mosaic_geometry(positions, shapes)
    bw = _auto_blend(positions, shapes) if blend_width is None else blend_width
    ch = tuple(np.broadcast_to(np.asarray(chunks, int), (len(shape),)).tolist())

    def block(block_info: Any = None) -> np.ndarray:
        loc = block_info[None]["array-location"]
        lo = np.array([a for a, _ in loc])
        hi = np.array([b for _, b in loc])
        return _fuse_region(tiles, off, shapes, lo, hi, blending, bw, flatfield)

    return da.map_blocks(block, chunks=da.core.normalize_chunks(ch, shape), dtype=np.float32,
                         meta=np.empty((0,) * len(shape), np.float32))


# ------------------------------------------------------------------------------------------------ forward
class TileForward:
    """Forward model of stitching: each tile ≈ (its crop of the mosaic) × flat-field.

    ``expected(mosaic)`` returns the stack ``(n, *tile_shape)`` predicted for the recorded tiles.

    Examples
    --------
    >>> f = TileForward(np.array([[0, 0], [0, 5]]), [(4, 8), (4, 8)])
    >>> f.expected(np.arange(52, dtype=np.float32).reshape(4, 13))[1, 0].tolist()
    [5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0]
    """

    def __init__(self, offsets: np.ndarray, shapes: Sequence[tuple[int, ...]], flatfield: np.ndarray | None = None,
                 noise: Any = None):
        self.offsets = np.asarray(offsets, int)
        self.shapes = [tuple(int(v) for v in s) for s in shapes]
        self.flatfield = flatfield
        self.noise = noise

    def expected(self, y: Any) -> np.ndarray:
        y = np.asarray(y, np.float32)
        out = []
        for off, shp in zip(self.offsets, self.shapes, strict=True):
            t = y[tuple(slice(int(o), int(o) + s) for o, s in zip(off, shp, strict=True))]
            out.append(t * self.flatfield if self.flatfield is not None else t)
        if len({s for s in self.shapes}) == 1:
            return np.stack(out)
        return out  # type: ignore[return-value]

    def variance(self, expected: Any) -> Any:
        if self.noise is None:
            raise FluoreconError("no noise model is attached to the stitching forward model",
                                 hint="give the camera gain/offset/read noise")
        return self.noise.variance(expected)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "tiles", "offsets": self.offsets.tolist(), "shapes": [list(s) for s in self.shapes],
                "flatfield": self.flatfield is not None}


# ------------------------------------------------------------------------------------------------ driver
@dataclass
class StitchResult:
    """Registered positions, links and (optionally) the fused mosaic."""

    positions: np.ndarray
    nominal: np.ndarray
    links: list[Link]
    mosaic: Any = None
    offsets: np.ndarray | None = None
    warnings: list[str] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def table(self) -> dict[str, np.ndarray]:
        nd = self.positions.shape[1]
        names = "zyx"[-nd:]
        cols: dict[str, np.ndarray] = {"tile": np.arange(len(self.positions))}
        for d, a in enumerate(names):
            cols[f"{a} [px]"] = self.positions[:, d]
        for d, a in enumerate(names):
            cols[f"nominal {a} [px]"] = self.nominal[:, d]
        return cols


def stitch(tiles: Sequence[Any], nominal: np.ndarray, *, max_shift: float | None = None, min_confidence: float = 0.1,
           max_residual: float = 2.0, blending: str = "linear", blend_width: float | None = None, fuse_mosaic: bool = True,
           flatfield: np.ndarray | None = None, names: Sequence[str] | None = None, voxel_sizes: Sequence[Any] | None = None,
           progress: Callable[[float, str], Any] | None = None) -> StitchResult:
    """Register and fuse tiles: pairwise offsets → global WLS with outlier rejection → blending fusion.

    Parameters
    ----------
    tiles : sequence of arrays or :class:`LazyTile`
        Same dtype, dimension and pixel size.
    nominal : ndarray
        (n, ndim) stage positions in px (from a grid or a ``TileConfiguration.txt``).
    max_shift, min_confidence : float
        See :func:`pairwise_offsets`.
    max_residual : float
        Links disagreeing with the global solution by more than this (px) are rejected.
    blending : {"linear", "content", "none"}
    blend_width : float, optional
        Ramp width (px) of the linear weights; default half the median overlap.
    fuse_mosaic : bool
        False: only positions (e.g. fuse later out of core with :func:`fuse_dask`).
    flatfield : ndarray, optional
        Shading to divide out of every tile before registration and fusion.
    names, voxel_sizes : optional
        For messages and the pixel-size check.

    Returns
    -------
    StitchResult
        ``warnings`` names tiles without overlap or without a reliable link.
    """
    _check_blending(blending)
    shapes = check_tiles(tiles, voxel_sizes, names)
    nominal = np.asarray(nominal, float)
    if nominal.shape != (len(tiles), len(shapes[0])):
        raise FluoreconError(f"{len(tiles)} tiles but positions of shape {nominal.shape}",
                             hint=f"give one {len(shapes[0])}-D position per tile")
    if flatfield is not None and any(tuple(flatfield.shape) != s for s in shapes):
        raise FluoreconError(f"flat-field of shape {flatfield.shape} does not match the tiles")
    label = list(names) if names is not None else [f"tile {i}" for i in range(len(tiles))]
    warnings: list[str] = []
    pairs = _pairs(nominal, shapes)
    touched = {k for p in pairs for k in p}
    lonely = [k for k in range(len(tiles)) if k not in touched] if len(tiles) > 1 else []
    if lonely:
        warnings.append("no overlapping neighbour at the nominal layout for " + ", ".join(label[k] for k in lonely)
                        + ": placed at the stage position only (check the grid/overlap)")
    links = pairwise_offsets(tiles, nominal, pairs, max_shift=max_shift, min_confidence=min_confidence,
                             flatfield=flatfield, progress=progress)
    pos, info = optimize_positions(nominal, links, max_residual=max_residual)
    weak = [k for k in info["unlinked"] if k not in lonely]
    if weak:
        warnings.append("no reliable overlap registration for " + ", ".join(label[k] for k in weak)
                        + ": placed at the stage position (low confidence or rejected links)")
    n_low = sum(lk.low_confidence for lk in links)
    if n_low:
        warnings.append(f"{n_low} of {len(links)} overlaps had low registration confidence and were not used")
    off, shape = mosaic_geometry(pos, shapes)
    mosaic = fuse(tiles, pos, blending=blending, blend_width=blend_width, flatfield=flatfield) if fuse_mosaic else None
    info.update({"pairs": len(pairs), "links": [lk.to_dict() for lk in links], "mosaic_shape": list(shape),
                 "no_overlap": lonely})
    return StitchResult(pos, nominal, links, mosaic, off, warnings, info)
