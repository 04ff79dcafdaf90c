"""Forward-model consistency: does the reconstruction explain the recording, and nothing more?

Re-apply the forward model f to the reconstruction ŷ and compare f(ŷ) with the recording x under the
noise model. The noise-normalised residual ``r = (x - f(ŷ)) / sqrt(Var[x | f(ŷ)])`` has, when ŷ is the
truth, ``E[r] = 0`` and ``E[r²] = 1`` *exactly* for any noise distribution whose variance the model gets
right (Poisson, Gaussian, Poisson–Gaussian). Everything is therefore reported as an **excess over
noise**, which is 0 in expectation for the truth itself:

* ``excess_map`` — local reduced χ² minus 1: a normalised Gaussian window ``w`` smooths r² (the window
  is renormalised at the borders so its expectation stays 1 everywhere).
* ``coherent_map`` — the smoothed *signed* residual divided by its noise standard deviation
  ``sqrt(Σ w_eff²)``; N(0, 1) under noise alone. Systematic errors (a structure the reconstruction added
  or removed) are spatially coherent, so averaging raises them above the noise by ``sqrt(N_window)``
  while white noise averages out. ``coherent_excess_map = coherent_map² - 1`` has expectation 0.
* ``excess_score`` — global mean of r² minus 1, with its z-score ``excess / sqrt(2/N)``.

The residual-whiteness test (:func:`residual_whiteness`) checks the other symptom of a bad
reconstruction, especially where f is close to the identity (denoising): the residual of a good
denoiser is structureless, i.e. its spatial autocorrelation and its correlation with the image are 0.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from fluorecon.errors import FluoreconError
from fluorecon.trust._common import as_float_array, masked_smooth, resolve_variance, smoothing_kernel

__all__ = ["ConsistencyResult", "WhitenessResult", "consistency", "normalized_residual", "residual_whiteness"]


@dataclass
class ConsistencyResult:
    """Result of :func:`consistency`.

    Attributes
    ----------
    map : ndarray
        Local reduced χ² of the normalised residual (1 = as expected from noise alone).
    score : float
        Global reduced χ² (mean r²).
    excess_map : ndarray
        ``map - 1``: local excess over noise (0 in expectation for the truth).
    excess_score : float
        ``score - 1``: global excess over noise.
    coherent_map : ndarray
        Smoothed signed residual in noise standard deviations (N(0, 1) under noise alone; positive
        where the reconstruction explains *less* signal than recorded, negative where it adds signal).
    coherent_excess_map : ndarray
        ``coherent_map² - 1`` (0 in expectation under noise alone): the hallucination map.
    coherent_excess_score : float
        Mean of ``coherent_excess_map``.
    z_score : float
        ``excess_score / sqrt(2 / N)``: how many sampling standard deviations the global excess is.
    residual : ndarray
        The normalised residual r itself.
    info : dict
        Noise-model source, smoothing sigma, number of pixels.
    """

    map: np.ndarray
    score: float
    excess_map: np.ndarray
    excess_score: float
    coherent_map: np.ndarray
    coherent_excess_map: np.ndarray
    coherent_excess_score: float
    z_score: float
    residual: np.ndarray
    info: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Scores only (no arrays), JSON-able."""
        return {"chi2": float(self.score), "excess": float(self.excess_score),
                "coherent_excess": float(self.coherent_excess_score), "z_score": float(self.z_score),
                "max_local_excess": float(np.max(self.coherent_excess_map)), **self.info}


def _expected(forward: Any, reconstruction: np.ndarray) -> np.ndarray:
    if forward is None:
        return reconstruction
    fn = forward.expected if hasattr(forward, "expected") else forward
    if not callable(fn):
        raise FluoreconError(f"forward model {forward!r} is not callable",
                             hint="pass a fluorecon.physics.forward.Forward or a function y -> E[x | y]")
    return as_float_array(fn(reconstruction.astype(np.float32)), "forward(reconstruction)")


