"""Isotropic restoration of anisotropic 3D stacks (self-supervised, after Weigert et al. 2018).

A stack sampled every ``z_factor`` lateral pixels along Z and blurred more along Z than laterally is
restored to lateral quality in all three directions. The network never sees ground truth: lateral
(XY) slices of the stack itself are degraded to look like axial (XZ/YZ) slices — blurred along one
lateral axis with the *anisotropic part* of the PSF, point-sampled every ``z_factor`` pixels and
interpolated back — and a 2D restorer learns to undo that. It is then applied to every XZ and YZ slice
of the Z-interpolated stack and the two predictions are fused.

The forward model used here is :func:`fluorecon.physics.sampling.axial_degrade` (blur along Z, then
keep every ``z_factor``-th plane), so the training degradation, the RL baseline and the consistency
check all use the same physics.

Examples
--------
>>> import numpy as np
>>> from fluorecon.tasks.isotropic import interpolate_z
>>> interpolate_z(np.zeros((5, 8, 8), np.float32), 4).shape
(17, 8, 8)
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import field_validator

from fluorecon.errors import FluoreconError, FluoreconWarning
from fluorecon.io import ImageData
from fluorecon.learn.bundle import Bundle
from fluorecon.tasks.contract import (
    InputSpec,
    OutputSpec,
    Result,
    Task,
    TaskParams,
    as_progress,
    noise_variance,
    param,
)
from fluorecon.tasks.registry import register

FWHM_PER_SIGMA = 2.0 * math.sqrt(2.0 * math.log(2.0))
METHODS = ("learned", "linear", "cubic", "rl")


# --------------------------------------------------------------------------------------------------
# Parameters and the axial kernel
# --------------------------------------------------------------------------------------------------

#: Largest supported Z factor (Z step / lateral pixel): beyond it the output is mostly interpolation.
MAX_Z_FACTOR = 64


def resolve_z_factor(z_factor: float | None, voxel_size: tuple[float, ...] | None) -> int:
    """Check the Z subsampling factor against the voxel sizes and return it as an integer.

    Parameters
    ----------
    z_factor : float or None
        Ratio of the Z step to the lateral pixel size. ``None``: taken from ``voxel_size``.
    voxel_size : tuple of 3 floats or None
        ``(z, y, x)`` in µm.

    Examples
    --------
    >>> resolve_z_factor(None, (0.4, 0.1, 0.1))
    4
    >>> resolve_z_factor(2, None)
    2
    """
    z_factor = resolve_z_ratio(z_factor, voxel_size)
    rounded = round(z_factor)
    if abs(rounded - z_factor) > 0.1 * z_factor:
        raise FluoreconError(f"Z factor {z_factor:g} is not close to an integer",
                             hint="in memory, isotropic() resamples any Z step itself; out of core, resample the "
                                  "stack so that the Z step is an integer multiple of the pixel size")
    return int(rounded)


def resolve_z_ratio(z_factor: float | None, voxel_size: tuple[float, ...] | None) -> float:
    """The anisotropy ``Z step / lateral pixel size`` as a float (any value ≥ 1), checked against the voxel sizes.

    Examples
    --------
    >>> resolve_z_ratio(None, (0.3, 0.13, 0.13))
    2.3076923076923075
    """
    implied = None
    if voxel_size is not None:
        if len(voxel_size) != 3:
            raise FluoreconError(f"voxel size {voxel_size} must have 3 values (Z Y X) for a 3D stack",
                                 hint="pass --voxel-size Z Y X in µm")
        vz, vy, vx = (float(v) for v in voxel_size)
        if not math.isclose(vy, vx, rel_tol=0.05):
            raise FluoreconError(f"lateral voxel sizes differ (y={vy}, x={vx} µm); isotropic restoration needs square "
                                 "pixels", hint="resample the stack laterally first")
        implied = vz / vx
    if z_factor is None:
        if implied is None:
            raise FluoreconError("no Z factor given and no voxel sizes to derive it from",
                                 hint="pass --z-factor (Z step / lateral pixel size) or --voxel-size Z Y X")
        z_factor = implied
    z_factor = float(z_factor)
    if not np.isfinite(z_factor) or z_factor < 1:
        raise FluoreconError(f"Z factor must be ≥ 1 (Z step / lateral pixel size), got {z_factor}",
                             hint="e.g. --z-factor 4 for 0.4 µm steps with 0.1 µm pixels")
    if z_factor > MAX_Z_FACTOR:
        raise FluoreconError(f"Z factor {z_factor:g} is above {MAX_Z_FACTOR}: each plane would become {z_factor:g} "
                             "planes, mostly invented",
                             hint="check --z-factor / --voxel-size (Z step / lateral pixel size, e.g. 4)")
    if implied is not None and not math.isclose(z_factor, implied, rel_tol=0.1):
        raise FluoreconError(f"Z factor {z_factor:g} does not match the voxel sizes given (Z/X = {implied:.3g})",
                             hint="drop one of --z-factor / --voxel-size or make them agree")
    return z_factor


def resample_axis(a: np.ndarray, axis: int, positions: np.ndarray) -> np.ndarray:
    """Linear interpolation of ``a`` along ``axis`` at fractional ``positions`` (clamped to the ends).

    Examples
    --------
    >>> resample_axis(np.array([0.0, 10.0, 20.0]), 0, np.array([0.0, 0.5, 2.0])).tolist()
    [0.0, 5.0, 20.0]
    """
    n = a.shape[axis]
    pos = np.clip(np.asarray(positions, np.float64), 0, n - 1)
    i0 = np.floor(pos).astype(np.int64)
    i1 = np.minimum(i0 + 1, n - 1)
    w = (pos - i0).astype(np.float32)
    shape = [1] * a.ndim
    shape[axis] = -1
    w = w.reshape(shape)
    return (np.take(a, i0, axis=axis) * (1 - w) + np.take(a, i1, axis=axis) * w).astype(np.float32)


def degrade_ratio(volume: np.ndarray, z_ratio: float, z_factor: int, kernel: np.ndarray) -> np.ndarray:
    """Forward model for a non-integer anisotropy: isotropic stack (spacing 1 px) → recorded planes.

    The stack is resampled along Z onto the working grid of spacing ``z_ratio / z_factor`` px, blurred
    with ``kernel`` (working-grid pixels) and every ``z_factor``-th plane is kept — planes at
    ``0, z_ratio, 2·z_ratio, …`` px, as recorded.

    Examples
    --------
    >>> degrade_ratio(np.ones((13, 4, 4), np.float32), 2.31, 3, np.ones(1)).shape
    (6, 4, 4)
    """
    n = volume.shape[0]
    n_rec = int(math.floor((n - 1) / z_ratio + 0.5)) + 1  # the last plane may lie up to half a step past the end
    fine = resample_axis(np.asarray(volume, np.float32), 0, np.arange((n_rec - 1) * z_factor + 1) * z_ratio / z_factor)
    return degrade_axis0(fine, z_factor, kernel)


def gaussian_kernel_1d(sigma: float) -> np.ndarray:
    """A normalised, centred 1D Gaussian of standard deviation ``sigma`` (pixels); ``[1]`` for 0.

    Examples
    --------
    >>> float(gaussian_kernel_1d(2.0).sum())
    1.0
    """
    if sigma <= 1e-6:
        return np.ones(1, np.float64)
    r = int(math.ceil(4 * sigma))
    x = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _second_moment_sigma(profile: np.ndarray) -> float:
    p = np.clip(np.asarray(profile, np.float64), 0, None)
    p = p / p.sum()
    x = np.arange(p.size)
    mu = (p * x).sum()
    return float(math.sqrt(max((p * (x - mu) ** 2).sum(), 0.0)))


def axial_kernel(z_factor: int, *, axial_fwhm: float | None = None, axial_psf: np.ndarray | None = None,
                 psf: np.ndarray | None = None, psf_voxel_size: tuple[float, float, float] | None = None,
                 voxel_size: tuple[float, ...] | None = None) -> tuple[np.ndarray, dict]:
    """The 1D axial blur to apply along one lateral axis, in lateral pixels.

    Exactly one source is used, in this order:

    - ``axial_psf``: a 1D profile already in lateral pixels (used as is, normalised);
    - ``psf``: a 3D PSF ``(Z, Y, X)``; its anisotropic part is estimated as a Gaussian whose variance
      is the axial variance minus the lateral variance (second moments, in µm via ``psf_voxel_size``
      or ``voxel_size``) — lateral slices already carry the lateral blur, so only the excess is added;
    - ``axial_fwhm``: FWHM of the extra axial blur in µm (needs ``voxel_size``) or, without voxel
      sizes, in lateral pixels;
    - nothing: a Gaussian of FWHM ``z_factor`` pixels — the blur of a confocal/widefield section
      thickness comparable to the step, a common default (CSBDeep uses the same order of magnitude).

    Returns
    -------
    kernel : numpy.ndarray
        1D, unit sum, odd length, centred.
    info : dict
        Source and the Gaussian σ in lateral pixels where applicable.

    Examples
    --------
    >>> k, info = axial_kernel(4)
    >>> round(info["sigma_px"], 3)
    1.699
    """
    dx = float(voxel_size[-1]) if voxel_size is not None else None
    if axial_psf is not None:
        k = np.asarray(axial_psf, np.float64).squeeze()
        if k.ndim != 1 or k.size == 0 or not np.isfinite(k).all() or k.min() < 0 or k.sum() <= 0:
            raise FluoreconError("axial PSF must be a 1D non-negative profile with positive sum",
                                 hint="give a 1D profile in lateral pixels, or --axial-psf FWHM_UM")
        if k.size % 2 == 0:
            k = np.append(k, 0.0)
        return k / k.sum(), {"source": "profile", "sigma_px": _second_moment_sigma(k)}
    if psf is not None:
        p = np.asarray(psf, np.float64)
        if p.ndim != 3:
            raise FluoreconError(f"the PSF for isotropic restoration must be 3D (Z, Y, X), got {p.ndim}D",
                                 hint="pass a 3D PSF stack or --axial-psf FWHM_UM")
        if not np.isfinite(p).all() or p.sum() <= 0:
            raise FluoreconError("PSF has non-finite values or sums to 0", hint="check the PSF file")
        pv = psf_voxel_size or voxel_size
        if pv is None:
            raise FluoreconError("voxel sizes are needed to use a 3D PSF for isotropic restoration",
                                 hint="pass --voxel-size Z Y X (µm)")
        p = np.clip(p - np.median(p), 0, None)
        sz = _second_moment_sigma(p.sum(axis=(1, 2))) * pv[0]
        sy = _second_moment_sigma(p.sum(axis=(0, 2))) * pv[1]
        sx = _second_moment_sigma(p.sum(axis=(0, 1))) * pv[2]
        slat = 0.5 * (sy + sx)
        s_aniso_um = math.sqrt(max(sz**2 - slat**2, 0.0))
        px = dx if dx is not None else pv[2]
        sigma = s_aniso_um / px
        return gaussian_kernel_1d(sigma), {"source": "psf", "sigma_px": sigma, "sigma_axial_um": sz,
                                           "sigma_lateral_um": slat}
    if axial_fwhm is not None:
        if not np.isfinite(axial_fwhm) or axial_fwhm < 0:
            raise FluoreconError(f"axial FWHM must be ≥ 0, got {axial_fwhm}", hint="give it in µm")
        sigma = axial_fwhm / FWHM_PER_SIGMA / (dx if dx is not None else 1.0)
        return gaussian_kernel_1d(sigma), {"source": "fwhm", "sigma_px": sigma}
    sigma = z_factor / FWHM_PER_SIGMA
    return gaussian_kernel_1d(sigma), {"source": "default", "sigma_px": sigma}


# --------------------------------------------------------------------------------------------------
# The forward model along one axis, and Z interpolation (also the plain baselines)
# --------------------------------------------------------------------------------------------------

def _crop_kernel(kernel: np.ndarray, n: int) -> np.ndarray:
    if kernel.size <= n:
        return kernel
    warnings.warn(f"axial PSF spans {kernel.size} planes but the data has only {n}: cropped to {n - 1 + n % 2}",
                  FluoreconWarning, stacklevel=3)
    m = n - 1 + n % 2
    c = kernel.size // 2
    k = kernel[c - m // 2: c + m // 2 + 1]
    return k / k.sum()


def degrade_axis0(image: np.ndarray, z_factor: int, kernel: np.ndarray, phase: int = 0) -> np.ndarray:
    """Blur along axis 0 with ``kernel`` and keep rows ``phase, phase+f, ...`` (the axial forward model).

    Works on any array whose first axis plays the role of Z; uses
    :func:`fluorecon.physics.sampling.axial_degrade` so that training pairs and the stack follow the
    same physics.

    Examples
    --------
    >>> degrade_axis0(np.ones((8, 5), np.float32), 4, np.ones(1)).shape
    (2, 5)
    """
    from fluorecon.physics.sampling import axial_degrade

    a = np.asarray(image, np.float32)[phase:]
    vol = a.reshape(a.shape[0], a.shape[1] if a.ndim > 1 else 1, -1)
    out = axial_degrade(vol, z_factor, axial_psf=_crop_kernel(kernel, vol.shape[0]))
    return out.reshape((out.shape[0], *a.shape[1:]))


def upsample_axis0(stack: np.ndarray, z_factor: int, n_out: int | None = None, order: int = 1) -> np.ndarray:
    """Interpolate along axis 0 so that sample ``i`` lands on fine index ``i * z_factor``.

    ``n_out`` defaults to ``(n - 1) * z_factor + 1`` (the same physical extent); rows past the last
    sample repeat its value. ``order`` 1 = linear, 3 = cubic spline.
    """
    a = np.asarray(stack, np.float32)
    n = a.shape[0]
    n_out = (n - 1) * z_factor + 1 if n_out is None else int(n_out)
    if n == 1:
        return np.repeat(a, n_out, axis=0)
    zc = np.arange(n_out, dtype=np.float64) / z_factor
    if order == 1:
        i0 = np.clip(np.floor(zc).astype(int), 0, n - 1)
        i1 = np.clip(i0 + 1, 0, n - 1)
        w = np.clip(zc - i0, 0.0, 1.0).astype(np.float32)
        shape = (n_out,) + (1,) * (a.ndim - 1)
        return a[i0] * (1 - w.reshape(shape)) + a[i1] * w.reshape(shape)
    if order != 3:
        raise FluoreconError(f"interpolation order must be 1 (linear) or 3 (cubic), got {order}", hint="use 1 or 3")
    from scipy.interpolate import make_interp_spline

    # Not-a-knot cubic spline: exact for polynomials up to degree 3, no boundary artefact on ramps.
    k = min(3, n - 1)
    spline = make_interp_spline(np.arange(n, dtype=np.float64), a.astype(np.float64), k=k, axis=0)
    return spline(np.clip(zc, 0, n - 1)).astype(np.float32)


def interpolate_z(volume: np.ndarray, z_factor: int, order: int = 1) -> np.ndarray:
    """Plain Z interpolation baseline: ``(Z, Y, X)`` → ``((Z-1)·f+1, Y, X)``, linear or cubic.

    Examples
    --------
    >>> v = np.arange(3, dtype=np.float32)[:, None, None] * np.ones((3, 2, 2), np.float32)
    >>> interpolate_z(v, 2)[:, 0, 0].tolist()
    [0.0, 0.5, 1.0, 1.5, 2.0]
    """
    return upsample_axis0(volume, z_factor, order=order)


# --------------------------------------------------------------------------------------------------
# Training pairs from the stack itself
# --------------------------------------------------------------------------------------------------

def make_training_pairs(volume: np.ndarray, z_factor: int, kernel: np.ndarray, *, n_planes: int | None = None,
                        rotate: bool = False, seed: int = 0, order: int = 1,
                        phase: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(degraded, original) 2D pairs from lateral slices, degraded along one lateral axis.

    Each chosen XY plane gives two pairs: one degraded along Y and one along X (transposed so that the
    degraded axis is always axis 0, the role Z plays in XZ/YZ slices). The degradation is
    :func:`degrade_axis0` at a random sampling phase followed by :func:`upsample_axis0`, exactly what
    the stack went through. ``rotate`` adds a random 90° rotation of the plane before degrading
    (more orientations of structures; same physics). ``phase`` fixes the sampling phase (default:
    random per pair, as the true sample positions are unknown relative to the structures).

    Returns
    -------
    x, y : numpy.ndarray
        ``(N, H, W)`` float32 arrays.

    Examples
    --------
    >>> v = np.random.default_rng(0).random((4, 32, 32)).astype(np.float32)
    >>> x, y = make_training_pairs(v, 4, np.ones(1))
    >>> x.shape, y.shape
    ((8, 32, 32), (8, 32, 32))
    """
    vol = np.asarray(volume, np.float32)
    if vol.ndim != 3:
        raise FluoreconError(f"expected a (Z, Y, X) stack, got shape {vol.shape}", hint="pass a 3D stack")
    rng = np.random.default_rng(seed)
    planes = np.arange(vol.shape[0])
    if n_planes is not None and n_planes < planes.size:
        planes = np.sort(rng.choice(planes, n_planes, replace=False))
    xs, ys = [], []
    for p in planes:
        img = vol[p]
        if rotate:
            img = np.rot90(img, int(rng.integers(4)))
        for orient in (img, img.T):
            orient = np.ascontiguousarray(orient)
            n = orient.shape[0]
            if n < 2 * z_factor:
                raise FluoreconError(f"lateral size {n} is too small for Z factor {z_factor}",
                                     hint="use a larger stack or a smaller Z factor")
            ph = int(rng.integers(z_factor))
            ph = ph if phase is None else int(phase) % z_factor
            low = degrade_axis0(orient, z_factor, kernel, phase=ph)
            up = upsample_axis0(low, z_factor, n_out=n - ph, order=order)
            # Rows before the phase offset are not covered by samples: extend with the first sample.
            deg = np.concatenate([np.repeat(up[:1], ph, axis=0), up], axis=0) if ph else up
            xs.append(deg)
            ys.append(orient)
    # Lateral sizes may differ between orientations for non-square planes: crop to a common shape.
    h = min(a.shape[0] for a in xs)
    w = min(a.shape[1] for a in xs)
    return (np.stack([a[:h, :w] for a in xs]).astype(np.float32),
            np.stack([a[:h, :w] for a in ys]).astype(np.float32))


