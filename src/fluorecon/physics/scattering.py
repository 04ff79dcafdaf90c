"""Scattered-light haze: the forward model of depth-dependent out-of-focus / scattered background.

Deep in tissue, part of the light from every structure is scattered into a broad halo. A plane ``z``
of a stack (depth ``d_z`` in [0, 1] from the surface) is recorded as

.. math:: x_z = y_z + \\alpha(d_z)\\,(G_{\\sigma(d_z)} * y_z) + \\beta(d_z)

with ``α`` the scattered fraction and ``σ`` the halo width both growing linearly with depth, and
``β`` a diffuse background. The haze is smooth (low-frequency), the truth ``y`` is not.

Examples
--------
>>> y = np.zeros((3, 32, 32), np.float32); y[:, 16, 16] = 100
>>> f = HazeForward(alpha=(0.2, 1.0), sigma=(4, 8), background=(0, 1))
>>> x = f.expected(y)
>>> x.shape, bool(x[2].sum() > x[0].sum())
((3, 32, 32), True)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy import ndimage

from fluorecon.errors import FluoreconError
from fluorecon.physics.phantoms import phantom

__all__ = ["AdditiveForward", "HazeForward", "simulate_haze"]


class HazeForward:
    """Forward model ``x_z = y_z + α(d)·G_σ(d) * y_z + β(d)`` (depth ``d`` from 0 at the first plane to 1).

    Parameters
    ----------
    alpha, sigma, background : (shallow, deep)
        Scattered fraction, halo σ in pixels, and diffuse background at the first and last plane
        (linear in between). A 2D image is treated as one plane at ``depth``.
    depth : float
        Depth of a single 2D plane (0…1).
    gain : float or None
        Recording units per photon for the Poisson variance.
    """

    def __init__(self, alpha: tuple[float, float] = (0.3, 1.5), sigma: tuple[float, float] = (6.0, 16.0),
                 background: tuple[float, float] = (0.0, 2.0), depth: float = 1.0, gain: float | None = 1.0):
        self.alpha = tuple(float(v) for v in alpha)
        self.sigma = tuple(float(v) for v in sigma)
        self.background = tuple(float(v) for v in background)
        if min(self.alpha) < 0 or min(self.sigma) <= 0 or min(self.background) < 0:
            raise FluoreconError("haze alpha, background must be ≥ 0 and sigma > 0")
        self.depth = float(depth)
        self.gain = gain

    def params_at(self, d: float) -> tuple[float, float, float]:
        """(α, σ, β) at depth ``d`` in [0, 1]."""
        lerp = lambda ab: ab[0] + (ab[1] - ab[0]) * d  # noqa: E731
        return lerp(self.alpha), lerp(self.sigma), lerp(self.background)

    def haze(self, y: Any) -> np.ndarray:
        """The scattered component alone (same shape as ``y``)."""
        y = np.asarray(y, np.float32)
        planes = y[None] if y.ndim == 2 else y
        n = planes.shape[0]
        out = np.empty_like(planes)
        for z in range(n):
            d = self.depth if y.ndim == 2 else (z / (n - 1) if n > 1 else 0.0)
            a, s, b = self.params_at(d)
            out[z] = a * ndimage.gaussian_filter(planes[z], s, mode="reflect") + b
        return out[0] if y.ndim == 2 else out

    def expected(self, y: Any) -> Any:
        if isinstance(y, torch.Tensor):
            return torch.as_tensor(self.expected(y.detach().cpu().numpy()), dtype=y.dtype, device=y.device)
        y = np.asarray(y, np.float32)
        return (y + self.haze(y)).astype(np.float32)

    def variance(self, expected: Any) -> Any:
        if self.gain is None:
            raise FluoreconError("no noise model is attached to the haze forward model", hint="give the gain")
        if isinstance(expected, torch.Tensor):
            return torch.clamp(self.gain * expected, min=1e-6)
        return np.maximum(self.gain * np.asarray(expected), 1e-6).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "haze", "model": "x[z] = y[z] + alpha(d) * gauss(sigma(d)) * y[z] + background(d)",
                "alpha": list(self.alpha), "sigma": list(self.sigma), "background": list(self.background),
                "depth": self.depth, "gain": self.gain}


def simulate_haze(shape: tuple[int, ...] = (8, 96, 96), *, kind: str = "mixed", photons: float | None = 100.0,
                  forward: HazeForward | None = None, seed: int | np.random.Generator | None = 0) -> dict[str, Any]:
    """A stack of independent phantom planes with depth-dependent haze and Poisson noise.

    Returns ``recording`` (photons), ``truth`` (photons, haze-free), ``haze``, ``forward``.

    Examples
    --------
    >>> s = simulate_haze((2, 32, 32), seed=0)
    >>> s["recording"].shape, bool(s["haze"][1].mean() > s["haze"][0].mean())
    ((2, 32, 32), True)
    """
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    shp = tuple(int(v) for v in shape)
    if len(shp) == 2:
        shp = (1, *shp)
    if len(shp) != 3:
        raise FluoreconError(f"haze simulation needs (Z, Y, X) or (Y, X), got {shape}")
    fwd = forward or HazeForward()
    truth = np.stack([phantom(kind, shp[1:], seed=int(rng.integers(2**31))) for _ in range(shp[0])])
    truth = (truth * (photons or 100.0)).astype(np.float32)
    haze = fwd.haze(truth)
    expected = truth + haze
    rec = expected if photons is None else rng.poisson(expected).astype(np.float32)
    out = {"recording": rec.astype(np.float32), "truth": truth, "haze": haze.astype(np.float32), "forward": fwd}
    if len(shape) == 2:
        out = {k: (v[0] if isinstance(v, np.ndarray) else v) for k, v in out.items()}
    return out


class AdditiveForward:
    """Forward model of a removed additive component: ``x = y + component`` (an estimated haze map).

    Examples
    --------
    >>> AdditiveForward(np.ones(2)).expected(np.zeros(2)).tolist()
    [1.0, 1.0]
    """

    def __init__(self, component: Any, gain: float | None = None, kind: str = "haze"):
        self.component = np.asarray(component, np.float32)
        self.gain = gain
        self.kind = kind

    def expected(self, y: Any) -> Any:
        if isinstance(y, torch.Tensor):
            return y + torch.as_tensor(self.component, dtype=y.dtype, device=y.device)
        return (np.asarray(y, np.float32) + self.component).astype(np.float32)

    def variance(self, expected: Any) -> Any:
        if self.gain is None:
            raise FluoreconError("no noise model is attached to the haze forward model", hint="give the gain")
        if isinstance(expected, torch.Tensor):
            return torch.clamp(self.gain * expected, min=1e-6)
        return np.maximum(self.gain * np.asarray(expected), 1e-6).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": f"additive-{self.kind}", "model": "x = y + component (estimated)",
                "component_mean": float(self.component.mean()), "gain": self.gain}
