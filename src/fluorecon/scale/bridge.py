"""The CLI bridge: what ``fluorecon deconvolve|denoise|predict|isotropic ... -o out.ome.zarr`` calls.

Examples
--------
>>> import tempfile, pathlib, numpy as np
>>> from fluorecon.io import write_image
>>> from fluorecon.physics.psf import gaussian_psf
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> write_image(d / "in.ome.zarr", np.random.default_rng(0).random((8, 32, 32)).astype(np.float32), axes="ZYX")
>>> info = run_out_of_core("deconvolve", d / "in.ome.zarr", d / "out.ome.zarr",
...                        {"psf": gaussian_psf((5, 5, 5), 1.0), "iterations": 3}, quiet=True)
>>> info["complete"], info["shape"]
(True, [8, 32, 32])
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fluorecon.errors import FluoreconError
from fluorecon.io import ImageData, read_image
from fluorecon.scale.blockwise import _jsonable, run_blockwise
from fluorecon.scale.lazy import open_lazy
from fluorecon.scale.operations import BUILDERS
from fluorecon.scale.taskop import run_task_out_of_core
from fluorecon.tasks import registry
from fluorecon.tasks.contract import Task

__all__ = ["OPERATIONS", "run_out_of_core", "wants_out_of_core"]

OPERATIONS = ("denoise", "deconvolve", "predict", "isotropic")
#: operations run by the registered task through the generic adapter (:mod:`fluorecon.scale.taskop`)
TASK_OPERATIONS = ("denoise", "deconvolve", "isotropic")


def _split_task_params(task: Task, params: dict) -> tuple[dict, dict, Any]:
    """Split a flat params dict into the task's ``Params`` values, its extra inputs and a voxel size.

    Arrays or file paths under an input's name (``psf``, ``model``) become that input; unknown keys
    are refused with the task's parameter names.
    """
    fields = set(task.Params.model_fields)
    specs = {s.name: s for s in task.inputs[1:]}
    values: dict[str, Any] = {}
    inputs: dict[str, Any] = {}
    vs = None
    unknown = []
    for k, v in params.items():
        if k == "voxel_size":
            vs = v
        elif k in specs and v is not None:
            spec = specs[k]
            if spec.kind == "path":
                inputs[k] = Path(v)
            elif isinstance(v, str | Path):
                inputs[k] = read_image(v)
            else:
                arr = np.asarray(v, np.float32)  # an array given here is used as is (already prepared)
                inputs[k] = ImageData(arr, "ZYX"[-arr.ndim:] if arr.ndim <= 3 else "", None, {"prepared": True})
        elif k in fields:
            values[k] = v
        elif k not in specs:
            unknown.append(k)
    if unknown:
        raise FluoreconError(f"unknown {task.name} parameter(s) {sorted(unknown)}",
                             hint=f"use {sorted(fields | set(specs))}")
    return task.params(**values), inputs, vs


def wants_out_of_core(output: str | Path | None, scheduler: str | None) -> bool:
    """True when a command should go through :func:`run_out_of_core` (``--scheduler`` given or a
    ``.zarr`` output).

    Examples
    --------
    >>> wants_out_of_core("out.ome.zarr", None), wants_out_of_core("out.tif", None)
    (True, False)
    """
    return scheduler is not None or (output is not None and str(output).lower().rstrip("/").endswith(".zarr"))


def run_out_of_core(operation: str, input: str | Path, output: Path, params: dict, scheduler: str = "threads",
                    overwrite: bool = False, quiet: bool = False, chunks=None, n_workers=None,
                    threads_per_worker=None, memory_limit=None, *, axes: str | None = None,
                    voxel_size=None, levels: int | None = None, compression: str | None = "blosc",
                    timeout: float = 10.0, allow_missing_chunks: bool = False) -> dict[str, Any]:
    """Run ``operation`` on ``input`` (TIFF or OME-Zarr, opened lazily) into an OME-Zarr ``output``.

    Parameters
    ----------
    operation : {"denoise", "deconvolve", "predict", "isotropic"}
    input : path
        TIFF (memory-mapped when possible) or OME-Zarr (NGFF 0.4/0.5).
    output : path
        ``.ome.zarr`` folder: written chunk by chunk with a local-mean pyramid; resumable (re-run the
        same command after an interruption); refused when it holds something else unless ``overwrite``.
    params : dict
        Operation parameters (see ``fluorecon.scale.operations``): deconvolve — ``psf`` (array or
        file), ``method``, ``iterations`` (int or "auto"), ``stop``, ``background``, ...; denoise —
        ``method`` + the denoiser's options (+ ``halo``); predict — ``model`` (bundle folder),
        ``tile``, ``tta``; isotropic — ``model``, ``method``, ``z_factor``.
    scheduler : str
        ``threads`` | ``processes`` | ``distributed`` (LocalCluster) | address of a dask scheduler.
    chunks : tuple of int, optional
        Output chunk = processing block (canonical axes order); default chosen from the halo and
        ``memory_limit``.
    n_workers, threads_per_worker, memory_limit
        Workers (threads for ``threads``), threads per worker and memory per worker (``"2GB"``).
    axes, voxel_size : override the input's axes / voxel size (µm).
    levels : int, optional
        Pyramid levels (default: until the largest downsampled axis ≤ 256).
    allow_missing_chunks : bool
        Accept an input zarr whose writer skipped all-fill chunks (else missing chunks are an error).

    Returns
    -------
    dict
        JSON-able summary: ``output``, ``complete``, ``shape``, ``axes``, ``voxel_size``, ``chunks``,
        ``halo``, ``n_chunks``, ``chunks_written``, ``chunks_skipped``, ``resumed``, ``seconds``,
        ``voxels_per_s``, ``resolved`` (the global decisions), ``scheduler``.

    Raises
    ------
    FluoreconError
        Unknown operation, bad input (not OME-NGFF, missing chunks), an output holding something
        else, a scheduler address that does not answer within ``timeout`` seconds, ...
    """
    if operation not in OPERATIONS:
        raise FluoreconError(f"unknown out-of-core operation {operation!r}", hint=f"use one of {', '.join(OPERATIONS)}")
    if not isinstance(params, dict):
        raise FluoreconError(f"params must be a dict, got {type(params).__name__}", hint="e.g. {'psf': psf, 'iterations': 20}")
    if operation in TASK_OPERATIONS:
        task = registry.get(operation)
        tparams, inputs, vs_param = _split_task_params(task, params)
        return run_task_out_of_core(task, input, output, tparams, inputs=inputs, scheduler=scheduler,
                                    overwrite=overwrite, quiet=quiet, chunks=chunks, n_workers=n_workers,
                                    threads_per_worker=threads_per_worker, memory_limit=memory_limit, axes=axes,
                                    voxel_size=voxel_size if voxel_size is not None else vs_param, levels=levels,
                                    compression=compression, timeout=timeout, allow_missing_chunks=allow_missing_chunks)
    output = Path(output)
    _, img = open_lazy(input, axes=axes, allow_missing_chunks=allow_missing_chunks)
    if voxel_size is None and params.get("voxel_size") is not None:
        voxel_size = params["voxel_size"]  # the commands pass --voxel-size inside params
    vs = tuple(float(v) for v in voxel_size)[-len(img.spatial_axes):] if voxel_size is not None else img.voxel_size
    key = {"operation": operation, "params": _jsonable(params)}
    builder = BUILDERS[operation](params, img.reader, img.axes, vs)
    info = run_blockwise(builder, img, output, voxel_size=vs, chunks=chunks, scheduler=scheduler, n_workers=n_workers,
                         threads_per_worker=threads_per_worker, memory_limit=memory_limit, levels=levels,
                         compression=compression, overwrite=overwrite, quiet=quiet, key=key, timeout=timeout)
    info["operation"] = operation
    info["input"] = str(input)
    return info