def normalized_residual(observed, reconstruction, forward=None, *, noise_variance=None) -> tuple[np.ndarray, dict]:
    """Noise-normalised residual ``(x - f(ŷ)) / sqrt(Var[x | f(ŷ)])``.

    Parameters
    ----------
    observed : array
        The recording x (camera units, as the forward model produces them).
    reconstruction : array
        The reconstruction ŷ (units the forward model takes).
    forward : Forward or callable, optional
        ``forward.expected(ŷ)`` gives E[x | ŷ]; ``forward.variance(E[x])`` the noise variance. ``None``
        means f is the identity (denoising in the recording's units).
    noise_variance : float, array or callable, optional
        Overrides the noise variance (e.g. a known σ² or ``lambda m: gain * m + read²``).

    Returns
    -------
    residual : ndarray
    info : dict

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = np.full((64, 64), 100.0)
    >>> r, _ = normalized_residual(rng.poisson(y), y, noise_variance=lambda m: m)
    >>> abs(float((r**2).mean()) - 1) < 0.1
    True
    """
    x = as_float_array(observed, "observed")
    y = as_float_array(reconstruction, "reconstruction")
    m = _expected(forward, y)
    if m.shape != x.shape:
        raise FluoreconError(f"forward(reconstruction) has shape {m.shape} but the observed image has {x.shape}",
                             hint="pass the recording and a reconstruction on the grid the forward model expects")
    v, source = resolve_variance(m, forward, noise_variance, observed=x)
    return (x - m) / np.sqrt(v), {"noise_model": source}


def consistency(observed, reconstruction, forward=None, *, noise_variance=None, sigma: float = 2.0) -> ConsistencyResult:
    """Forward-model consistency of a reconstruction, as an excess over what noise alone gives.

    Parameters
    ----------
    observed, reconstruction, forward, noise_variance
        See :func:`normalized_residual`.
    sigma : float
        Gaussian smoothing scale in pixels for the local maps (about the PSF scale).

    Returns
    -------
    ConsistencyResult

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> truth = np.full((64, 64), 50.0)
    >>> x = rng.poisson(truth).astype(float)
    >>> res = consistency(x, truth, noise_variance=lambda m: m)
    >>> abs(res.excess_score) < 0.1
    True
    >>> bad = truth.copy(); bad[20:30, 20:30] += 30   # an inserted structure
    >>> bool(consistency(x, bad, noise_variance=lambda m: m).coherent_excess_map.max() > 10)
    True
    """
    r, info = normalized_residual(observed, reconstruction, forward, noise_variance=noise_variance)
    spatial = min(r.ndim, 3)
    k = smoothing_kernel(sigma, spatial)
    chi2_map, _ = masked_smooth(r**2, k)
    smooth_r, sum_w2 = masked_smooth(r, k)
    coherent = smooth_r / np.sqrt(sum_w2)
    n = r.size
    excess = float(np.mean(r**2) - 1.0)
    info.update(sigma=float(sigma), n_pixels=int(n))
    return ConsistencyResult(
        map=chi2_map.astype(np.float32), score=float(np.mean(r**2)), excess_map=(chi2_map - 1).astype(np.float32),
        excess_score=excess, coherent_map=coherent.astype(np.float32),
        coherent_excess_map=(coherent**2 - 1).astype(np.float32),
        coherent_excess_score=float(np.mean(coherent**2) - 1), z_score=excess / np.sqrt(2.0 / n),
        residual=r.astype(np.float32), info=info)


@dataclass
class WhitenessResult:
    """Result of :func:`residual_whiteness`.

    ``autocorr`` maps each lag (as ``"dy,dx"``) to the residual's autocorrelation at that lag;
    ``q_stat`` is the Ljung–Box-type statistic ``Σ n_k ρ_k²`` (χ² with ``len(autocorr)`` degrees of
    freedom for white noise) and ``p_value`` its upper tail. ``image_corr`` is the correlation of the
    residual with the image and ``image_corr_z = image_corr * sqrt(N)`` its z-score (N(0,1) when the
    residual is white and independent of the image). ``white`` is True when both tests pass at ``alpha``.
    """

    autocorr: dict
    q_stat: float
    p_value: float
    image_corr: float | None
    image_corr_z: float | None
    image_corr_p: float | None
    white: bool
    alpha: float

    def to_dict(self) -> dict:
        return {"autocorr": {k: float(v) for k, v in self.autocorr.items()}, "q_stat": float(self.q_stat),
                "p_value": float(self.p_value), "image_corr": self.image_corr, "image_corr_z": self.image_corr_z,
                "image_corr_p": self.image_corr_p, "white": bool(self.white), "alpha": self.alpha,
                "max_abs_autocorr": float(max(abs(v) for v in self.autocorr.values()))}


