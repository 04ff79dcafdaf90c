"""Uneven illumination and detection: the forward model of flat-field, dark-field, drift and shadows.

A tile or frame ``n`` of a mosaic or time-lapse is recorded as

.. math:: x_n(r) = S(r)\\,\\bigl(y_n(r) + b_n\\bigr) + D(r)

with ``S`` the multiplicative flat-field (vignetting, uneven illumination; mean 1), ``D`` the additive
dark-field (camera offset pattern, dark current), and ``b_n`` a per-frame baseline (background drift,
photobleaching of the background in time-lapse data; BaSiC's "baseline"). Light-sheet *shadows*
(stripes behind absorbing objects) are a multiplicative mask ``M(r) ∈ [0, 1]`` instead: ``x = M·y``.

Everything here is simulation (f); the estimation (g) lives in :mod:`fluorecon.classical.flatfield`.

Examples
--------
>>> sim = simulate_tiles(n=4, shape=(32, 32), seed=0)
>>> sim["stack"].shape, round(float(sim["flatfield"].mean()), 3)
((4, 32, 32), 1.0)
>>> fwd = IlluminationForward(sim["flatfield"], sim["darkfield"], sim["baseline"])
>>> bool(np.allclose(fwd.expected(sim["truth"]), sim["expected"], rtol=1e-5))
True
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy import ndimage

from fluorecon.errors import FluoreconError
from fluorecon.physics.phantoms import phantom
from fluorecon.utils import as_rng

__all__ = [
    "IlluminationForward",
    "MaskForward",
    "baseline_drift",
    "darkfield",
    "shadow_mask",
    "simulate_tiles",
    "vignetting",
]


def _check_shape(shape: Any) -> tuple[int, int]:
    try:
        shp = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise FluoreconError(f"shape must be (Y, X), got {shape!r}") from None
    if len(shp) != 2 or min(shp) < 2:
        raise FluoreconError(f"shape must be (Y, X) with sizes ≥ 2, got {shape!r}", hint="e.g. (128, 128)")
    return shp  # type: ignore[return-value]


def vignetting(shape: tuple[int, int], strength: float = 0.4, center: tuple[float, float] | None = None,
               tilt: float = 0.1, seed: int | np.random.Generator | None = 0) -> np.ndarray:
    """A smooth multiplicative flat-field: radial fall-off (cos⁴-like) plus a gentle tilt, mean 1.

    Parameters
    ----------
    shape : (Y, X)
    strength : float
        Relative fall-off from the optical centre to the farthest corner (0.4 = corners at 60 %).
    center : (y, x) in pixels, optional
        Optical centre; random near the image centre when None.
    tilt : float
        Relative linear gradient across the field (uneven illumination), random direction.
    seed : int or Generator

    Returns
    -------
    np.ndarray
        float32, positive, mean exactly 1.

    Examples
    --------
    >>> f = vignetting((16, 16), strength=0.3, seed=1)
    >>> round(float(f.mean()), 4), bool(f.min() > 0)
    (1.0, True)
    """
    ny, nx = _check_shape(shape)
    if not 0 <= strength < 1:
        raise FluoreconError(f"vignetting strength must be in [0, 1), got {strength}")
    rng = as_rng(seed)
    if center is None:
        center = (ny / 2 + rng.uniform(-0.1, 0.1) * ny, nx / 2 + rng.uniform(-0.1, 0.1) * nx)
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float64)
    r2 = (yy - center[0]) ** 2 + (xx - center[1]) ** 2
    rmax2 = max((cy - center[0]) ** 2 + (cx - center[1]) ** 2 for cy in (0, ny - 1) for cx in (0, nx - 1))
    f = 1.0 - strength * r2 / max(rmax2, 1e-9)
    ang = rng.uniform(0, 2 * np.pi)
    f *= 1.0 + tilt * ((yy / ny - 0.5) * np.sin(ang) + (xx / nx - 0.5) * np.cos(ang))
    return (f / f.mean()).astype(np.float32)


def darkfield(shape: tuple[int, int], level: float = 10.0, variation: float = 0.5,
              seed: int | np.random.Generator | None = 0) -> np.ndarray:
    """A smooth additive dark-field (offset pattern, dark current, stray light): ``level·(1 + variation·g)``.

    ``g`` is smooth random noise of unit range; the result is non-negative.

    Examples
    --------
    >>> d = darkfield((16, 16), level=5, seed=0)
    >>> bool(d.min() >= 0), round(float(d.mean()), 0)
    (True, 5.0)
    """
    ny, nx = _check_shape(shape)
    rng = as_rng(seed)
    g = ndimage.gaussian_filter(rng.standard_normal((ny, nx)), sigma=max(ny, nx) / 6, mode="reflect")
    g = (g - g.mean()) / max(float(np.ptp(g)), 1e-12)
    d = level * (1.0 + variation * g)
    d = np.clip(d, 0, None)
    return (d * (level / max(float(d.mean()), 1e-12)) if level > 0 else d).astype(np.float32)


def baseline_drift(n: int, level: float = 20.0, bleach: float = 0.5, wobble: float = 0.1,
                   seed: int | np.random.Generator | None = 0) -> np.ndarray:
    """A per-frame additive baseline: exponential decay (background bleaching) plus a slow wobble.

    Examples
    --------
    >>> b = baseline_drift(5, level=10, seed=0)
    >>> b.shape, bool(b[0] > b[-1])
    ((5,), True)
    """
    if n < 1:
        raise FluoreconError(f"baseline needs n ≥ 1 frames, got {n}")
    rng = as_rng(seed)
    t = np.linspace(0, 1, n)
    b = level * ((1 - bleach) + bleach * np.exp(-3 * t)) * (1 + wobble * np.sin(2 * np.pi * (t * rng.uniform(1, 2)
                                                                                          + rng.uniform())))
    return b.astype(np.float32)


def shadow_mask(shape: tuple[int, int], n: int = 3, strength: float = 0.8, width: float = 4.0,
                seed: int | np.random.Generator | None = 0) -> np.ndarray:
    """Light-sheet shadows: stripes along X behind absorbing objects, multiplicative mask in (0, 1].

    Each shadow starts at a random X, spans a random Y band of about ``width`` pixels (soft edges) and
    fades slowly along the illumination direction (+X).

    Examples
    --------
    >>> m = shadow_mask((32, 32), n=2, seed=0)
    >>> bool(m.min() < 0.5), float(m.max())
    (True, 1.0)
    """
    ny, nx = _check_shape(shape)
    rng = as_rng(seed)
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float64)
    att = np.zeros((ny, nx))
    for _ in range(int(n)):
        y0, x0 = rng.uniform(0, ny), rng.uniform(0, nx * 0.6)
        w = width * rng.uniform(0.6, 1.6)
        band = np.exp(-0.5 * ((yy - y0) / (w / 2.355)) ** 4)
        along = (xx >= x0) * np.exp(-(xx - x0) / (nx * rng.uniform(0.5, 2.0)))
        att += strength * rng.uniform(0.6, 1.0) * band * along
    m = np.exp(-att)
    m = m / m.max()
    return m.astype(np.float32)


class IlluminationForward:
    """Forward model ``x_n = S·(y_n + b_n − b̄·keep_level) + D`` (flat × truth + dark + baseline).

    Parameters
    ----------
    flatfield : (Y, X) array
        Multiplicative field (mean 1).
    darkfield : (Y, X) array or None
        Additive field (0 when None).
    baseline : (T,) array or None
        Per-frame additive baseline, applied along the first axis of ``y`` when given.
    baseline_mode : {"add", "drift"}
        "add": add ``b_n``; "drift": add ``b_n − mean(b)`` (a correction that removed only the drift and
        kept the mean level maps back this way).
    gain : float or None
        ADU per photon for Poisson noise (``variance = gain·(expected − D)``); None = no noise model.

    Examples
    --------
    >>> f = IlluminationForward(np.full((2, 2), 2.0), np.ones((2, 2)))
    >>> f.expected(np.ones((2, 2))).tolist()
    [[3.0, 3.0], [3.0, 3.0]]
    """

    def __init__(self, flatfield: Any, darkfield: Any = None, baseline: Any = None, baseline_mode: str = "add",
                 gain: float | None = None):
        self.flatfield = np.asarray(flatfield, np.float32)
        self.darkfield = None if darkfield is None else np.asarray(darkfield, np.float32)
        self.baseline = None if baseline is None else np.asarray(baseline, np.float32).ravel()
        if baseline_mode not in ("add", "drift"):
            raise FluoreconError(f"baseline_mode must be 'add' or 'drift', got {baseline_mode!r}")
        self.baseline_mode = baseline_mode
        self.gain = gain

    def _b(self, y: Any) -> Any:
        if self.baseline is None:
            return 0.0
        b = self.baseline - (self.baseline.mean() if self.baseline_mode == "drift" else 0.0)
        n = y.shape[0] if y.ndim == 3 else 1
        if y.ndim == 3 and len(b) != n:
            raise FluoreconError(f"baseline has {len(b)} frames but the image has {n}")
        if y.ndim == 2:
            return float(b[0]) if len(b) == 1 else 0.0
        bt = torch.as_tensor(b, dtype=y.dtype) if isinstance(y, torch.Tensor) else b.astype(y.dtype)
        return bt[:, None, None]

    def expected(self, y: Any) -> Any:
        """The noiseless recording of truth ``y`` ((Y, X) or (T, Y, X)); numpy or torch."""
        if isinstance(y, torch.Tensor):
            s = torch.as_tensor(self.flatfield, dtype=y.dtype, device=y.device)
            d = 0.0 if self.darkfield is None else torch.as_tensor(self.darkfield, dtype=y.dtype, device=y.device)
            return s * (y + self._b(y)) + d
        y = np.asarray(y, np.float32)
        d = 0.0 if self.darkfield is None else self.darkfield
        return (self.flatfield * (y + self._b(y)) + d).astype(np.float32)

    def variance(self, expected: Any) -> Any:
        """Poisson (shot-noise) variance of the recording; needs ``gain``."""
        if self.gain is None:
            raise FluoreconError("no noise model is attached to the flat-field forward model",
                                 hint="give the camera gain (ADU per photon)")
        d = 0.0 if self.darkfield is None else self.darkfield
        if isinstance(expected, torch.Tensor):
            d = torch.as_tensor(d, dtype=expected.dtype)
            return torch.clamp(self.gain * (expected - d), min=1e-6)
        return np.maximum(self.gain * (np.asarray(expected) - d), 1e-6).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "illumination", "model": "x = flatfield * (y + baseline[t]) + darkfield",
                "shape": list(self.flatfield.shape), "flatfield_range": [float(self.flatfield.min()),
                                                                          float(self.flatfield.max())],
                "darkfield_mean": None if self.darkfield is None else float(self.darkfield.mean()),
                "baseline": None if self.baseline is None else [float(v) for v in self.baseline],
                "baseline_mode": self.baseline_mode, "gain": self.gain}


class MaskForward:
    """Forward model of occlusion: ``x = mask × y`` (shadows, inpainting).

    Examples
    --------
    >>> MaskForward(np.array([1.0, 0.5])).expected(np.array([2.0, 2.0])).tolist()
    [2.0, 1.0]
    """

    def __init__(self, mask: Any, gain: float | None = None):
        self.mask = np.asarray(mask, np.float32)
        self.gain = gain

    def expected(self, y: Any) -> Any:
        if isinstance(y, torch.Tensor):
            return torch.as_tensor(self.mask, dtype=y.dtype, device=y.device) * y
        return (self.mask * np.asarray(y, np.float32)).astype(np.float32)

    def variance(self, expected: Any) -> Any:
        if self.gain is None:
            raise FluoreconError("no noise model is attached to the mask forward model", hint="give the camera gain")
        return self.gain * expected

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "mask", "model": "x = mask * y", "shape": list(self.mask.shape),
                "occluded_fraction": float((self.mask < 0.5).mean()), "gain": self.gain}


def simulate_tiles(n: int = 32, shape: tuple[int, int] = (64, 64), *, kind: str = "mixed", photons: float | None = 200.0,
                   strength: float = 0.4, dark_level: float = 10.0, baseline_level: float | None = 0.0,
                   brightness_spread: float = 0.5, seed: int | np.random.Generator | None = 0) -> dict[str, Any]:
    """Simulate a stack of tiles/frames with known flat-field, dark-field and baseline.

    Each tile is an independent phantom scaled by a random brightness; ``photons`` sets the Poisson
    noise (photons at truth intensity 1; None = noiseless).

    Returns
    -------
    dict
        ``stack`` (N, Y, X) float32 recording, ``expected`` (noiseless), ``truth``, ``flatfield``,
        ``darkfield``, ``baseline`` (N,) (zeros when ``baseline_level`` is 0/None).

    Examples
    --------
    >>> s = simulate_tiles(3, (16, 16), seed=1)
    >>> sorted(s)[:3]
    ['baseline', 'darkfield', 'expected']
    """
    rng = as_rng(seed)
    shp = _check_shape(shape)
    if n < 1:
        raise FluoreconError(f"need n ≥ 1 tiles, got {n}")
    flat = vignetting(shp, strength=strength, seed=rng)
    dark = darkfield(shp, level=dark_level, seed=rng)
    base = (baseline_drift(n, level=baseline_level, seed=rng) if baseline_level else np.zeros(n, np.float32))
    # random circular shifts make the scene statistically stationary (phantoms thin out near borders,
    # which would otherwise look like vignetting)
    truth = np.stack([np.roll(phantom(kind, shp, seed=int(rng.integers(2**31))),
                              (int(rng.integers(shp[0])), int(rng.integers(shp[1]))), axis=(0, 1))
                      * (1 + brightness_spread * rng.uniform(-1, 1)) for _ in range(n)]).astype(np.float32)
    scale = 100.0
    # tissue autofluorescence: a smooth random texture per tile (5–35), so that every pixel sees a
    # continuous range of intensities across the tiles (what BaSiC-style estimation relies on)
    texture = np.stack([ndimage.gaussian_filter(rng.standard_normal(shp), 1.5, mode="wrap") for _ in range(n)])
    texture = (texture - texture.min()) / max(float(np.ptp(texture)), 1e-12)
    truth_s = truth * scale + 5.0 + 30.0 * texture
    fwd = IlluminationForward(flat, dark, base)
    expected = fwd.expected(truth_s)
    if photons is None:
        stack = expected.copy()
    else:
        gain = scale / photons  # ADU per photon
        signal = np.clip(expected - dark, 0, None)
        stack = (rng.poisson(signal / gain) * gain + dark).astype(np.float32)
    return {"stack": stack.astype(np.float32), "expected": expected, "truth": truth_s.astype(np.float32),
            "flatfield": flat, "darkfield": dark, "baseline": base}
