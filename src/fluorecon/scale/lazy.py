"""Open large images lazily: TIFF (memory-mapped where possible) and OME-Zarr as dask arrays.

Nothing is read until a block is asked for. The returned :class:`LazyImage` carries the axes (in the
canonical ``T C Z Y X`` order), the voxel size in µm and a picklable ``reader`` that any process (a
dask worker included) can slice without holding the whole array: the out-of-core engine reads each
block (plus halo) straight from the file through it.

Examples
--------
>>> import tempfile, pathlib, numpy as np
>>> from fluorecon.io import write_image
>>> p = pathlib.Path(tempfile.mkdtemp()) / "v.ome.zarr"
>>> write_image(p, np.ones((4, 16, 16), np.float32), axes="ZYX", voxel_size=(0.5, 0.1, 0.1))
>>> darr, img = open_lazy(p)
>>> darr.shape, img.axes, img.voxel_size
((4, 16, 16), 'ZYX', (0.5, 0.1, 0.1))
"""

from __future__ import annotations

import json
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fluorecon.errors import FluoreconError

__all__ = ["LazyImage", "TiffReader", "ZarrReader", "default_chunks", "open_lazy"]

SPATIAL = "ZYX"
_TARGET_BLOCK_BYTES = 64 * 2**20


@dataclass
class LazyImage:
    """Metadata of a lazily opened image (the ``ImageData``-like half of :func:`open_lazy`).

    Attributes
    ----------
    axes : str
        Canonical axes (``T C Z Y X`` order), e.g. ``"ZYX"`` or ``"TCZYX"``.
    voxel_size : tuple of float or None
        µm along the spatial axes.
    shape, dtype
        Of the full-resolution array.
    reader : TiffReader or ZarrReader
        Picklable; ``reader[slices]`` returns a numpy block in ``axes`` order.
    metadata : dict
        ``format``, ``path``, ``ngff_version`` ...
    """

    axes: str
    voxel_size: tuple[float, ...] | None
    shape: tuple[int, ...]
    dtype: np.dtype
    reader: Any
    metadata: dict = field(default_factory=dict)

    @property
    def spatial_axes(self) -> str:
        return "".join(a for a in self.axes if a in SPATIAL)


# ------------------------------------------------------------------------------------------ readers
# One opened handle per process and path: dask workers reuse it for every block they read.
_HANDLES: dict[tuple, Any] = {}
_HANDLES_LOCK = threading.Lock()


def _cached(key: tuple, opener):
    with _HANDLES_LOCK:
        h = _HANDLES.get(key)
        if h is None:
            h = _HANDLES[key] = opener()
        return h


class _Reader:
    """Base: numpy-like ``shape``/``dtype``/``ndim`` and ``__getitem__`` in canonical axis order."""

    shape: tuple[int, ...]
    dtype: np.dtype
    perm: tuple[int, ...]  # file axis index for each canonical axis

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def _raw(self):  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, key) -> np.ndarray:
        if not isinstance(key, tuple):
            key = (key,)
        key = key + (slice(None),) * (self.ndim - len(key))
        file_key = [slice(None)] * self.ndim
        for canon_i, k in enumerate(key):
            file_key[self.perm[canon_i]] = k
        block = np.asarray(self._raw()[tuple(file_key)])
        # Integer indices drop axes: transpose only the remaining ones.
        kept = [self.perm[i] for i, k in enumerate(key) if not isinstance(k, (int, np.integer))]
        order = np.argsort(np.argsort(kept))
        return np.transpose(block, order) if block.ndim > 1 else block

    def __getstate__(self):
        return {k: v for k, v in self.__dict__.items() if not k.startswith("_h")}


class ZarrReader(_Reader):
    """Slice one array of a zarr store; reopened (once per process) after pickling."""

    def __init__(self, path: str, array_path: str, shape, dtype, perm):
        self.path, self.array_path = str(path), array_path
        self.shape, self.dtype, self.perm = tuple(shape), np.dtype(dtype), tuple(perm)

    def _raw(self):
        import zarr

        stamp = 0
        for name in ("zarr.json", ".zarray"):
            f = Path(self.path) / self.array_path / name
            if f.exists():
                stamp = f.stat().st_mtime_ns
        return _cached(("zarr", self.path, self.array_path, stamp, self.shape),
                       lambda: zarr.open_array(self.path, path=self.array_path, mode="r"))


