"""Deconvolution as an application: PSF handling, channels, methods, stopping, blocks, learned deconvolution.

Methods
-------
``"rl"`` Richardson–Lucy · ``"rl-accel"`` Biggs–Andrews accelerated RL · ``"rl-tv"`` TV-regularised RL
(Dey et al.) · ``"rl-wb"`` RL with the Wiener–Butterworth back-projector (Guo et al.) · ``"wiener"``
Wiener/Tikhonov (balance by GCV) · ``"learned"`` a U-Net trained on pairs simulated by the forward
model with *your* PSF at *your* noise level (see :func:`learned_deconvolution`).

PSF sources (exactly one): ``psf`` (array, or measured file already read; centred, normalised and
resampled from ``psf_voxel_size`` to ``voxel_size`` when both are given), ``psf_model``
(``"gaussian"`` / ``"widefield"`` / ``"gibson-lanni"`` from ``na``, ``wavelength``,
``refractive_index`` and ``voxel_size`` — required), or ``beads`` (a bead image, see
:func:`fluorecon.physics.beads.extract_psf_from_beads`). ``info["psf"]`` reports the PSF used
(source, shape, voxel size, energy kept).

Global decisions and blocks
---------------------------
:func:`plan_deconvolution` makes every data-dependent decision once (background, iteration count by
the stopping rule, acceleration factors, Wiener balance) and returns a plain dict;
:func:`deconvolve_block` replays it on any block (pure). The in-memory path, the block path and the
out-of-core engine all go through these two functions, so they cannot disagree.

Examples
--------
>>> from fluorecon.physics.psf import gaussian_psf
>>> img = np.random.default_rng(0).random((16, 32, 32)).astype(np.float32)
>>> out, info = deconvolve(img, "ZYX", psf=gaussian_psf((7, 9, 9), 1.5), iterations=5)
>>> out.shape, info["iterations"], info["stop_reason"]
((16, 32, 32), 5, 'fixed number of iterations (5)')
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
from pydantic import field_validator

from fluorecon.classical import blocks as B
from fluorecon.classical._common import estimate_background
from fluorecon.classical.rl import richardson_lucy, select_iterations
from fluorecon.classical.wiener import wiener
from fluorecon.errors import FluoreconError, FluoreconWarning
from fluorecon.io import ImageData
from fluorecon.physics import psf as P
from fluorecon.physics.beads import extract_psf_from_beads
from fluorecon.physics.camera import Camera
from fluorecon.physics.forward import Forward
from fluorecon.physics.sampling import fft_convolve
from fluorecon.tasks.contract import InputSpec, OutputSpec, Result, Task, TaskParams, as_progress, param
from fluorecon.tasks.registry import register
from fluorecon.validation import as_image, to_numpy

__all__ = ["METHODS", "deconvolve", "deconvolve_block", "learned_deconvolution", "make_psf_for_image",
           "plan_deconvolution", "widefield_psf_shape"]

METHODS = ("rl", "rl-accel", "rl-tv", "rl-wb", "wiener", "learned")
PILOT_VOXELS = 4_000_000  # the stopping rule runs on a central region of at most this many voxels


def widefield_psf_shape(spatial_shape: Sequence[int], voxel_size: Sequence[float], na: float, wavelength: float,
                        refractive_index: float = 1.518, energy: float = 0.99) -> tuple[int, ...]:
    """Default extent of a modelled widefield PSF: the whole stack depth, laterally the bulk of the energy.

    Axially ``2·nz − 1`` planes (every plane's blur reaches every other plane; deconwolf does the same).
    Laterally the smallest odd size, at most the image size, whose square holds ``energy`` of the
    PSF's total energy over those planes (at least ±3 in-focus FWHM).

    Examples
    --------
    >>> widefield_psf_shape((20, 64, 64), (0.3, 0.13, 0.13), 1.45, 0.461, 1.512)[0]
    39
    """
    shape = tuple(int(s) for s in spatial_shape)
    vs = tuple(float(v) for v in voxel_size)[-len(shape):]
    fwhm_xy = 0.51 * wavelength / na
    lat_min = [2 * int(np.ceil(3 * fwhm_xy / v)) + 1 for v in vs[-2:]]
    lat_max = [s - (1 - s % 2) for s in shape[-2:]]
    if len(shape) == 2:
        return tuple(max(3, min(a, b)) for a, b in zip(lat_min, lat_max, strict=True))
    nz = 2 * shape[0] - 1
    probe = P.widefield_psf((nz, *lat_max), vs, na, wavelength, refractive_index).astype(np.float64)
    c = [s // 2 for s in lat_max]
    total = probe.sum()
    r_need = [0, 0]
    for ax in range(2):
        prof = probe.sum(axis=tuple(a for a in range(3) if a != ax + 1))
        for r in range(c[ax] + 1):
            if prof[c[ax] - r:c[ax] + r + 1].sum() >= energy ** 0.5 * total or r == c[ax]:
                r_need[ax] = r
                break
    lat = [min(m, max(lo, 2 * r + 1)) for m, lo, r in zip(lat_max, lat_min, r_need, strict=True)]
    return (nz, *lat)


def make_psf_for_image(spatial_shape: Sequence[int], *, psf: Any = None, psf_voxel_size: Sequence[float] | str | None = None,
                       psf_model: str | None = None, na: float | None = None, wavelength: float | None = None,
                       refractive_index: float = 1.518, voxel_size: Sequence[float] | None = None,
                       beads: Any = None, psf_shape: Sequence[int] | None = None) -> tuple[np.ndarray, dict]:
    """Build the PSF for an image of ``spatial_shape`` from one of the three sources; returns (psf, info).

    ``psf`` may be an array or a :class:`fluorecon.io.ImageData` (its voxel size is used).
    ``psf_voxel_size``: the PSF's voxel size (µm), or ``"same"`` (sampled like the image). An
    ``ImageData`` PSF with no voxel size while the image has one is an error unless
    ``psf_voxel_size`` is given — a silently assumed match rescales the blur.
    ``info``: ``source``, ``shape`` (= ``psf_shape``, kept for compatibility), ``voxel_size``,
    ``resampled``, and for models ``energy_kept`` and the optics.

    Examples
    --------
    >>> p, info = make_psf_for_image((16, 64, 64), psf_model="gaussian", na=1.4, wavelength=0.52,
    ...                              voxel_size=(0.3, 0.1, 0.1))
    >>> p.ndim, info["source"]
    (3, 'model:gaussian')
    """
    spatial_shape = tuple(int(s) for s in spatial_shape)
    nd = len(spatial_shape)
    given = [s for s, v in (("psf", psf), ("psf_model", psf_model), ("beads", beads)) if v is not None]
    if len(given) != 1:
        raise FluoreconError(f"give exactly one PSF source (psf, psf_model or beads), got {given or 'none'}",
                             hint="CLI: --psf FILE, --psf-model widefield --na ... --wavelength ..., or --psf-from-beads FILE")
    vs = None if voxel_size is None else tuple(float(v) for v in voxel_size)[-nd:]
    info: dict[str, Any] = {}
    if psf is not None:
        file_vs = None
        if hasattr(psf, "data") and hasattr(psf, "axes"):
            file_vs = getattr(psf, "voxel_size", None)
            if psf_voxel_size is None and file_vs is None and vs is not None:
                raise FluoreconError("the PSF has no voxel size, so it cannot be matched to the image's "
                                     f"{tuple(vs)} µm",
                                     hint="give --psf-voxel-size Z Y X (µm), or --psf-voxel-size same if the PSF was "
                                          "sampled like the image")
            psf = psf.data
        arr = to_numpy(psf, "PSF")
        if arr.ndim > nd:
            arr = np.squeeze(arr)
        if isinstance(psf_voxel_size, str):
            if psf_voxel_size.lower() != "same":
                raise FluoreconError(f"psf_voxel_size {psf_voxel_size!r} is not a voxel size or 'same'",
                                     hint="e.g. --psf-voxel-size 0.2 0.1 0.1 (API: psf_voxel_size=(0.2, 0.1, 0.1)) or 'same'")
            pvs = vs
        else:
            pvs = psf_voxel_size if psf_voxel_size is not None else file_vs
        p = P.prepare_psf(arr, spatial_shape, pvs, vs, max_factor=2)
        info.update(source="given", resampled=bool(pvs is not None and vs is not None
                                                   and not np.allclose(np.asarray(pvs, float)[-nd:], vs, rtol=1e-3)),
                    input_voxel_size=None if pvs is None else [float(v) for v in np.asarray(pvs, float)[-nd:]])
        if pvs is None:
            info["note"] = "PSF voxel size not given: assumed equal to the image's"
    elif beads is not None:
        p0, binfo = extract_psf_from_beads(beads, voxel_size=voxel_size)
        p = P.prepare_psf(p0, spatial_shape, max_factor=2)
        info.update(source="beads", beads=binfo)
    else:
        if vs is None:
            raise FluoreconError(f"the {psf_model} PSF model needs the voxel size",
                                 hint="the image file has no voxel size: pass voxel_size=(z, y, x) in µm "
                                      "(CLI: --voxel-size Z Y X)")
        if len(vs) != nd:
            raise FluoreconError(f"voxel size {tuple(voxel_size)} does not match the image's {nd} spatial axes",
                                 hint=f"give {nd} sizes in µm")
        if na is None or wavelength is None:
            raise FluoreconError("a PSF model needs na and wavelength", hint="e.g. na=1.4, wavelength=0.52 (µm)")
        widefield = psf_model in ("widefield", "born-wolf", "gibson-lanni")
        if psf_shape is None:
            if widefield:
                psf_shape = widefield_psf_shape(spatial_shape, vs, na, wavelength, refractive_index)
            else:
                # Gaussian model: ±3 FWHM laterally and axially (odd sizes), no larger than the image
                fwhm_xy = 0.51 * wavelength / na
                fwhm_z = 0.88 * wavelength / max(refractive_index - np.sqrt(max(refractive_index**2 - na**2, 0.0)), 1e-3)
                ext = [fwhm_z if (nd == 3 and i == 0) else fwhm_xy for i in range(nd)]
                psf_shape = tuple(min(s, 2 * int(np.ceil(3 * e / v)) + 1) for s, e, v in zip(spatial_shape, ext, vs, strict=True))
                psf_shape = tuple(max(3, q - (1 - q % 2)) for q in psf_shape)
        psf_shape = tuple(int(q) for q in psf_shape)
        if len(psf_shape) != nd or any(q < 1 for q in psf_shape):
            raise FluoreconError(f"PSF shape {psf_shape} does not fit the image's {nd} spatial axes",
                                 hint=f"give {nd} positive sizes, e.g. --psf-shape 79 63 63")
        if psf_model == "gaussian":
            p = P.gaussian_psf_from_optics(psf_shape, vs, na, wavelength, refractive_index)
        elif widefield:
            model = "gibson-lanni" if psf_model == "gibson-lanni" else "born-wolf"
            p = P.widefield_psf(psf_shape, vs, na, wavelength, refractive_index, model=model)
        else:
            raise FluoreconError(f"unknown PSF model {psf_model!r}", hint="use gaussian, widefield or gibson-lanni")
        p = P.prepare_psf(p, spatial_shape, max_factor=2)
        info["source"] = f"model:{psf_model}"
        info.update(na=na, wavelength=wavelength, refractive_index=refractive_index)
    info["psf_shape"] = list(p.shape)
    info["shape"] = list(p.shape)
    info["voxel_size"] = None if vs is None else list(vs)
    return p, info


def _split_channels(psf: np.ndarray, n_channels: int, nd: int) -> list[np.ndarray] | None:
    if psf.ndim == nd + 1:
        if psf.shape[0] != n_channels:
            raise FluoreconError(f"PSF has {psf.shape[0]} channels but the image has {n_channels}",
                                 hint="give one PSF per channel (CZYX / CYX) or a single PSF for all")
        return [psf[c] for c in range(n_channels)]
    return None


def _pilot(arr: np.ndarray, psf_shape: Sequence[int], max_voxels: int = PILOT_VOXELS) -> np.ndarray:
    """Central region of at most ``max_voxels`` (whole image when small), lateral axes shrunk first."""
    shape = list(arr.shape)
    while int(np.prod(shape)) > max_voxels:
        ax = int(np.argmax(shape[-2:])) + len(shape) - 2 if shape[-1] > 64 or shape[-2] > 64 else 0
        shape[ax] = max(16, int(shape[ax] * 0.8))
        if all(s <= 16 for s in shape):
            break
    sl = tuple(slice((n - q) // 2, (n - q) // 2 + q) for n, q in zip(arr.shape, shape, strict=True))
    return arr[sl]


def plan_deconvolution(sample: Any, psf: Any, *, method: str = "rl", iterations: int | str = "auto",
                       background: float | str = "auto", offset: float = 0.0, padding: str = "reflect",
                       tv: float = 0.002, balance: float | None = None, max_iterations: int = 100,
                       gain: float | None = None, read_noise: float = 0.0, blocks: bool = False,
                       pilot_voxels: int = PILOT_VOXELS, voxel_size: Sequence[float] | None = None,
                       seed: int = 0, device: str = "cpu") -> dict[str, Any]:
    """Make every data-dependent decision of a deconvolution once; returns the ``resolved`` dict.

    Pure function of the (spatial) ``sample`` — the whole image in memory, or a representative
    region out of core. Decides the background (``"auto"``: low percentile of the smoothed data, in
    data units above ``offset``), the iteration count (``iterations="auto"``: Poisson-thinning
    cross-validation, :func:`fluorecon.classical.rl.select_iterations`, on a central region of at most
    ``pilot_voxels``), the Wiener balance (GCV) and, with ``blocks=True`` for ``rl-accel``, the
    acceleration factors every block must share. Replay with :func:`deconvolve_block`.

    Returns
    -------
    dict
        ``method``, ``iterations`` (int), ``background``, ``offset``, ``padding``, ``tv``, ``balance``,
        ``alphas``, ``init``, ``psf`` (array), ``voxel_size``, ``device``, ``stop_reason``,
        ``warnings`` (list), ``crossval`` (the rule's curve and photon conversion, when it ran).

    Examples
    --------
    >>> from fluorecon.physics.psf import gaussian_psf
    >>> img = np.random.default_rng(0).poisson(50, (32, 32)).astype(np.float32)
    >>> r = plan_deconvolution(img, gaussian_psf((7, 7), 1.2), iterations=7)
    >>> r["iterations"], r["stop_reason"]
    (7, 'fixed number of iterations (7)')
    """
    arr = np.asarray(sample, dtype=np.float32)
    p = to_numpy(psf, "PSF").astype(np.float32)
    nd = p.ndim
    if arr.ndim != nd:
        raise FluoreconError(f"plan_deconvolution needs one spatial image ({nd}D like the PSF), got shape {arr.shape}",
                             hint="plan per channel / time point")
    if method not in METHODS or method == "learned":
        raise FluoreconError(f"cannot plan method {method!r} blockwise", hint="use rl, rl-accel, rl-tv, rl-wb or wiener")
    if isinstance(background, str):
        if background != "auto":
            raise FluoreconError(f"unknown background {background!r}", hint="give a number ≥ 0 or 'auto'")
        bg = estimate_background(np.clip(arr - offset, 0, None) if offset else arr)
        bg = max(float(bg), 0.0)
    else:
        bg = float(background)
    warns: list[str] = []
    resolved: dict[str, Any] = {"method": method, "background": bg, "offset": float(offset), "padding": padding,
                                "tv": float(tv), "balance": balance, "alphas": None, "psf": p,
                                "voxel_size": None if voxel_size is None else [float(v) for v in voxel_size],
                                "device": device, "warnings": warns}
    level = max(float(np.mean(arr)) - offset - bg, 1e-6 * max(float(np.max(arr)) - offset, 1e-30))
    resolved["init"] = level
    if method == "wiener":
        if balance is None:
            _, winfo = wiener(_pilot(arr, p.shape, pilot_voxels), p, None, offset=offset, background=bg,
                              return_info=True, device=device)
            resolved["balance"] = float(winfo["balance"])
        resolved.update(iterations=1, stop_reason="Wiener filter (balance by generalised cross-validation)"
                        if balance is None else "Wiener filter (balance given)")
        return resolved
    kw = {"padding": padding, "background": bg, "offset": offset, "accelerate": method == "rl-accel",
          "tv": tv if method == "rl-tv" else 0.0, "backprojector": "wb" if method == "rl-wb" else None,
          "voxel_size": voxel_size, "device": device}
    if iterations == "auto":
        pilot = _pilot(arr, p.shape, pilot_voxels)
        sel = select_iterations(pilot, p, max_iterations, gain=gain, read_noise=read_noise, seed=seed, **kw)
        n = int(sel["iterations"])
        if sel["rule"] != "crossval":  # no noise model: relative-change rule on the pilot
            _, cinfo = richardson_lucy(pilot, p, max_iterations, stop="change", return_info=True,
                                       **{k: v for k, v in kw.items()})
            n = int(cinfo["iterations"])
        warns.extend(sel["warnings"])
        resolved["stop_reason"] = sel["stop_reason"]
        resolved["crossval"] = {k: v for k, v in sel.items() if k not in ("warnings", "stop_reason")}
        if pilot.shape != arr.shape:
            resolved["crossval"]["pilot_shape"] = list(pilot.shape)
    else:
        if isinstance(iterations, bool) or not isinstance(iterations, int | np.integer) or iterations < 1:
            raise FluoreconError(f"iterations must be a positive integer or 'auto', got {iterations!r}",
                                 hint="e.g. 20, or 'auto' for the cross-validation stopping rule")
        n = int(iterations)
        resolved["stop_reason"] = f"fixed number of iterations ({n})"
    resolved["iterations"] = n
    if blocks and method == "rl-accel":
        pilot = _pilot(arr, p.shape, min(pilot_voxels, 1_000_000))
        _, ainfo = richardson_lucy(pilot, p, n, return_info=True, **kw)
        resolved["alphas"] = [float(a) for a in ainfo["alphas"]]
    return resolved


def deconvolve_block(block: Any, resolved: dict[str, Any]) -> np.ndarray:
    """Deconvolve one block (or the whole image) with the decisions of :func:`plan_deconvolution` (pure).

    Examples
    --------
    >>> from fluorecon.physics.psf import gaussian_psf
    >>> img = np.random.default_rng(0).poisson(50, (32, 32)).astype(np.float32)
    >>> r = plan_deconvolution(img, gaussian_psf((7, 7), 1.2), iterations=3)
    >>> deconvolve_block(img, r).shape
    (32, 32)
    """
    method = resolved["method"]
    if method == "rl-accel" and resolved.get("alphas") is None:
        return richardson_lucy(block, resolved["psf"], int(resolved["iterations"]), padding=resolved["padding"],
                               background=float(resolved["background"]), offset=float(resolved["offset"]),
                               accelerate=True, init=resolved.get("init", "mean"),
                               voxel_size=resolved.get("voxel_size"), device=resolved.get("device", "cpu"))
    return B.deconvolve_block(block, resolved["psf"], resolved)


def _run_blocks(img: np.ndarray, resolved: dict[str, Any], block_shape, progress) -> tuple[np.ndarray, dict]:
    p = resolved["psf"]
    nd = p.ndim
    bs = (int(block_shape),) * nd if np.ndim(block_shape) == 0 else tuple(int(b) for b in block_shape)
    if len(bs) != nd or any(b < 1 for b in bs):
        raise FluoreconError(f"block_shape {block_shape} does not fit the {nd} spatial axes",
                             hint=f"give one positive size per spatial axis ({nd})")
    if resolved["method"] == "wiener":
        mg = tuple(4 * (q // 2) + 8 for q in p.shape)
    else:
        mg = B.required_margin(p.shape, int(resolved["iterations"]), psf=p)
    out = np.empty(img.shape, dtype=np.float32)
    slices = list(B._block_slices(img.shape, bs, mg))
    for i, (core, outer, inner) in enumerate(slices):
        out[core] = deconvolve_block(img[outer], resolved)[inner]
        if progress is not None:
            progress(i + 1, len(slices))
    return out, {"blocks": True, "block_shape": list(bs), "margin": list(mg), "n_blocks": len(slices)}


def deconvolve(image: Any, axes: str | None = None, psf: Any = None, method: str = "rl", iterations: int | str = 20, *,
               voxel_size: Sequence[float] | None = None, psf_voxel_size: Sequence[float] | str | None = None,
               psf_model: str | None = None, na: float | None = None, wavelength: float | None = None,
               refractive_index: float = 1.518, beads: Any = None, background: float | str = "auto",
               offset: float = 0.0, padding: str = "reflect", tv: float = 0.002, balance: float | None = None,
               block_shape: int | Sequence[int] | None = None, max_iterations: int = 100, budget_s: float = 120.0,
               seed: int = 0, device: str = "cpu", progress: Callable[[int, int], Any] | None = None,
               psf_shape: Sequence[int] | None = None, gain: float | None = None, read_noise: float = 0.0,
               ) -> tuple[np.ndarray, dict]:
    """Deconvolve an image (2D/3D, with optional T/C axes) and describe what was done.

    Parameters
    ----------
    image : array-like or fluorecon.io.ImageData
        An ``ImageData`` brings its axes and voxel size (metadata first; an explicit ``voxel_size``
        overrides it, with a warning when they disagree).
    axes : str, optional
        E.g. ``"ZYX"``, ``"CZYX"``, ``"TYX"`` (from the ImageData or guessed for 2D/3D).
    psf : array-like or ImageData, optional
        One PSF for all channels, or one per channel (leading C axis).
    method : {"rl", "rl-accel", "rl-tv", "rl-wb", "wiener", "learned"}
    iterations : int or "auto"
        ``"auto"``: Poisson-thinning cross-validation (:mod:`fluorecon.classical.stopping`), at most
        ``max_iterations``; ``info["stop_reason"]`` says why it stopped.
    voxel_size : tuple of float, optional
        µm per spatial axis; required by PSF models, used to resample a measured PSF.
    psf_voxel_size : tuple of float or "same", optional
        Voxel size of ``psf`` (see :func:`make_psf_for_image`).
    psf_shape : tuple of int, optional
        Size of a modelled PSF (default: whole stack depth for widefield, see
        :func:`widefield_psf_shape`).
    background : float or "auto"
        Constant added to the model (data units, above ``offset``); ``"auto"`` (default) estimates it.
    offset : float
        Camera offset subtracted first.
    gain, read_noise : float, optional
        Camera gain (ADU/e-) and read noise (e-) for the stopping rule (estimated when None).
    block_shape : int or tuple, optional
        Process in overlapping blocks of this core size (bounded memory; decisions made globally).
    budget_s, seed : learned deconvolution training budget (seconds) and seed (also of the thinning).
    progress : callable, optional
        ``progress(done, total)``.

    Returns
    -------
    (numpy.ndarray float32, dict)
        The deconvolved image (same shape and axes) and an info dict: ``method``, ``iterations``,
        ``stop_reason``, ``warnings`` (list; each also raised as a ``FluoreconWarning``), ``psf``
        (source, shape, voxel size), ``background``, ``offset``, ``seconds``, per-item details.

    Raises
    ------
    FluoreconError
        Unknown method, ``iterations`` < 1, missing voxel size for a PSF model, bad PSF or image.
    """
    t0 = time.perf_counter()
    warns: list[str] = []
    if hasattr(image, "data") and hasattr(image, "axes"):
        axes = axes or image.axes
        meta_vs = getattr(image, "voxel_size", None)
        if voxel_size is None:
            voxel_size = meta_vs
        elif meta_vs is not None and not np.allclose(np.asarray(voxel_size, float)[-len(meta_vs):],
                                                     np.asarray(meta_vs, float), rtol=0.01):
            warns.append(f"voxel size {tuple(voxel_size)} µm given explicitly overrides the file's "
                         f"{tuple(round(v, 6) for v in meta_vs)} µm")
        image = image.data
    arr, ax = as_image(image, axes)
    if method not in METHODS:
        raise FluoreconError(f"unknown deconvolution method {method!r}", hint=f"use one of {', '.join(METHODS)}")
    if iterations != "auto":
        if isinstance(iterations, bool) or not isinstance(iterations, int | np.integer) or iterations < 1:
            raise FluoreconError(f"iterations must be a positive integer or 'auto', got {iterations!r}",
                                 hint="e.g. 20 (typical 10–50), or 'auto' for the cross-validation stopping rule")
    nd = 3 if "Z" in ax else 2
    spatial = arr.shape[-nd:]
    lead = arr.shape[:-nd]
    lead_axes = ax[:-nd]
    if float(arr.max()) - offset <= 0:
        raise FluoreconError("image is zero or negative everywhere (after the offset)",
                             hint="check the file, the channel and the --offset value")
    psf_in = psf
    psf_arr = None if psf is None else to_numpy(psf.data if hasattr(psf, "data") and hasattr(psf, "axes") else psf,
                                                "PSF")
    per_channel = None
    if psf_arr is not None and "C" in lead_axes and psf_arr.ndim == nd + 1:
        per_channel = _split_channels(psf_arr, arr.shape[lead_axes.index("C")], nd)
    if per_channel is None:
        p, pinfo = make_psf_for_image(spatial, psf=psf_in, psf_voxel_size=psf_voxel_size, psf_model=psf_model, na=na,
                                      wavelength=wavelength, refractive_index=refractive_index, voxel_size=voxel_size,
                                      beads=beads, psf_shape=psf_shape)
        psfs = None
    else:
        psfs = [make_psf_for_image(spatial, psf=q, psf_voxel_size=psf_voxel_size, voxel_size=voxel_size)[0]
                for q in per_channel]
        p, pinfo = psfs[0], {"source": "given, one per channel", "psf_shape": list(psfs[0].shape),
                             "shape": list(psfs[0].shape), "voxel_size": None if voxel_size is None else list(voxel_size)}
    # saturation is reported, not silently "fixed": saturated cores break the blur model
    sat_level = float(arr.max())
    n_sat = int((arr >= sat_level).sum()) if arr.dtype.kind == "f" and sat_level > 0 else 0
    info: dict[str, Any] = {"method": method, "axes": ax, "psf": pinfo, "voxel_size": None if voxel_size is None
                            else list(voxel_size), "offset": offset}
    if n_sat > max(8, 1e-4 * arr.size) and np.issubdtype(np.asarray(image).dtype, np.integer):
        info["warning"] = (f"{n_sat} pixels at the maximum value {sat_level:g} (saturated?): RL cannot restore "
                           "clipped intensities and may ring around them")
        warns.append(info["warning"])
    out = np.empty(arr.shape, dtype=np.float32)
    items = list(np.ndindex(*lead)) if lead else [()]
    details = []
    for i, idx in enumerate(items):
        pc = p if psfs is None else psfs[idx[lead_axes.index("C")]]
        img = arr[idx]
        if method == "learned":
            res, d = learned_deconvolution(img, pc, budget_s=budget_s, seed=seed, device=device, offset=offset)
            d.setdefault("stop_reason", f"learned deconvolution (training budget {budget_s:g} s)")
        else:
            resolved = plan_deconvolution(img, pc, method=method, iterations=iterations, background=background,
                                          offset=offset, padding=padding, tv=tv, balance=balance,
                                          max_iterations=max_iterations, gain=gain, read_noise=read_noise,
                                          blocks=block_shape is not None, voxel_size=voxel_size, seed=seed,
                                          device=device)
            if block_shape is not None:
                res, binfo = _run_blocks(img, resolved, block_shape, progress if len(items) == 1 else None)
            else:
                res, binfo = deconvolve_block(img, resolved), {}
            d = {k: v for k, v in resolved.items() if k not in ("psf", "device", "init")}
            if d.get("alphas") is None:
                d.pop("alphas", None)
            d.update(binfo)
        out[idx] = res
        details.append(d)
        if progress is not None and (len(items) > 1 or block_shape is None):
            progress(i + 1, len(items))
    for d in details:
        for w in d.get("warnings", []):
            if w not in warns:
                warns.append(w)
    info.update({k: v for k, v in details[0].items() if k not in info})
    if len(details) > 1:
        info["per_item"] = details
        its = [d.get("iterations") for d in details if d.get("iterations") is not None]
        if its:
            info["iterations"] = max(its)
    info["warnings"] = warns
    for w in warns:
        warnings.warn(w, FluoreconWarning, stacklevel=2)
    info["seconds"] = time.perf_counter() - t0
    return out, info


def learned_deconvolution(image: Any, psf: Any, *, budget_s: float = 120.0, seed: int = 0, device: str = "cpu",
                          offset: float | None = None, phantom_kinds: Sequence[str] = ("filaments", "puncta", "membranes"),
                          n_train: int = 6, patch_size: int | None = None, steps: int | None = None,
                          noise_model: Any = None, return_bundle: bool = False):
    """Train a U-Net on physics-simulated pairs for *this* PSF and noise level, then apply it.

    1. Noise: the Poisson–Gaussian model of the user's data
       (:func:`fluorecon.physics.noise_model.estimate_poisson_gaussian`) gives gain, offset and read
       noise; the photon budget is set so that the data's 99.9th percentile is "1.0" of the phantom.
    2. Pairs: seeded phantoms (``phantom_kinds``) → blur with the user's PSF → camera noise
       (:class:`fluorecon.physics.forward.Forward`); target = the phantom.
    3. CARE-style supervised training (``fluorecon.learn.train``) within ``budget_s`` seconds.
    4. Prediction on the real image; output rescaled to data units (like RL's output).

    Where it wins: at low photon counts it denoises and deconvolves jointly (RL amplifies noise).
    Where it may invent: structures unlike the phantoms (the prior is the phantom family), and any
    mismatch between the assumed and the true PSF or noise; check with ``fluorecon check``.

    Returns
    -------
    (numpy.ndarray, dict) — or (array, info, bundle) with ``return_bundle=True``.
    """
    from fluorecon.learn.predict import predict
    from fluorecon.learn.train import TrainConfig, train
    from fluorecon.physics.camera import Camera
    from fluorecon.physics.forward import Forward
    from fluorecon.physics.phantoms import phantom

    arr = np.asarray(image, dtype=np.float32)
    nd = psf.ndim
    if noise_model is None:
        from fluorecon.physics.noise_model import estimate_poisson_gaussian

        noise_model = estimate_poisson_gaussian(arr)
    gain = float(max(noise_model.gain, 1e-6))
    off = float(noise_model.offset if offset is None or offset == 0 else offset)
    read_e = float(noise_model.read_noise_adu) / gain
    shape = tuple(min(s, 64 if nd == 2 else 32 if i == 0 else 64) for i, s in enumerate(arr.shape)) if nd == 3 \
        else tuple(min(s, 128) for s in arr.shape)
    truths = [phantom(phantom_kinds[k % len(phantom_kinds)], shape, seed=seed + k).astype(np.float32)
              for k in range(n_train)]
    # photon budget: the simulated recordings' bright end matches the data's (in photo-electrons)
    from fluorecon.physics.sampling import fft_convolve

    sim_top = float(np.median([np.percentile(fft_convolve(t, psf), 99.9) for t in truths]))
    photons = max((float(np.percentile(arr, 99.9)) - off) / gain / max(sim_top, 1e-6), 1.0)
    cam = Camera(photons=photons, gain=gain, offset=off, read_noise=read_e)
    fwd = Forward(psf=psf, camera=cam)
    xs, ys = [], []
    for k, truth in enumerate(truths):
        x, yref = fwd.simulate(truth, seed=seed + 1000 + k)
        xs.append(np.asarray(x, np.float32))
        # target in the recording's own frame (offset, gain, photon scale): the un-blurred, noiseless
        # image the camera would record, so a residual network only has to sharpen and denoise
        ys.append(np.asarray(cam.expected(np.asarray(yref, np.float32)), np.float32))
    axes = "ZYX" if nd == 3 else "YX"
    ps = patch_size or (16 if nd == 3 else 32)
    cfg = TrainConfig(scheme="care", axes=axes, dim=nd, patch_size=min([ps, *shape]), batch_size=4 if nd == 3 else 8,
                      steps=steps, budget_s=budget_s if steps is None else None, seed=seed, device=device,
                      progress=False, model={"depth": 2, "width": 16})
    bundle = train(cfg, xs, ys, axes=axes, forward=fwd)
    out = np.asarray(predict(bundle, arr, axes, device=device), np.float32) - off  # data units, like RL
    info = {"method": "learned", "photons": photons, "gain": gain, "offset": off, "read_noise_e": read_e,
            "n_train": n_train, "train_shape": list(shape), "phantoms": list(phantom_kinds), "budget_s": budget_s,
            "training": getattr(bundle, "training_stats", None) and {k: v for k, v in bundle.training_stats.items()
                                                                     if isinstance(v, int | float | str)}}
    if return_bundle:
        return np.asarray(out, np.float32), info, bundle
    return np.asarray(out, np.float32), info


# ------------------------------------------------------------------------------------ task contract
# Below this line: deconvolution as a registered task (front ends, out of core, trust). The functions
# above are the library; the task only maps its Params onto them.
class DeconvolveParams(TaskParams):
    """Parameters of :class:`DeconvolveTask` (CLI options, napari fields and provenance derive from them)."""

    method: str = param("rl", "rl (Richardson–Lucy) | rl-accel (Biggs–Andrews) | rl-tv (total variation) | rl-wb "
                        "(Wiener–Butterworth back-projector) | wiener | learned (U-Net trained on pairs simulated "
                        "with your PSF).", choices=METHODS)
    iterations: int | Literal["auto"] = param(20, "Number of iterations (≥ 1) or 'auto' (Poisson-thinning "
                                              "cross-validation; the stop reason is reported).")
    max_iterations: int = param(100, "Upper bound of iterations='auto'.", ge=1, le=100_000, advanced=True)
    background: float | Literal["auto"] = param("auto", "Background in data units (above the offset) added to "
                                                 "the model, or 'auto' (estimated).", unit="ADU")
    offset: float = param(0.0, "Camera offset subtracted first.", unit="ADU")
    padding: str = param("reflect", "Boundary: reflect | skimage (zero, as scikit-image) | periodic.",
                         choices=("reflect", "skimage", "periodic"), advanced=True)
    psf_model: str | None = param(None, "Theoretical PSF when no PSF image is given.",
                                  choices=("gaussian", "widefield", "gibson-lanni"))
    na: float = param(1.4, "Numerical aperture of the objective (PSF model).", gt=0, le=1.7)
    wavelength: float = param(0.52, "Emission wavelength (PSF model).", unit="µm", gt=0.1, lt=2.0)
    refractive_index: float = param(1.518, "Immersion refractive index (PSF model).", gt=1.0, lt=2.0)
    psf_voxel_size: tuple[float, ...] | Literal["same"] | None = param(
        None, "Voxel size of the PSF image (resampled to the image's), or 'same'. Required when the PSF file has "
        "no voxel size but the image has one.", unit="µm")
    psf_shape: tuple[int, ...] | None = param(None, "Size of a modelled PSF in voxels (Z Y X), e.g. 79 63 63 "
                                              "(default: widefield = whole stack depth ×2−1, lateral extent "
                                              "holding 99 % of the energy).", advanced=True)
    block_shape: tuple[int, ...] | None = param(None, "Process in overlapping blocks of this core size (bounded "
                                                "memory), e.g. 64 or 32,128,128.", cli="--block-size",
                                                advanced=True)
    gain: float | None = param(None, "Camera gain for the 'auto' stopping rule and the noise model "
                               "(estimated when omitted).", unit="ADU/e-", gt=0, advanced=True)
    read_noise: float = param(0.0, "Camera read noise.", unit="e-", ge=0, advanced=True)
    tv: float = param(0.002, "Total-variation weight of rl-tv.", ge=0, advanced=True)
    budget_s: float = param(120.0, "Training wall-time budget of the learned method.", unit="s", cli="--budget",
                            gt=0, le=7 * 86400)
    seed: int = param(0, "Random seed (auto stopping rule, learned method).", ge=0)
    device: str = param("auto", "Compute device (auto: a GPU when present).", choices=("cpu", "cuda", "auto"), widget=False)

    @field_validator("iterations", mode="before")
    @classmethod
    def _iterations(cls, v: Any) -> Any:
        if isinstance(v, str):
            s = v.strip().lower()
            if s == "auto":
                return "auto"
            try:
                v = int(s)
            except ValueError:
                raise ValueError(f"{v!r} is not an integer or 'auto' (e.g. 20, or auto)") from None
        if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
            raise ValueError(f"must be ≥ 1 or 'auto', got {v!r}")
        return int(v)

    @field_validator("background", mode="before")
    @classmethod
    def _background(cls, v: Any) -> Any:
        if isinstance(v, str) and v.strip().lower() == "auto":
            return "auto"
        try:
            b = float(v)
        except (TypeError, ValueError):
            raise ValueError(f"{v!r} is not a number or 'auto'") from None
        if not np.isfinite(b) or b < 0:
            raise ValueError(f"must be ≥ 0 or 'auto', got {v!r}")
        return b

    @field_validator("psf_voxel_size", "block_shape", "psf_shape", mode="before")
    @classmethod
    def _sizes(cls, v: Any) -> Any:
        if v is None or isinstance(v, str) and not v.strip():
            return None
        if isinstance(v, str) and v.strip().lower() == "same":
            return "same"
        if isinstance(v, str):
            v = [t for t in v.replace(",", " ").split() if t]
        vals = np.atleast_1d(np.asarray(v, float)).ravel()
        if vals.size < 1 or vals.size > 3 or (vals <= 0).any():
            raise ValueError(f"needs 1–3 positive values, got {v!r}")
        return tuple(vals.tolist())

    @field_validator("block_shape")
    @classmethod
    def _blocks(cls, v: Any) -> Any:
        if v == "same":
            raise ValueError("'same' is only meaningful for --psf-voxel-size")
        if v is not None and any(b < 8 for b in v):
            raise ValueError(f"block sizes must be ≥ 8, got {v}")
        return v

    @field_validator("psf_shape")
    @classmethod
    def _psf_shape(cls, v: Any) -> Any:
        if v == "same":
            raise ValueError("'same' is only meaningful for --psf-voxel-size")
        if v is not None:
            if any(float(q) != int(q) for q in v):
                raise ValueError(f"PSF sizes must be whole numbers of voxels, got {v}")
            v = tuple(int(q) for q in v)
        return v


def _psf_voxel_size(psf: Any, given: Any, image_vs: Any) -> Any:
    """The PSF's voxel size: ``--psf-voxel-size`` (or "same"), else the PSF file's metadata.

    A PSF image without a voxel size, for an image with one, is an error: a silently assumed match
    rescales the blur (issue 14).
    """
    if psf is None or given is not None:
        return given
    file_vs = getattr(psf, "voxel_size", None)
    if file_vs is not None:
        return tuple(file_vs)
    if image_vs is not None and hasattr(psf, "axes") and not _is_prepared(psf):
        raise FluoreconError(f"the PSF file has no voxel size, so it cannot be matched to the image's "
                             f"{tuple(round(float(v), 6) for v in image_vs)} µm",
                             hint="give --psf-voxel-size Z Y X (µm), or --psf-voxel-size same if the PSF was sampled "
                                  "like the image")
    return None


class UnitsOnlyForward(Forward):
    """A :class:`~fluorecon.physics.forward.Forward` whose camera maps units (offset, background) but
    whose noise is unknown: ``variance`` raises, so :mod:`fluorecon.trust` estimates the noise."""

    def variance(self, expected: Any) -> Any:
        raise FluoreconError("the camera gain is unknown, so the forward model has no noise model",
                             hint="give --gain and --read-noise, or let the trust check estimate the noise")


def _is_prepared(psf: Any) -> bool:
    return bool(getattr(psf, "metadata", {}).get("prepared"))


def _psf_array(psf: Any) -> np.ndarray:
    """A PSF input as a clean array: measured images are background-subtracted and centred
    (:func:`fluorecon.physics.psf.load_psf`) unless their metadata says ``prepared``."""
    data = np.asarray(getattr(psf, "data", psf), np.float32)
    if _is_prepared(psf):
        return data
    return P.load_psf(data)


@register
class DeconvolveTask(Task):
    """Deconvolution as a registered task: RL variants, Wiener, learned; PSF measured, modelled or from beads."""

    name = "deconvolve"
    title = "Deconvolution"
    summary = "Undo the microscope's blur with a measured, modelled or bead-derived PSF."
    Params = DeconvolveParams
    inputs = (InputSpec("image", "Blurred image (YX, ZYX, or a stack with T/C axes)."),
              InputSpec("psf", "Measured PSF image (centred, background-subtracted and normalised automatically).",
                        required=False, cli="--psf"),
              InputSpec("beads", "Bead image: isolated beads are detected, registered and averaged into the PSF.",
                        required=False, cli="--psf-from-beads"))
    outputs = (OutputSpec("image", "Deconvolved image, float32, in the input's units (offset and background removed)."),)
    trust = ("verify",)
    accepts = ("YX", "ZYX", "CYX", "TYX", "CZYX", "TZYX")
    doc = "deconvolve"
    output_tag = "_decon"
    examples = ("fluorecon deconvolve stack.tif --psf psf.tif -o decon.tif --iterations 30",
                "fluorecon deconvolve stack.tif --psf-model widefield --na 1.45 --wavelength 0.461 "
                "--voxel-size 0.3 0.13 0.13 -o decon.tif --method rl-accel --iterations auto",
                "fluorecon deconvolve stack.tif --psf-from-beads beads.tif --voxel-size 0.125 0.022 0.022 -o decon.tif",
                "fluorecon deconvolve big.ome.zarr --psf psf.tif -o big_decon.ome.zarr --scheduler threads")

    @classmethod
    def example(cls, seed: int = 0) -> dict[str, Any]:
        """Two blurred points in a 8×32×32 stack, its Gaussian PSF, 3 RL iterations."""
        truth = np.zeros((8, 32, 32), np.float32)
        truth[4, 16, 16] = 100.0
        truth[3, 8, 22] = 60.0
        psf = P.gaussian_psf((5, 7, 7), 1.2)
        img = np.asarray(fft_convolve(truth, psf), np.float32) + 1.0
        img += np.random.default_rng(seed).normal(0, 0.01, img.shape).astype(np.float32)
        return {"inputs": {"image": ImageData(np.clip(img, 0, None), "ZYX", (0.3, 0.1, 0.1), {}),
                           "psf": ImageData(psf, "ZYX", (0.3, 0.1, 0.1), {"prepared": True})},
                "params": {"iterations": 3, "background": 0.0}}

    @staticmethod
    def _sources(inputs: Mapping[str, Any], params: DeconvolveParams) -> dict[str, Any]:
        psf, beads = inputs.get("psf"), inputs.get("beads")
        given = [n for n, v in (("--psf", psf), ("--psf-model", params.psf_model), ("--psf-from-beads", beads))
                 if v is not None]
        if len(given) != 1:
            what = f"got {', '.join(given)}" if given else "none given"
            raise FluoreconError(f"deconvolution needs a PSF from exactly one source ({what})",
                                 hint="--psf PSF.tif, or --psf-model widefield --na .. --wavelength .. --voxel-size "
                                      "Z Y X, or --psf-from-beads BEADS.tif")
        out: dict[str, Any] = {"psf": None, "beads": None, "psf_model": params.psf_model}
        if psf is not None:
            out["psf"] = _psf_array(psf)
        if beads is not None:
            out["beads"] = np.asarray(getattr(beads, "data", beads), np.float32)
        return out

    def run(self, inputs: Mapping[str, Any], params: DeconvolveParams, progress: Any = None) -> Result:
        img = inputs["image"]
        report = as_progress(progress)
        src = self._sources(inputs, params)
        vs = img.voxel_size
        if src["psf_model"] is not None and vs is None:
            raise FluoreconError(f"the {src['psf_model']} PSF model needs the voxel size",
                                 hint="give the voxel size in µm, e.g. --voxel-size 0.3 0.1 0.1 (Z Y X)")
        nd = 3 if "Z" in img.axes else 2
        spatial = img.data.shape[-nd:]
        psf_src = src["psf"]
        source = None
        if src["beads"] is not None:  # extract once: the forward model uses the same PSF
            psf_src, binfo = extract_psf_from_beads(src["beads"], voxel_size=vs)
            source = {"source": "beads", "beads": binfo}
        psf_vs = _psf_voxel_size(inputs.get("psf"), params.psf_voxel_size, vs)
        psf_kw = {"psf_voxel_size": psf_vs, "psf_model": src["psf_model"], "na": params.na,
                  "wavelength": params.wavelength, "refractive_index": params.refractive_index,
                  "psf_shape": params.psf_shape}
        block = params.block_shape
        report(0.0, f"deconvolving ({params.method})")
        y, info = deconvolve(img, psf=psf_src, method=params.method, iterations=params.iterations,
                             background=params.background, offset=params.offset, padding=params.padding, tv=params.tv,
                             block_shape=None if block is None else (int(block[0]) if len(block) == 1 else
                                                                     tuple(int(b) for b in block)),
                             max_iterations=params.max_iterations, budget_s=params.budget_s, seed=params.seed,
                             device=params.device, gain=params.gain, read_noise=params.read_noise,
                             progress=report.steps(1, "deconvolving"), **psf_kw)
        report(1.0, "done")
        if source is not None:
            info["psf"] = {**(info.get("psf") or {}), **source}
        forward = None
        per_channel = psf_src is not None and np.ndim(psf_src) == nd + 1
        if not per_channel:
            p, _ = make_psf_for_image(spatial, psf=psf_src, voxel_size=vs, **psf_kw)
            bg = info.get("background", 0.0)
            bg = float(bg) if np.ndim(bg) == 0 and not isinstance(bg, str) else 0.0
            g = float(params.gain or 1.0)
            cam = Camera(photons=1.0 / g, gain=g, offset=float(params.offset), background=bg / g,
                         read_noise=float(params.read_noise))
            # x = offset + background + psf ⊛ y (ADU), as the deconvolution modelled it; without a known
            # gain the camera only maps units and the noise is left to the trust layer to estimate
            forward = (Forward if params.gain is not None else UnitsOnlyForward)(psf=p, camera=cam)
        used = {k: v for k, v in info.items() if k not in ("warning",)}
        return Result(outputs={"image": y}, params_used=used, forward=forward,
                      warnings=[str(w) for w in info.get("warnings", [])])

    # --- out of core: the same decisions (plan_deconvolution) made once on a central sample -------
    def _plan_psf(self, sample: ImageData, params: DeconvolveParams, inputs: Mapping[str, Any]) -> np.ndarray:
        src = self._sources(inputs, params)
        shape = tuple(sample.metadata.get("shape") or sample.data.shape)
        if src["psf"] is not None and _is_prepared(inputs["psf"]) and params.psf_voxel_size is None:
            p = src["psf"]
        else:
            psf = src["psf"]
            if src["beads"] is not None:
                psf = extract_psf_from_beads(src["beads"], voxel_size=sample.voxel_size)[0]
            pvs = _psf_voxel_size(inputs.get("psf"), params.psf_voxel_size, sample.voxel_size)
            p, _ = make_psf_for_image(shape, psf=psf, psf_voxel_size=pvs,
                                      psf_model=None if psf is not None else src["psf_model"], na=params.na,
                                      wavelength=params.wavelength, refractive_index=params.refractive_index,
                                      voxel_size=sample.voxel_size, psf_shape=params.psf_shape)
        p = np.asarray(p, np.float32)
        if p.ndim > sample.data.ndim or p.size == 0 or not np.isfinite(p).all() or p.sum() <= 0:
            raise FluoreconError(f"PSF of shape {p.shape} does not fit a {sample.data.ndim}-D image (or is empty / "
                                 "not positive)", hint="give a finite, non-negative PSF with the image's spatial axes")
        return p / p.sum()

    def plan(self, sample: ImageData, params: DeconvolveParams, workdir: Any = None,
             inputs: Mapping[str, Any] | None = None) -> dict[str, Any]:
        if params.method == "learned":
            raise FluoreconError("learned deconvolution is not available out of core",
                                 hint="use rl, rl-accel, rl-tv, rl-wb or wiener, or run it in memory (a .tif output)")
        p = self._plan_psf(sample, params, inputs or {})
        r = plan_deconvolution(sample.data, p, method=params.method, iterations=params.iterations,
                               background=params.background, offset=params.offset, padding=params.padding,
                               tv=params.tv, max_iterations=params.max_iterations, gain=params.gain,
                               read_noise=params.read_noise, blocks=True, voxel_size=sample.voxel_size,
                               seed=params.seed, device=params.device)
        whole = sample.metadata.get("whole_mean")
        mean = float(whole()) if callable(whole) else float(np.mean(sample.data))
        r["init"] = max(mean - float(params.offset) - float(r["background"]), 1e-6)
        n = int(r["iterations"])
        margin = ([4 * (q // 2) + 8 for q in p.shape] if params.method == "wiener"
                  else list(B.required_margin(p.shape, n, psf=p)))
        r.update(psf=p.tolist(), margin=margin, block_shape=None if params.block_shape is None
                 else [int(b) for b in params.block_shape],
                 decided_by=(f"stopping rule on a central sample of shape {list(sample.data.shape)}"
                             if params.iterations == "auto" else "user"))
        return r

    def block_halo(self, resolved: Mapping[str, Any]) -> tuple[int, ...]:
        return tuple(int(m) for m in resolved["margin"])

    def block_options(self, resolved: Mapping[str, Any]) -> dict[str, Any]:
        opts: dict[str, Any] = {"memory_factor": 10.0}
        if resolved.get("block_shape"):
            opts["block_shape"] = tuple(resolved["block_shape"])
        return opts

    def apply_block(self, block: np.ndarray, resolved: Mapping[str, Any]) -> np.ndarray:
        r = dict(resolved)
        r["psf"] = np.asarray(r["psf"], np.float32)
        return np.asarray(deconvolve_block(block, r), np.float32)
