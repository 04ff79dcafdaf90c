"""Blockwise processing with halos: any array→array function, out of core, resumable, on any dask scheduler.

Two entry points:

* :func:`map_blocks_halo` — lazy: wraps :func:`dask.array.map_overlap` (``boundary="none"``, so a
  block at the array border sees exactly the border the in-memory function sees) and returns a dask
  array. Good for composing in a notebook.
* :func:`run_blockwise` — the engine behind ``fluorecon <verb> ... -o out.ome.zarr``: one task per
  output chunk reads its block *plus halo* straight from the file, applies the function, crops the
  halo, writes the chunk and then its progress marker. Memory is bounded by (workers × block+halo);
  a re-run skips chunks already marked; the store is flagged complete only at the very end.

Every data-dependent decision (iteration count from a stopping rule, background, calibrated denoiser
parameters) is taken **once** on a central sample of the whole image by the operation builders in
:mod:`fluorecon.scale.operations`, stored in the output's attributes (``scale_run.resolved``) and
re-used on resume — never re-estimated per block, which would make seams.

Examples
--------
>>> import numpy as np, dask.array as da
>>> from scipy import ndimage
>>> x = da.random.default_rng(0).random((40, 40), chunks=(20, 20)).astype(np.float32)
>>> y = map_blocks_halo(lambda b: ndimage.gaussian_filter(b, 1.0), x, halo=6, axes="YX")
>>> ref = ndimage.gaussian_filter(x.compute(), 1.0)
>>> bool(abs(y.compute() - ref)[6:-6, 6:-6].max() < 1e-6)
True
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fluorecon.errors import FluoreconError

__all__ = ["BlockOp", "choose_chunks", "map_blocks_halo", "run_blockwise", "sample_view"]

SPATIAL = "ZYX"


@dataclass
class BlockOp:
    """A blockwise operation: a picklable ``fn(block) -> block`` on the spatial axes, and its halo.

    Attributes
    ----------
    name : str
        Operation name (recorded in the output).
    fn : callable
        Maps a float32 spatial block (``ZYX`` or ``YX``) to a block of the same shape (or, with
        ``z_factor > 1``, ``(nz - 1) * z_factor + 1`` planes). Must be picklable (a module-level
        function or a ``functools.partial`` of one) for the processes/distributed schedulers.
    halo : tuple of int
        Margin read around each block, per spatial axis (input pixels).
    resolved : dict
        JSON-able parameters after the global decisions (stored in the output's attributes).
    channel_fns : dict, optional
        ``{channel index: fn}`` when the global decisions differ per channel.
    z_factor : int
        Axial upsampling of the output (isotropic restoration); 1 for same-shape operations.
    memory_factor : float
        Working memory of ``fn`` in multiples of the float32 block+halo (sizes the default chunks).
    block_shape : tuple of int, optional
        Preferred spatial block (output chunk) shape when the caller gives no ``chunks``.
    """

    name: str
    fn: Callable[[np.ndarray], np.ndarray]
    halo: tuple[int, ...]
    resolved: dict = field(default_factory=dict)
    channel_fns: dict[int, Callable] | None = None
    z_factor: int = 1
    memory_factor: float = 4.0
    block_shape: tuple[int, ...] | None = None

    def fn_for(self, channel: int | None) -> Callable:
        if self.channel_fns and channel is not None and channel in self.channel_fns:
            return self.channel_fns[channel]
        return self.fn


# -------------------------------------------------------------------------------------------- lazy API
def _spatial(axes: str) -> str:
    return "".join(a for a in axes if a in SPATIAL)


def _halo_tuple(halo, n: int) -> tuple[int, ...]:
    if np.isscalar(halo):
        h = (int(halo),) * n
    else:
        h = tuple(int(v) for v in halo)
    if len(h) != n or any(v < 0 for v in h):
        raise FluoreconError(f"halo {halo!r} must be one non-negative int or one per spatial axis ({n})",
                             hint="e.g. halo=8 or halo=(4, 16, 16)")
    return h


def map_blocks_halo(fn: Callable[[np.ndarray], np.ndarray], darr, halo: int | Sequence[int], axes: str | None = None,
                    dtype=np.float32):
    """Apply ``fn`` to every block of ``darr`` with ``halo`` pixels of context (lazy, dask).

    Leading ``T``/``C`` axes are processed one index at a time (chunk 1, no halo), so ``fn`` always
    sees a spatial block. At the array border no padding is invented (``boundary="none"``): ``fn``
    handles it exactly as it does in memory.

    Parameters
    ----------
    fn : callable
        Spatial block → block of the same shape.
    darr : dask.array.Array or numpy.ndarray
    halo : int or tuple of int
        Per spatial axis. Blocks must be at least as large as the halo (dask rechunks if not).
    axes : str, optional
        Canonical axes of ``darr`` (default from ``ndim``: YX, ZYX, CZYX, TCZYX).
    dtype : numpy dtype

    Returns
    -------
    dask.array.Array

    Examples
    --------
    >>> import dask.array as da
    >>> y = map_blocks_halo(lambda b: b * 2, da.ones((2, 8, 8), chunks=(1, 4, 4)), 1, axes="CYX")
    >>> float(y.sum().compute())
    256.0
    """
    import dask.array as da

    from fluorecon.io import guess_axes

    darr = darr if isinstance(darr, da.Array) else da.from_array(np.asarray(darr))
    axes = axes or guess_axes(darr.ndim)
    if len(axes) != darr.ndim:
        raise FluoreconError(f"axes {axes!r} do not fit a {darr.ndim}-D array", hint="one letter per dimension")
    sp = _spatial(axes)
    h = _halo_tuple(halo, len(sp))
    depth = {i: (h[sp.index(a)] if a in SPATIAL else 0) for i, a in enumerate(axes)}
    lead = [i for i, a in enumerate(axes) if a not in SPATIAL]
    if lead:
        darr = darr.rechunk({i: 1 for i in lead})
    # map_overlap needs every block to be at least as deep as the halo.
    rech = {}
    for i, d in depth.items():
        if d and min(darr.chunks[i]) < d:
            rech[i] = min(darr.shape[i], max(d, max(darr.chunks[i])))
    if rech:
        darr = darr.rechunk(rech)

    def apply(block):
        lead_shape = block.shape[: len(lead)]
        b = block.reshape(block.shape[len(lead):])
        out = np.asarray(fn(np.asarray(b, dtype=np.float32)), dtype=dtype)
        if out.shape != b.shape:
            raise FluoreconError(f"block function changed the block shape {b.shape} → {out.shape}",
                                 hint="use run_blockwise with z_factor for resampling operations")
        return out.reshape(lead_shape + out.shape)

    return da.map_overlap(apply, darr, depth=depth, boundary="none", trim=True, dtype=dtype,
                          meta=np.empty((0,) * darr.ndim, dtype))


# ------------------------------------------------------------------------------------- chunk choice
def choose_chunks(shape: Sequence[int], axes: str, halo: Sequence[int], *, z_factor: int = 1,
                  block_bytes: int | None = None, memory_limit: int | None = None, memory_factor: float = 4.0,
                  threads: int = 1, min_ratio: float = 4.0, base_bytes: int = 350 * 2**20) -> tuple[int, ...]:
    """Output chunk shape for a halo: 1 along ``T``/``C``; spatial blocks at least ``min_ratio`` × halo
    (so the halo overhead stays small) and, when ``memory_limit`` is given, small enough that
    ``threads`` blocks+halo × ``memory_factor`` fit in it after ``base_bytes`` (a worker process
    with numpy, torch and dask loaded uses about 300 MB before it holds any data).

    Examples
    --------
    >>> choose_chunks((64, 4096, 4096), "ZYX", (8, 8, 8), memory_limit=2**30, memory_factor=10)
    (64, 444, 444)
    """
    sp = [i for i, a in enumerate(axes) if a in SPATIAL]
    hal = {i: int(halo[k]) for k, i in enumerate(sp)}
    if memory_limit is not None:
        free = memory_limit - base_bytes
        if free < 16 * 2**20:
            raise FluoreconError(f"memory limit {memory_limit / 2**20:.0f} MiB leaves no room for data next to the "
                                 f"~{base_bytes / 2**20:.0f} MiB a worker needs for its libraries",
                                 hint="give each worker at least 512MiB (e.g. --memory-limit 1GB)")
        budget_vox = free / (4.0 * memory_factor * max(1, threads))
    else:
        budget_vox = (block_bytes or 64 * 2**20) / 4.0
    chunks = [1 if a not in SPATIAL else int(n) for a, n in zip(axes, shape, strict=True)]

    def cost(c):
        return math.prod((c[i] + 2 * hal[i] * z_factor) if axes[i] == "Z" else (c[i] + 2 * hal[i]) for i in sp)

    # Shrink the axis whose block is largest relative to its halo, keeping ≥ min_ratio × halo.
    for _ in range(10000):
        if cost(chunks) <= budget_vox:
            break
        cands = [i for i in sp if chunks[i] > max(16, int(min_ratio * hal[i]))]
        if not cands:
            break
        i = max(cands, key=lambda j: chunks[j] / max(1, hal[j]))
        chunks[i] = max(16, int(min_ratio * hal[i]), int(chunks[i] * 0.9))
    if "Z" in axes and z_factor > 1:
        iz = axes.index("Z")
        chunks[iz] = max(z_factor, (chunks[iz] // z_factor) * z_factor)
    return tuple(min(int(c), int(n)) for c, n in zip(chunks, shape, strict=True))


# --------------------------------------------------------------------------------------- sampling
def sample_view(reader, axes: str, max_voxels: int = 2**22, index: dict[str, int] | None = None) -> np.ndarray:
    """A central spatial crop (≤ ``max_voxels``) at one T/C index, for the global decisions.

    Examples
    --------
    >>> sample_view(np.zeros((2, 100, 100)), "CYX", max_voxels=400).shape
    (20, 20)
    """
    index = index or {}
    sp = [i for i, a in enumerate(axes) if a in SPATIAL]
    key: list[Any] = []
    shape = reader.shape
    frac = min(1.0, (max_voxels / math.prod(shape[i] for i in sp)) ** (1.0 / len(sp)))
    for i, a in enumerate(axes):
        if a not in SPATIAL:
            key.append(int(index.get(a, shape[i] // 2 if a == "T" else 0)))
        else:
            n = shape[i]
            m = max(1, min(n, int(round(n * frac))))
            s = (n - m) // 2
            key.append(slice(s, s + m))
    return np.asarray(reader[tuple(key)], dtype=np.float32)


# ------------------------------------------------------------------------------------------ engine
def _out_shape(shape, axes, z_factor):
    return tuple((n - 1) * z_factor + 1 if (a == "Z" and z_factor > 1) else n for a, n in zip(axes, shape, strict=True))


def _in_region(out_sl: tuple[slice, ...], axes: str, in_shape, halo: dict[int, int], z_factor: int):
    """Input slices (with halo, clipped) for an output region, and the crop back to the region."""
    in_key: list[Any] = []
    crop: list[slice] = []
    channel = None
    for i, (a, s) in enumerate(zip(axes, out_sl, strict=True)):
        if a not in SPATIAL:
            in_key.append(int(s.start))
            if a == "C":
                channel = int(s.start)
            continue
        f = z_factor if a == "Z" else 1
        n = in_shape[i]
        core0 = s.start // f
        core1 = min(n, -(-(s.stop - 1) // f) + 1) if f > 1 else s.stop
        e0, e1 = max(0, core0 - halo[i]), min(n, core1 + halo[i])
        in_key.append(slice(e0, e1))
        crop.append(slice(s.start - e0 * f, s.stop - e0 * f))
    return tuple(in_key), tuple(crop), channel


def _block_task(reader, out_path: str, idx, out_sl, in_key, crop, fn) -> str:
    from fluorecon.scale.ome_zarr_out import write_chunk

    block = np.asarray(reader[in_key], dtype=np.float32)
    res = np.asarray(fn(block), dtype=np.float32)
    res = res[crop]
    res = res.reshape(tuple(s.stop - s.start for s in out_sl))
    return write_chunk(out_path, 0, idx, out_sl, res)


def _as_reader(source, axes: str | None):
    """(reader, axes, voxel_size, description) from a path, LazyImage, dask or numpy array."""
    import dask.array as da

    from fluorecon.io import ImageData, guess_axes
    from fluorecon.scale.lazy import LazyImage, open_lazy
    from fluorecon.scale.ome_zarr_out import content_digest

    # Paths are identified by their content (streamed SHA-256), never by name alone: resuming onto a
    # different file at the same path must be refused.
    if isinstance(source, (str, Path)):
        _, img = open_lazy(source, axes=axes)
        return img.reader, img.axes, img.voxel_size, {"path": str(Path(source).resolve()), "shape": img.shape,
                                                      "dtype": str(img.dtype), "sha256": content_digest(source)}
    if isinstance(source, LazyImage):
        src = source.metadata.get("path")
        return source.reader, source.axes, source.voxel_size, {"path": src, "shape": source.shape,
                                                               "sha256": content_digest(src) if src else None}
    if isinstance(source, ImageData):
        return np.asarray(source.data), source.axes, source.voxel_size, {"array": _array_digest(source.data)}
    if isinstance(source, da.Array):
        ax = axes or guess_axes(source.ndim)
        return _DaskReader(source), ax, None, {"dask": source.name}
    arr = np.asarray(source)
    return arr, axes or guess_axes(arr.ndim), None, {"array": _array_digest(arr)}


class _DaskReader:
    """Slice a dask array synchronously inside a task (no nested scheduler)."""

    def __init__(self, darr):
        self.darr, self.shape, self.dtype, self.ndim = darr, darr.shape, darr.dtype, darr.ndim

    def __getitem__(self, key):
        return np.asarray(self.darr[key].compute(scheduler="synchronous"))


def _array_digest(a) -> str:
    a = np.ascontiguousarray(a)
    h = hashlib.sha256(a.tobytes())
    h.update(str((a.shape, a.dtype)).encode())
    return h.hexdigest()[:16]


def _jsonable(obj):
    if isinstance(obj, np.ndarray):
        return {"ndarray_sha256": _array_digest(obj), "shape": list(obj.shape)}
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    if callable(obj):
        return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', type(obj).__name__)}"
    return repr(obj)


def fingerprint(*parts) -> str:
    """Stable hash of JSON-able parts (arrays hashed by content)."""
    s = json.dumps(_jsonable(list(parts)), sort_keys=True, default=str)
    return hashlib.sha256(s.encode()).hexdigest()[:32]


def peek_state(path: str | Path) -> dict | None:
    """The ``scale_run`` attributes of an existing output store, or None."""
    import zarr

    p = Path(path)
    if not p.is_dir():
        return None
    try:
        g = zarr.open_group(str(p), mode="r")
    except Exception:
        return None
    return dict(g.attrs).get("fluorecon", {}).get("scale_run")


def run_blockwise(op: BlockOp | Callable[[dict | None], BlockOp], source, output: str | Path, *, axes: str | None = None,
                  voxel_size: Sequence[float] | None = None, chunks: Sequence[int] | None = None,
                  scheduler: str = "threads", n_workers: int | None = None, threads_per_worker: int | None = None,
                  memory_limit: str | int | None = None, levels: int | None = None, factors: Sequence[int] | None = None,
                  compression: str | None = "blosc", overwrite: bool = False, quiet: bool = True,
                  key: Any = None, timeout: float = 10.0, _stop_after: int | None = None) -> dict:
    """Run a blockwise operation from ``source`` into a resumable OME-Zarr at ``output``.

    Parameters
    ----------
    op : BlockOp or callable
        The operation, or a builder ``build(resolved: dict | None) -> BlockOp`` that takes its global
        decisions when ``resolved`` is None (fresh run) and re-uses them when resuming.
    source : path, LazyImage, ImageData, dask or numpy array
        The input (a path is opened lazily: TIFF memory-mapped, OME-Zarr chunk by chunk).
    output : path
        ``.ome.zarr`` folder. Same computation already there: resumed (or returned at once when
        complete). Anything else there: refused unless ``overwrite``. A path input is identified by
        a streamed SHA-256 of its content, so a changed input is never resumed into. The output is
        locked (:func:`fluorecon.scale.ome_zarr_out.store_lock`) while the run lasts.
    axes, voxel_size : override / supply the input's axes (canonical order) and voxel size (µm).
    chunks : tuple of int, optional
        Output chunks = processing blocks (default: :func:`choose_chunks` from the halo and memory).
    scheduler, n_workers, threads_per_worker, memory_limit, timeout
        See :func:`fluorecon.scale.schedulers.get_compute`.
    levels, factors, compression
        Pyramid and storage (see :class:`fluorecon.scale.ome_zarr_out.OutputStore`).
    key : any JSON-able
        The user-facing description of the computation (operation + parameters) that identifies it for
        resuming; default: ``op.name`` and ``op.resolved``.

    Returns
    -------
    dict
        ``output``, ``shape``, ``axes``, ``voxel_size``, ``chunks``, ``halo``, ``n_chunks``,
        ``chunks_written``, ``chunks_skipped``, ``resumed``, ``levels``, ``seconds``,
        ``voxels_per_s``, ``resolved``, ``scheduler``.

    Examples
    --------
    >>> import tempfile, pathlib, functools
    >>> from scipy import ndimage
    >>> op = BlockOp("smooth", functools.partial(ndimage.gaussian_filter, sigma=1.0), halo=(6, 6))
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "s.ome.zarr"
    >>> info = run_blockwise(op, np.random.default_rng(0).random((64, 64)), out, axes="YX", chunks=(32, 32), levels=1)
    >>> info["n_chunks"], info["chunks_written"]
    (4, 4)
    """
    t0 = time.perf_counter()
    reader, axes_c, vs_src, src_desc = _as_reader(source, axes)
    vs = tuple(float(v) for v in voxel_size) if voxel_size is not None else vs_src
    sp = _spatial(axes_c)
    if len(axes_c) != len(reader.shape) or "Y" not in sp or "X" not in sp:
        raise FluoreconError(f"axes {axes_c!r} do not fit the input of shape {tuple(reader.shape)}",
                             hint="give canonical axes (T C Z Y X order) with one letter per dimension")
    if vs is not None and len(vs) != len(sp):
        raise FluoreconError(f"voxel size {vs} does not fit the spatial axes {sp!r}", hint=f"give {len(sp)} sizes in µm")
    output = Path(output)
    if not str(output).lower().rstrip("/").endswith(".zarr"):
        raise FluoreconError(f"out-of-core output must be an OME-Zarr folder ending in .zarr, got {output}",
                             hint="e.g. -o result.ome.zarr")
    if isinstance(source, (str, Path)) and Path(source).resolve() == output.resolve():
        raise FluoreconError(f"output {output} is the input", hint="write to another path; inputs are never modified")

    from fluorecon.scale.ome_zarr_out import store_lock

    with store_lock(output):
        return _run_locked(op, output, reader, axes_c, vs, src_desc, sp, t0, chunks=chunks, scheduler=scheduler,
                           n_workers=n_workers, threads_per_worker=threads_per_worker, memory_limit=memory_limit,
                           levels=levels, factors=factors, compression=compression, overwrite=overwrite,
                           quiet=quiet, key=key, timeout=timeout, _stop_after=_stop_after)


def _run_locked(op, output: Path, reader, axes_c: str, vs, src_desc: dict, sp: str, t0: float, *, chunks, scheduler,
                n_workers, threads_per_worker, memory_limit, levels, factors, compression, overwrite, quiet, key,
                timeout, _stop_after) -> dict:
    """The body of :func:`run_blockwise`, run while holding the output's lock."""
    from fluorecon.scale.ome_zarr_out import OutputStore, build_pyramid
    from fluorecon.scale.schedulers import get_compute, parse_memory

    builder = op if not isinstance(op, BlockOp) else (lambda resolved: op)
    user_key = key if key is not None else (op.name, op.resolved) if isinstance(op, BlockOp) else None
    fp = fingerprint("fluorecon.scale/1", src_desc, axes_c, vs, user_key,
                     None if chunks is None else list(chunks), levels, factors)

    state = peek_state(output)
    resumed = bool(state and state.get("fingerprint") == fp and not overwrite)
    if state and not resumed and not overwrite and not state.get("complete"):
        old_src = state.get("source") if isinstance(state.get("source"), dict) else {}
        if old_src.get("path") and old_src.get("path") == src_desc.get("path") and old_src.get("sha256") != src_desc.get("sha256"):
            raise FluoreconError(f"cannot resume {output}: the input {src_desc.get('path')} has changed since the "
                                 "interrupted run (its content hash differs)",
                                 hint="pass --overwrite to start again from the new input, or restore the original input")
    if resumed and state.get("complete"):
        return {"output": str(output), "complete": True, "resumed": True, "chunks_written": 0,
                "chunks_skipped": None, "resolved": state.get("resolved"), "seconds": time.perf_counter() - t0,
                "shape": state.get("shape"), "axes": axes_c, "voxel_size": vs, "note": "already complete"}
    if output.exists() and not resumed and not overwrite and not (output.is_dir() and not any(output.iterdir())):
        # Refuse before any expensive global decision (calibration, training) is made.
        what = ("a different result (other input, operation or parameters)" if state is not None
                else "data that fluorecon did not write" if output.is_dir() else "a file")
        raise FluoreconError(f"output {output} already holds {what}",
                             hint="choose another output path or pass overwrite=True (--overwrite)")
    import dask

    from fluorecon.scale.ome_zarr_out import chunk_regions

    # Connect first: a dead scheduler address fails before anything is written.
    with get_compute(scheduler, n_workers=n_workers, threads_per_worker=threads_per_worker, memory_limit=memory_limit,
                     timeout=timeout, quiet=quiet, progress=not quiet) as compute:
        t_ready = time.perf_counter()
        blockop = builder(state.get("resolved") if resumed else None)
        zf = int(blockop.z_factor)
        halo_sp = _halo_tuple(blockop.halo, len(sp))
        out_shape = _out_shape(reader.shape, axes_c, zf)
        if resumed:
            ch = tuple(state["chunks"])
        elif chunks is not None or blockop.block_shape is not None:
            if chunks is None:
                bs = iter(blockop.block_shape)
                chunks = tuple(1 if a not in SPATIAL else min(n, int(next(bs))) for a, n in zip(axes_c, out_shape, strict=True))
            ch = tuple(int(c) for c in chunks)
            if len(ch) != len(axes_c) or any(c < 1 for c in ch):
                raise FluoreconError(f"chunks {ch} do not fit axes {axes_c!r}", hint=f"give {len(axes_c)} positive sizes")
            ch = tuple(1 if a in "TC" else c for a, c in zip(axes_c, ch, strict=True))
        else:
            ch = choose_chunks(out_shape, axes_c, halo_sp, z_factor=zf, memory_limit=parse_memory(memory_limit),
                               memory_factor=blockop.memory_factor, threads=int(threads_per_worker or 1))
        out_vs = vs
        if vs is not None and zf > 1 and "Z" in sp:
            out_vs = tuple(v / zf if a == "Z" else v for a, v in zip(sp, vs, strict=True))
        store = OutputStore(output, out_shape, axes_c, out_vs, ch, fp, levels=levels, factors=factors,
                            compression=compression, overwrite=overwrite,
                            attrs={"operation": blockop.name, "resolved": _jsonable(blockop.resolved),
                                   "halo": list(halo_sp), "shape": list(out_shape), "source": _jsonable(src_desc),
                                   "z_factor": zf})
        halo_full = {i: halo_sp[sp.index(a)] for i, a in enumerate(axes_c) if a in SPATIAL}
        pending = store.pending(0)
        n_all = len(chunk_regions(store.level_shape(0), store.level_chunks(0)))
        if _stop_after is not None:  # testing hook: simulate an interruption after N chunks
            pending = pending[:_stop_after]
        tasks = []
        # The reader and the block functions (which carry the global decisions, e.g. a PSF) become one
        # graph node each: a distributed worker receives them once, not once per block.
        reader_node = dask.delayed(reader, pure=False, traverse=False)
        fn_nodes: dict[Any, Any] = {}
        for idx, out_sl in pending:
            in_key, crop, channel = _in_region(out_sl, axes_c, reader.shape, halo_full, zf)
            if channel not in fn_nodes:
                fn_nodes[channel] = dask.delayed(blockop.fn_for(channel), pure=False, traverse=False)
            tasks.append(dask.delayed(_block_task, pure=False)(reader_node, str(output), idx, out_sl, in_key, crop,
                                                              fn_nodes[channel]))
        t1 = time.perf_counter()
        if tasks:
            compute(tasks)
        t2 = time.perf_counter()
        if _stop_after is not None:
            raise FluoreconError(f"run stopped after {_stop_after} chunks (test hook)", hint="re-run to resume")
        build_pyramid(store, compute)
        t3 = time.perf_counter()
    seconds = time.perf_counter() - t0
    store.mark_complete({"seconds_last_run": seconds})
    n_vox_written = sum(math.prod(s.stop - s.start for s in sl) for _, sl in pending)
    return {"output": str(output), "complete": True, "operation": blockop.name, "shape": list(out_shape),
            "axes": axes_c, "voxel_size": list(out_vs) if out_vs else None, "chunks": list(ch), "halo": list(halo_sp),
            "n_chunks": n_all, "chunks_written": len(tasks), "chunks_skipped": n_all - len(tasks),
            "resumed": resumed, "levels": store.levels, "seconds": seconds,
            "timing": {"scheduler_start_s": t_ready - t0, "setup_s": t1 - t_ready, "blocks_s": t2 - t1,
                       "pyramid_s": t3 - t2},
            "voxels_per_s": (n_vox_written / (t2 - t1)) if tasks and t2 > t1 else None,
            "resolved": _jsonable(blockop.resolved), "scheduler": scheduler}
