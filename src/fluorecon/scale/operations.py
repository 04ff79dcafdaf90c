"""Operation builders: deconvolution, denoising, learned prediction and isotropic restoration as
:class:`~fluorecon.scale.blockwise.BlockOp`, with their global decisions taken once.

Each builder has the form ``build(params, reader, axes, voxel_size) -> builder(resolved)`` where
``builder(None)`` takes the global decisions on a central sample (or an exact streaming statistic)
and ``builder(resolved)`` rebuilds the identical operation from the stored decisions (resume).

The block functions are module-level (picklable) so that the processes and distributed schedulers
can ship them; a learned model is loaded once per worker process (:func:`load_bundle_cached`).
"""

from __future__ import annotations

import functools
import math
import threading
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from fluorecon.errors import FluoreconError, FluoreconWarning
from fluorecon.scale.blockwise import BlockOp, sample_view

__all__ = ["BUILDERS", "bundle_loads", "load_bundle_cached"]

SPATIAL = "ZYX"


def _sp(axes: str) -> str:
    return "".join(a for a in axes if a in SPATIAL)


def _channels(reader, axes: str) -> list[int | None]:
    return list(range(reader.shape[axes.index("C")])) if "C" in axes else [None]


def _streaming_mean(reader, axes: str, channel: int | None) -> float:
    """Exact mean of one channel, read block by block (bounded memory)."""
    import dask.array as da

    from fluorecon.scale.lazy import default_chunks

    darr = da.from_array(reader, chunks=default_chunks(reader.shape, axes), asarray=True, fancy=False,
                         meta=np.empty((0,) * len(reader.shape), reader.dtype))
    if channel is not None:
        darr = darr[(slice(None),) * axes.index("C") + (channel,)]
    return float(darr.astype(np.float64).mean().compute(scheduler="threads"))


# ------------------------------------------------------------------------------------ deconvolution
def _load_psf(psf: Any, nd: int) -> np.ndarray:
    if isinstance(psf, (str, Path)):
        from fluorecon.physics import psf as psf_mod

        loader = getattr(psf_mod, "load_psf", None)
        if loader is not None:
            p = loader(str(psf))
        else:  # pragma: no cover - load_psf is part of the physics contract
            from fluorecon.io import read_image

            p = read_image(psf).data
    else:
        p = psf
    p = np.asarray(p, dtype=np.float32)
    if p.ndim > nd or p.size == 0 or not np.isfinite(p).all() or p.sum() <= 0:
        raise FluoreconError(f"PSF of shape {p.shape} does not fit a {nd}-D spatial image (or is empty / not positive)",
                             hint="give a finite, non-negative PSF with at most as many axes as the image's spatial axes")
    return p / p.sum()


def _deconv_block(block: np.ndarray, psf: np.ndarray, params: dict) -> np.ndarray:
    from fluorecon.classical.deconvolve import deconvolve_block

    return np.asarray(deconvolve_block(block, psf, params), np.float32)


