"""Write OME-Zarr (NGFF 0.5, zarr v3) chunk by chunk, with a multiscale pyramid and resumable progress.

Layout of an output store::

    out.ome.zarr/
        zarr.json                 group: attributes["ome"]["multiscales"] (written by ome-zarr-py)
                                  + attributes["fluorecon"]["scale_run"] (status, fingerprint, params)
        0/ 1/ 2/ ...              pyramid levels (level k = local mean of level k-1 over ``factors``)
        .fluorecon-progress/      one empty marker file per finished chunk (removed when complete)

A chunk's marker is written only *after* the chunk itself, so a killed run redoes at most the chunks
that were in flight. ``scale_run.complete`` becomes true only after every level is written.

Pyramid downsampling is a **local mean** over non-overlapping ``factors`` blocks (default 2 × 2 in
Y and X, Z kept); at a trailing edge that does not divide, the mean is over the voxels present. Each
level's NGFF ``scale`` is the level-0 voxel size times the accumulated factors and its
``translation`` is ``(factor - 1) / 2`` level-0 voxels: the centre of a mean block.

Examples
--------
>>> import tempfile, pathlib, numpy as np, dask.array as da
>>> p = pathlib.Path(tempfile.mkdtemp()) / "o.ome.zarr"
>>> out = write_ome_zarr(p, da.ones((4, 64, 64), chunks=(4, 32, 32)), "ZYX", (0.5, 0.1, 0.1), levels=2)
>>> import zarr; zarr.open_group(str(p))["1"].shape
(4, 32, 32)
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fluorecon.errors import FluoreconError

__all__ = [
    "PROGRESS_DIR",
    "OutputStore",
    "chunk_regions",
    "content_digest",
    "downsample_mean",
    "store_lock",
    "pyramid_shapes",
    "write_ome_zarr",
]

PROGRESS_DIR = ".fluorecon-progress"
_NGFF = {"T": ("t", "time"), "C": ("c", "channel"), "Z": ("z", "space"), "Y": ("y", "space"), "X": ("x", "space")}
DOWNSAMPLING = "local mean over non-overlapping blocks (edge blocks: mean of the voxels present)"


# --------------------------------------------------------------------------------------- input identity + locking
_SKIP_NAMES = (PROGRESS_DIR,)


def content_digest(path: str | Path, block: int = 1 << 20) -> str:
    """SHA-256 of an input's bytes, streamed: a file's content, or every file of a zarr store.

    A store is hashed file by file in sorted relative-path order (path and bytes), skipping
    fluorecon's own progress markers. A resumed run compares this digest with the one recorded in
    the output, so a different input at the same path is never mixed into a result (size and
    modification time are not trusted: they can be equal for different content).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.bin"
    >>> _ = p.write_bytes(b"abc")
    >>> content_digest(p)[:12]
    'ba7816bf8f01'
    """
    import hashlib

    p = Path(path)
    files = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file()
                                            and not any(part in _SKIP_NAMES for part in q.relative_to(p).parts))
    h = hashlib.sha256()
    for q in files:
        if q != p:
            h.update(str(q.relative_to(p)).encode() + b"\0")
        with open(q, "rb") as fh:
            while chunk := fh.read(block):
                h.update(chunk)
        if q != p:
            h.update(b"\0")
    return h.hexdigest()


def _lock_path(path: Path) -> Path:
    return path.parent / f".{path.name}.fluorecon-lock"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


@contextlib.contextmanager
def store_lock(path: str | Path) -> Iterator[Path]:
    """Hold an exclusive lock on an output store for the duration of a run.

    The lock is a sibling file ``.<name>.fluorecon-lock`` holding the owner's pid, host and start
    time. A lock whose process is dead (same host) is stale and taken over; a lock held by a live
    run, or by another host, is refused with a clear message.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "o.ome.zarr"
    >>> with store_lock(out) as lock:
    ...     lock.exists()
    True
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    lock = _lock_path(p)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            try:
                owner = json.loads(lock.read_text() or "{}")
            except (OSError, ValueError):
                owner = {}
            pid, host = int(owner.get("pid", -1) or -1), owner.get("host")
            if host == me["host"] and (pid <= 0 or not _pid_alive(pid)):
                lock.unlink(missing_ok=True)  # stale: its run is dead
                continue
            if host == me["host"] and pid == me["pid"]:
                raise FluoreconError(f"{p} is already being written by this process",
                                     hint="wait for the first write to finish") from None
            raise FluoreconError(f"{p} is being written by another run (pid {pid} on {host})",
                                 hint=f"wait for it to finish; if that run is gone, delete {lock}") from None
        with os.fdopen(fd, "w") as fh:
            json.dump(me, fh)
        break
    else:
        raise FluoreconError(f"could not lock {p}", hint=f"delete {lock} if no run is writing it")
    try:
        yield lock
    finally:
        with contextlib.suppress(OSError):
            if json.loads(lock.read_text()).get("pid") == me["pid"]:
                lock.unlink()


