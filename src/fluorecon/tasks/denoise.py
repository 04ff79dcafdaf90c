"""Denoising, the review's first application (CARE, Fig. 1a): one entry point, classical or learned.

- Classical methods (``auto``, ``nlm``, ``tv``, ``wavelet``, ``bm3d``) run immediately, each tuned on
  the image itself by J-invariant self-calibration (:mod:`fluorecon.classical.denoise`).
- Self-supervised learned schemes (``n2v``, ``n2v2``, ``structn2v``, ``nb2nb`` — whatever
  :mod:`fluorecon.learn.single_image` offers) train a U-Net on the noisy image alone for ``budget_s``
  seconds and then predict it.

The output is always float32 in the **input's intensity units** (no normalisation left over), so it
can be compared with a ground truth recorded on the same camera.

Examples
--------
>>> import numpy as np
>>> x = np.random.default_rng(0).poisson(10, (64, 64)).astype(np.float32)
>>> y, info = denoise(x, "YX", method="tv")
>>> y.dtype, info["kind"]
(dtype('float32'), 'classical')
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from fluorecon.classical.denoise import METHODS as CLASSICAL_METHODS
from fluorecon.errors import FluoreconError

__all__ = ["CLASSICAL", "denoise", "learned_methods"]

CLASSICAL = ("auto", *CLASSICAL_METHODS)


def learned_methods() -> tuple[str, ...]:
    """Names of the single-image learned schemes the engine offers (empty when it is unavailable).

    Examples
    --------
    >>> isinstance(learned_methods(), tuple)
    True
    """
    try:
        from fluorecon.learn.single_image import SINGLE_IMAGE_SCHEMES
    except ImportError:
        return ()
    return tuple(s for s in SINGLE_IMAGE_SCHEMES if s != "auto")


def denoise(image: Any, axes: str | None = None, method: str = "auto", budget_s: float = 120.0, seed: int = 0,
            device: str = "auto", vst: bool = False, progress: bool = True, *, noise_model: Any = None,
            params: dict[str, Any] | None = None, normalization: Any = None, inverse: str = "exact",
            candidates: Any = None, **learn_options: Any) -> tuple[np.ndarray, dict]:
    """Denoise an image with a calibrated classical method or a self-supervised network.

    Parameters
    ----------
    image : numpy.ndarray or fluorecon.io.ImageData
        Noisy image: ``YX``, ``ZYX``, or a stack with ``T``/``C`` axes.
    axes : str, optional
        Its axes (default from an ``ImageData``, else ``YX``/``ZYX`` by dimensionality).
    method : str
        ``"auto"`` (best calibrated classical method by the self-supervised loss), ``"nlm"``,
        ``"tv"``, ``"wavelet"``, ``"bm3d"``, or a learned single-image scheme (``"n2v"``, ``"n2v2"``,
        ``"structn2v"``, ``"nb2nb"``, ...; unknown names are passed to the engine, which says which
        ones exist).
    budget_s : float
        Training wall-time budget of learned schemes, seconds.
    seed : int
        Seed of the learned schemes (classical calibration is deterministic).
    device : {"auto", "cpu", "cuda"}
        Device of learned schemes.
    vst : bool
        Generalised Anscombe transform before, exact unbiased inverse after (Poisson–Gaussian data),
        for classical and learned methods alike.
    progress : bool
        Progress bar while training.
    noise_model : NoiseModel or dict, optional
        Camera noise model for the VST (default: estimated from the image).
    params, normalization, inverse, candidates
        Classical only: explicit parameters (skip calibration), fixed normalisation ``(low, scale)``,
        VST inverse, and the methods ``"auto"`` compares (see
        :func:`fluorecon.classical.denoise.denoise_classical`).
    **learn_options
        Passed to :func:`fluorecon.learn.single_image.denoise_single_image` (``steps``, ``tta``, any
        training-config field).

    Returns
    -------
    (numpy.ndarray, dict)
        Denoised float32 image in the input's units, and info: ``method`` (the one that ran),
        ``kind`` (``"classical"``/``"learned"``), ``seconds``, and ``params`` — keyword arguments of
        this function that reproduce the run with no estimation (used by out-of-core processing to
        apply one calibration to every block); for classical methods also ``losses``,
        ``calibration``, ``method_params``; for learned ones the engine's info (``steps``,
        ``train_s``, ...) and ``bundle`` (the trained model, not JSON).

    Raises
    ------
    FluoreconError
        Invalid image/axes, unknown method, budget ≤ 0, learned engine unavailable.

    Examples
    --------
    >>> x = np.random.default_rng(0).poisson(10, (64, 64)).astype(np.float32)
    >>> y, info = denoise(x, "YX", method="wavelet")
    >>> y2, _ = denoise(x, "YX", method=info["method"], **info["params"])   # replay, no estimation
    >>> bool(np.allclose(y, y2))
    True
    """
    from fluorecon.validation import as_image

    t0 = time.perf_counter()
    if hasattr(image, "data") and hasattr(image, "axes"):  # ImageData
        axes = axes or image.axes
        image = image.data
    if not isinstance(method, str) or not method:
        raise FluoreconError(f"method must be a non-empty string, got {method!r}",
                             hint=f"use one of {', '.join(CLASSICAL + learned_methods())}")
    method = method.lower()
    arr, ax = as_image(image, axes)

    if method in CLASSICAL:
        from fluorecon.classical.denoise import denoise_classical

        if learn_options:
            raise FluoreconError(f"options {sorted(learn_options)} apply to learned methods only, not {method!r}",
                                 hint="drop them, or choose a learned method such as n2v")
        kw: dict[str, Any] = {"inverse": inverse}
        if candidates is not None:
            kw["candidates"] = tuple(candidates)
        out, cinfo = denoise_classical(arr, method=method, vst=vst, noise_model=noise_model, axes=ax, params=params,
                                       normalization=normalization, **kw)
        info = dict(cinfo)
        info["method_params"] = cinfo["params"]
        used = cinfo["method"]
        replay: dict[str, Any] = {"params": cinfo["params"], "normalization": cinfo.get("normalization"),
                                  "vst": bool(vst), "inverse": inverse}
        if vst and cinfo.get("vst"):
            replay["noise_model"] = {k: cinfo["vst"][k] for k in ("gain", "offset", "read_noise")}
        if "per_channel" in cinfo:  # one calibration per channel cannot be replayed as one set: re-calibrate
            replay = {k: v for k, v in replay.items() if k not in ("params", "normalization")}
        if used == "none":  # nothing to do (noise-free input): replaying "none" must be a no-op too
            replay = {}
        info.update(method=used, kind="classical", params=replay)
    else:
        if params is not None or normalization is not None or candidates is not None:
            raise FluoreconError(f"params/normalization/candidates apply to classical methods, not {method!r}",
                                 hint=f"use them with one of {', '.join(CLASSICAL)}")
        out, info = _learned(arr, ax, method, budget_s, seed, device, vst, progress, noise_model, inverse,
                             learn_options)
    info["seconds"] = time.perf_counter() - t0
    info["axes"] = ax
    return np.asarray(out, dtype=np.float32), info


def _learned(arr, ax, method, budget_s, seed, device, vst, progress, noise_model, inverse, options):
    try:
        from fluorecon.learn.single_image import denoise_single_image
    except ImportError as e:
        raise FluoreconError(f"learned method {method!r} needs fluorecon.learn.single_image, which is not available ({e})",
                             hint=f"use a classical method: {', '.join(CLASSICAL)}") from None
    if budget_s is None or not np.isfinite(budget_s) or budget_s <= 0:
        if options.get("steps") is None:
            raise FluoreconError(f"training budget must be a positive number of seconds, got {budget_s}",
                                 hint="e.g. budget_s=120 (CLI: --budget 120)")
    x = arr
    nm = None
    if vst:
        from fluorecon.classical.vst import as_poisson_gaussian, generalized_anscombe

        if noise_model is None:
            from fluorecon.physics.noise_model import estimate_poisson_gaussian

            noise_model = estimate_poisson_gaussian(arr)
        nm = as_poisson_gaussian(noise_model)
        x = generalized_anscombe(arr, nm).astype(np.float32)
    out, einfo = denoise_single_image(x, ax, scheme=method, budget_s=budget_s, seed=seed, device=device,
                                      progress=progress, **options)
    if nm is not None:
        from fluorecon.classical.vst import inverse_generalized_anscombe

        out = inverse_generalized_anscombe(out, nm, method=inverse)
    info = dict(einfo)
    info.update(method=einfo.get("scheme", method), kind="learned",
                vst=None if nm is None else dict(nm.to_dict(), inverse=inverse),
                params={"budget_s": budget_s, "seed": seed, "vst": bool(vst), **options})
    return out, info