# --------------------------------------------------------------------------------------------------
# Fusion, consistency
# --------------------------------------------------------------------------------------------------

def fuse(a: np.ndarray, b: np.ndarray, rule: str = "geometric") -> np.ndarray:
    """Fuse the XZ- and YZ-based predictions.

    ``"geometric"`` (default, as CSBDeep): ``sqrt(a·b)`` where both are positive — an artefact present
    in only one orientation is damped multiplicatively — and the arithmetic mean elsewhere (the
    geometric mean is undefined for negative values). ``"mean"``: arithmetic mean. Both return ``a``
    unchanged when ``a == b``.

    Examples
    --------
    >>> fuse(np.array([4.0, -1.0]), np.array([1.0, -3.0])).tolist()
    [2.0, -2.0]
    """
    a = np.asarray(a, np.float32)
    b = np.asarray(b, np.float32)
    if rule == "mean":
        return 0.5 * (a + b)
    if rule != "geometric":
        raise FluoreconError(f"unknown fusion rule {rule!r}", hint="use 'geometric' or 'mean'")
    pos = (a > 0) & (b > 0)
    out = 0.5 * (a + b)
    out[pos] = np.sqrt(a[pos].astype(np.float64) * b[pos]).astype(np.float32)
    return out


def axial_consistency(observed: np.ndarray, restored: np.ndarray, z_factor: int, kernel: np.ndarray,
                      noise_sigma: float | None = None, z_ratio: float | None = None) -> dict[str, Any]:
    """Re-apply the axial forward model to the restored stack and compare with the observed one.

    Returns the noise-normalised residual map (observed grid), its mean square and the excess over
    1 (what noise alone gives when ``noise_sigma`` is the per-pixel noise level). Without
    ``noise_sigma``, the noise level is estimated robustly from the observed stack
    (``skimage.restoration.estimate_sigma``).
    """
    from skimage.restoration import estimate_sigma

    sim = (degrade_axis0(restored, z_factor, kernel) if z_ratio is None
           else degrade_ratio(restored, z_ratio, z_factor, kernel))
    n = min(sim.shape[0], observed.shape[0])
    resid = observed[:n] - sim[:n]
    if noise_sigma is None:
        noise_sigma = float(np.mean([estimate_sigma(p) for p in observed[: min(n, 8)]])) or 1e-6
    r = resid / max(noise_sigma, 1e-12)
    ms = float(np.mean(r**2))
    return {"residual": r.astype(np.float32), "mean_square": ms, "excess": ms - 1.0, "noise_sigma": noise_sigma}


