"""Operation builders that are not registered tasks (learned prediction with a saved bundle) as
:class:`~fluorecon.scale.blockwise.BlockOp`, with their global decisions taken once.

Registered tasks (denoise, deconvolve, isotropic, ...) run out of core through the one generic adapter
:mod:`fluorecon.scale.taskop` (their own ``plan``/``apply_block``); nothing of theirs is repeated here.

Each builder has the form ``build(params, reader, axes, voxel_size) -> builder(resolved)`` where
``builder(None)`` takes the global decisions on a central sample (or an exact streaming statistic)
and ``builder(resolved)`` rebuilds the identical operation from the stored decisions (resume).

The block functions are module-level (picklable) so that the processes and distributed schedulers
can ship them; a learned model is loaded once per worker process (:func:`load_bundle_cached`).
"""

from __future__ import annotations

import functools
import threading
from pathlib import Path
from typing import Any

import numpy as np

from fluorecon.errors import FluoreconError
from fluorecon.scale.blockwise import BlockOp

__all__ = ["BUILDERS", "bundle_loads", "load_bundle_cached"]

SPATIAL = "ZYX"


def _sp(axes: str) -> str:
    return "".join(a for a in axes if a in SPATIAL)


# ------------------------------------------------------------------------------ learned prediction
_BUNDLES: dict[tuple[str, float], Any] = {}
_BUNDLES_LOCK = threading.Lock()
_LOADS = {"n": 0}


def load_bundle_cached(path: str | Path):
    """Load a bundle once per process (keyed by path and modification time).

    Examples
    --------
    >>> bundle_loads() >= 0
    True
    """
    from fluorecon.learn.bundle import Bundle

    p = Path(path).resolve()
    j = p / "bundle.json"
    key = (str(p), j.stat().st_mtime if j.exists() else 0.0)
    with _BUNDLES_LOCK:
        b = _BUNDLES.get(key)
        if b is None:
            b = _BUNDLES[key] = Bundle.load(p)
            _LOADS["n"] += 1
        return b


def bundle_loads() -> int:
    """How many times this process has loaded a bundle from disk (for tests / diagnostics)."""
    return _LOADS["n"]


def _predict_block(block: np.ndarray, bundle_path: str, axes: str, kwargs: dict) -> np.ndarray:
    from fluorecon.learn.predict import predict

    bundle = load_bundle_cached(bundle_path)
    return np.asarray(predict(bundle, block, axes, **kwargs), np.float32)


def predict_builder(params: dict, reader, axes: str, voxel_size):
    """Learned restoration with a saved bundle. ``params``: ``model`` (bundle folder, required),
    ``tile`` (default None: one tile per block), ``tta``, ``halo`` (default: the network's
    receptive radius). The bundle's normaliser was fitted at training time, so no per-block
    statistics are involved."""
    sp = _sp(axes)
    p = dict(params)
    model = p.pop("model", None) or p.pop("bundle", None)
    if model is None:
        raise FluoreconError("prediction needs a trained bundle (params['model'])", hint="pass --model BUNDLE_DIR")
    mp = Path(model)
    if not (mp / "bundle.json").exists():
        raise FluoreconError(f"{mp} is not a fluorecon bundle (no bundle.json)", hint="train one with `fluorecon train`")
    halo = p.pop("halo", None)
    kwargs = {"tile": p.pop("tile", None), "tta": bool(p.pop("tta", False)), "device": p.pop("device", "cpu"),
              "batch_size": int(p.pop("batch_size", 4))}
    if p:
        raise FluoreconError(f"unknown prediction parameter(s) {sorted(p)}", hint="use model, tile, tta, halo, device, batch_size")

    def build(resolved: dict | None) -> BlockOp:
        if resolved is None:
            b = load_bundle_cached(mp)
            m = b.model
            dim = int(getattr(m, "dim", 2))
            cin = int(m.config().get("in_channels", 1)) if hasattr(m, "config") else 1
            if cin != 1:
                raise FluoreconError(f"out-of-core prediction supports single-channel-input models; this one takes {cin}",
                                     hint="predict in memory (no --scheduler / .zarr output)")
            rad = int(getattr(m, "receptive_radius", 32))
            if halo is not None:
                h = [int(halo)] * len(sp)
            else:
                h = [rad] * len(sp)
                if dim == 2 and "Z" in sp:
                    h[0] = 0  # a 2D model sees one plane at a time
            width = int(m.config().get("width", 32)) if hasattr(m, "config") else 32
            resolved = {"model": str(mp.resolve()), "dim": dim, "halo": h, "kwargs": kwargs,
                        "sha256": _bundle_digest(mp), "memory_factor": float(max(16, 8 * width))}
        fn = functools.partial(_predict_block, bundle_path=resolved["model"], axes=sp, kwargs=resolved["kwargs"])
        # Activations of the network dominate: several feature maps of `width` channels per voxel.
        return BlockOp("predict", fn, halo=tuple(resolved["halo"]), resolved=resolved,
                       memory_factor=float(resolved.get("memory_factor", 256.0)))

    return build


def _bundle_digest(p: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    for f in sorted(p.glob("*")):
        if f.is_file() and f.suffix in (".json", ".safetensors"):
            h.update(f.name.encode())
            h.update(f.read_bytes())
    return h.hexdigest()[:16]


BUILDERS = {"predict": predict_builder}