def deconvolve_builder(params: dict, reader, axes: str, voxel_size):
    """RL / Wiener deconvolution. ``params``: ``psf`` (array or file, required), ``method`` (rl, rl-tv,
    rl-wb, rl-accel, wiener), ``iterations`` (int or "auto"), ``stop``, ``background`` (float or
    "auto"), ``offset``, ``padding``, ``tv``, ``balance``, ``margin`` (override)."""
    from fluorecon.classical import deconvolve as dc

    sp = _sp(axes)
    known = {"psf", "method", "iterations", "stop", "background", "offset", "padding", "tv", "balance", "margin",
             "max_iterations", "gain", "read_noise", "tol", "tau", "pilot_shape", "device", "psf_model", "na",
             "wavelength", "refractive_index", "voxel_size", "psf_voxel_size", "block_shape", "budget_s", "seed"}
    unknown = set(params) - known
    if unknown:
        raise FluoreconError(f"unknown deconvolution parameter(s) {sorted(unknown)}", hint=f"use {sorted(known)}")
    method = params.get("method", "rl")
    if method == "learned":
        raise FluoreconError("learned deconvolution is not available out of core",
                             hint="use rl, rl-accel, rl-tv, rl-wb or wiener, or run it in memory (a .tif output)")
    if params.get("voxel_size") is not None:
        voxel_size = tuple(float(v) for v in params["voxel_size"])[-len(sp):]
    if params.get("psf") is None and params.get("psf_model") is None:
        raise FluoreconError("deconvolution needs a PSF (params['psf'] or params['psf_model'])",
                             hint="pass --psf FILE or a PSF model")
    if params.get("psf_model") is not None or params.get("psf_voxel_size") is not None:
        from fluorecon.tasks.deconvolve import make_psf_for_image

        spatial_shape = tuple(reader.shape[axes.index(a)] for a in sp)
        src = np.asarray(params["psf"], np.float32) if params.get("psf") is not None and not isinstance(
            params["psf"], (str, Path)) else (_load_psf(params["psf"], len(sp)) if params.get("psf") is not None else None)
        psf, _ = make_psf_for_image(spatial_shape, psf=src, psf_voxel_size=params.get("psf_voxel_size"),
                                    psf_model=params.get("psf_model") if src is None else None, na=params.get("na"),
                                    wavelength=params.get("wavelength"),
                                    refractive_index=params.get("refractive_index") or 1.518, voxel_size=voxel_size)
        psf = _load_psf(psf, len(sp))
    else:
        psf = _load_psf(params["psf"], len(sp))
    block = params.get("block_shape")

    def build(resolved: dict | None) -> BlockOp:
        if resolved is None:
            resolved = _deconv_decide(params, psf, reader, axes, voxel_size, method)
        per_ch = {}
        for c, r in resolved["channels"].items():
            bp = {k: v for k, v in r.items() if k != "margin"}
            per_ch[int(c) if c != "None" else -1] = functools.partial(_deconv_block, psf=psf, params=bp)
        first = next(iter(resolved["channels"].values()))
        margin = tuple(int(m) for m in first["margin"])
        margin = (0,) * (len(sp) - len(margin)) + margin
        fn = next(iter(per_ch.values()))
        return BlockOp("deconvolve", fn, halo=margin, resolved=resolved,
                       channel_fns={k: v for k, v in per_ch.items() if k >= 0} or None, memory_factor=10.0,
                       block_shape=None if block is None else tuple(np.broadcast_to(np.asarray(block, int), (len(sp),))))

    _ = dc
    return build