# --------------------------------------------------------------------------------------------------
# RL baseline
# --------------------------------------------------------------------------------------------------

def rl_baseline(volume: np.ndarray, z_factor: int, kernel: np.ndarray, iterations: int | str = 20,
                order: int = 1) -> tuple[np.ndarray, dict]:
    """Z interpolation followed by 3D Richardson–Lucy with the anisotropic PSF.

    The PSF is the axial kernel convolved with the interpolation's own kernel (a triangle of half-width
    ``z_factor`` for linear interpolation), placed along Z — the blur the interpolated stack actually
    carries relative to the lateral resolution.
    """
    from fluorecon.classical.deconvolve import richardson_lucy

    up = interpolate_z(volume, z_factor, order=order)
    tri = 1.0 - np.abs(np.arange(-z_factor + 1, z_factor)) / z_factor
    k = np.convolve(kernel, tri / tri.sum())
    k = _crop_kernel(k / k.sum(), up.shape[0])
    psf = k.reshape(-1, 1, 1).astype(np.float32)
    lo = float(min(up.min(), 0.0))
    out = richardson_lucy(up - lo, psf, iterations=iterations)
    if isinstance(out, tuple):
        out, info = out
    else:
        info = {}
    return np.asarray(out, np.float32) + lo, {"psf_len": int(k.size), **(info if isinstance(info, dict) else {})}