class TiffReader(_Reader):
    """Slice the first series of a TIFF: ``tifffile.memmap`` when the data are contiguous and
    uncompressed (no copy at all), otherwise tifffile's zarr view (``aszarr``, reads only the pages
    and tiles a block touches)."""

    def __init__(self, path: str, shape, dtype, perm, memmappable: bool):
        self.path = str(path)
        self.shape, self.dtype, self.perm = tuple(shape), np.dtype(dtype), tuple(perm)
        self.memmappable = memmappable

    def _raw(self):
        import tifffile

        if self.memmappable:
            return _cached(("tiffmm", self.path, Path(self.path).stat().st_mtime_ns),
                           lambda: tifffile.memmap(self.path, mode="r"))

        def open_z():
            import zarr

            store = tifffile.imread(self.path, aszarr=True, series=0, level=0)
            return zarr.open(store, mode="r")

        return _cached(("tiffz", self.path, Path(self.path).stat().st_mtime_ns), open_z)


# ------------------------------------------------------------------------------------------ helpers
def default_chunks(shape: tuple[int, ...], axes: str, itemsize: int = 4,
                   target_bytes: int = _TARGET_BLOCK_BYTES) -> tuple[int, ...]:
    """Chunk shape for processing: 1 along ``T``/``C``, roughly cubic spatial blocks of ~64 MB.

    Examples
    --------
    >>> default_chunks((10, 2, 100, 4000, 4000), "TCZYX")
    (1, 1, 100, 345, 431)
    """
    chunks = [1 if a in "TC" else n for a, n in zip(axes, shape, strict=True)]
    sp = [i for i, a in enumerate(axes) if a in SPATIAL]
    budget = max(1, target_bytes // itemsize)
    # Shrink the largest spatial extent first until the block fits the budget.
    while math.prod(chunks[i] for i in sp) > budget:
        i = max(sp, key=lambda j: chunks[j])
        if chunks[i] <= 16:
            break
        chunks[i] = max(16, int(math.ceil(chunks[i] * 0.8)))
    return tuple(int(c) for c in chunks)


def _canon(file_axes: str) -> tuple[str, tuple[int, ...]]:
    canon = "".join(a for a in "TCZYX" if a in file_axes)
    return canon, tuple(file_axes.index(a) for a in canon)


def _check_axes_override(axes: str, ndim: int, path) -> str:
    axes = axes.upper()
    if len(axes) != ndim or len(set(axes)) != ndim or any(a not in "TCZYX" for a in axes) or not axes.endswith("YX"):
        raise FluoreconError(f"{path}: axes {axes!r} do not fit a {ndim}-D array",
                             hint="give one letter per dimension from T C Z Y X ending in YX, e.g. 'ZYX'")
    return axes


def _open_zarr(p: Path, axes: str | None, allow_missing_chunks: bool):
    import zarr

    try:
        node = zarr.open(str(p), mode="r")
    except Exception as e:
        raise FluoreconError(f"cannot open {p} as a zarr store: {type(e).__name__}: {e}",
                             hint="check that the path is a complete OME-Zarr folder") from None
    if isinstance(node, zarr.Array):
        raise FluoreconError(f"{p} is a plain zarr array, not an OME-NGFF image (no axes, no voxel sizes)",
                             hint="write it as OME-Zarr (e.g. fluorecon.io.write_image(path.ome.zarr, ...)) first")
    attrs = dict(node.attrs)
    from fluorecon.io import check_store_complete

    check_store_complete(p, attrs, allow=True if allow_missing_chunks else None)
    ome = attrs.get("ome", attrs)
    ms = ome.get("multiscales") if isinstance(ome, dict) else None
    if not ms or not isinstance(ms, list) or not ms[0].get("datasets"):
        raise FluoreconError(f"{p} is a zarr group without OME-NGFF 'multiscales' metadata",
                             hint="point at an OME-Zarr image (the folder holding the 'multiscales' attributes)")
    m0 = ms[0]
    ds0 = m0["datasets"][0]
    try:
        arr = node[ds0["path"]]
    except KeyError:
        raise FluoreconError(f"{p}: the OME-NGFF metadata name dataset {ds0['path']!r}, which does not exist",
                             hint="the store is incomplete; re-copy or re-write it") from None
    names = [(a["name"] if isinstance(a, dict) else a) for a in (m0.get("axes") or [])]
    units = [(a.get("unit") if isinstance(a, dict) else None) for a in (m0.get("axes") or [])]
    if names:
        file_axes = "".join(n.upper()[:1] if n.upper() in ("T", "C", "Z", "Y", "X") else "?" for n in names)
    else:  # NGFF 0.3 and older have no axes: assume the canonical trailing order
        file_axes = "TCZYX"[-arr.ndim:]
    if axes is not None:
        file_axes = _check_axes_override(axes, arr.ndim, p)
    if "?" in file_axes or len(file_axes) != arr.ndim:
        raise FluoreconError(f"{p}: cannot map the NGFF axes {names} onto T C Z Y X",
                             hint="pass axes explicitly (e.g. axes='CZYX')")
    # Missing chunks read back as the fill value without any error: count the stored ones.
    n_init, n_all = arr.nchunks_initialized, arr.nchunks
    if n_init < n_all and not allow_missing_chunks:
        raise FluoreconError(
            f"{p}: {n_all - n_init} of {n_all} chunks of dataset {ds0['path']!r} are missing "
            "(an interrupted copy or write?)",
            hint="re-copy the store; if its writer skips all-fill chunks on purpose, pass --allow-incomplete "
                 "(API: allow_missing_chunks=True)",
        )
    scale = None
    for tr in ds0.get("coordinateTransformations", []) + m0.get("coordinateTransformations", []):
        if tr.get("type") == "scale":
            s = np.asarray(tr["scale"], float)
            scale = s if scale is None else scale * s
    from fluorecon.io import _to_um

    canon, perm = _canon(file_axes)
    voxel = None
    if scale is not None:
        vals = []
        for a in canon:
            if a in SPATIAL:
                i = file_axes.index(a)
                u = units[i] if i < len(units) else None
                vals.append(_to_um(float(scale[i]), u) if u else None)
        if vals and all(v is not None for v in vals):
            voxel = tuple(float(v) for v in vals)
    meta = {"format": "zarr", "path": str(p), "file_axes": file_axes, "ngff_version": ome.get("version", m0.get("version")),
            "file_chunks": tuple(int(c) for c in arr.chunks), "levels": len(m0["datasets"])}
    if "fluorecon" in attrs:
        meta["user"] = attrs["fluorecon"]
    shape = tuple(arr.shape[i] for i in perm)
    reader = ZarrReader(str(p), ds0["path"], shape, arr.dtype, perm)
    file_chunks = tuple(int(arr.chunks[i]) for i in perm)
    return reader, canon, voxel, meta, file_chunks


def _open_tiff(p: Path, axes: str | None):
    import tifffile

    from fluorecon.io import _map_file_axes

    try:
        with tifffile.TiffFile(p) as tif:
            series = tif.series[0]
            shape, dtype, saxes = tuple(series.shape), series.dtype, series.axes
            # dataoffset is set only for contiguous, uncompressed data: then a memory map is free.
            memmappable = series.dataoffset is not None
    except Exception as e:
        raise FluoreconError(f"cannot read {p}: {type(e).__name__}: {e}",
                             hint="the file looks corrupt or truncated; re-export it") from None
    if axes is not None:
        file_axes = _check_axes_override(axes, len(shape), p)
    else:
        file_axes, _ = _map_file_axes(saxes, len(shape))
    voxel = _tiff_voxel(p, file_axes)
    canon, perm = _canon(file_axes)
    shape_c = tuple(shape[i] for i in perm)
    reader = TiffReader(str(p), shape_c, dtype, perm, memmappable)
    meta = {"format": "tiff", "path": str(p), "file_axes": file_axes, "memmap": memmappable}
    return reader, canon, voxel, meta, None


def _tiff_voxel(p: Path, file_axes: str) -> tuple[float, ...] | None:
    """Voxel size from OME / ImageJ / fluorecon-shaped TIFF metadata (no pixel data read)."""
    import tifffile

    from fluorecon.io import _ome_tiff_info, _to_um

    sizes: dict[str, float | None] = {}
    with tifffile.TiffFile(p) as tif:
        page = tif.pages.first
        if tif.is_ome and tif.ome_metadata:
            sizes.update(_ome_tiff_info(tif.ome_metadata)[0])
        else:
            ij = tif.imagej_metadata if tif.is_imagej else None
            sm = tif.shaped_metadata[0] if tif.is_shaped and tif.shaped_metadata else None
            if sm and isinstance(sm.get("voxel_size_um"), dict):
                sizes.update({k: float(v) for k, v in sm["voxel_size_um"].items()})
            else:
                try:
                    xr, yr = page.tags["XResolution"].value, page.tags["YResolution"].value
                    unit = (ij or {}).get("unit")
                    sizes["X"] = _to_um(xr[1] / xr[0], unit or "um")
                    sizes["Y"] = _to_um(yr[1] / yr[0], unit or "um")
                except (KeyError, ZeroDivisionError):
                    pass
                if ij and ij.get("spacing"):
                    sizes["Z"] = float(ij["spacing"])
    spatial = [a for a in "ZYX" if a in file_axes]
    vals = [sizes.get(a) for a in spatial]
    if all(v is not None and v > 0 for v in vals):
        return tuple(float(v) for v in vals)
    return None


# -------------------------------------------------------------------------------------------- public
def open_lazy(path: str | Path, axes: str | None = None, chunks: tuple[int, ...] | None = None,
              allow_missing_chunks: bool = False):
    """Open a TIFF or OME-Zarr image as a dask array without reading the pixels.

    Parameters
    ----------
    path : str or Path
        ``.tif``/``.tiff``/``.ome.tif`` (memory-mapped when uncompressed and contiguous, else read
        page by page through tifffile's zarr view) or an OME-Zarr image (``.zarr``/``.ome.zarr``,
        NGFF 0.4 or 0.5; the full-resolution dataset is opened).
    axes : str, optional
        Override the file's axes (file order, e.g. ``"ZCYX"``); returned in ``T C Z Y X`` order.
    chunks : tuple of int, optional
        Dask chunks (canonical order). Default: the store's chunks for zarr (merged up to ~64 MB),
        :func:`default_chunks` for TIFF.
    allow_missing_chunks : bool
        Accept a zarr store in which some chunks were never written (read as the fill value).

    Returns
    -------
    (dask.array.Array, LazyImage)

    Raises
    ------
    FluoreconError
        Missing path, unsupported format, a zarr store that is not OME-NGFF, missing chunks.

    Examples
    --------
    >>> import tempfile, pathlib, tifffile
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.tif"
    >>> tifffile.imwrite(p, np.zeros((5, 8, 8), np.uint16))
    >>> darr, img = open_lazy(p)
    >>> darr.shape, img.axes, img.metadata["memmap"]
    ((5, 8, 8), 'ZYX', True)
    """
    import dask.array as da

    p = Path(path)
    if not p.exists():
        raise FluoreconError(f"input not found: {p}", hint="check the path")
    name = p.name.lower().rstrip("/")
    if name.endswith(".zarr") or (p.is_dir() and ((p / "zarr.json").exists() or (p / ".zattrs").exists())):
        reader, canon, voxel, meta, file_chunks = _open_zarr(p, axes, allow_missing_chunks)
    elif name.endswith((".tif", ".tiff")):
        reader, canon, voxel, meta, file_chunks = _open_tiff(p, axes)
    else:
        raise FluoreconError(f"{p}: out-of-core processing reads TIFF or OME-Zarr, not {p.suffix or 'this file'}",
                             hint="convert it with fluorecon.io.write_image(out.ome.zarr, ...) first")
    if reader.dtype.kind not in "biuf":
        raise FluoreconError(f"{p}: unsupported pixel type {reader.dtype}", hint="integer or float pixels only")
    if chunks is None:
        chunks = default_chunks(reader.shape, canon, max(4, reader.dtype.itemsize))
        if file_chunks is not None:
            # Whole multiples of the stored chunks, so that every stored chunk is read once.
            chunks = tuple(min(n, max(fc, (c // fc) * fc)) for n, c, fc in zip(reader.shape, chunks, file_chunks, strict=True))
    else:
        chunks = tuple(int(c) for c in chunks)
        if len(chunks) != len(reader.shape) or any(c < 1 for c in chunks):
            raise FluoreconError(f"chunks {chunks} do not fit the {canon} image of shape {reader.shape}",
                                 hint=f"give {len(reader.shape)} positive sizes in the order {canon}")
    darr = da.from_array(reader, chunks=chunks, asarray=True, fancy=False, meta=np.empty((0,) * len(reader.shape), reader.dtype),
                         name=f"fluorecon-lazy-{abs(hash((str(p.resolve()), json.dumps(meta, default=str)))):x}")
    img = LazyImage(axes=canon, voxel_size=voxel, shape=tuple(reader.shape), dtype=reader.dtype, reader=reader, metadata=meta)
    return darr, img