def _lags(ndim: int, max_lag: int) -> list[tuple[int, ...]]:
    """Half-space of non-zero lags with |lag|_inf <= max_lag (each ±pair counted once)."""
    grids = np.stack(np.meshgrid(*[np.arange(-max_lag, max_lag + 1)] * ndim, indexing="ij"), -1).reshape(-1, ndim)
    out = []
    for g in grids:
        nz = np.nonzero(g)[0]
        if len(nz) and g[nz[0]] > 0:
            out.append(tuple(int(v) for v in g))
    return out


def _overlap(a: np.ndarray, lag: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    s1, s2 = [], []
    for d in lag:
        s1.append(slice(0, -d if d > 0 else None) if d >= 0 else slice(-d, None))
        s2.append(slice(d, None) if d >= 0 else slice(0, d))
    lead = (slice(None),) * (a.ndim - len(lag))
    return a[lead + tuple(s1)], a[lead + tuple(s2)]


def residual_whiteness(residual, image=None, *, max_lag: int = 2, spatial_ndim: int | None = None,
                       alpha: float = 1e-3) -> WhitenessResult:
    """Test whether a residual is white noise: no spatial autocorrelation, no correlation with the image.

    Parameters
    ----------
    residual : array
        A residual, ideally noise-normalised (e.g. ``ConsistencyResult.residual`` or
        ``(noisy - denoised) / sigma``).
    image : array, optional
        The reconstruction (or recording) the residual should be independent of.
    max_lag : int
        Lags up to this many pixels along each spatial axis.
    spatial_ndim : int, optional
        Number of trailing spatial axes (default: all axes, at most 3).
    alpha : float
        Significance level for ``white``. The default is strict because images have many pixels: with
        10⁶ pixels even tiny, harmless correlations become significant; read ``autocorr`` for size.

    Returns
    -------
    WhitenessResult

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> residual_whiteness(rng.normal(size=(128, 128))).white
    True
    >>> from scipy.ndimage import gaussian_filter
    >>> residual_whiteness(gaussian_filter(rng.normal(size=(128, 128)), 1.0)).white
    False
    """
    r = as_float_array(residual, "residual")
    nd = spatial_ndim or min(r.ndim, 3)
    if any(s <= max_lag for s in r.shape[-nd:]):
        raise FluoreconError(f"residual of shape {r.shape} is too small for lags up to {max_lag}",
                             hint="use a larger image or a smaller max_lag")
    z = (r - r.mean()) / max(r.std(), 1e-12)
    ac = {}
    q = 0.0
    for lag in _lags(nd, max_lag):
        a, b = _overlap(z, lag)
        rho = float(np.mean(a * b))
        ac[",".join(map(str, lag))] = rho
        q += a.size * rho**2
    p = float(stats.chi2.sf(q, df=len(ac)))
    corr = corr_z = corr_p = None
    if image is not None:
        im = as_float_array(image, "image")
        if im.shape != r.shape:
            raise FluoreconError(f"image shape {im.shape} differs from residual shape {r.shape}",
                                 hint="pass the image the residual was computed from")
        sd = im.std()
        if sd > 0:
            corr = float(np.mean(z * (im - im.mean()) / sd))
            corr_z = corr * np.sqrt(r.size)
            corr_p = float(2 * stats.norm.sf(abs(corr_z)))
    white = p >= alpha and (corr_p is None or corr_p >= alpha)
    return WhitenessResult(autocorr=ac, q_stat=float(q), p_value=p, image_corr=corr,
                           image_corr_z=None if corr_z is None else float(corr_z), image_corr_p=corr_p,
                           white=bool(white), alpha=alpha)