def _deconv_decide(params, psf, reader, axes, voxel_size, method) -> dict:
    from fluorecon.classical.deconvolve import estimate_background, required_margin, richardson_lucy, wiener

    sp = _sp(axes)
    out: dict[str, Any] = {"method": method, "channels": {}}
    offset = float(params.get("offset", 0.0))
    padding = params.get("padding", "reflect")
    tv = float(params.get("tv", 0.002 if method == "rl-tv" else 0.0))
    for c in _channels(reader, axes):
        sample = sample_view(reader, axes, index={"C": c} if c is not None else None)
        bgp = params.get("background", 0.0)
        bg = estimate_background(sample - offset if offset else sample) if bgp == "auto" else float(bgp)
        iters = params.get("iterations", 20)
        stop = params.get("stop")
        if iters == "auto" and stop is None:
            stop = "auto"
        n_iter = int(params.get("max_iterations", 100)) if iters == "auto" else int(iters)
        alphas, balance, decided_by = None, params.get("balance"), "user"
        if method == "wiener":
            if balance is None:
                _, winfo = wiener(sample, psf, None, offset=offset, background=bg, return_info=True)
                b = winfo["balance"]
                balance = float(np.median(b)) if isinstance(b, list) else float(b)
                decided_by = "central sample"
            n_iter = 1
        elif stop is not None or method == "rl-accel":
            extra = {k: params[k] for k in ("gain", "read_noise", "tol", "tau") if k in params}
            _, pinfo = richardson_lucy(sample, psf, n_iter, padding=padding, background=bg, offset=offset,
                                       accelerate=method == "rl-accel", tv=tv, stop=stop, return_info=True, **extra)
            n_iter = int(pinfo["iterations"])
            if method == "rl-accel":
                alphas = [float(a) for a in pinfo["alphas"][:n_iter]]
            decided_by = f"stopping rule {stop!r} on a central sample of shape {list(sample.shape)}"
        level = max(_streaming_mean(reader, axes, c) - offset - bg, 1e-6)
        if params.get("margin") is not None:
            m = params["margin"]
            margin = [int(m)] * psf.ndim if np.ndim(m) == 0 else [int(v) for v in m]
        elif method == "wiener":
            margin = [4 * (q // 2) + 8 for q in psf.shape]
        else:
            margin = list(required_margin(psf.shape, n_iter, psf=psf))
        out["channels"][str(c)] = {"method": method, "iterations": n_iter, "background": float(bg), "offset": offset,
                                   "padding": padding, "tv": tv, "alphas": alphas, "balance": balance, "init": level,
                                   "voxel_size": list(voxel_size) if voxel_size else None, "margin": margin,
                                   "decided_by": decided_by}
    _ = sp
    return out


# ---------------------------------------------------------------------------------------- denoising
def _denoise_block(block: np.ndarray, axes: str, method: str, kwargs: dict) -> np.ndarray:
    from fluorecon.tasks.denoise import denoise

    out = denoise(block, axes, method=method, **kwargs)
    out = out[0] if isinstance(out, tuple) else out
    return np.asarray(out, np.float32)


_DENOISE_HALO = {"nlm": 16, "bm3d": 24, "wavelet": 32, "tv": 24, "gaussian": 12, "median": 4}


def denoise_builder(params: dict, reader, axes: str, voxel_size):
    """Denoising through ``fluorecon.tasks.denoise.denoise``.

    Classical methods: the data-dependent choices (noise level, calibrated parameters, noise model,
    normalisation) are made once on a central sample; the task reports them in ``info["params"]``
    (keyword arguments that reproduce the run without any estimation) and every block replays them.
    Learned single-image schemes (n2v, ...): the network is trained once on the central sample and
    saved next to the output (``<output>.model``); blocks are then predicted with it (see
    :func:`predict_builder`). ``params['halo']`` overrides the halo."""
    sp = _sp(axes)
    p = dict(params)
    method = str(p.pop("method", "auto")).lower()
    halo = p.pop("halo", None)
    workdir = p.pop("_output", None)
    try:
        from fluorecon.tasks.denoise import CLASSICAL
    except ImportError:  # pragma: no cover - the task module is part of the package
        CLASSICAL = ("auto", "nlm", "tv", "wavelet", "bm3d")
    if method not in CLASSICAL:
        return _learned_denoise_builder(method, p, halo, workdir, reader, axes, voxel_size)

    def build(resolved: dict | None) -> BlockOp:
        if resolved is None:
            from fluorecon.tasks.denoise import denoise

            resolved = {"method": method, "channels": {}}
            for c in _channels(reader, axes):
                sample = sample_view(reader, axes, index={"C": c} if c is not None else None)
                res = denoise(sample, sp, method=method, **p)
                info = res[1] if isinstance(res, tuple) and len(res) > 1 else {}
                fixed = info.get("params") if isinstance(info, dict) else None
                used = info.get("method", method) if isinstance(info, dict) else method
                if fixed is None:
                    warnings.warn("the denoiser did not report its calibrated parameters (info['params']); "
                                  "data-dependent estimates will be repeated per block", FluoreconWarning, stacklevel=2)
                    fixed = p
                resolved["channels"][str(c)] = {"method": used, "kwargs": fixed}
        per_ch = {(int(c) if c != "None" else -1): functools.partial(_denoise_block, axes=sp, method=r["method"],
                                                                      kwargs=r["kwargs"])
                  for c, r in resolved["channels"].items()}
        m0 = next(iter(resolved["channels"].values()))["method"]
        h = halo if halo is not None else _DENOISE_HALO.get(str(m0), 24)
        return BlockOp("denoise", next(iter(per_ch.values())), halo=(int(h),) * len(sp) if np.ndim(h) == 0 else tuple(h),
                       resolved=resolved, channel_fns={k: v for k, v in per_ch.items() if k >= 0} or None,
                       memory_factor=8.0)

    return build


def _learned_denoise_builder(method, p, halo, workdir, reader, axes, voxel_size):
    if p.get("vst"):
        raise FluoreconError(f"out-of-core {method} with --vst is not supported",
                             hint="drop --vst, or use a classical method (which replays the VST blockwise)")
    p = {k: v for k, v in p.items() if k not in ("vst", "noise_model")}
    model_dir = Path(str(workdir) + ".model") if workdir else None

    def build(resolved: dict | None) -> BlockOp:
        if resolved is None:
            from fluorecon.tasks.denoise import denoise

            sample = sample_view(reader, axes, max_voxels=int(p.pop("sample_voxels", 2**22)))
            _, info = denoise(sample, _sp(axes), method=method, progress=False, **p)
            bundle = info.get("bundle")
            if bundle is None or model_dir is None:
                raise FluoreconError(f"the {method} engine returned no trained model to apply blockwise",
                                     hint="use a classical method out of core")
            import shutil

            if model_dir.exists():
                shutil.rmtree(model_dir)
            bundle.save(model_dir)
            pr = predict_builder({"model": str(model_dir), **({"halo": halo} if halo is not None else {})},
                                 reader, axes, voxel_size)(None).resolved
            resolved = {"method": method, "trained_on": list(sample.shape), "predict": pr}
        op = predict_builder({"model": resolved["predict"]["model"]}, reader, axes, voxel_size)(resolved["predict"])
        return BlockOp("denoise", op.fn, halo=op.halo, resolved=resolved, memory_factor=op.memory_factor)

    return build


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


# ----------------------------------------------------------------------------- isotropic restoration
def _iso_block(block: np.ndarray, z_factor: int, method: str, bundle_path: str | None, fuse_rule: str) -> np.ndarray:
    from fluorecon.tasks.isotropic import apply_isotropic, interpolate_z

    if method in ("linear", "cubic"):
        return interpolate_z(block, z_factor, order=1 if method == "linear" else 3)
    out, _ = apply_isotropic(block, z_factor, load_bundle_cached(bundle_path), fuse_rule=fuse_rule, device="cpu")
    return out


def isotropic_builder(params: dict, reader, axes: str, voxel_size):
    """Isotropic restoration (``fluorecon.tasks.isotropic``) on ``ZYX`` blocks: output on the fine
    grid ``((Z-1)·f+1, Y, X)``. ``params``: ``z_factor`` (or from the voxel size), ``method``
    (``learned`` needs ``model``, a restorer trained before — training is a global decision made
    once, in memory, on a representative stack — ``linear`` or ``cubic``), ``fuse_rule``, ``halo``."""
    from fluorecon.tasks.isotropic import resolve_z_factor

    if "Z" not in axes:
        raise FluoreconError(f"isotropic restoration needs a Z axis, got axes {axes!r}", hint="pass a ZYX stack")
    p = dict(params)
    method = p.pop("method", "learned")
    if method not in ("learned", "linear", "cubic"):
        raise FluoreconError(f"out-of-core isotropic restoration supports learned, linear or cubic, not {method!r}",
                             hint="run the rl baseline in memory")
    model = p.pop("model", None)
    workdir = p.pop("_output", None)
    f = resolve_z_factor(p.pop("z_factor", None), voxel_size)
    fuse_rule = p.pop("fuse_rule", "geometric")
    halo = p.pop("halo", None)

    def build(resolved: dict | None) -> BlockOp:
        nonlocal model
        if resolved is None:
            if method == "learned" and model is None:
                # Training is the global decision: once, on a central sample, saved next to the output.
                from fluorecon.tasks.isotropic import isotropic

                if workdir is None:
                    raise FluoreconError("learned isotropic restoration out of core needs a model or an output path",
                                         hint="pass params['model'] (a restorer trained before)")
                sample = sample_view(reader, axes, max_voxels=int(p.get("sample_voxels", 2**22)))
                kw = {k: p[k] for k in ("budget_s", "seed", "axial_fwhm", "device") if p.get(k) is not None}
                res = isotropic(sample, axes="ZYX", z_factor=f, voxel_size=voxel_size, method="learned", **kw)
                mdir = Path(str(workdir) + ".model")
                if mdir.exists():
                    import shutil

                    shutil.rmtree(mdir)
                res.bundle.save(mdir)
                model = str(mdir)
            if halo is not None:
                h = [int(halo)] * 3
            elif method == "learned":
                rad = int(getattr(load_bundle_cached(model).model, "receptive_radius", 32))
                h = [int(math.ceil(rad / f)) + 2, rad, rad]
            else:
                h = [2 if method == "linear" else 12, 0, 0]
            resolved = {"method": method, "z_factor": f, "halo": h, "fuse_rule": fuse_rule,
                        "model": str(Path(model).resolve()) if model else None}
        fn = functools.partial(_iso_block, z_factor=int(resolved["z_factor"]), method=resolved["method"],
                               bundle_path=resolved["model"], fuse_rule=resolved["fuse_rule"])
        return BlockOp("isotropic", fn, halo=tuple(resolved["halo"]), resolved=resolved,
                       z_factor=int(resolved["z_factor"]), memory_factor=8.0 * f)

    return build


BUILDERS = {"deconvolve": deconvolve_builder, "denoise": denoise_builder, "predict": predict_builder,
            "isotropic": isotropic_builder}