# --------------------------------------------------------------------------------------------------
# Learned restoration
# --------------------------------------------------------------------------------------------------

@dataclass
class IsotropicResult:
    """Output of :func:`isotropic`: the restored stack and what was done."""

    volume: np.ndarray
    voxel_size: tuple[float, float, float] | None
    info: dict = field(default_factory=dict)
    uncertainty: np.ndarray | None = None
    bundle: Any = None


def train_isotropic(volume: np.ndarray, z_factor: int, kernel: np.ndarray, *, budget_s: float = 120.0,
                    seed: int = 0, patch_size: int = 64, batch_size: int = 16, n_planes: int | None = None,
                    rotate: bool = True, device: str = "auto", progress: bool = False, width: int = 32,
                    depth: int = 2, steps: int | None = None):
    """Train the 2D restorer on pairs made from the stack itself; returns a ``Bundle``."""
    from fluorecon.learn.train import train

    x, y = make_training_pairs(volume, z_factor, kernel, n_planes=n_planes, rotate=rotate, seed=seed)
    ps = int(min(patch_size, x.shape[1], x.shape[2]))
    ps -= ps % 4
    cfg = {"scheme": "care", "dim": 2, "patch_size": ps, "batch_size": batch_size, "seed": seed,
           "device": device, "progress": progress, "model": {"depth": depth, "width": width},
           "steps": steps, "budget_s": budget_s if steps is None else None}
    # Planes of the pair stack are independent samples for the 2D network ("Z" = sample axis here).
    return train(cfg, x, targets=y, axes="ZYX")


