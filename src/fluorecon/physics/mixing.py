"""Spectral mixing: the forward model of multi-channel (spectral / excitation–emission) recordings.

A pixel's channel vector is a non-negative mixture of the dyes' spectra, recorded with Poisson noise:

.. math:: x_c(r) \\sim \\mathrm{Poisson}\\Bigl(\\text{photons}\\cdot\\sum_k S_{ck}\\,a_k(r) + \\text{background}\\Bigr)

``S`` (channels × dyes) is the mixing matrix (each dye's spectrum sampled in the detection bands),
``a`` the abundances. Wavelengths are in µm (the package convention).

Examples
--------
>>> S = gaussian_spectra(3, 8, seed=0)
>>> sim = simulate_mixture(S, (16, 16), photons=20, seed=0)
>>> sim["recording"].shape, sim["abundances"].shape
((8, 16, 16), (3, 16, 16))
>>> fwd = MixingForward(S, photons=20)
>>> bool(np.allclose(fwd.expected(sim["abundances"]), sim["expected"], atol=1e-4))
True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from fluorecon.errors import FluoreconError
from fluorecon.physics.phantoms import phantom

__all__ = ["MixingForward", "band_integrate", "check_spectra", "gaussian_spectra", "simulate_mixture"]


def check_spectra(spectra: Any, n_channels: int | None = None, name: str = "spectra") -> np.ndarray:
    """Validate a mixing matrix (channels × dyes): finite, non-negative, every dye with some signal.

    Examples
    --------
    >>> check_spectra([[1, 0], [0, 1], [0.5, 0.5]], n_channels=3).shape
    (3, 2)
    """
    try:
        S = np.asarray(spectra, np.float64)
    except (TypeError, ValueError):
        raise FluoreconError(f"{name} must be a numeric (channels × dyes) array") from None
    if S.ndim == 1:
        S = S[:, None]
    if S.ndim != 2 or S.size == 0:
        raise FluoreconError(f"{name} must be a 2D (channels × dyes) array, got shape {S.shape}")
    if not np.all(np.isfinite(S)):
        raise FluoreconError(f"{name} contain NaN or Inf")
    if (S < 0).any():
        raise FluoreconError(f"{name} contain negative values (min {S.min():.3g})",
                             hint="emission spectra are non-negative: fix or clip the spectra file")
    if n_channels is not None and S.shape[0] != n_channels:
        if S.shape[1] == n_channels:
            raise FluoreconError(f"{name} have {S.shape[0]} bands but the image has {n_channels} channels; the "
                                 f"table looks transposed ({S.shape[0]} × {S.shape[1]})",
                                 hint="give one row per channel and one column per dye")
        raise FluoreconError(f"{name} have {S.shape[0]} bands but the image has {n_channels} channels",
                             hint="give one spectrum value per channel (band) of the image, in the same order")
    if (S.sum(0) <= 0).any():
        raise FluoreconError(f"{name}: dye(s) {np.flatnonzero(S.sum(0) <= 0).tolist()} have an all-zero spectrum")
    if S.shape[1] > S.shape[0]:
        raise FluoreconError(f"{S.shape[1]} dyes cannot be unmixed from {S.shape[0]} channels",
                             hint="use at most as many dyes as channels")
    return S.astype(np.float32)


def gaussian_spectra(n_dyes: int, n_channels: int, *, range_um: tuple[float, float] = (0.50, 0.70),
                     width_um: float = 0.035, spacing: float | None = None, seed: int | np.random.Generator | None = 0,
                     normalize: str = "max") -> np.ndarray:
    """Overlapping emission spectra (skewed Gaussians with a red tail) sampled in ``n_channels`` bands.

    Parameters
    ----------
    n_dyes, n_channels : int
    range_um : (lo, hi)
        Detection range in µm, split into equal bands.
    width_um : float
        Spectral SD in µm (larger = more overlap).
    spacing : float, optional
        Peak spacing in µm; spread over the range when None.
    normalize : {"max", "sum"}
        Peak channel = 1, or channels sum to 1.

    Returns
    -------
    np.ndarray
        (n_channels, n_dyes) float32.

    Examples
    --------
    >>> S = gaussian_spectra(3, 8, seed=0)
    >>> S.shape, float(S.max(0).min())
    ((8, 3), 1.0)
    """
    if n_dyes < 1 or n_channels < 1:
        raise FluoreconError("need at least one dye and one channel")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    lo, hi = range_um
    edges = np.linspace(lo, hi, n_channels + 1)
    fine = np.linspace(lo, hi, 40 * n_channels)
    if spacing is None:
        peaks = np.linspace(lo + 0.15 * (hi - lo), hi - 0.25 * (hi - lo), n_dyes)
    else:
        peaks = lo + 0.15 * (hi - lo) + spacing * np.arange(n_dyes)
    peaks = peaks + rng.uniform(-0.1, 0.1, n_dyes) * (hi - lo) / max(n_dyes, 2) * 0.5
    S = np.zeros((n_channels, n_dyes))
    for k, p in enumerate(peaks):
        w = width_um * rng.uniform(0.8, 1.2)
        d = fine - p
        spec = np.exp(-0.5 * (d / np.where(d > 0, 1.6 * w, w)) ** 2)  # red tail
        S[:, k] = band_integrate(fine, spec, np.stack([edges[:-1], edges[1:]], 1))
    S = S / (S.max(0, keepdims=True) if normalize == "max" else S.sum(0, keepdims=True))
    return S.astype(np.float32)


def band_integrate(wavelength: Any, intensity: Any, bands: Sequence[Sequence[float]]) -> np.ndarray:
    """Integrate a sampled spectrum over detection bands (trapezoid on the samples inside each band).

    Units of ``wavelength`` and ``bands`` must agree (µm in the API; nm works the same). Outside the
    sampled range the spectrum is 0.

    Examples
    --------
    >>> wl = np.arange(500, 601)
    >>> band_integrate(wl, np.ones(101), [(500, 520), (590, 600)]).round(1).tolist()
    [20.0, 10.0]
    """
    wl = np.asarray(wavelength, np.float64)
    it = np.asarray(intensity, np.float64)
    if wl.shape != it.shape or wl.ndim != 1 or len(wl) < 2:
        raise FluoreconError("spectrum: wavelength and intensity must be 1D arrays of the same length (≥ 2)")
    if (it < 0).any():
        raise FluoreconError(f"spectrum has negative values (min {it.min():.3g})", hint="clip or fix the spectrum")
    order = np.argsort(wl)
    wl, it = wl[order], it[order]
    out = []
    for lo, hi in bands:
        grid = np.linspace(lo, hi, 201)
        vals = np.interp(grid, wl, it, left=0.0, right=0.0)
        out.append(np.trapezoid(vals, grid))
    return np.asarray(out, np.float64)


class MixingForward:
    """Forward model ``x = photons · S a + background`` (channels × dyes mixing), Poisson noise.

    ``expected(a)`` maps abundances ``(K, ...)`` to channels ``(C, ...)`` in photons (or ADU with
    ``gain``); numpy or torch.

    Examples
    --------
    >>> f = MixingForward([[1.0, 0.0], [0.5, 1.0]], photons=10)
    >>> f.expected(np.ones((2, 1))).ravel().tolist()
    [10.0, 15.0]
    """

    def __init__(self, spectra: Any, photons: float = 1.0, background: float = 0.0, gain: float | None = 1.0):
        self.spectra = check_spectra(spectra)
        self.photons = float(photons)
        self.background = float(background)
        self.gain = gain

    def expected(self, a: Any) -> Any:
        S = self.spectra * self.photons
        if isinstance(a, torch.Tensor):
            St = torch.as_tensor(S, dtype=a.dtype, device=a.device)
            return torch.tensordot(St, a, dims=([1], [0])) + self.background
        a = np.asarray(a, np.float32)
        if a.shape[0] != S.shape[1]:
            raise FluoreconError(f"abundances have {a.shape[0]} dyes, the spectra {S.shape[1]}")
        return (np.tensordot(S, a, axes=([1], [0])) + self.background).astype(np.float32)

    def variance(self, expected: Any) -> Any:
        if self.gain is None:
            raise FluoreconError("no noise model is attached to the mixing forward model", hint="give the gain")
        if isinstance(expected, torch.Tensor):
            return torch.clamp(self.gain * expected, min=1e-6)
        return np.maximum(self.gain * np.asarray(expected), 1e-6).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "mixing", "model": "x[c] = photons * sum_k spectra[c, k] * a[k] + background",
                "spectra": self.spectra.tolist(), "photons": self.photons, "background": self.background,
                "gain": self.gain}


_KINDS = ("filaments", "nuclei", "puncta", "membranes")


def simulate_mixture(spectra: Any, shape: tuple[int, int], photons: float = 20.0, *, background: float = 0.0,
                     kinds: Sequence[str] | None = None, seed: int | np.random.Generator | None = 0) -> dict[str, Any]:
    """Simulate a spectral recording: one phantom structure per dye, mixed, Poisson noise.

    ``photons`` is the expected count in a dye's peak channel at abundance 1 (spectra with peak 1).

    Returns
    -------
    dict
        ``recording`` (C, Y, X) float32 photon counts, ``expected``, ``abundances`` (K, Y, X) in [0, 1],
        ``spectra``.

    Examples
    --------
    >>> s = simulate_mixture(gaussian_spectra(2, 4), (8, 8), photons=5, seed=1)
    >>> float(s["recording"].min()) >= 0
    True
    """
    S = check_spectra(spectra)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    K = S.shape[1]
    kinds = list(kinds) if kinds else [_KINDS[int(i)] for i in rng.permutation(len(_KINDS))]
    a = np.stack([phantom(kinds[k % len(kinds)], tuple(shape), seed=int(rng.integers(2**31))) for k in range(K)])
    a = (a * rng.uniform(0.6, 1.0, (K, 1, 1))).astype(np.float32)
    fwd = MixingForward(S, photons=photons, background=background)
    expected = fwd.expected(a)
    rec = rng.poisson(np.clip(expected, 0, None)).astype(np.float32)
    return {"recording": rec, "expected": expected, "abundances": a, "spectra": S}
