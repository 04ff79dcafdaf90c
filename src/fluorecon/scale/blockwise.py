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

__all__ = ["BlockOp", "TimeChunkOp", "choose_chunks", "map_blocks_halo", "run_blockwise", "run_time_chunks", "sample_view",
           "time_chunk_runs"]

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


def _check_output(source: Any, output: str | Path) -> Path:
    """The output as a Path: an OME-Zarr folder (``.zarr``) that is not the input itself."""
    output = Path(output)
    if not str(output).lower().rstrip("/").endswith(".zarr"):
        raise FluoreconError(f"out-of-core output must be an OME-Zarr folder ending in .zarr, got {output}",
                             hint="e.g. -o result.ome.zarr")
    if isinstance(source, (str, Path)) and Path(source).resolve() == output.resolve():
        raise FluoreconError(f"output {output} is the input", hint="write to another path; inputs are never modified")
    return output


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
    output = _check_output(source, output)

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
        warm = getattr(compute, "warm", None)
        if warm is not None and pending:  # a fresh worker's first-call costs, paid on a small real block
            k0, _, c0 = _in_region(pending[0][1], axes_c, reader.shape, halo_full, zf)
            k0 = tuple(slice(k.start, min(k.stop, k.start + 2 * halo_full[i] + 16)) if isinstance(k, slice) else k
                       for i, k in enumerate(k0))
            warm(blockop.fn_for(c0), np.asarray(reader[k0], dtype=np.float32))
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


# ------------------------------------------------------------------------------ chunks in time (T)
@dataclass
class TimeChunkOp:
    """A movie operation that needs context in time: restored chunk by chunk along ``T``.

    A spatial block (:class:`BlockOp`) sees one frame; a temporal method (a (t, y, x) network, a
    recurrent net) needs its neighbours in time. :func:`run_time_chunks` hands ``fn`` runs of
    ``chunk`` whole frames, consecutive runs sharing ``2·margin + ramp`` frames (the earlier run
    weighted 1 on the first ``margin`` shared frames, a linear ramp, 0 on the last ``margin``), so a
    frame is only taken from runs in which it lies at least ``margin`` frames from a cut
    (:func:`fluorecon.learn.temporal.chunk_weights`).

    Attributes
    ----------
    name : str
        Operation name (recorded in the output).
    fn : callable
        ``fn(frames, t0) -> frames`` on a float32 ``(t, Y, X)`` run starting at frame ``t0`` of the movie.
    margin : int
        Frames next to a cut that are not used (≥ the method's temporal reach makes the result exact).
    resolved : dict
        JSON-able global decisions (stored in the output; a resumed run rebuilds ``fn`` from them).
    chunk : int
        Frames per run (≥ ``2 · (2·margin + ramp)``); memory is one run, whatever the movie's length.
    ramp : int
        Frames of the linear cross-fade between runs.
    """

    name: str
    fn: Callable[[np.ndarray, int], np.ndarray]
    margin: int
    resolved: dict = field(default_factory=dict)
    chunk: int = 64
    ramp: int = 8

    @property
    def overlap(self) -> int:
        return 2 * int(self.margin) + int(self.ramp)

    @property
    def step(self) -> int:
        return int(self.chunk) - self.overlap


def _sliceable(source: Any) -> bool:
    import dask.array as da

    from fluorecon.io import ImageData
    from fluorecon.scale.lazy import LazyImage

    return (hasattr(source, "shape") and hasattr(source, "__getitem__") and type(source) is not np.ndarray
            and not isinstance(source, (str, Path, LazyImage, ImageData, da.Array)))


def time_chunk_runs(n_frames: int, chunk: int, overlap: int) -> list[tuple[int, int]]:
    """``(start, stop)`` of the runs of :func:`run_time_chunks`: run ``k`` starts at ``k · (chunk − overlap)``.

    Run ``k`` finalises the output frames ``[k·step, (k+1)·step)`` (the last run: up to the end).

    Examples
    --------
    >>> time_chunk_runs(100, 40, 10)
    [(0, 40), (30, 70), (60, 100)]
    >>> time_chunk_runs(30, 40, 10)
    [(0, 30)]
    """
    n, c, ov = int(n_frames), int(chunk), int(overlap)
    if n <= c:
        return [(0, n)]
    if c < 2 * ov:
        raise FluoreconError(f"runs of {c} frames are too short for an overlap of {ov} frames",
                             hint=f"chunk ≥ {2 * ov} frames (or a smaller margin / ramp)")
    step = c - ov
    runs, start = [], 0
    while True:
        stop = min(start + c, n)
        runs.append((start, stop))
        if stop >= n:
            return runs
        start += step