def apply_isotropic(volume: np.ndarray, z_factor: int, model, *, fuse_rule: str = "geometric",
                    order: int = 1, device: str = "auto") -> tuple[np.ndarray, np.ndarray]:
    """Apply a trained 2D restorer to all XZ and YZ slices of the Z-interpolated stack and fuse.

    Returns the fused stack and the per-voxel disagreement ``|a − b| / 2`` between the two
    orientations — a cheap uncertainty signal (the two views see different lateral context).
    """
    from fluorecon.learn.predict import predict

    up = interpolate_z(volume, z_factor, order=order)           # (Z', Y, X)
    xz = predict(model, np.ascontiguousarray(up.transpose(1, 0, 2)), axes="TYX", device=device)  # (Y, Z', X)
    yz = predict(model, np.ascontiguousarray(up.transpose(2, 0, 1)), axes="TYX", device=device)  # (X, Z', Y)
    a = np.asarray(xz, np.float32).transpose(1, 0, 2)
    b = np.asarray(yz, np.float32).transpose(1, 2, 0)
    return fuse(a, b, fuse_rule), (0.5 * np.abs(a - b)).astype(np.float32)


def isotropic(volume: np.ndarray, *, axes: str = "ZYX", z_factor: float | None = None,
              voxel_size: tuple[float, ...] | None = None, method: str = "learned",
              axial_fwhm: float | None = None, axial_psf: np.ndarray | None = None, psf: np.ndarray | None = None,
              psf_voxel_size: tuple[float, float, float] | None = None, budget_s: float = 120.0,
              iterations: int | str = 20, seed: int = 0, device: str = "auto", model=None,
              fuse_rule: str = "geometric", progress: bool = False, steps: int | None = None) -> IsotropicResult:
    """Restore isotropic resolution of a ``ZYX`` stack.

    Parameters
    ----------
    volume : numpy.ndarray
        ``(Z, Y, X)`` stack (``axes`` must be ``"ZYX"``; split channels/time first).
    z_factor : float, optional
        Z step / lateral pixel size (from ``voxel_size`` when omitted; must agree when both given).
    method : {"learned", "linear", "cubic", "rl"}
        Self-supervised restoration (default) or one of the baselines.
    axial_fwhm, axial_psf, psf, psf_voxel_size
        Source of the axial blur (see :func:`axial_kernel`).
    budget_s : float
        Training wall time for ``"learned"``.
    steps : int, optional
        Train for exactly this many steps instead of a wall-time budget (reproducible).
    model : Bundle or torch.nn.Module, optional
        A restorer trained before (skips training).

    Returns
    -------
    IsotropicResult
        Restored stack on the isotropic grid ``((Z-1)·f+1, Y, X)``, the new voxel size, info
        (including the axial consistency excess), and for ``"learned"`` the orientation disagreement
        as ``uncertainty`` and the trained ``bundle``.

    Examples
    --------
    >>> v = np.random.default_rng(0).random((6, 16, 16)).astype(np.float32)
    >>> isotropic(v, z_factor=2, method="linear").volume.shape
    (11, 16, 16)
    """
    from fluorecon.validation import as_image

    if axes is not None and axes.upper() != "ZYX":
        raise FluoreconError(f"isotropic restoration needs a ZYX stack, got axes {axes!r}",
                             hint="pass a single 3D stack (split channels / time points first)")
    vol = np.asarray(volume)
    if vol.ndim != 3:
        raise FluoreconError(f"isotropic restoration needs a 3D (Z, Y, X) stack, got a {vol.ndim}D image",
                             hint="a 2D image has no Z axis to restore")
    vol, _ = as_image(vol, "ZYX", name="stack")
    if method not in METHODS:
        raise FluoreconError(f"unknown method {method!r}", hint=f"use one of {', '.join(METHODS)}")
    if vol.shape[0] < 2:
        raise FluoreconError("the stack has a single plane", hint="isotropic restoration needs several Z planes")
    r = resolve_z_ratio(z_factor, voxel_size)
    if abs(r - round(r)) <= 0.02 * r:
        f = int(round(r))
    else:
        # Any Z step: resample laterally so that the Z step is an integer number f = ceil(r) of (smaller)
        # working pixels, restore there, then bring the result back to the original lateral grid with an
        # isotropic Z spacing equal to the lateral pixel size.
        return _isotropic_ratio(vol, r, voxel_size=voxel_size, method=method, axial_fwhm=axial_fwhm,
                                axial_psf=axial_psf, psf=psf, psf_voxel_size=psf_voxel_size, budget_s=budget_s,
                                iterations=iterations, seed=seed, device=device, model=model, fuse_rule=fuse_rule,
                                progress=progress, steps=steps)
    kernel, kinfo = axial_kernel(f, axial_fwhm=axial_fwhm, axial_psf=axial_psf, psf=psf,
                                 psf_voxel_size=psf_voxel_size, voxel_size=voxel_size)
    # The kernel acts on the fine (isotropic) grid: crop it to the fine extent of the stack.
    kernel = _crop_kernel(kernel, (vol.shape[0] - 1) * f + 1)
    vs_out = None
    if voxel_size is not None:
        vs_out = (float(voxel_size[2]), float(voxel_size[1]), float(voxel_size[2]))
    info: dict[str, Any] = {"method": method, "z_factor": f, "kernel": kinfo, "input_shape": list(vol.shape)}
    t0 = time.perf_counter()
    unc = None
    bundle = None
    if method in ("linear", "cubic"):
        out = interpolate_z(vol, f, order=1 if method == "linear" else 3)
    elif method == "rl":
        out, rinfo = rl_baseline(vol, f, kernel, iterations=iterations)
        info["rl"] = {k: v for k, v in rinfo.items() if isinstance(v, int | float | str)}
    else:
        bundle = model
        if bundle is None:
            bundle = train_isotropic(vol, f, kernel, budget_s=budget_s, seed=seed, device=device, progress=progress,
                                     steps=steps)
        out, unc = apply_isotropic(vol, f, bundle, fuse_rule=fuse_rule, device=device)
    info["seconds"] = round(time.perf_counter() - t0, 3)
    cons = axial_consistency(vol, out, f, kernel)
    info["consistency_excess"] = cons["excess"]
    info["axial_kernel"] = [float(v) for v in kernel]
    return IsotropicResult(volume=out.astype(np.float32), voxel_size=vs_out, info=info, uncertainty=unc, bundle=bundle)


