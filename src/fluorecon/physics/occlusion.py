"""Light-sheet shadows: absorbing objects occlude the illumination, and the forward model ``mask × truth``.

In a light-sheet microscope the sheet enters the sample from one side (or from both). Strongly
absorbing or scattering objects (pigment, yolk, dense tissue) remove light from the sheet, so everything
*behind* them along the illumination direction is dimmer: stripes that start at the object and run
along the propagation axis. This module simulates that (f); the estimation of the mask and the filling
of the occluded regions (g) live in :mod:`fluorecon.classical.inpaint` and :mod:`fluorecon.learn.inpaint_net`.

The sheet is propagated column by column (Beer–Lambert absorption by the optical density of the
absorbers, a small Gaussian spread per column for the sheet's divergence and forward scattering, which
softens the shadow edges with distance, and an optional refill by scattered light), so that shadows
have soft edges, partial attenuation and fade behind the object. The recording is

.. math:: x(r) = b + M(r)\\,\\bigl(y(r) - b\\bigr) + \\text{noise}

with ``M ∈ [0, 1]`` the transmission of the sheet (1 = unshadowed), ``y`` the unshadowed image and ``b``
the camera offset (the offset is not attenuated: it is not light).

Examples
--------
>>> sim = simulate_shadows((64, 64), n_absorbers=3, seed=0)
>>> sim["recording"].shape, bool(sim["mask"].min() < 0.5), float(sim["mask"].max()) <= 1.0
((64, 64), True, True)
>>> fwd = OcclusionForward(sim["mask"], offset=sim["offset"])
>>> bool(np.allclose(fwd.expected(sim["truth"]), sim["expected"], rtol=1e-5, atol=1e-3))
True
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy import ndimage

from fluorecon.errors import FluoreconError
from fluorecon.physics.camera import Camera
from fluorecon.physics.phantoms import phantom
from fluorecon.utils import as_rng

__all__ = ["OcclusionForward", "absorbers", "check_mask", "propagate_sheet", "random_shadow_mask",
           "simulate_shadows"]


def _shape2(shape: Any) -> tuple[int, int]:
    try:
        shp = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise FluoreconError(f"shape must be (Y, X), got {shape!r}") from None
    if len(shp) != 2 or min(shp) < 4:
        raise FluoreconError(f"shape must be (Y, X) with sizes ≥ 4, got {shape!r}", hint="e.g. (128, 128)")
    return shp  # type: ignore[return-value]


def absorbers(shape: tuple[int, int], n: int = 4, radius: tuple[float, float] = (2.0, 6.0),
              transmission: tuple[float, float] = (0.02, 0.6), edge: float = 1.0, axis: int = -1,
              seed: int | np.random.Generator | None = 0) -> np.ndarray:
    """Optical density per pixel (per pixel of propagation) of ``n`` soft round absorbers.

    Each absorber's density is scaled so that a ray through its centre keeps the fraction
    ``transmission`` (drawn uniformly from the range) of its light: deep shadows (0.02) to partial ones.

    Parameters
    ----------
    shape : (Y, X)
    n : int
        Number of absorbers.
    radius : (min, max)
        Radius range in pixels.
    transmission : (min, max)
        Range of the transmission along the central ray (0 < min ≤ max ≤ 1).
    edge : float
        Width of the soft edge (pixels).
    axis : int
        Propagation axis (-1: X, -2: Y); absorbers are placed in the first 70 % along it so their
        shadows are visible.
    seed : int or Generator

    Returns
    -------
    np.ndarray
        float32, ≥ 0 (natural-log units per pixel).

    Examples
    --------
    >>> od = absorbers((32, 32), n=1, transmission=(0.1, 0.1), seed=0)
    >>> row = od[np.unravel_index(np.argmax(od), od.shape)[0]]
    >>> round(float(np.exp(-row.sum())), 2)
    0.1
    """
    ny, nx = _shape2(shape)
    if axis not in (-1, -2):
        raise FluoreconError(f"axis must be -1 (X) or -2 (Y), got {axis}")
    lo, hi = (float(v) for v in transmission)
    if not 0 < lo <= hi <= 1:
        raise FluoreconError(f"transmission range must satisfy 0 < min ≤ max ≤ 1, got {transmission}")
    rng = as_rng(seed)
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float64)
    along, across = (xx, yy) if axis == -1 else (yy, xx)
    n_along, n_across = (nx, ny) if axis == -1 else (ny, nx)
    od = np.zeros((ny, nx))
    for _ in range(int(n)):
        r = rng.uniform(*radius)
        c_along = rng.uniform(0.05, 0.7) * n_along
        c_across = rng.uniform(0, n_across)
        d = np.hypot(along - c_along, across - c_across)
        prof = 1.0 / (1.0 + np.exp((d - r) / max(edge, 1e-3) * 2.0))
        # scale so that the central ray keeps the drawn transmission: ∫ od = −ln t
        line = np.hypot(np.arange(n_along) - c_along, 0.0)
        chord = float(np.sum(1.0 / (1.0 + np.exp((line - r) / max(edge, 1e-3) * 2.0))))
        od += prof * (-np.log(rng.uniform(lo, hi)) / max(chord, 1e-6))
    return od.astype(np.float32)


def propagate_sheet(density: np.ndarray, axis: int = -1, direction: int = 1, spread: float = 0.3,
                    refill: float = 0.0) -> np.ndarray:
    """Transmission of a light sheet through an optical-density map, column by column.

    At each step along the propagation axis the sheet is attenuated by ``exp(−density)``, spread
    laterally by a Gaussian of σ ``spread`` (divergence/forward scattering: shadow edges soften with
    distance, as σ grows like √distance) and refilled by ``refill × (1 − I)`` (scattered light).

    Parameters
    ----------
    density : (Y, X) array
        Optical density per pixel (≥ 0).
    axis : {-1, -2}
        Propagation axis (X or Y).
    direction : {1, -1, 0}
        +1: light enters at index 0; -1: at the far end; 0: both sides (dual-sided illumination,
        the mean of the two sheets).
    spread : float
        Lateral Gaussian σ added per pixel of propagation (pixels).
    refill : float
        Fraction of the missing light restored per pixel of propagation (0–1).

    Returns
    -------
    np.ndarray
        Transmission ``M`` in [0, 1], float32 (the light reaching each pixel).

    Examples
    --------
    >>> od = np.zeros((8, 8)); od[4, 2] = np.log(2)
    >>> m = propagate_sheet(od, spread=0.0)
    >>> m[4, :4].tolist()
    [1.0, 1.0, 1.0, 0.5]
    """
    od = np.asarray(density, np.float64)
    if od.ndim != 2:
        raise FluoreconError(f"density must be 2D (Y, X), got shape {od.shape}")
    if not np.all(np.isfinite(od)) or od.min() < 0:
        raise FluoreconError("optical density must be finite and ≥ 0")
    if direction not in (1, -1, 0):
        raise FluoreconError(f"direction must be 1, -1 or 0 (both sides), got {direction}")
    if direction == 0:
        return ((propagate_sheet(od, axis, 1, spread, refill) + propagate_sheet(od, axis, -1, spread, refill)) / 2)
    if axis not in (-1, -2):
        raise FluoreconError(f"axis must be -1 (X) or -2 (Y), got {axis}")
    a = od if axis == -1 else od.T
    if direction == -1:
        a = a[:, ::-1]
    n_across, n_along = a.shape
    m = np.empty_like(a)
    sheet = np.ones(n_across)
    for j in range(n_along):
        m[:, j] = sheet
        sheet = sheet * np.exp(-a[:, j])
        if spread > 0:
            sheet = ndimage.gaussian_filter1d(sheet, spread, mode="nearest", truncate=3.0)
        if refill > 0:
            sheet = sheet + refill * (1.0 - sheet)
    if direction == -1:
        m = m[:, ::-1]
    m = m if axis == -1 else m.T
    return np.clip(m, 0.0, 1.0).astype(np.float32)


def random_shadow_mask(shape: tuple[int, int], rng: np.random.Generator, *, axis: int = -1,
                       n: tuple[int, int] = (1, 3), radius: tuple[float, float] = (1.5, 5.0),
                       transmission: tuple[float, float] = (0.02, 0.7), spread: tuple[float, float] = (0.05, 0.4),
                       direction: int | None = None) -> np.ndarray:
    """A random shadow mask (transmission) for training: random absorbers, spread and direction.

    Examples
    --------
    >>> m = random_shadow_mask((32, 32), np.random.default_rng(0))
    >>> m.shape, bool(m.min() < 1.0)
    ((32, 32), True)
    """
    k = int(rng.integers(n[0], n[1] + 1))
    od = absorbers(shape, k, radius=radius, transmission=transmission, axis=axis, seed=rng)
    d = int(rng.choice([1, -1])) if direction is None else direction
    return propagate_sheet(od, axis=axis, direction=d, spread=float(rng.uniform(*spread)))


def check_mask(mask: Any, shape: tuple[int, ...], name: str = "mask") -> np.ndarray:
    """Validate a transmission mask for an image of ``shape``: values in [0, 1], finite, broadcastable.

    A 2D mask is shared by every plane of a stack; otherwise it must have the image's shape.

    Examples
    --------
    >>> check_mask(np.ones((4, 4)), (2, 4, 4)).shape
    (2, 4, 4)
    >>> check_mask(np.full((4, 4), 2.0), (4, 4))
    Traceback (most recent call last):
    ...
    fluorecon.errors.FluoreconError: mask values must lie in [0, 1] (transmission: 1 = not shadowed), got range [2, 2]. Fix: give the transmission of the light sheet, or a binary mask with --mask-kind occluded (non-zero = occluded)
    """
    m = np.asarray(mask, np.float32)
    if m.ndim < 2:
        raise FluoreconError(f"{name} must be an image (Y, X), got shape {m.shape}")
    if not np.all(np.isfinite(m)):
        raise FluoreconError(f"{name} contains NaN or Inf", hint="give a transmission map with values in [0, 1]")
    if m.size and (m.min() < 0 or m.max() > 1):
        raise FluoreconError(f"{name} values must lie in [0, 1] (transmission: 1 = not shadowed), got range "
                             f"[{m.min():.3g}, {m.max():.3g}]",
                             hint="give the transmission of the light sheet, or a binary mask with --mask-kind "
                                  "occluded (non-zero = occluded)")
    if m.shape != tuple(shape):
        if m.shape == tuple(shape[-2:]):
            m = np.broadcast_to(m, tuple(shape)).copy()
        else:
            raise FluoreconError(f"{name} shape {m.shape} does not match the image {tuple(shape)}",
                                 hint="give one (Y, X) mask for every plane, or a mask of the image's shape")
    return m


class OcclusionForward:
    """Forward model of shadows: ``x = offset + mask · (y − offset)`` (+ camera noise).

    Parameters
    ----------
    mask : array
        Transmission in [0, 1] (the image's shape, or (Y, X) shared by all planes).
    offset : float
        Camera offset (ADU): not light, so not attenuated.
    noise : NoiseModel or Camera-like, optional
        Anything with ``variance(mean)``; None: verify estimates the noise from the recording.

    Examples
    --------
    >>> f = OcclusionForward(np.array([[1.0, 0.5]]), offset=100.0)
    >>> f.expected(np.array([[300.0, 300.0]])).tolist()
    [[300.0, 200.0]]
    """

    def __init__(self, mask: Any, offset: float = 0.0, noise: Any = None):
        self.mask = np.asarray(mask, np.float32)
        self.offset = float(offset)
        self.noise = noise

    def _fits(self, shape: tuple[int, ...]) -> bool:
        try:
            return np.broadcast_shapes(self.mask.shape, tuple(shape)) == tuple(shape)
        except ValueError:
            return False

    def expected(self, y: Any) -> Any:
        """The noiseless recording of ``y``. Images of another shape than the mask (verify's probes of the
        camera offset, taken on a small zero image) see no shadow: the model is the identity for them."""
        if not self._fits(tuple(y.shape)):
            return y if isinstance(y, torch.Tensor) else np.asarray(y, np.float32)
        if isinstance(y, torch.Tensor):
            m = torch.as_tensor(self.mask, dtype=y.dtype, device=y.device)
            return self.offset + m * (y - self.offset)
        y = np.asarray(y, np.float32)
        return (self.offset + self.mask * (y - self.offset)).astype(np.float32)

    def variance(self, expected: Any) -> Any:
        if self.noise is None:
            raise FluoreconError("no noise model is attached to the occlusion forward model",
                                 hint="give the camera gain/offset/read noise, or let verify estimate them")
        return self.noise.variance(expected)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"kind": "occlusion", "model": "x = offset + mask * (y - offset)",
                             "shape": list(self.mask.shape), "offset": self.offset,
                             "shadowed_fraction": float((self.mask < 0.9).mean()),
                             "occluded_fraction": float((self.mask < 0.1).mean())}
        if self.noise is not None and hasattr(self.noise, "to_dict"):
            d["noise"] = self.noise.to_dict()
        return d


def simulate_shadows(shape: tuple[int, ...] = (128, 128), *, kind: str = "mixed", n_absorbers: int = 4,
                     radius: tuple[float, float] = (3.0, 8.0), transmission: tuple[float, float] = (0.01, 0.5),
                     axis: int = -1, direction: int = 1, spread: float = 0.15, refill: float = 0.0,
                     photons: float = 200.0, background: float = 0.1, offset: float = 100.0, gain: float = 1.0,
                     read_noise: float = 1.0, seed: int | np.random.Generator | None = 0) -> dict[str, Any]:
    """Simulate a light-sheet plane (or stack of planes) with shadows behind absorbing objects.

    Parameters
    ----------
    shape : (Y, X) or (Z, Y, X)
        Planes are independent scenes with independent absorbers.
    kind : str
        Phantom kind (:func:`fluorecon.physics.phantoms.phantom`).
    n_absorbers, radius, transmission : see :func:`absorbers`
    axis, direction, spread, refill : see :func:`propagate_sheet`
    photons : float
        Photo-electrons at truth intensity 1 (``background`` is added to the normalised scene).
    offset, gain, read_noise : float
        sCMOS-like camera: ADU offset, ADU per electron, read noise in electrons.
    seed : int or Generator

    Returns
    -------
    dict
        ``recording`` (ADU, noisy), ``expected`` (noiseless recording), ``truth`` (unshadowed, noiseless, ADU),
        ``mask`` (transmission), ``density``, ``offset``, ``gain``, ``camera`` (:class:`Camera`).

    Examples
    --------
    >>> s = simulate_shadows((2, 32, 32), seed=1)
    >>> s["recording"].shape, s["mask"].shape
    ((2, 32, 32), (2, 32, 32))
    """
    shp = tuple(int(v) for v in shape)
    if len(shp) not in (2, 3):
        raise FluoreconError(f"shape must be (Y, X) or (Z, Y, X), got {shape!r}")
    planes = shp[0] if len(shp) == 3 else 1
    yx = _shape2(shp[-2:])
    rng = as_rng(seed)
    cam = Camera(photons=photons, gain=gain, offset=offset, read_noise=read_noise)
    truths, masks, dens = [], [], []
    for _ in range(planes):
        scene = phantom(kind, yx, seed=int(rng.integers(2**31))).astype(np.float64) + background
        od = absorbers(yx, n_absorbers, radius=radius, transmission=transmission, axis=axis, seed=rng)
        masks.append(propagate_sheet(od, axis=axis, direction=direction, spread=spread, refill=refill))
        truths.append(scene)
        dens.append(od)
    scene = np.stack(truths)
    mask = np.stack(masks).astype(np.float32)
    recording = cam.simulate(scene * mask, seed=rng)
    to_adu = gain * photons
    truth = (offset + to_adu * scene).astype(np.float32)
    expected = (offset + to_adu * scene * mask).astype(np.float32)
    sq = (lambda a: a[0]) if len(shp) == 2 else (lambda a: a)
    return {"recording": sq(recording.astype(np.float32)), "expected": sq(expected), "truth": sq(truth),
            "mask": sq(mask), "density": sq(np.stack(dens)), "offset": float(offset), "gain": float(gain),
            "camera": cam}
