"""Removal of the low-frequency scattered-light component (haze): scattering-model fit or lower envelope.

Two estimators. ``method="model"`` (default) fits the forward model of
:mod:`fluorecon.physics.scattering`, ``x = y + α·G_σ * y + β``, to each plane: the haze is the scattered
fraction of the in-focus signal, so it is *reassigned* (the inverse ``(1 + α·Ĝ_σ)⁻¹`` in Fourier space,
never amplifying noise) rather than cut away; low-frequency parts of the true signal (dim cytoplasm,
the interior of large nuclei) are kept. α, σ and β come from the data (:func:`fit_haze`): on pixels
where the in-focus signal is empty the recording is haze alone, ``x = α·G_σ * y + β``, a linear
least-squares problem in (α, β) for each σ; the empty pixels are re-estimated from the result a few
times. ``method="envelope"`` is the non-linear low-pass of light-sheet pipelines; it removes
everything below a smooth lower envelope, including true low-frequency signal (benchmarks/README.md,
"Dehaze": flux −30…−40 % on the mixed phantoms, +27…+43 % under dense nuclei).

The envelope: the haze is smooth; structures are not. The background is
estimated as a smooth *lower envelope*: starting from the image, repeatedly smooth ``min(image,
background)`` with a Gaussian of width ``size`` — bright structures are clipped at every round, so they
do not leak into the estimate (edges are preserved), while the smooth haze is followed. The size is
chosen from the data: a multiple of the largest structure scale (the σ that maximises the
scale-normalised Laplacian-of-Gaussian energy).

Examples
--------
>>> from fluorecon.physics.scattering import simulate_haze
>>> sim = simulate_haze((64, 64), photons=None, seed=0)
>>> out, info = dehaze(sim["recording"])
>>> bool(abs(out.sum() / sim["truth"].sum() - 1) < 0.05 < abs(sim["recording"].sum() / sim["truth"].sum() - 1))
True
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
from scipy import ndimage, optimize

from fluorecon.errors import FluoreconError
from fluorecon.validation import as_image

__all__ = ["dehaze", "fit_haze", "haze_background", "reassign_haze", "structure_scale"]


def structure_scale(image: Any, sigmas: tuple[float, ...] = (1, 1.5, 2, 3, 4, 6, 8, 12, 16)) -> float:
    """The characteristic (largest dominant) structure size σ in pixels of a 2D image.

    The σ maximising the mean positive scale-normalised LoG response ``σ²·(−∇²G_σ * x)`` over the
    brightest 5 % of responses.

    Examples
    --------
    >>> y = np.zeros((64, 64)); y[32, 32] = 1
    >>> structure_scale(ndimage.gaussian_filter(y, 4)) >= 3
    True
    """
    x = np.asarray(image, np.float64)
    if x.ndim != 2:
        raise FluoreconError(f"structure_scale needs a 2D image, got shape {x.shape}")
    sig = [s for s in sigmas if s < min(x.shape) / 4] or [sigmas[0]]
    scores = []
    for s in sig:
        r = -(s**2) * ndimage.gaussian_laplace(x, s, mode="reflect")
        r = r[r > 0]
        scores.append(float(np.mean(np.sort(r)[-max(1, r.size // 20):])) if r.size else 0.0)
    return float(sig[int(np.argmax(scores))])


def haze_background(plane: np.ndarray, size: float, iterations: int = 30, downsample: int | None = None) -> np.ndarray:
    """Smooth lower envelope of a 2D plane: ``b ← G_size * min(x, b)`` repeated (clipped low-pass).

    Computed on a grid downsampled by about ``size/4`` (the envelope is smooth) and interpolated back.

    Examples
    --------
    >>> x = np.full((32, 32), 5.0); x[10:14, 10:14] = 100
    >>> b = haze_background(x, 4)
    >>> bool(abs(b[12, 12] - 5) < 5)
    True
    """
    x = np.asarray(plane, np.float64)
    f = max(1, int(size // 4)) if downsample is None else max(1, int(downsample))
    if f > 1:
        ny, nx = x.shape
        py, px = (-ny) % f, (-nx) % f
        xp = np.pad(x, ((0, py), (0, px)), mode="reflect")
        small = xp.reshape(xp.shape[0] // f, f, xp.shape[1] // f, f).mean((1, 3))  # block mean (less noise)
    else:
        small = x
    s = size / f
    b = small.copy()
    for _ in range(iterations):
        b = ndimage.gaussian_filter(np.minimum(small, b), s, mode="reflect")
    if f > 1:
        b = ndimage.zoom(b, f, order=1, mode="nearest", grid_mode=True)[: x.shape[0], : x.shape[1]]
    # the envelope of a noisy image sits below the haze by about the noise amplitude: re-centre it on the
    # background pixels (sigma-clipped residuals, a smooth local correction)
    for _ in range(3):
        r = x - b
        med = np.median(r)
        mad = 1.4826 * np.median(np.abs(r - med)) + 1e-12
        bgmask = r < med + 2.5 * mad
        num = ndimage.gaussian_filter(np.where(bgmask, r, 0.0), size, mode="reflect")
        den = ndimage.gaussian_filter(bgmask.astype(np.float64), size, mode="reflect")
        b = b + np.where(den > 0.05, num / np.maximum(den, 1e-12), 0.0)
    return b


def reassign_haze(plane: Any, alpha: float, sigma: float, beta: float) -> np.ndarray:
    """Invert ``x = y + α·G_σ * y + β`` for ``y`` (Fourier division by ``1 + α·Ĝ_σ ≥ 1``, reflect-padded).

    Examples
    --------
    >>> y = np.zeros((64, 64)); y[20:30, 30:40] = 50
    >>> x = y + 0.8 * ndimage.gaussian_filter(y, 6, mode="reflect") + 2
    >>> bool(np.abs(reassign_haze(x, 0.8, 6, 2) - y).max() < 0.5)
    True
    """
    x = np.asarray(plane, np.float64)
    pad = int(min(np.ceil(4 * sigma), min(x.shape) - 1))
    q = np.pad(x - beta, pad, mode="reflect")
    ky = np.fft.fftfreq(q.shape[0])[:, None]
    kx = np.fft.rfftfreq(q.shape[1])[None]
    otf = np.exp(-2 * np.pi**2 * sigma**2 * (ky**2 + kx**2))
    y = np.fft.irfft2(np.fft.rfft2(q) / (1 + alpha * otf), q.shape)
    return y[pad:pad + x.shape[0], pad:pad + x.shape[1]]


def _poisson_gain(x: np.ndarray) -> float:
    """Variance per unit signal (the camera gain) from 3×3 high-pass residuals (median of χ²₁ = 0.455)."""
    r = x - ndimage.uniform_filter(x, 3, mode="reflect")  # variance (8/9)·g·x where the signal is flat
    ok = x > 0
    if not ok.any():
        return 1.0
    return float(np.median(r[ok] ** 2 / (x[ok] * 8 / 9)) / 0.4549)


def _fit_given_mask(x: np.ndarray, empty: np.ndarray, sigma: float, inner: int = 8) -> tuple[float, float, float]:
    """(misfit, α, β) of ``x ≈ α·G_σ * y + β`` on the empty pixels, ``y = x − haze`` elsewhere, ``y = 0`` there."""
    xm = x[empty]
    a, b = 0.0, float(np.median(xm))
    y = np.where(empty, 0.0, x - b)
    for _ in range(inner):
        g = ndimage.gaussian_filter(y, sigma, mode="reflect")
        gm = g[empty]
        A = np.stack([gm, np.ones_like(gm)], 1)
        (a, b), *_ = np.linalg.lstsq(A, xm, rcond=None)
        if a < 0:  # no scattered fraction: the haze is the constant alone
            a, b = 0.0, float(xm.mean())
        y = np.where(empty, 0.0, x - a * g - b)
    g = ndimage.gaussian_filter(y, sigma, mode="reflect")
    return float(np.mean((xm - a * g[empty] - b) ** 2)), float(a), float(b)


def fit_haze(plane: Any, *, sigma: float | None = None, rounds: int = 4, threshold: float = 3.0,
             envelope_size: float | None = None, envelope_factor: float = 8.0,
             max_size: int = 256) -> dict[str, Any]:
    """Fit the haze model ``x = y + α·G_σ * y + β`` to one plane (α, σ, β from the data).

    Start: the pixels below a smooth lower envelope (:func:`haze_background`) are taken as empty of
    in-focus signal. Each round fits (α, β) by least squares on the empty pixels for every σ of a
    geometric grid (refined by a 1D search), reassigns the haze (:func:`reassign_haze`) and re-marks as
    empty the pixels whose result (smoothed at 1 px) is below ``threshold`` × its shot noise (gain
    estimated from the data). Large planes are fitted on a block-averaged copy of at most ``max_size`` px.

    Parameters
    ----------
    plane : 2D array
    sigma : float, optional
        Fix the halo σ (pixels) instead of searching it.
    rounds, threshold : int, float
        Re-estimations of the empty pixels and their threshold in noise σ.
    envelope_size, envelope_factor : float, optional
        σ of the starting envelope (default ``envelope_factor`` × the structure scale, at least 4 px).

    Returns
    -------
    dict
        ``alpha``, ``sigma`` (pixels of the input), ``beta``, ``empty_fraction``, ``gain``.

    Examples
    --------
    >>> from fluorecon.physics.scattering import HazeForward, simulate_haze
    >>> sim = simulate_haze((128, 128), kind="filaments", photons=100, seed=0,
    ...                     forward=HazeForward(alpha=(1, 1), sigma=(10, 10), background=(1, 1)))
    >>> p = fit_haze(sim["recording"])
    >>> bool(0.7 < p["alpha"] < 1.3 and 6 < p["sigma"] < 16)
    True
    """
    x0 = np.asarray(plane, np.float64)
    if x0.ndim != 2:
        raise FluoreconError(f"fit_haze needs a 2D plane, got shape {x0.shape}")
    f = max(1, int(np.ceil(max(x0.shape) / max_size)))
    if f > 1:
        py, px = (-x0.shape[0]) % f, (-x0.shape[1]) % f
        xp = np.pad(x0, ((0, py), (0, px)), mode="reflect")
        x = xp.reshape(xp.shape[0] // f, f, xp.shape[1] // f, f).mean((1, 3))
    else:
        x = x0
    gain = _poisson_gain(x)
    s0 = envelope_size / f if envelope_size else max(4.0, envelope_factor * structure_scale(x))
    r = x - haze_background(x, s0)
    med = float(np.median(r))
    empty = r < med + 0.5 * 1.4826 * float(np.median(np.abs(r - med)))
    hi = max(2.0, min(x.shape) / 3)
    grid = [float(sigma) / f] if sigma else list(np.geomspace(1.5, hi, 10))
    best = (np.inf, 0.0, grid[0], float(np.median(x)))
    for rnd in range(rounds + 1):
        if empty.sum() < 16:  # nothing empty: the plane is all signal, keep the previous fit
            break
        fits = [(*_fit_given_mask(x, empty, s), s) for s in grid]
        i = int(np.argmin([v[0] for v in fits]))
        if len(grid) > 1 and rnd == rounds:  # refine σ between the grid neighbours (log scale)
            lo, up = np.log(grid[max(i - 1, 0)]), np.log(grid[min(i + 1, len(grid) - 1)])
            res = optimize.minimize_scalar(lambda t, m=empty: _fit_given_mask(x, m, float(np.exp(t)))[0],
                                           bounds=(lo, up), method="bounded", options={"xatol": 0.02})
            s_ref = float(np.exp(res.x))
            cand = (*_fit_given_mask(x, empty, s_ref), s_ref)
            if cand[0] < fits[i][0]:
                fits[i] = cand
        mis, a, b, s = fits[i]
        best = (mis, a, s, b)
        if rnd < rounds:
            y = reassign_haze(x, a, s, b)
            noise = np.sqrt(gain * np.maximum(x - y, 1e-3)) / (2 * np.sqrt(np.pi))  # after a σ = 1 px smoothing
            empty = ndimage.gaussian_filter(y, 1.0, mode="reflect") < threshold * noise
    _, a, s, b = best
    return {"alpha": round(a, 4), "sigma": round(s * f, 3), "beta": round(b, 4),
            "empty_fraction": round(float(empty.mean()), 3), "gain": round(gain * f * f, 4), "fit_downsample": f}


def dehaze(image: Any, axes: str | None = None, *, method: str = "model", size: float | str = "auto",
           factor: float = 4.0, iterations: int = 30, keep_dc: float = 0.0,
           clip: bool | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Remove the scattered-light haze of each plane.

    Parameters
    ----------
    image : array (YX, ZYX, or with T/C axes: planes are processed independently)
    axes : str, optional
    method : {"model", "envelope"}
        "model": fit the scattering model per plane (:func:`fit_haze`) and reassign the haze
        (:func:`reassign_haze`); "envelope": subtract a smooth lower envelope (:func:`haze_background`).
    size : float or "auto"
        "model": the halo σ in pixels ("auto": fitted). "envelope": the Gaussian σ of the background
        ("auto": ``factor`` × the structure scale of each plane (:func:`structure_scale`), at least 4 px).
    factor : float
        "envelope": multiple of the structure scale used for the background σ.
    iterations : int
        "envelope": rounds of the clipped low-pass.
    keep_dc : float
        "envelope": fraction of the estimated background's mean added back (0 = remove all haze).
    clip : bool, optional
        Clip the result at 0. Default: True for "envelope", False for "model" — clipping the shot noise
        of empty pixels adds flux (+1…+27 % at 100 photons on the simulated phantoms), and the
        unclipped result keeps ``x = result + haze`` exact.

    Returns
    -------
    (np.ndarray, dict)
        Float32 result (same shape) and info: ``size`` per plane, ``seconds``; for "model" also
        ``alpha``, ``beta`` per plane.

    Examples
    --------
    >>> out, info = dehaze(np.ones((2, 16, 16)) + np.eye(16)[None] * 10, "ZYX", method="envelope", size=4)
    >>> out.shape, info["size"]
    ((2, 16, 16), [4.0, 4.0])
    """
    t0 = time.perf_counter()
    x, ax = as_image(image, axes)
    if method not in ("model", "envelope"):
        raise FluoreconError(f"unknown dehaze method {method!r}", hint="use 'model' or 'envelope'")
    if isinstance(size, str) and size != "auto":
        raise FluoreconError(f"size must be a number of pixels or 'auto', got {size!r}")
    if not isinstance(size, str) and size <= 0:
        raise FluoreconError(f"size must be positive, got {size}")
    do_clip = (method == "envelope") if clip is None else bool(clip)
    planes = x.reshape(-1, *x.shape[-2:])
    out = np.empty_like(planes)
    sizes: list[float] = []
    fits: list[dict[str, Any]] = []
    for i, p in enumerate(planes):
        if method == "model":
            fit = fit_haze(p, sigma=None if size == "auto" else float(size))
            y = reassign_haze(p, fit["alpha"], fit["sigma"], fit["beta"])
            fits.append(fit)
            s = fit["sigma"]
        else:
            s = max(4.0, factor * structure_scale(p)) if size == "auto" else float(size)
            b = haze_background(p, s, iterations)
            y = p - b + keep_dc * b.mean()
        out[i] = np.clip(y, 0, None) if do_clip else y
        sizes.append(round(float(s), 3))
    info: dict[str, Any] = {"method": method, "size": sizes, "clip": do_clip, "axes": ax,
                            "seconds": round(time.perf_counter() - t0, 3)}
    if method == "model":
        info.update(alpha=[f["alpha"] for f in fits], beta=[f["beta"] for f in fits],
                    empty_fraction=[f["empty_fraction"] for f in fits])
    else:
        info.update(factor=factor, iterations=iterations)
    return out.reshape(x.shape).astype(np.float32), info