def _isotropic_ratio(vol: np.ndarray, r: float, *, voxel_size, **kw) -> IsotropicResult:
    """:func:`isotropic` for a non-integer anisotropy ``r`` (see the comment at its call)."""
    f = int(math.ceil(r))
    s = f / r  # lateral zoom (> 1): working pixel = Z step / f
    ny, nx = vol.shape[1:]
    ny_w, nx_w = int(math.floor((ny - 1) * s)) + 1, int(math.floor((nx - 1) * s)) + 1
    work = resample_axis(resample_axis(vol, 1, np.arange(ny_w) / s), 2, np.arange(nx_w) / s)
    if voxel_size is not None:
        vz = float(voxel_size[0])
        vs_work = (vz, vz / f, vz / f)
    else:
        vs_work = None
    fwhm = kw.pop("axial_fwhm")
    if fwhm is not None and voxel_size is None:
        fwhm = fwhm * s  # given in lateral pixels of the input: convert to working pixels
    res = isotropic(work, axes="ZYX", z_factor=f, voxel_size=vs_work, axial_fwhm=fwhm, **kw)

    def back(a: np.ndarray | None) -> np.ndarray | None:
        if a is None:
            return None
        nz = int(math.floor((vol.shape[0] - 1) * r + 1e-9)) + 1  # planes 1 lateral pixel apart
        a = resample_axis(a, 0, np.arange(nz) * f / r)
        return resample_axis(resample_axis(a, 1, np.arange(ny) * s), 2, np.arange(nx) * s)

    out, unc = back(res.volume), back(res.uncertainty)
    info = dict(res.info)
    kernel = np.asarray(info["axial_kernel"])
    info.update(z_ratio=r, z_factor=f, lateral_zoom=s, working_shape=list(work.shape),
                input_shape=list(vol.shape),
                consistency_excess=axial_consistency(vol, out, f, kernel, z_ratio=r)["excess"])
    vs_out = None
    if voxel_size is not None:
        vx = float(voxel_size[2])
        vs_out = (vx, float(voxel_size[1]), vx)
    return IsotropicResult(volume=out, voxel_size=vs_out, info=info, uncertainty=unc, bundle=res.bundle)


