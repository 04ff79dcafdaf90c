"""Helpers shared by the trust modules: callables over numpy/torch, smoothing, noise variance."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from fluorecon.errors import FluoreconError


def as_float_array(a: Any, name: str) -> np.ndarray:
    """Return ``a`` as a finite float64 numpy array, or raise a ``FluoreconError`` naming ``name``."""
    if hasattr(a, "detach"):  # torch tensor
        a = a.detach().cpu().numpy()
    try:
        arr = np.asarray(a, dtype=np.float64)
    except (TypeError, ValueError):
        raise FluoreconError(f"{name} is not a numeric array", hint="pass a numpy array of numbers") from None
    if arr.size == 0:
        raise FluoreconError(f"{name} is empty", hint="pass a non-empty image")
    if not np.all(np.isfinite(arr)):
        raise FluoreconError(f"{name} contains NaN or infinite values", hint="replace or mask non-finite pixels first")
    return arr


def is_torch_module(g: Any) -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover
        return False
    return isinstance(g, torch.nn.Module)


def numpy_callable(g: Any, spatial_ndim: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """Wrap ``g`` (numpy callable or torch module taking ``(N, C, *spatial)``) as numpy → numpy.

    A torch module is called on ``x[None, None]`` without gradients and its output squeezed back to the
    input's shape, so that every trust tool can treat learned and classical methods alike.
    """
    if not is_torch_module(g):
        if not callable(g):
            raise FluoreconError(f"the reconstruction method {g!r} is not callable",
                                 hint="pass a function array -> array or a torch.nn.Module")
        return lambda x: np.asarray(g(x), dtype=np.float64)

    import torch

    def run(x: np.ndarray) -> np.ndarray:
        param = next(g.parameters(), None)
        dtype = param.dtype if param is not None else torch.float32
        device = param.device if param is not None else torch.device("cpu")
        t = torch.as_tensor(np.asarray(x), dtype=dtype, device=device)[None, None]
        with torch.no_grad():
            out = g(t)
        return out[0, 0].double().cpu().numpy()

    return run


def smoothing_kernel(sigma: float | tuple[float, ...], ndim: int) -> np.ndarray:
    """Normalised (unit-sum) Gaussian kernel, truncated at 3 sigma, for ``ndim`` dimensions."""
    sig = np.broadcast_to(np.asarray(sigma, dtype=np.float64), (ndim,))
    if np.any(sig <= 0):
        raise FluoreconError(f"smoothing sigma must be positive, got {sigma}", hint="use e.g. sigma=2 (pixels)")
    axes = []
    for s in sig:
        r = max(1, int(np.ceil(3 * s)))
        t = np.arange(-r, r + 1, dtype=np.float64)
        axes.append(np.exp(-0.5 * (t / s) ** 2))
    k = axes[0]
    for a in axes[1:]:
        k = np.multiply.outer(k, a)
    return k / k.sum()


def masked_smooth(a: np.ndarray, kernel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted local mean with zero padding, renormalised at the borders.

    Returns ``(smoothed, sum_w2)`` where ``sum_w2`` is, per pixel, the sum of squared *effective*
    weights: the variance of the smoothed value when ``a`` is white noise of unit variance. Using the
    exact border weights keeps the "excess over noise" at exactly zero expectation up to the edges.
    """
    from scipy.signal import fftconvolve

    k = kernel
    nd = a.ndim
    if k.ndim < nd:  # smooth only the trailing axes
        k = k.reshape((1,) * (nd - k.ndim) + k.shape)
    ones = np.ones(a.shape[-kernel.ndim:], dtype=np.float64)
    norm = fftconvolve(ones, kernel, mode="same")
    norm2 = fftconvolve(ones, kernel**2, mode="same")
    num = fftconvolve(a, k, mode="same")
    norm = np.maximum(norm, 1e-12)
    return num / norm, norm2 / norm**2


def resolve_variance(expected: np.ndarray, forward: Any = None, noise_variance: Any = None,
                     observed: np.ndarray | None = None) -> tuple[np.ndarray, str]:
    """Per-pixel noise variance of the observation, and where it came from.

    Priority: ``noise_variance`` (number, array or callable of the expected image) → ``forward.variance``
    → an estimate from ``observed`` (Poisson–Gaussian fit if ``fluorecon.physics.noise_model`` is
    available, else a constant level from scikit-image's wavelet estimator).
    """
    if noise_variance is not None:
        if callable(noise_variance):
            v = np.asarray(noise_variance(expected), dtype=np.float64)
            source = "noise_variance(callable)"
        else:
            v = np.asarray(noise_variance, dtype=np.float64)
            source = "noise_variance"
        v = np.broadcast_to(v, expected.shape).astype(np.float64)
    elif forward is not None and getattr(forward, "camera", "missing") is not None and hasattr(forward, "variance"):
        v = as_float_array(forward.variance(expected.astype(np.float32)), "forward.variance(...)")
        source = "forward model"
    elif observed is not None:
        v, source = estimate_variance(observed, expected)
    else:
        raise FluoreconError("no noise model: cannot tell noise from error",
                             hint="pass forward=Forward(camera=...) or noise_variance=...")
    if np.any(v <= 0):
        v = np.maximum(v, max(float(np.max(v)) * 1e-6, 1e-12))
    return np.broadcast_to(v, expected.shape).astype(np.float64), source


def estimate_variance(observed: np.ndarray, expected: np.ndarray) -> tuple[np.ndarray, str]:
    """Estimate the noise variance of ``observed`` as a function of the expected signal."""
    try:
        from fluorecon.physics.noise_model import estimate_poisson_gaussian

        nm = estimate_poisson_gaussian(observed.astype(np.float32))
        v = np.asarray(nm.variance(expected), dtype=np.float64)
        if np.all(np.isfinite(v)) and np.any(v > 0):
            return v, "estimated Poisson-Gaussian noise model"
    except Exception:
        pass
    from skimage.restoration import estimate_sigma

    sig = float(estimate_sigma(observed.astype(np.float64), channel_axis=None))
    return np.full(expected.shape, max(sig, 1e-6) ** 2), "estimated constant noise level (wavelet MAD)"
