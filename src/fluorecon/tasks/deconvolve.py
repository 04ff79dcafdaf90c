"""Deconvolution as an application: PSF handling, channels, methods, blocks, learned deconvolution.

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
:func:`fluorecon.physics.beads.extract_psf_from_beads`).

Examples
--------
>>> from fluorecon.physics.psf import gaussian_psf
>>> img = np.random.default_rng(0).random((16, 32, 32)).astype(np.float32)
>>> out, info = deconvolve(img, "ZYX", psf=gaussian_psf((7, 9, 9), 1.5), iterations=5)
>>> out.shape, info["iterations"]
((16, 32, 32), 5)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fluorecon.errors import FluoreconError
from fluorecon.validation import as_image, to_numpy

__all__ = ["METHODS", "deconvolve", "learned_deconvolution", "make_psf_for_image"]

METHODS = ("rl", "rl-accel", "rl-tv", "rl-wb", "wiener", "learned")


def make_psf_for_image(spatial_shape: Sequence[int], *, psf: Any = None, psf_voxel_size: Sequence[float] | None = None,
                       psf_model: str | None = None, na: float | None = None, wavelength: float | None = None,
                       refractive_index: float = 1.518, voxel_size: Sequence[float] | None = None,
                       beads: Any = None, psf_shape: Sequence[int] | None = None) -> tuple[np.ndarray, dict]:
    """Build the PSF for an image of ``spatial_shape`` from one of the three sources; returns (psf, info).

    Examples
    --------
    >>> p, info = make_psf_for_image((16, 64, 64), psf_model="gaussian", na=1.4, wavelength=0.52,
    ...                              voxel_size=(0.3, 0.1, 0.1))
    >>> p.ndim, info["source"]
    (3, 'model:gaussian')
    """
    from fluorecon.physics import psf as P

    spatial_shape = tuple(int(s) for s in spatial_shape)
    nd = len(spatial_shape)
    given = [s for s, v in (("psf", psf), ("psf_model", psf_model), ("beads", beads)) if v is not None]
    if len(given) != 1:
        raise FluoreconError(f"give exactly one PSF source (psf, psf_model or beads), got {given or 'none'}",
                             hint="CLI: --psf FILE, --psf-model widefield --na ... --wavelength ..., or --psf-from-beads FILE")
    info: dict[str, Any] = {}
    if psf is not None:
        arr = to_numpy(psf, "PSF")
        if arr.ndim > nd:
            arr = np.squeeze(arr)
        p = P.prepare_psf(arr, spatial_shape, psf_voxel_size, voxel_size)
        info["source"] = "given"
    elif beads is not None:
        from fluorecon.physics.beads import extract_psf_from_beads

        p0, binfo = extract_psf_from_beads(beads, voxel_size=voxel_size)
        p = P.prepare_psf(p0, spatial_shape)
        info.update(source="beads", beads=binfo)
    else:
        if voxel_size is None:
            raise FluoreconError(f"the {psf_model} PSF model needs the voxel size",
                                 hint="pass voxel_size=(z, y, x) in µm (CLI: --voxel-size Z Y X)")
        vs = tuple(float(v) for v in voxel_size)[-nd:]
        if len(vs) != nd:
            raise FluoreconError(f"voxel size {tuple(voxel_size)} does not match the image's {nd} spatial axes",
                                 hint=f"give {nd} sizes in µm")
        if na is None or wavelength is None:
            raise FluoreconError("a PSF model needs na and wavelength", hint="e.g. na=1.4, wavelength=0.52 (µm)")
        if psf_shape is None:
            # cover ±3 FWHM laterally and axially (odd sizes), no larger than the image
            fwhm_xy = 0.51 * wavelength / na
            fwhm_z = 0.88 * wavelength / max(refractive_index - np.sqrt(max(refractive_index**2 - na**2, 0.0)), 1e-3)
            ext = [fwhm_z if (nd == 3 and i == 0) else fwhm_xy for i in range(nd)]
            psf_shape = tuple(min(s, 2 * int(np.ceil(3 * e / v)) + 1) for s, e, v in zip(spatial_shape, ext, vs, strict=True))
            psf_shape = tuple(max(3, q - (1 - q % 2)) for q in psf_shape)
        if psf_model == "gaussian":
            p = P.gaussian_psf_from_optics(psf_shape, vs, na, wavelength, refractive_index)
        elif psf_model in ("widefield", "born-wolf", "gibson-lanni"):
            model = "gibson-lanni" if psf_model == "gibson-lanni" else "born-wolf"
            p = P.widefield_psf(psf_shape, vs, na, wavelength, refractive_index, model=model)
        else:
            raise FluoreconError(f"unknown PSF model {psf_model!r}", hint="use gaussian, widefield or gibson-lanni")
        p = P.prepare_psf(p, spatial_shape)
        info["source"] = f"model:{psf_model}"
        info.update(na=na, wavelength=wavelength, refractive_index=refractive_index)
    info["psf_shape"] = list(p.shape)
    return p, info


def _split_channels(psf: np.ndarray, n_channels: int, nd: int) -> list[np.ndarray] | None:
    if psf.ndim == nd + 1:
        if psf.shape[0] != n_channels:
            raise FluoreconError(f"PSF has {psf.shape[0]} channels but the image has {n_channels}",
                                 hint="give one PSF per channel (CZYX / CYX) or a single PSF for all")
        return [psf[c] for c in range(n_channels)]
    return None


def deconvolve(image: Any, axes: str | None = None, psf: Any = None, method: str = "rl", iterations: int | str = 20, *,
               voxel_size: Sequence[float] | None = None, psf_voxel_size: Sequence[float] | None = None,
               psf_model: str | None = None, na: float | None = None, wavelength: float | None = None,
               refractive_index: float = 1.518, beads: Any = None, background: float | str = 0.0,
               offset: float = 0.0, padding: str = "reflect", tv: float = 0.002, balance: float | None = None,
               block_shape: int | Sequence[int] | None = None, max_iterations: int = 100, budget_s: float = 120.0,
               seed: int = 0, device: str = "cpu", progress: Callable[[int, int], Any] | None = None,
               ) -> tuple[np.ndarray, dict]:
    """Deconvolve an image (2D/3D, with optional T/C axes) and describe what was done.

    Parameters
    ----------
    image : array-like or fluorecon.io.ImageData
    axes : str, optional
        E.g. ``"ZYX"``, ``"CZYX"``, ``"TYX"`` (from the ImageData or guessed for 2D/3D).
    psf : array-like, optional
        One PSF for all channels, or one per channel (leading C axis).
    method : {"rl", "rl-accel", "rl-tv", "rl-wb", "wiener", "learned"}
    iterations : int or "auto"
        ``"auto"``: ground-truth-free stopping rule (relative change), at most ``max_iterations``.
    voxel_size : tuple of float, optional
        µm per spatial axis; required by PSF models, used to resample a measured PSF.
    background, offset : float or "auto"
        See :func:`fluorecon.classical.deconvolve.richardson_lucy`.
    block_shape : int or tuple, optional
        Process in overlapping blocks of this core size (bounded memory; decisions made globally).
    budget_s, seed : learned deconvolution training budget (seconds) and seed.
    progress : callable, optional
        ``progress(done, total)``.

    Returns
    -------
    (numpy.ndarray float32, dict)
        The deconvolved image (same shape and axes) and an info dict (method, iterations, PSF source,
        background, timings, per-channel details).

    Raises
    ------
    FluoreconError
        Unknown method, ``iterations`` < 1, missing voxel size for a PSF model, bad PSF or image.
    """
    t0 = time.perf_counter()
    if hasattr(image, "data") and hasattr(image, "axes"):
        axes = axes or image.axes
        if voxel_size is None:
            voxel_size = getattr(image, "voxel_size", None)
        image = image.data
    arr, ax = as_image(image, axes)
    if method not in METHODS:
        raise FluoreconError(f"unknown deconvolution method {method!r}", hint=f"use one of {', '.join(METHODS)}")
    if iterations != "auto":
        if isinstance(iterations, bool) or not isinstance(iterations, int | np.integer) or iterations < 1:
            raise FluoreconError(f"iterations must be a positive integer or 'auto', got {iterations!r}",
                                 hint="e.g. 20 (typical 10–50), or 'auto' to stop by the relative-change rule")
    nd = 3 if "Z" in ax else 2
    spatial = arr.shape[-nd:]
    lead = arr.shape[:-nd]
    lead_axes = ax[:-nd]
    if float(arr.max()) - offset <= 0:
        raise FluoreconError("image is zero or negative everywhere (after the offset)",
                             hint="check the file, the channel and the --offset value")
    psf_arr = None if psf is None else to_numpy(psf, "PSF")
    per_channel = None
    if psf_arr is not None and "C" in lead_axes and psf_arr.ndim == nd + 1:
        per_channel = _split_channels(psf_arr, arr.shape[lead_axes.index("C")], nd)
    if per_channel is None:
        p, pinfo = make_psf_for_image(spatial, psf=psf_arr, psf_voxel_size=psf_voxel_size, psf_model=psf_model, na=na,
                                      wavelength=wavelength, refractive_index=refractive_index, voxel_size=voxel_size,
                                      beads=beads)
        psfs = None
    else:
        psfs = [make_psf_for_image(spatial, psf=q, psf_voxel_size=psf_voxel_size, voxel_size=voxel_size)[0]
                for q in per_channel]
        p, pinfo = psfs[0], {"source": "given, one per channel", "psf_shape": list(psfs[0].shape)}
    # saturation is reported, not silently "fixed": saturated cores break the blur model
    sat_level = float(arr.max())
    n_sat = int((arr >= sat_level).sum()) if arr.dtype.kind == "f" and sat_level > 0 else 0
    info: dict[str, Any] = {"method": method, "axes": ax, "psf": pinfo, "voxel_size": None if voxel_size is None
                            else list(voxel_size), "offset": offset}
    if n_sat > max(8, 1e-4 * arr.size) and np.issubdtype(np.asarray(image).dtype, np.integer):
        info["warning"] = (f"{n_sat} pixels at the maximum value {sat_level:g} (saturated?): RL cannot restore "
                           "clipped intensities and may ring around them")
    if background == "auto":
        from fluorecon.classical.deconvolve import estimate_background

        background = estimate_background(arr - offset if offset else arr)
    info["background"] = background
    out = np.empty(arr.shape, dtype=np.float32)
    items = list(np.ndindex(*lead)) if lead else [()]
    details = []
    for i, idx in enumerate(items):
        pc = p
        if psfs is not None:
            pc = psfs[idx[lead_axes.index("C")]]
        res, d = _one(arr[idx], pc, method, iterations, voxel_size=voxel_size, background=background, offset=offset,
                      padding=padding, tv=tv, balance=balance, block_shape=block_shape, max_iterations=max_iterations,
                      budget_s=budget_s, seed=seed, device=device, progress=progress if len(items) == 1 else None)
        out[idx] = res
        details.append(d)
        if progress is not None and len(items) > 1:
            progress(i + 1, len(items))
    info.update({k: v for k, v in details[0].items() if k not in info})
    if len(details) > 1:
        info["per_item"] = details
        its = [d.get("iterations") for d in details if d.get("iterations") is not None]
        if its:
            info["iterations"] = max(its)
    info["seconds"] = time.perf_counter() - t0
    return out, info


def _one(img: np.ndarray, psf: np.ndarray, method: str, iterations, *, voxel_size, background, offset, padding, tv,
         balance, block_shape, max_iterations, budget_s, seed, device, progress) -> tuple[np.ndarray, dict]:
    from fluorecon.classical import deconvolve as D

    if method == "learned":
        return learned_deconvolution(img, psf, budget_s=budget_s, seed=seed, device=device, offset=offset)
    if block_shape is not None:
        res, info = D.richardson_lucy_blocks(img, psf, iterations, block_shape, method=method, background=background,
                                             offset=offset, padding=padding, tv=tv, max_iterations=max_iterations,
                                             balance=balance, device=device, progress=progress, return_info=True,
                                             voxel_size=voxel_size)
        info["blocks"] = True
        return res, info
    if method == "wiener":
        return D.wiener(img, psf, balance, offset=offset, background=background, device=device, return_info=True)
    n = max_iterations if iterations == "auto" else int(iterations)
    cb = None
    if progress is not None:
        def cb(k, _x):
            progress(k, n)
        cb.needs_estimate = False
    res, info = D.richardson_lucy(img, psf, n, padding=padding, background=background, offset=offset,
                                  accelerate=method == "rl-accel", tv=tv if method == "rl-tv" else 0.0,
                                  backprojector="wb" if method == "rl-wb" else None,
                                  stop="auto" if iterations == "auto" else None, voxel_size=voxel_size,
                                  callback=cb, device=device, return_info=True)
    info.pop("criterion", None) if len(info.get("criterion", [])) > 200 else None
    return res, info


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