# ------------------------------------------------------------------------------------ task contract
# Below this line: isotropic restoration as a registered task (front ends, out of core, trust).
class AxialForward:
    """Forward model of isotropic restoration: blur along Z with the axial kernel, keep every f-th plane.

    Maps a restored stack on the fine grid ``((Z-1)·f+1, Y, X)`` back to the recorded ``(Z, Y, X)``.

    Examples
    --------
    >>> fwd = AxialForward(np.ones(1), 2)
    >>> fwd.expected(np.ones((5, 4, 4), np.float32)).shape
    (3, 4, 4)
    """

    def __init__(self, kernel: np.ndarray, z_factor: int, noise: Any = None, z_ratio: float | None = None):
        self.kernel = np.asarray(kernel, np.float64)
        self.z_factor = int(z_factor)
        self.noise = noise
        self.z_ratio = None if z_ratio is None else float(z_ratio)

    def expected(self, y: Any) -> np.ndarray:
        if self.z_ratio is not None:  # non-integer anisotropy: see degrade_ratio
            return degrade_ratio(np.asarray(y, np.float32), self.z_ratio, self.z_factor, self.kernel)
        return degrade_axis0(np.asarray(y, np.float32), self.z_factor, self.kernel)

    def variance(self, expected: Any) -> Any:
        return noise_variance(self.noise, expected)

    def to_dict(self) -> dict[str, Any]:
        d = {"kind": "axial", "z_factor": self.z_factor, "kernel": [float(v) for v in self.kernel]}
        if self.z_ratio is not None:
            d["z_ratio"] = self.z_ratio
        return d


class IsotropicParams(TaskParams):
    """Parameters of :class:`IsotropicTask` (CLI options, napari fields and provenance derive from them)."""

    method: str = param("learned", "learned (self-supervised, trained on the stack) | linear | cubic | rl "
                        "(baselines).", choices=METHODS)
    z_factor: float | None = param(None, "Z step / lateral pixel size (from the voxel size when omitted).")
    axial_fwhm: float | None = param(None, "Extra axial blur: FWHM in µm (in lateral pixels without a voxel size).",
                                     unit="µm", cli="--axial-psf", gt=0)
    budget_s: float = param(120.0, "Training wall-time budget of the learned method.", unit="s", cli="--budget",
                            gt=0, le=7 * 86400)
    steps: int | None = param(None, "Learned method: train exactly this many steps (reproducible) instead of the "
                              "time budget.", ge=1, le=10_000_000)
    iterations: int | Literal["auto"] = param(20, "RL iterations for method rl (a number or 'auto').")
    fuse_rule: str = param("geometric", "How the XZ and YZ predictions are fused.", choices=("geometric", "mean"),
                           advanced=True)
    seed: int = param(0, "Random seed of the learned method.", ge=0)
    device: str = param("auto", "Compute device.", choices=("auto", "cpu", "cuda"), widget=False)

    @field_validator("iterations", mode="before")
    @classmethod
    def _iterations(cls, v: Any) -> Any:
        if isinstance(v, str):
            if v.strip().lower() == "auto":
                return "auto"
            try:
                v = int(v)
            except ValueError:
                raise ValueError(f"{v!r} is not an integer or 'auto'") from None
        if isinstance(v, bool) or int(v) < 1:
            raise ValueError(f"must be ≥ 1 or 'auto', got {v!r}")
        return int(v)