def run_time_chunks(op: TimeChunkOp | Callable[[dict | None], TimeChunkOp], source, output: str | Path, *,
                    axes: str | None = None, voxel_size: Sequence[float] | None = None,
                    levels: int | None = None, compression: str | None = "blosc", overwrite: bool = False,
                    key: Any = None, quiet: bool = True, _stop_after: int | None = None) -> dict:
    """Run a temporal operation on a ``TYX`` movie out of core, in runs of whole frames along ``T``.

    Memory holds one run of ``op.chunk`` frames, its restoration and the ``overlap`` frames waiting
    to be blended, whatever the movie's length: the input is read run by run (a TIFF memory map or
    an OME-Zarr, chunk by chunk) and the output written as resumable OME-Zarr chunks of ``op.step``
    frames. Run ``k`` completes exactly output chunk ``k`` (the frames it shares with run ``k + 1``
    wait for it); a resumed run restarts at the first unfinished chunk and recomputes the run before
    it for the pending overlap. The runs go one after the other in this process (a temporal network
    parallelises inside itself); ``--scheduler`` choices are not used here.

    Parameters
    ----------
    op : TimeChunkOp or callable
        The operation, or a builder ``build(resolved) -> TimeChunkOp`` that takes its global decisions
        (training a network on central frames) when ``resolved`` is None and re-uses them on resume.
    source : path, LazyImage, ImageData, dask or numpy array
        ``TYX`` movie.
    output : path
        ``.ome.zarr`` folder (resumable, locked while running; refused when it holds something else
        unless ``overwrite``).
    axes, voxel_size, levels, compression, overwrite, key
        As for :func:`run_blockwise`.

    Returns
    -------
    dict
        ``output``, ``complete``, ``shape``, ``axes``, ``chunks``, ``runs``, ``runs_done``,
        ``chunks_written``, ``chunks_skipped``, ``resumed``, ``margin``, ``overlap``, ``resolved``,
        ``seconds``, ``frames_per_s``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from scipy import ndimage
    >>> f = lambda x, t0: ndimage.uniform_filter1d(x, 5, axis=0, mode="nearest")     # temporal radius 2
    >>> m = np.random.default_rng(0).random((100, 8, 8)).astype(np.float32)
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "m.ome.zarr"
    >>> info = run_time_chunks(TimeChunkOp("smooth-t", f, margin=2, chunk=30, ramp=4), m, out, axes="TYX", levels=1)
    >>> import zarr; y = zarr.open_group(str(out))["0"][:]
    >>> info["runs"], bool(np.allclose(y, f(m, 0), atol=1e-6))
    (5, True)
    """
    t_start = time.perf_counter()
    if _sliceable(source):
        # a zarr array / memory map given directly: read run by run, never as a whole
        reader, axes_c, vs_src = source, (axes or "TYX"), None
        src_desc = {"array_like": type(source).__name__, "shape": list(source.shape),
                    "store": str(getattr(source, "store_path", getattr(source, "filename", "")))}
    else:
        reader, axes_c, vs_src, src_desc = _as_reader(source, axes)
    if axes_c != "TYX" or len(reader.shape) != 3:
        raise FluoreconError(f"chunks in time need a TYX movie, got axes {axes_c!r} and shape {tuple(reader.shape)}",
                             hint="give --axes TYX (time first; one channel / plane per movie)")
    vs = tuple(float(v) for v in voxel_size)[-2:] if voxel_size is not None else vs_src
    output = _check_output(source, output)

    from fluorecon.learn.temporal import chunk_weights  # the in-memory driver's weights: one definition
    from fluorecon.scale.ome_zarr_out import OutputStore, build_pyramid, chunk_id, store_lock, write_chunk
    from fluorecon.scale.schedulers import get_compute

    builder = op if not isinstance(op, TimeChunkOp) else (lambda resolved: op)
    user_key = key if key is not None else (op.name, op.resolved) if isinstance(op, TimeChunkOp) else None
    fp = fingerprint("fluorecon.scale.time/1", src_desc, axes_c, vs, user_key, levels)
    with store_lock(output):
        state = peek_state(output)
        resumed = bool(state and state.get("fingerprint") == fp and not overwrite)
        if resumed and state.get("complete"):
            return {"output": str(output), "complete": True, "resumed": True, "chunks_written": 0,
                    "resolved": state.get("resolved"), "shape": state.get("shape"), "axes": axes_c,
                    "seconds": time.perf_counter() - t_start, "note": "already complete"}
        if output.exists() and not resumed and not overwrite and not (output.is_dir() and not any(output.iterdir())):
            what = ("a different result (other input, operation or parameters)" if state is not None
                    else "data that fluorecon did not write" if output.is_dir() else "a file")
            raise FluoreconError(f"output {output} already holds {what}",
                                 hint="choose another output path or pass overwrite=True (--overwrite)")
        top = builder(state.get("resolved") if resumed else None)
        shape = tuple(int(v) for v in reader.shape)
        ov, step = top.overlap, top.step
        runs = time_chunk_runs(shape[0], top.chunk, ov)
        ct = step if len(runs) > 1 else shape[0]
        ch = (ct, shape[1], shape[2])
        store = OutputStore(output, shape, axes_c, vs, ch, fp, levels=levels, compression=compression,
                            overwrite=overwrite, attrs={"operation": top.name, "resolved": _jsonable(top.resolved),
                                                        "shape": list(shape), "source": _jsonable(src_desc),
                                                        "time_chunks": {"chunk": top.chunk, "margin": top.margin,
                                                                        "ramp": top.ramp}})
        done = store.done_chunks(0)
        n_out = -(-shape[0] // ct)
        todo = [k for k in range(n_out) if chunk_id((k, 0, 0)) not in done]
        # the run that completes the first unfinished output chunk (the last run completes two)
        first = min(todo[0], len(runs) - 1) if todo else len(runs)
        w = chunk_weights(ov, top.margin)[:, None, None] if len(runs) > 1 else None
        written = 0

        def emit(a: int, b: int, data: np.ndarray) -> None:
            # output chunk k holds frames [k·ct, (k+1)·ct): write the ones [a, b) completes
            nonlocal written
            for k in range(a // ct, -(-b // ct)):
                lo, hi = k * ct, min((k + 1) * ct, shape[0])
                if lo >= a and hi <= b and chunk_id((k, 0, 0)) not in done:
                    write_chunk(str(output), 0, (k, 0, 0), (slice(lo, hi), slice(0, shape[1]), slice(0, shape[2])),
                                data[lo - a:hi - a])
                    written += 1

        pending: np.ndarray | None = None
        runs_done = 0
        t_runs = time.perf_counter()
        for k in range(max(first - 1, 0), len(runs) if todo else 0):
            a, b = runs[k]
            r = np.asarray(top.fn(np.asarray(reader[a:b], np.float32), a), np.float32)
            if r.shape != (b - a, *shape[1:]):
                raise FluoreconError(f"{top.name} returned shape {r.shape} for frames {a}:{b}",
                                     hint="the operation must keep the frames' shape")
            runs_done += 1
            if pending is not None:
                r[:ov] = pending + (1.0 - w) * r[:ov]
            if b >= shape[0]:
                emit(a, b, r)
                pending = None
            else:
                if k >= first:
                    emit(a, b - ov, r[:-ov])
                pending = w * r[-ov:]
            if _stop_after is not None and runs_done >= _stop_after:
                raise FluoreconError(f"run stopped after {_stop_after} runs (test hook)", hint="re-run to resume")
        t_done = time.perf_counter()
        with get_compute("threads", quiet=True) as compute:
            build_pyramid(store, compute)
    store.mark_complete({"seconds_last_run": time.perf_counter() - t_start})
    return {"output": str(output), "complete": True, "operation": top.name, "shape": list(shape), "axes": axes_c,
            "voxel_size": list(vs) if vs else None, "chunks": list(ch), "runs": len(runs), "runs_done": runs_done,
            "chunks_written": written, "chunks_skipped": n_out - written, "resumed": resumed,
            "margin": int(top.margin), "overlap": ov, "levels": store.levels, "resolved": _jsonable(top.resolved),
            "seconds": time.perf_counter() - t_start,
            "frames_per_s": (sum(b - a for a, b in runs) / (t_done - t_runs)) if runs_done and t_done > t_runs else None}
