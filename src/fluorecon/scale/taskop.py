"""The one out-of-core adapter: any registered task with ``plan``/``apply_block`` runs blockwise.

:func:`run_task_out_of_core` opens the input lazily and, per channel, lets the task take its global
decisions once on a central sample (``task.plan``), stores them (JSON) in the output so that a resumed
run replays them, and runs ``task.apply_block`` on every block with ``task.block_halo`` around it
(:func:`fluorecon.scale.blockwise.run_blockwise`). The block function is a picklable
``functools.partial(apply_task_block, task_name, resolved)``, so the processes and distributed
schedulers can ship it: each worker looks the task up in the registry.

What ``plan`` receives: ``sample`` is an :class:`~fluorecon.io.ImageData` of the central crop (spatial
axes, the input's voxel size); ``sample.metadata["whole_mean"]()`` streams the exact mean of the whole
channel (for decisions that must not depend on the crop, e.g. deconvolution's initial estimate);
``workdir`` is ``<output>.model`` (per channel ``<output>.model/c<k>`` for several channels), a folder
the task may create for artefacts too large for JSON (a model trained on the sample). Tasks with
extra inputs (a PSF) receive them as ``plan(..., inputs={...})``.

Examples
--------
>>> import tempfile, pathlib, numpy as np
>>> from fluorecon.io import write_image
>>> from fluorecon.tasks.registry import get
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> write_image(d / "in.ome.zarr", np.random.default_rng(0).random((32, 32)).astype(np.float32), axes="YX")
>>> task = get("denoise")
>>> info = run_task_out_of_core(task, d / "in.ome.zarr", d / "out.ome.zarr", task.params(method="tv"), quiet=True)
>>> info["complete"], info["resolved"]["channels"]["None"]["method"]
(True, 'tv')
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fluorecon.errors import FluoreconError
from fluorecon.io import ImageData
from fluorecon.scale.blockwise import BlockOp, _jsonable, run_blockwise, run_time_chunks, sample_view
from fluorecon.scale.lazy import default_chunks, open_lazy
from fluorecon.tasks import registry
from fluorecon.tasks.contract import Task, TaskParams, array_hash, to_json

__all__ = ["apply_task_block", "run_task_out_of_core", "task_builder"]

SPATIAL = "ZYX"


def apply_task_block(task_name: str, resolved: Mapping[str, Any], block: np.ndarray) -> np.ndarray:
    """Apply ``registry.get(task_name).apply_block`` to one block (module level: picklable).

    Examples
    --------
    >>> import numpy as np
    >>> out = apply_task_block("denoise", {"method": "tv", "axes": "YX", "kwargs": {}}, np.ones((8, 8), np.float32))
    >>> out.shape
    (8, 8)
    """
    return np.asarray(registry.get(task_name).apply_block(block, resolved), np.float32)


def _streaming_mean(reader: Any, axes: str, channel: int | None) -> float:
    """Exact mean of one channel, read block by block (bounded memory)."""
    import dask.array as da  # dask is only needed out of core; scale/ already depends on it

    darr = da.from_array(reader, chunks=default_chunks(reader.shape, axes), asarray=True, fancy=False,
                         meta=np.empty((0,) * len(reader.shape), reader.dtype))
    if channel is not None:
        darr = darr[(slice(None),) * axes.index("C") + (channel,)]
    return float(darr.astype(np.float64).mean().compute(scheduler="threads"))


def task_builder(task: Task, params: TaskParams, reader: Any, axes: str, voxel_size: Any, *,
                 workdir: Path | None = None, inputs: Mapping[str, Any] | None = None):
    """A :func:`~fluorecon.scale.blockwise.run_blockwise` builder for ``task``: ``build(resolved)``.

    ``build(None)`` plans (once per channel, on a central sample); ``build(resolved)`` rebuilds the
    same operation from stored decisions (resume).
    """
    if not task.supports_out_of_core():
        raise FluoreconError(f"task {task.name!r} does not run out of core (no plan/apply_block)",
                             hint="process it in memory (write a .tif/.npy output)")
    sp = "".join(a for a in axes if a in SPATIAL)
    channels: list[int | None] = list(range(reader.shape[axes.index("C")])) if "C" in axes else [None]
    vs = tuple(float(v) for v in voxel_size) if voxel_size is not None else None

    def plan_channel(c: int | None) -> dict[str, Any]:
        data = sample_view(reader, axes, index={"C": c} if c is not None else None)
        meta = {"whole_mean": functools.partial(_streaming_mean, reader, axes, c), "channel": c,
                "shape": [int(reader.shape[axes.index(a)]) for a in sp]}
        sample = ImageData(data, sp, vs, meta)
        wd = None
        if workdir is not None:
            wd = Path(workdir) if len(channels) == 1 else Path(workdir) / f"c{c}"
        if inputs:
            return to_json(task.plan(sample, params, wd, inputs=inputs))
        return to_json(task.plan(sample, params, wd))

    def build(resolved: dict | None) -> BlockOp:
        if resolved is None:
            resolved = {"task": task.name, "params": params.to_json(),
                        "channels": {str(c): plan_channel(c) for c in channels}}
        per_ch = {(int(c) if c != "None" else -1): functools.partial(apply_task_block, task.name, r)
                  for c, r in resolved["channels"].items()}
        halos = [task.block_halo(r) for r in resolved["channels"].values()]
        halo = tuple(int(v) for v in np.max([np.broadcast_to(np.asarray(h, int), (len(sp),)) for h in halos], axis=0))
        opts = dict(task.block_options(next(iter(resolved["channels"].values()))))
        opts.setdefault("memory_factor", 8.0)
        bs = opts.get("block_shape")
        if bs is not None:
            opts["block_shape"] = tuple(int(v) for v in np.broadcast_to(np.asarray(bs, int), (len(sp),)))
        return BlockOp(task.name, next(iter(per_ch.values())), halo=halo, resolved=resolved,
                       channel_fns={k: v for k, v in per_ch.items() if k >= 0} or None, **opts)

    return build


def run_task_out_of_core(task: Task | str, input: str | Path, output: str | Path, params: TaskParams | Mapping[str, Any],
                         *, inputs: Mapping[str, Any] | None = None, scheduler: str = "threads",
                         overwrite: bool = False, quiet: bool = False, chunks: Any = None, n_workers: int | None = None,
                         threads_per_worker: int | None = None, memory_limit: Any = None, axes: str | None = None,
                         voxel_size: Any = None, levels: int | None = None, compression: str | None = "blosc",
                         timeout: float = 10.0, allow_missing_chunks: bool = False) -> dict[str, Any]:
    """Run a registered task out of core from ``input`` (TIFF/OME-Zarr, opened lazily) into an OME-Zarr.

    Parameters
    ----------
    task : Task or str
        The task (or its registry name); it must implement ``plan`` and ``apply_block``.
    input, output : path
        Input image; ``.ome.zarr`` output (resumable: re-run the same call after an interruption).
    params : TaskParams or dict
        The task's parameters (a dict is validated into ``task.Params``).
    inputs : dict, optional
        Extra inputs of the task (e.g. ``{"psf": ImageData}``), handed to ``plan(..., inputs=...)``.
    scheduler, overwrite, quiet, chunks, n_workers, threads_per_worker, memory_limit, levels, compression,
    timeout
        See :func:`fluorecon.scale.blockwise.run_blockwise`.
    axes, voxel_size : override the input's axes / voxel size (µm).
    allow_missing_chunks : bool
        Accept an input zarr whose writer skipped all-fill chunks.

    Returns
    -------
    dict
        :func:`~fluorecon.scale.blockwise.run_blockwise`'s summary plus ``operation`` and ``input``;
        ``resolved`` holds ``{"task", "params", "channels": {channel: plan}}``.
    """
    task = registry.get(task) if isinstance(task, str) else task
    p = params if isinstance(params, TaskParams) else task.params(**dict(params))
    output = Path(output)
    _, img = open_lazy(input, axes=axes, allow_missing_chunks=allow_missing_chunks)
    sp = img.spatial_axes
    vs = tuple(float(v) for v in voxel_size)[-len(sp):] if voxel_size is not None else img.voxel_size
    extra_key = {}
    for k, v in (inputs or {}).items():
        arr = getattr(v, "data", v)
        extra_key[k] = array_hash(np.asarray(arr)) if isinstance(arr, np.ndarray) else str(v)
    key = {"operation": task.name, "params": p.to_json(), "inputs": extra_key}
    if hasattr(task, "time_chunk_op"):  # a temporal task: runs of whole frames along T, not spatial blocks
        info = run_time_chunks(task.time_chunk_op(img.reader, p, workdir=Path(str(output) + ".model")), img, output,
                               voxel_size=vs, levels=levels, compression=compression, overwrite=overwrite, quiet=quiet,
                               key=_jsonable(key))
        info.update(operation=task.name, input=str(input))
        return info
    builder = task_builder(task, p, img.reader, img.axes, vs, workdir=Path(str(output) + ".model"), inputs=inputs)
    info = run_blockwise(builder, img, output, voxel_size=vs, chunks=chunks, scheduler=scheduler, n_workers=n_workers,
                         threads_per_worker=threads_per_worker, memory_limit=memory_limit, levels=levels,
                         compression=compression, overwrite=overwrite, quiet=quiet, key=_jsonable(key), timeout=timeout)
    info["operation"] = task.name
    info["input"] = str(input)
    return info