@register
class IsotropicTask(Task):
    """Isotropic restoration as a registered task (learned or baselines); output on the fine Z grid."""

    name = "isotropic"
    title = "Isotropic restoration"
    summary = "Restore isotropic resolution of a Z stack sampled coarsely along Z."
    Params = IsotropicParams
    inputs = (InputSpec("image", "Anisotropic Z stack (ZYX)."),
              InputSpec("psf", "3D PSF image: its excess axial blur defines the kernel.", required=False, cli="--psf"),
              InputSpec("axial_profile", "1D axial blur profile in lateral pixels (an image file).", required=False,
                        cli="--axial-profile"),
              InputSpec("model", "A restorer bundle trained before (skips training).", kind="path", required=False,
                        cli="--model"))
    outputs = (OutputSpec("image", "Restored stack on the isotropic grid ((Z-1)·f+1, Y, X)."),
               OutputSpec("uncertainty", "Learned method: disagreement of the XZ and YZ predictions."))
    trust = ("verify", "uncertainty")
    accepts = ("ZYX",)
    doc = "isotropic"
    output_tag = "_iso"
    saves_model = True
    examples = ("fluorecon isotropic stack.tif --z-factor 4 -o iso.tif",
                "fluorecon isotropic stack.tif --voxel-size 0.3 0.13 0.13 --psf psf.tif -o iso.tif",
                "fluorecon isotropic stack.tif --z-factor 4 --method linear -o iso_linear.tif")

    @classmethod
    def example(cls, seed: int = 0) -> dict[str, Any]:
        """A 6×24×24 random stack, Z step twice the pixel size, linear interpolation."""
        v = np.random.default_rng(seed).random((6, 24, 24)).astype(np.float32)
        return {"inputs": {"image": ImageData(v, "ZYX", (0.2, 0.1, 0.1), {})}, "params": {"method": "linear"}}

    def run(self, inputs: Mapping[str, Any], params: IsotropicParams, progress: Any = None) -> Result:
        img = inputs["image"]
        report = as_progress(progress)
        if img.data.ndim != 3 or img.axes.upper() != "ZYX":
            raise FluoreconError(f"isotropic restoration needs a 3D ZYX stack, got axes {img.axes!r} and shape "
                                 f"{img.data.shape}", hint="pass a single Z stack (use --axes ZYX if the axes were "
                                 "guessed wrong)")
        kw: dict[str, Any] = {}
        if inputs.get("psf") is not None:
            p = inputs["psf"]
            kw["psf"] = np.asarray(p.data)
            pvs = getattr(p, "voxel_size", None)
            kw["psf_voxel_size"] = pvs if pvs is not None and len(pvs) == 3 else None
        if inputs.get("axial_profile") is not None:
            kw["axial_psf"] = np.asarray(inputs["axial_profile"].data, np.float64).squeeze()
        model = None
        if inputs.get("model") is not None:
            model = Bundle.load(inputs["model"])
        report(0.0, f"isotropic restoration ({params.method})")
        res = isotropic(img.data, axes="ZYX", voxel_size=img.voxel_size, model=model, method=params.method,
                        z_factor=params.z_factor, axial_fwhm=params.axial_fwhm, budget_s=params.budget_s,
                        steps=params.steps, iterations=params.iterations, seed=params.seed, device=params.device,
                        fuse_rule=params.fuse_rule, progress=False, **kw)
        report(1.0, "done")
        f = int(res.info["z_factor"])
        kernel = np.asarray(res.info["axial_kernel"], np.float64)  # the kernel the restoration used
        out = Result(outputs={"image": res.volume, "uncertainty": res.uncertainty}, params_used=dict(res.info),
                     axes={"image": "ZYX", "uncertainty": "ZYX"},
                     voxel_size={"image": res.voxel_size, "uncertainty": res.voxel_size},
                     forward=AxialForward(kernel, f, z_ratio=res.info.get("z_ratio")))
        if res.uncertainty is None:
            del out.outputs["uncertainty"]
        if res.bundle is not None and model is None:
            out.extras["bundle"] = res.bundle
        return out

    # --- out of core: training (or the interpolation choice) once on a central sample -------------
    def plan(self, sample: ImageData, params: IsotropicParams, workdir: Any = None,
             inputs: Mapping[str, Any] | None = None) -> dict[str, Any]:
        if "Z" not in sample.axes:
            raise FluoreconError(f"isotropic restoration needs a Z axis, got axes {sample.axes!r}",
                                 hint="pass a ZYX stack")
        if params.method not in ("learned", "linear", "cubic"):
            raise FluoreconError(f"out-of-core isotropic restoration supports learned, linear or cubic, not "
                                 f"{params.method!r}", hint="run the rl baseline in memory")
        inputs = inputs or {}
        if inputs.get("psf") is not None or inputs.get("axial_profile") is not None:
            raise FluoreconError("out of core, the axial blur is given by --axial-psf FWHM_UM, not a PSF file",
                                 hint="estimate the FWHM once in memory or pass --axial-psf")
        f = resolve_z_factor(params.z_factor, sample.voxel_size)
        model = inputs.get("model")
        if params.method == "learned" and model is None:
            if workdir is None:
                raise FluoreconError("learned isotropic restoration out of core needs a folder for the model")
            res = isotropic(sample.data, axes="ZYX", z_factor=f, voxel_size=sample.voxel_size, method="learned",
                            budget_s=params.budget_s, steps=params.steps, seed=params.seed,
                            axial_fwhm=params.axial_fwhm, device=params.device)
            res.bundle.save(Path(workdir))
            model = Path(workdir)
        if params.method == "learned":
            rad = int(getattr(_cached_bundle(str(model)).model, "receptive_radius", 32))
            halo = [int(math.ceil(rad / f)) + 2, rad, rad]
        else:
            halo = [2 if params.method == "linear" else 12, 0, 0]
        return {"method": params.method, "z_factor": f, "halo": halo, "fuse_rule": params.fuse_rule,
                "model": str(Path(model).resolve()) if model is not None else None}

    def block_halo(self, resolved: Mapping[str, Any]) -> tuple[int, ...]:
        return tuple(int(h) for h in resolved["halo"])

    def block_options(self, resolved: Mapping[str, Any]) -> dict[str, Any]:
        f = int(resolved["z_factor"])
        return {"z_factor": f, "memory_factor": 8.0 * f}

    def apply_block(self, block: np.ndarray, resolved: Mapping[str, Any]) -> np.ndarray:
        f = int(resolved["z_factor"])
        if resolved["method"] in ("linear", "cubic"):
            return interpolate_z(block, f, order=1 if resolved["method"] == "linear" else 3)
        out, _ = apply_isotropic(block, f, _cached_bundle(resolved["model"]), fuse_rule=resolved["fuse_rule"],
                                 device="cpu")
        return out


_BUNDLES: dict[tuple[str, float], Any] = {}


def _cached_bundle(path: str) -> Any:
    """Load a restorer bundle once per process (blocks of an out-of-core run share it)."""
    p = Path(path).resolve()
    key = (str(p), (p / "bundle.json").stat().st_mtime)
    if key not in _BUNDLES:
        _BUNDLES[key] = Bundle.load(p)
    return _BUNDLES[key]