# --------------------------------------------------------------------------------------- pure helpers
def downsample_mean(x: np.ndarray, factors: Sequence[int]) -> np.ndarray:
    """Local mean over non-overlapping ``factors`` blocks; edge blocks average the voxels present.

    Examples
    --------
    >>> downsample_mean(np.arange(6, dtype=np.float32).reshape(2, 3), (2, 2))
    array([[2. , 3.5]], dtype=float32)
    """
    factors = tuple(int(f) for f in factors)
    if len(factors) != x.ndim or any(f < 1 for f in factors):
        raise FluoreconError(f"downsampling factors {factors} do not fit a {x.ndim}-D block", hint="one factor ≥ 1 per axis")
    x = np.asarray(x, dtype=np.float64)
    out_shape = tuple(-(-n // f) for n, f in zip(x.shape, factors, strict=True))
    pad = [(0, o * f - n) for o, f, n in zip(out_shape, factors, x.shape, strict=True)]
    ones = np.pad(np.ones(x.shape, np.float64), pad)
    xs = np.pad(x, pad)
    split = [d for o, f in zip(out_shape, factors, strict=True) for d in (o, f)]
    axes = tuple(range(1, 2 * x.ndim, 2))
    s = xs.reshape(split).sum(axis=axes)
    c = ones.reshape(split).sum(axis=axes)
    return (s / c).astype(np.float32)


def pyramid_shapes(shape: Sequence[int], factors: Sequence[int], levels: int) -> list[tuple[int, ...]]:
    """Shapes of ``levels`` pyramid levels (level 0 = ``shape``).

    Examples
    --------
    >>> pyramid_shapes((5, 100, 101), (1, 2, 2), 3)
    [(5, 100, 101), (5, 50, 51), (5, 25, 26)]
    """
    out = [tuple(int(n) for n in shape)]
    for _ in range(levels - 1):
        out.append(tuple(-(-n // f) for n, f in zip(out[-1], factors, strict=True)))
    return out


def auto_levels(shape: Sequence[int], factors: Sequence[int], min_size: int = 256, max_levels: int = 6) -> int:
    """Number of levels until the largest downsampled axis is ≤ ``min_size``."""
    n = 1
    s = list(shape)
    while n < max_levels and max(v for v, f in zip(s, factors, strict=True) if f > 1) > min_size:
        s = [-(-v // f) for v, f in zip(s, factors, strict=True)]
        n += 1
    return n


def chunk_regions(shape: Sequence[int], chunks: Sequence[int]) -> list[tuple[tuple[int, ...], tuple[slice, ...]]]:
    """All chunk-aligned regions of an array: ``[(chunk index, slices), ...]`` in C order.

    Examples
    --------
    >>> [idx for idx, _ in chunk_regions((5, 4), (3, 4))]
    [(0, 0), (1, 0)]
    """
    grids = [range(-(-n // c)) for n, c in zip(shape, chunks, strict=True)]
    out = []
    for idx in np.ndindex(*[len(g) for g in grids]):
        sl = tuple(slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(idx, chunks, shape, strict=True))
        out.append((tuple(int(i) for i in idx), sl))
    return out


def _compressors(compression: str | None):
    from zarr.codecs import BloscCodec, ZstdCodec

    c = (compression or "none").lower()
    if c in ("none", "raw", ""):
        return None
    if c == "zstd":
        return [ZstdCodec(level=3)]
    if c in ("blosc", "blosc-zstd"):
        return [BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")]
    if c.startswith("blosc-") and c[6:] in ("lz4", "lz4hc", "zlib"):
        return [BloscCodec(cname=c[6:], clevel=5, shuffle="shuffle")]
    raise FluoreconError(f"unknown compression {compression!r}",
                         hint="use blosc (= blosc-zstd), blosc-lz4, blosc-zlib, zstd or none")


# --------------------------------------------------------------------------------------- the store
_ARRAYS: dict[tuple[str, str], Any] = {}
_ARRAYS_LOCK = threading.Lock()


def _open_level(path: str, level: int | str):
    """Per-process cache of opened output arrays (dask workers write many chunks each)."""
    import zarr

    # The metadata file's mtime is part of the key: a store re-created at the same path (overwrite)
    # must not be written through a stale handle that a long-lived worker kept.
    meta = Path(path) / str(level) / "zarr.json"
    key = (path, str(level), meta.stat().st_mtime_ns if meta.exists() else 0)
    with _ARRAYS_LOCK:
        a = _ARRAYS.get(key)
        if a is None:
            a = _ARRAYS[key] = zarr.open_array(path, path=str(level), mode="r+")
        return a


def _forget(path: str) -> None:
    with _ARRAYS_LOCK:
        for k in [k for k in _ARRAYS if k[0] == path]:
            del _ARRAYS[k]


class OutputStore:
    """A resumable OME-Zarr output: create / reopen, per-chunk markers, completion flag.

    Parameters
    ----------
    path : Path
        The ``.ome.zarr`` folder.
    shape, axes, voxel_size, chunks : level-0 geometry (canonical axes order).
    fingerprint : str
        Identifies the computation (input, operation, parameters). An existing store with the same
        fingerprint is resumed; with another one it is refused unless ``overwrite``.
    levels : int or None
        Pyramid levels (None: until the largest downsampled axis is ≤ 256).
    factors : tuple of int, optional
        Downsampling factors per axis (default 2 in Y and X, 1 elsewhere).
    compression : str
        ``blosc`` (zstd, shuffle; default), ``blosc-lz4``, ``zstd`` or ``none``.
    """

    def __init__(self, path: str | Path, shape: Sequence[int], axes: str, voxel_size: Sequence[float] | None,
                 chunks: Sequence[int], fingerprint: str, *, levels: int | None = None,
                 factors: Sequence[int] | None = None, compression: str | None = "blosc", dtype="float32",
                 overwrite: bool = False, attrs: dict | None = None):
        self.path = Path(path)
        self.shape = tuple(int(n) for n in shape)
        self.axes = axes
        self.voxel_size = None if voxel_size is None else tuple(float(v) for v in voxel_size)
        self.chunks = tuple(min(int(c), n) for c, n in zip(chunks, self.shape, strict=True))
        self.fingerprint = fingerprint
        self.factors = tuple(factors) if factors is not None else tuple(2 if a in "YX" else 1 for a in axes)
        if len(self.factors) != len(axes):
            raise FluoreconError(f"pyramid factors {self.factors} do not fit axes {axes!r}", hint="one factor per axis")
        self.levels = int(levels) if levels is not None else auto_levels(self.shape, self.factors)
        if self.levels < 1:
            raise FluoreconError(f"levels must be ≥ 1, got {levels}", hint="e.g. levels=3")
        self.compression = compression
        self.dtype = np.dtype(dtype)
        self.resumed = False
        self.already_complete = False
        self._open_or_create(overwrite, attrs or {})

    # ---------------------------------------------------------------- creation
    def _state(self) -> dict | None:
        import zarr

        try:
            g = zarr.open_group(str(self.path), mode="r")
        except Exception:
            return None
        return dict(g.attrs).get("fluorecon", {}).get("scale_run")

    def _open_or_create(self, overwrite: bool, attrs: dict) -> None:
        p = self.path
        if p.exists():
            state = self._state()
            same = state is not None and state.get("fingerprint") == self.fingerprint
            if same and not overwrite:
                self.resumed = True
                self.already_complete = bool(state.get("complete"))
                self.state = state
                return
            empty_dir = p.is_dir() and not any(p.iterdir())
            if not overwrite and not empty_dir:
                what = ("a different result (other input, operation or parameters)" if state is not None
                        else "data that fluorecon did not write" if p.is_dir() else "a file")
                raise FluoreconError(f"output {p} already holds {what}",
                                     hint="choose another output path or pass overwrite=True (--overwrite)")
            from fluorecon._atomic import is_ours

            if not p.is_dir():
                raise FluoreconError(f"output {p} is a file, but an OME-Zarr folder is expected here",
                                     hint="choose another output path (the file is not touched)")
            if state is None and not is_ours(p):
                raise FluoreconError(f"output {p} is a folder that fluorecon did not write",
                                     hint="choose a new or empty folder; fluorecon never replaces other folders")
            _forget(str(p))
            shutil.rmtree(p)
        self._create(attrs)

    def _create(self, attrs: dict) -> None:
        import zarr
        from ome_zarr.writer import write_multiscales_metadata

        p = self.path
        p.parent.mkdir(parents=True, exist_ok=True)
        root = zarr.open_group(str(p), mode="w", zarr_format=3)
        comp = _compressors(self.compression)
        names = [_NGFF[a][0] for a in self.axes]
        datasets = []
        vs = dict(zip([a for a in self.axes if a in "ZYX"], self.voxel_size, strict=True)) if self.voxel_size else {}
        cum = [1] * len(self.axes)
        for lev, shp in enumerate(pyramid_shapes(self.shape, self.factors, self.levels)):
            kw: dict[str, Any] = {"compressors": comp} if comp is not None else {"compressors": None}
            root.create_array(str(lev), shape=shp, chunks=tuple(min(c, n) for c, n in zip(self.chunks, shp, strict=True)),
                              dtype=self.dtype, fill_value=0, dimension_names=names,
                              config={"write_empty_chunks": True}, **kw)
            scale = [float(vs.get(a, 1.0)) * (f if a in "ZYX" else 1) for a, f in zip(self.axes, cum, strict=True)]
            trans = [float(vs.get(a, 1.0)) * (f - 1) / 2.0 if a in "ZYX" else 0.0 for a, f in zip(self.axes, cum, strict=True)]
            ct: list[dict[str, Any]] = [{"type": "scale", "scale": scale}]
            if any(t != 0 for t in trans):
                ct.append({"type": "translation", "translation": trans})
            datasets.append({"path": str(lev), "coordinateTransformations": ct})
            cum = [c * f for c, f in zip(cum, self.factors, strict=True)]
        axes_meta: list[dict[str, str]] = []
        for a in self.axes:
            d = {"name": _NGFF[a][0], "type": _NGFF[a][1]}
            if a in "ZYX" and vs:
                d["unit"] = "micrometer"
            axes_meta.append(d)
        write_multiscales_metadata(root, datasets, axes=axes_meta, name=p.name,
                                   metadata={"method": "fluorecon.scale.downsample_mean", "description": DOWNSAMPLING,
                                             "factors": list(self.factors)})
        # NGFF's optional multiscale "type" names the downscaling method; ome-zarr-py does not take it.
        attrs_all = dict(root.attrs)
        ome = attrs_all.get("ome", attrs_all)
        ome["multiscales"][0]["type"] = "local_mean"
        if "ome" in attrs_all:
            root.attrs["ome"] = ome
        else:
            root.attrs["multiscales"] = ome["multiscales"]
        self.state = {"fingerprint": self.fingerprint, "complete": False, "levels": self.levels,
                      "chunks": list(self.chunks), "downsampling": DOWNSAMPLING, "factors": list(self.factors), **attrs}
        fl = dict(root.attrs).get("fluorecon", {})
        fl["scale_run"] = self.state
        root.attrs["fluorecon"] = fl
        (p / PROGRESS_DIR).mkdir(exist_ok=True)

    # ---------------------------------------------------------------- progress
    def update_state(self, **kw) -> None:
        import zarr

        root = zarr.open_group(str(self.path), mode="r+")
        fl = dict(root.attrs).get("fluorecon", {})
        st = fl.get("scale_run", {})
        st.update(kw)
        fl["scale_run"] = st
        root.attrs["fluorecon"] = fl
        self.state = st

    def done_chunks(self, level: int) -> set[str]:
        d = self.path / PROGRESS_DIR / str(level)
        return set(os.listdir(d)) if d.is_dir() else set()

    def level_shape(self, level: int) -> tuple[int, ...]:
        return pyramid_shapes(self.shape, self.factors, self.levels)[level]

    def level_chunks(self, level: int) -> tuple[int, ...]:
        return tuple(min(c, n) for c, n in zip(self.chunks, self.level_shape(level), strict=True))

    def mark_complete(self, extra: dict | None = None) -> None:
        self.update_state(complete=True, **(extra or {}))
        shutil.rmtree(self.path / PROGRESS_DIR, ignore_errors=True)
        self.already_complete = True

    def pending(self, level: int) -> list[tuple[tuple[int, ...], tuple[slice, ...]]]:
        done = self.done_chunks(level)
        return [(i, s) for i, s in chunk_regions(self.level_shape(level), self.level_chunks(level))
                if chunk_id(i) not in done]


def chunk_id(idx: Iterable[int]) -> str:
    return ".".join(str(int(i)) for i in idx)


def write_chunk(path: str, level: int, idx: tuple[int, ...], slices: tuple[slice, ...], data: np.ndarray) -> str:
    """Write one chunk, then its marker (so a marker always means the chunk is on disk)."""
    arr = _open_level(path, level)
    data = np.asarray(data, dtype=arr.dtype)
    want = tuple(s.stop - s.start for s in slices)
    if data.shape != want:
        raise FluoreconError(f"block function returned shape {data.shape} for a {want} chunk",
                             hint="the block function must keep the block's shape (crop/halo handled by fluorecon.scale)")
    arr[slices] = data
    marker = Path(path) / PROGRESS_DIR / str(level) / chunk_id(idx)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.touch()
    return chunk_id(idx)


def _pyramid_task(path: str, level: int, factors: tuple[int, ...], idx, slices) -> str:
    src = _open_level(path, level - 1)
    src_sl = tuple(slice(s.start * f, min(s.stop * f, n)) for s, f, n in zip(slices, factors, src.shape, strict=True))
    return write_chunk(path, level, idx, slices, downsample_mean(np.asarray(src[src_sl]), factors))


def build_pyramid(store: OutputStore, compute) -> int:
    """Fill levels 1.. from level 0 (local mean), skipping chunks already marked; returns chunks written."""
    import dask

    n = 0
    for level in range(1, store.levels):
        tasks = [dask.delayed(_pyramid_task, pure=False)(str(store.path), level, store.factors, i, s)
                 for i, s in store.pending(level)]
        if tasks:
            compute(tasks)
        n += len(tasks)
    return n


def write_ome_zarr(path: str | Path, data, axes: str, voxel_size: Sequence[float] | None = None, *,
                   chunks: Sequence[int] | None = None, levels: int | None = None, factors: Sequence[int] | None = None,
                   compression: str | None = "blosc", overwrite: bool = False, scheduler: str = "threads",
                   metadata: dict | None = None) -> Path:
    """Write a (dask or numpy) array to OME-Zarr chunk by chunk, with a local-mean pyramid.

    Resumable: re-running the same call after an interruption writes only the missing chunks.

    Parameters
    ----------
    path : path-like
        Output ``.ome.zarr`` folder.
    data : dask.array.Array or numpy.ndarray
        Canonical axes order (``T C Z Y X``); only one chunk per task is held in memory.
    axes : str
        Axes of ``data``.
    voxel_size : tuple of float, optional
        µm along the spatial axes; written as each level's NGFF ``scale``.
    chunks : tuple of int, optional
        Storage chunks (default: the dask chunks, or :func:`fluorecon.scale.lazy.default_chunks`).
    levels, factors, compression, overwrite, scheduler
        See :class:`OutputStore` and :func:`fluorecon.scale.schedulers.get_compute`.
    metadata : dict, optional
        JSON-able; stored under ``attributes["fluorecon"]["user"]``.

    Returns
    -------
    Path

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "o.ome.zarr"
    >>> _ = write_ome_zarr(p, np.zeros((8, 8), np.float32), "YX", (0.1, 0.1), levels=1)
    """
    import dask.array as da

    from fluorecon.scale.lazy import default_chunks

    darr = data if isinstance(data, da.Array) else da.from_array(np.asarray(data))
    if len(axes) != darr.ndim:
        raise FluoreconError(f"axes {axes!r} do not fit a {darr.ndim}-D array", hint="one letter per dimension")
    if chunks is None:
        chunks = tuple(c[0] for c in darr.chunks) if isinstance(data, da.Array) else default_chunks(darr.shape, axes)
    fp = json.dumps({"kind": "write", "name": darr.name, "shape": darr.shape, "axes": axes, "voxel": voxel_size}, default=str)
    with store_lock(path):
        return _write_locked(path, darr, axes, voxel_size, chunks, fp, levels, factors, compression, overwrite,
                             scheduler, metadata, data)


def _write_locked(path, darr, axes, voxel_size, chunks, fp, levels, factors, compression, overwrite, scheduler,
                  metadata, data) -> Path:
    import dask

    from fluorecon.scale.schedulers import get_compute

    store = OutputStore(path, darr.shape, axes, voxel_size, chunks, _hash(fp), levels=levels, factors=factors,
                        compression=compression, dtype=darr.dtype if darr.dtype.kind in "biuf" else "float32",
                        overwrite=overwrite, attrs={"operation": "write"})
    if store.already_complete:
        return store.path
    if metadata is not None:
        import zarr

        root = zarr.open_group(str(store.path), mode="r+")
        fl = dict(root.attrs).get("fluorecon", {})
        fl["user"] = metadata
        root.attrs["fluorecon"] = fl
    with get_compute(scheduler) as compute:
        tasks = [dask.delayed(write_chunk, pure=False)(str(store.path), 0, i, s, darr[s]) for i, s in store.pending(0)]
        if tasks:
            compute(tasks)
        build_pyramid(store, compute)
    store.mark_complete()
    return store.path


def _hash(s: str) -> str:
    import hashlib

    return hashlib.sha256(s.encode()).hexdigest()[:32]


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)

