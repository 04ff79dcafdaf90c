"""Single-molecule localization microscopy (SMLM): blinking emitters, SMLM cameras, PSFs, movies.

The forward model **f** of PALM/STORM: sparse fluorophores switch on and off, each on-frame emits a
random number of photons that a point-spread function spreads over camera pixels, and an EMCCD or
sCMOS camera turns them into ADU. Everything is in physical units:

- positions in **nm**, origin at the **top-left corner** of the image; the centre of pixel
  ``(row i, column j)`` is at ``x = (j + 0.5)·pixel_size``, ``y = (i + 0.5)·pixel_size``
  (ThunderSTORM's convention);
- photons are photo-electrons (quantum efficiency applied) unless said otherwise;
- camera ``gain`` is **ADU per electron** as everywhere in fluorecon. A camera sheet that gives the
  conversion in electrons per ADU (the SMLM-2016 challenge: 45 e⁻/ADU) means ``gain = 1/45``.

Frames are ``(T, Y, X)`` float32. Ground truth is a :class:`fluorecon.tasks.contract.Table`-compatible
dict of columns (``frame`` from 1, ``x [nm]``, ``y [nm]``, ``z [nm]``, ``intensity [photon]``, ``id``).

Examples
--------
>>> cam = SMLMCamera.smlm2016()
>>> round(cam.gain, 5), cam.em_gain, cam.read_noise, cam.baseline
(0.02222, 300.0, 74.4, 100.0)
>>> frames, truth = simulate_movie(5, (32, 32), pixel_size=100.0, density=0.5, seed=0)
>>> frames.shape, sorted(truth)[:3]
((5, 32, 32), ['frame', 'id', 'intensity [photon]'])
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fluorecon.errors import FluoreconError, validation_message
from fluorecon.utils import as_rng

__all__ = [
    "AstigmaticPSF",
    "Blinking",
    "GaussianPSF",
    "LocalizationForward",
    "SMLMCamera",
    "blinking_emitters",
    "integrated_gaussian",
    "render_expected",
    "simulate_movie",
    "structure",
]

_SQRT2 = math.sqrt(2.0)


# ------------------------------------------------------------------------------------------------ camera
class SMLMCamera(BaseModel):
    """EMCCD or sCMOS camera of an SMLM set-up, photons in, ADU out.

    Chain per pixel: photo-electrons ``n ~ Poisson(qe · photons)``; EM register
    ``m ~ Gamma(n, em_gain)`` (EMCCD only); read noise ``m + Normal(0, read_noise)`` (electrons rms,
    per-pixel ``read_noise_map`` for sCMOS); ADC ``gain · e + baseline`` (per-pixel ``offset_map`` for
    sCMOS); optional rounding/clipping to ``bit_depth``.

    Parameters
    ----------
    baseline : float
        Offset in ADU.
    gain : float
        ADU per electron (after EM multiplication). Must be > 0.
    em_gain : float or None
        EM multiplication (> 1) for an EMCCD, None for sCMOS/CCD.
    read_noise : float
        Read noise in electrons rms (at the output, i.e. after EM multiplication).
    qe : float
        Quantum efficiency in (0, 1]; photons given to :meth:`simulate` are photons at the detector.
    bit_depth : int or None
        Round and clip to ``[0, 2**bit_depth − 1]``.
    offset_map, read_noise_map : list or None
        sCMOS per-pixel baseline (ADU) and read noise (e⁻ rms) maps (nested lists, shape ``(Y, X)``).

    Examples
    --------
    >>> cam = SMLMCamera(baseline=100, gain=2.0, read_noise=1.0)
    >>> float(cam.expected(np.array(10.0)))
    120.0
    >>> float(cam.to_photons(np.array(120.0)))
    10.0
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    baseline: float = Field(100.0, ge=0)
    gain: float = Field(1.0, gt=0)
    em_gain: float | None = None
    read_noise: float = Field(1.0, ge=0)
    qe: float = Field(1.0, gt=0, le=1)
    bit_depth: int | None = Field(None, ge=1, le=32)
    offset_map: list[list[float]] | None = None
    read_noise_map: list[list[float]] | None = None

    @field_validator("em_gain")
    @classmethod
    def _em(cls, v: float | None) -> float | None:
        if v is not None and not v > 1:
            raise ValueError("em_gain must be > 1 (or None for an sCMOS/CCD camera)")
        return v

    def __init__(self, **data: Any):
        try:
            super().__init__(**data)
        except ValidationError as e:
            errs = validation_message(e)
            raise FluoreconError(f"invalid SMLM camera ({errs})",
                                 hint="gain (ADU per electron) must be > 0; baseline and read noise ≥ 0; "
                                      "em_gain > 1 or None; qe in (0, 1]") from None

    @classmethod
    def smlm2016(cls) -> SMLMCamera:
        """The SMLM-2016 challenge EMCCD: baseline 100 ADU, 45 e⁻/ADU (gain 1/45), EM gain 300, read 74.4 e⁻."""
        return cls(baseline=100.0, gain=1.0 / 45.0, em_gain=300.0, read_noise=74.4)

    @property
    def excess(self) -> float:
        """Excess noise factor (2 for an EMCCD, 1 otherwise)."""
        return 2.0 if self.em_gain else 1.0

    @property
    def total_gain(self) -> float:
        """ADU per photo-electron: ``gain · em_gain``."""
        return self.gain * (self.em_gain or 1.0)

    def _maps(self, shape: tuple[int, ...]) -> tuple[Any, Any]:
        off: Any = self.baseline
        rn: Any = self.read_noise
        if self.offset_map is not None:
            off = np.asarray(self.offset_map, np.float32)
            if off.shape != tuple(shape[-2:]):
                raise FluoreconError(f"sCMOS offset map {off.shape} does not match the frames {tuple(shape[-2:])}")
        if self.read_noise_map is not None:
            rn = np.asarray(self.read_noise_map, np.float32)
            if rn.shape != tuple(shape[-2:]):
                raise FluoreconError(f"sCMOS read-noise map {rn.shape} does not match the frames {tuple(shape[-2:])}")
        return off, rn

    def expected(self, photons: Any) -> Any:
        """Mean ADU for ``photons`` expected photons per pixel (numpy or torch)."""
        off, _ = self._maps(tuple(photons.shape))
        if isinstance(photons, torch.Tensor) and isinstance(off, np.ndarray):
            off = torch.as_tensor(off, dtype=photons.dtype, device=photons.device)
        return off + self.total_gain * self.qe * photons

    def variance(self, expected_adu: Any) -> Any:
        """Variance (ADU²) of a pixel whose mean is ``expected_adu`` (Poisson × excess + read noise)."""
        off, rn = self._maps(tuple(expected_adu.shape))
        if isinstance(expected_adu, torch.Tensor):
            off = torch.as_tensor(off, dtype=expected_adu.dtype)
            rn = torch.as_tensor(rn, dtype=expected_adu.dtype)
            sig = (expected_adu - off).clamp(min=0)
        else:
            sig = np.clip(expected_adu - off, 0, None)
        var = self.total_gain * self.excess * sig + (self.gain * rn) ** 2
        return var + (1.0 / 12.0 if self.bit_depth else 0.0)

    def to_photons(self, adu: Any) -> Any:
        """Convert ADU to photo-electrons: ``(adu − baseline) / (gain · em_gain)``."""
        off, _ = self._maps(tuple(np.shape(adu)))
        if isinstance(adu, torch.Tensor) and isinstance(off, np.ndarray):
            off = torch.as_tensor(off, dtype=adu.dtype)
        return (adu - off) / self.total_gain

    def read_variance_photons(self, shape: tuple[int, ...]) -> Any:
        """Read-noise variance in photo-electron² units (scalar, or a map for sCMOS)."""
        _, rn = self._maps(shape)
        return (np.asarray(rn, np.float32) / (self.em_gain or 1.0)) ** 2

    def simulate(self, photons: Any, seed: int | np.random.Generator | torch.Generator | None = None) -> Any:
        """Noisy ADU frames from expected photons per pixel (numpy → numpy float32, torch → torch).

        Examples
        --------
        >>> cam = SMLMCamera(baseline=100, gain=0.5, em_gain=100, read_noise=50)
        >>> x = cam.simulate(np.full((200, 200), 4.0), seed=1)
        >>> bool(abs(x.mean() - 300) < 3), bool(abs(x.var() / (0.25 * (100**2 * 2 * 4 + 50**2)) - 1) < 0.1)
        (True, True)
        """
        is_t = isinstance(photons, torch.Tensor)
        lam = photons.detach().float() if is_t else torch.as_tensor(np.asarray(photons, np.float32))
        if np.any(~np.isfinite(lam.numpy())) or bool((lam < 0).any()):
            raise FluoreconError("expected photon counts must be finite and ≥ 0")
        gen = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(
            int(as_rng(seed).integers(2**31)))
        n = torch.poisson(lam * self.qe, generator=gen)
        if self.em_gain:
            # Gamma(n, G) via the sum of n exponentials: torch has no seeded gamma sampler, so draw
            # a Gamma with shape n through the Marsaglia-free route: n > 0 → standard gamma with generator.
            m = _gamma(n, gen) * self.em_gain
        else:
            m = n
        off, rn = self._maps(tuple(lam.shape))
        e = m + torch.randn(lam.shape, generator=gen) * torch.as_tensor(rn, dtype=torch.float32)
        a = self.gain * e + torch.as_tensor(off, dtype=torch.float32)
        if self.bit_depth:
            a = a.round().clamp(0, 2**self.bit_depth - 1)
        return a if is_t else a.numpy().astype(np.float32)


def _gamma(shape: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Seeded Gamma(shape, 1) samples (0 where shape is 0): Marsaglia–Tsang with a torch generator."""
    out = torch.zeros_like(shape)
    pos = shape > 0
    if not bool(pos.any()):
        return out
    a = shape[pos]
    boost = a < 1
    a1 = torch.where(boost, a + 1, a)
    d = a1 - 1.0 / 3.0
    c = 1.0 / torch.sqrt(9.0 * d)
    res = torch.empty_like(a1)
    todo = torch.ones_like(a1, dtype=torch.bool)
    for _ in range(50):
        idx = todo.nonzero().squeeze(1)
        if idx.numel() == 0:
            break
        x = torch.randn(idx.numel(), generator=gen)
        v = (1 + c[idx] * x) ** 3
        u = torch.rand(idx.numel(), generator=gen)
        ok = (v > 0) & (torch.log(u.clamp_min(1e-30)) < 0.5 * x**2 + d[idx] - d[idx] * v
                        + d[idx] * torch.log(v.clamp_min(1e-30)))
        res[idx[ok]] = (d[idx] * v)[ok]
        todo[idx[ok]] = False
    if bool(todo.any()):
        res[todo] = a1[todo]
    if bool(boost.any()):
        u = torch.rand(int(boost.sum()), generator=gen)
        res[boost] = res[boost] * u ** (1.0 / a[boost])
    out[pos] = res
    return out


# ------------------------------------------------------------------------------------------------- PSFs
def integrated_gaussian(centre: Any, sigma: Any, n: int) -> Any:
    """Fraction of a 1D Gaussian falling in each of ``n`` unit pixels (erf integration).

    ``centre`` and ``sigma`` in pixels (pixel ``k`` spans ``[k, k+1)``, centre of pixel ``k`` at
    ``k + 0.5``); broadcasts ``(N,)`` inputs to ``(N, n)``. Torch in, torch out (differentiable).

    Examples
    --------
    >>> e = integrated_gaussian(np.array([2.5]), np.array([1.0]), 5)
    >>> np.round(e, 3).tolist()
    [[0.061, 0.242, 0.383, 0.242, 0.061]]
    """
    is_t = isinstance(centre, torch.Tensor)
    c = centre if is_t else torch.as_tensor(np.asarray(centre, np.float64))
    s = sigma if isinstance(sigma, torch.Tensor) else torch.as_tensor(np.asarray(sigma, np.float64), dtype=c.dtype)
    k = torch.arange(n + 1, dtype=c.dtype, device=c.device)
    edges = (k - c[..., None]) / (_SQRT2 * s[..., None])
    cdf = 0.5 * torch.erf(edges)
    out = cdf[..., 1:] - cdf[..., :-1]
    return out if is_t else out.numpy()


@dataclass
class GaussianPSF:
    """Integrated 2D Gaussian PSF with standard deviation ``sigma`` (nm).

    Examples
    --------
    >>> GaussianPSF(120.0).sigmas(np.zeros(1), 100.0)
    (array([1.2]), array([1.2]))
    """

    sigma: float = 120.0

    def __post_init__(self) -> None:
        if not (self.sigma > 0 and np.isfinite(self.sigma)):
            raise FluoreconError(f"PSF sigma must be > 0 nm, got {self.sigma}")

    three_d: bool = field(default=False, init=False)

    def sigmas(self, z_nm: Any, pixel_size: float) -> tuple[Any, Any]:
        """Lateral sigmas (pixels) at depth ``z_nm`` (ignored for a 2D PSF)."""
        s = self.sigma / pixel_size
        if isinstance(z_nm, torch.Tensor):
            return torch.full_like(z_nm, s), torch.full_like(z_nm, s)
        z = np.asarray(z_nm, np.float64)
        return np.full_like(z, s), np.full_like(z, s)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "gaussian", "sigma_nm": self.sigma}


@dataclass
class AstigmaticPSF:
    """3D astigmatic Gaussian PSF (Huang et al. 2008): widths change in opposite ways with depth.

    ``σx(z) = σ0·sqrt(1 + ((z − c)/d)²)``, ``σy(z) = σ0·sqrt(1 + ((z + c)/d)²)`` with ``z``,
    ``c`` (focal offset of each axis) and ``d`` (depth of focus) in nm.

    Examples
    --------
    >>> psf = AstigmaticPSF(sigma0=100.0, c=250.0, d=400.0)
    >>> sx, sy = psf.sigmas(np.array([250.0]), 100.0)
    >>> round(float(sx[0]), 3), round(float(sy[0]), 3)
    (1.0, 1.601)
    """

    sigma0: float = 100.0
    c: float = 250.0
    d: float = 400.0
    three_d: bool = field(default=True, init=False)

    def sigmas(self, z_nm: Any, pixel_size: float) -> tuple[Any, Any]:
        s0 = self.sigma0 / pixel_size
        sq = torch.sqrt if isinstance(z_nm, torch.Tensor) else np.sqrt
        sx = s0 * sq(1 + ((z_nm - self.c) / self.d) ** 2)
        sy = s0 * sq(1 + ((z_nm + self.c) / self.d) ** 2)
        return sx, sy

    def dsigmas_dz(self, z_nm: Any, pixel_size: float) -> tuple[Any, Any]:
        """Derivatives of the sigmas (pixels per nm) with respect to z."""
        sx, sy = self.sigmas(z_nm, pixel_size)
        s0 = self.sigma0 / pixel_size
        return (s0**2 * (z_nm - self.c) / self.d**2 / sx, s0**2 * (z_nm + self.c) / self.d**2 / sy)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "astigmatic", "sigma0_nm": self.sigma0, "c_nm": self.c, "d_nm": self.d}


def psf_from_dict(d: dict[str, Any]) -> GaussianPSF | AstigmaticPSF:
    """Rebuild a PSF from :meth:`to_dict` output."""
    if d.get("kind") == "astigmatic":
        return AstigmaticPSF(d["sigma0_nm"], d["c_nm"], d["d_nm"])
    return GaussianPSF(d["sigma_nm"])


# ----------------------------------------------------------------------------------------- emitters
def structure(kind: str, n: int, fov_nm: tuple[float, float], seed: int | np.random.Generator | None = None,
              *, n_filaments: int = 6, n_clusters: int = 10, cluster_sd: float = 40.0,
              z_range: tuple[float, float] | None = None) -> np.ndarray:
    """Fluorophore positions (nm) on a structure: ``"uniform"``, ``"filaments"`` or ``"clusters"``.

    Filaments are smooth random curves (persistence ~ a few µm) like microtubules; clusters are
    Gaussian blobs of s.d. ``cluster_sd`` nm. Returns ``(n, 3)`` columns ``x, y, z`` (z = 0 unless
    ``z_range``).

    Examples
    --------
    >>> p = structure("filaments", 100, (3200.0, 3200.0), seed=0)
    >>> p.shape, bool((p[:, :2] >= 0).all() and (p[:, :2] < 3200).all())
    ((100, 3), True)
    """
    rng = as_rng(seed)
    w, h = float(fov_nm[0]), float(fov_nm[1])
    kind = kind.lower()
    if kind == "uniform":
        xy = rng.uniform(0, 1, (n, 2)) * [w, h]
    elif kind == "clusters":
        centres = rng.uniform(0.1, 0.9, (n_clusters, 2)) * [w, h]
        xy = centres[rng.integers(0, n_clusters, n)] + rng.normal(0, cluster_sd, (n, 2))
    elif kind == "filaments":
        pts = []
        for _ in range(n_filaments):
            p0 = rng.uniform(0, 1, 2) * [w, h]
            ang = rng.uniform(0, 2 * np.pi)
            length = 2 * max(w, h)
            steps = 400
            curv = np.cumsum(rng.normal(0, 0.03, steps))
            a = ang + curv
            seg = length / steps
            path = p0 + np.cumsum(np.stack([np.cos(a), np.sin(a)], 1) * seg, 0) - length / 2 * np.array(
                [np.cos(ang), np.sin(ang)])
            pts.append(path)
        path = np.concatenate(pts)
        inside = (path[:, 0] >= 0) & (path[:, 0] < w) & (path[:, 1] >= 0) & (path[:, 1] < h)
        path = path[inside] if inside.any() else path
        xy = path[rng.integers(0, len(path), n)] + rng.normal(0, 8.0, (n, 2))
    else:
        raise FluoreconError(f"unknown structure {kind!r}", hint="use uniform, filaments or clusters")
    xy = np.clip(xy, 0, np.nextafter([w, h], 0))
    z = rng.uniform(*z_range, n) if z_range else np.zeros(n)
    return np.column_stack([xy, z])


@dataclass
class Blinking:
    """Photo-switching kinetics in frames: exponential on/off times, bleaching, photons per on-frame.

    ``on_time``/``off_time`` are mean durations (frames) of the on and off states, ``bleach`` the
    probability that an on-event ends in bleaching, ``photons`` the mean photons per *full* on-frame
    (log-normal with coefficient of variation ``photons_cv``); a frame partly on emits in proportion.
    """

    on_time: float = 2.0
    off_time: float = 50.0
    bleach: float = 0.05
    photons: float = 2000.0
    photons_cv: float = 0.3

    @property
    def duty(self) -> float:
        """Fraction of time on (before bleaching)."""
        return self.on_time / (self.on_time + self.off_time)


def blinking_emitters(positions: np.ndarray, n_frames: int, kinetics: Blinking | None = None,
                      seed: int | np.random.Generator | None = None) -> dict[str, np.ndarray]:
    """Per-frame emissions of fluorophores at ``positions`` (nm) with continuous-time blinking.

    Each fluorophore starts in its steady state (on with probability ``duty``), alternates
    exponential on and off periods, and bleaches after an on-period with probability ``bleach``.
    Each on-event has a brightness drawn log-normally; a frame receives photons in proportion to the
    time it spent on (so first/last frames of an event are dimmer).

    Returns
    -------
    dict
        Columns ``id`` (fluorophore, from 1), ``frame`` (from 1), ``x [nm]``, ``y [nm]``, ``z [nm]``,
        ``intensity [photon]`` (expected photons emitted in that frame), ``on_fraction``.

    Examples
    --------
    >>> em = blinking_emitters(np.zeros((50, 3)), 100, Blinking(on_time=3, off_time=10), seed=0)
    >>> bool(em["frame"].min() >= 1 and em["frame"].max() <= 100), bool(em["on_fraction"].max() <= 1)
    (True, True)
    """
    k = kinetics or Blinking()
    rng = as_rng(seed)
    pos = np.asarray(positions, np.float64)
    if pos.ndim != 2 or pos.shape[1] not in (2, 3):
        raise FluoreconError(f"positions must be (N, 2) or (N, 3) nm, got shape {pos.shape}")
    if pos.shape[1] == 2:
        pos = np.column_stack([pos, np.zeros(len(pos))])
    ids, frames, frac, bright = [], [], [], []
    sig = math.sqrt(math.log(1 + k.photons_cv**2))
    for i in range(len(pos)):
        t = 0.0
        on = rng.random() < k.duty
        # residual time of the current state (exponential is memoryless)
        while t < n_frames:
            if on:
                dur = rng.exponential(k.on_time)
                b = k.photons * math.exp(rng.normal(-sig**2 / 2, sig)) if sig > 0 else k.photons
                t0, t1 = t, min(t + dur, n_frames)
                f0, f1 = int(math.floor(t0)), int(math.ceil(t1))
                for f in range(f0, f1):
                    ov = min(t1, f + 1) - max(t0, f)
                    if ov > 1e-3:
                        ids.append(i + 1)
                        frames.append(f + 1)
                        frac.append(ov)
                        bright.append(b)
                t += dur
                if rng.random() < k.bleach:
                    break
                on = False
            else:
                t += rng.exponential(k.off_time)
                on = True
    ids_a = np.asarray(ids, np.int64)
    frac_a = np.asarray(frac, np.float64)
    # merge pieces of the same fluorophore in the same frame (two short on-events in one frame)
    order = np.lexsort((ids_a, np.asarray(frames, np.int64)))
    fr = np.asarray(frames, np.int64)[order]
    ids_a = ids_a[order]
    frac_a = frac_a[order]
    ph = (frac_a * np.asarray(bright, np.float64)[order]) if len(order) else np.zeros(0)
    if len(fr):
        key = fr * (len(pos) + 1) + ids_a
        uniq, inv = np.unique(key, return_inverse=True)
        ph = np.bincount(inv, ph)
        frac_a = np.minimum(np.bincount(inv, frac_a), 1.0)
        fr = uniq // (len(pos) + 1)
        ids_a = uniq % (len(pos) + 1)
    p = pos[ids_a - 1] if len(ids_a) else np.zeros((0, 3))
    return {"id": ids_a, "frame": fr, "x [nm]": p[:, 0], "y [nm]": p[:, 1], "z [nm]": p[:, 2],
            "intensity [photon]": ph, "on_fraction": frac_a}


# ---------------------------------------------------------------------------------------------- render
def render_expected(frame: Any, x_nm: Any, y_nm: Any, photons: Any, n_frames: int, shape: tuple[int, int],
                    pixel_size: float, psf: GaussianPSF | AstigmaticPSF | float, background: Any = 0.0,
                    z_nm: Any = None, chunk: int = 4096) -> np.ndarray:
    """Expected photons per pixel of ``n_frames`` frames from emitters (integrated Gaussian PSF).

    ``frame`` is 1-based; coordinates in nm with the top-left-corner origin. ``background`` is
    photons/pixel (scalar, per frame ``(T,)`` or a map broadcastable to ``(T, Y, X)``).

    Examples
    --------
    >>> img = render_expected([1], [450.0], [350.0], [1000.0], 1, (9, 9), 100.0, 100.0)
    >>> round(float(img.sum())), [int(i) for i in np.unravel_index(img.argmax(), img.shape)]
    (1000, [0, 3, 4])
    """
    if not isinstance(psf, GaussianPSF | AstigmaticPSF):
        psf = GaussianPSF(float(psf))
    h, w = int(shape[0]), int(shape[1])
    fr = torch.as_tensor(np.asarray(frame, np.int64) - 1)
    x = torch.as_tensor(np.asarray(x_nm, np.float64)) / pixel_size
    y = torch.as_tensor(np.asarray(y_nm, np.float64)) / pixel_size
    ph = torch.as_tensor(np.asarray(photons, np.float64))
    z = torch.zeros_like(x) if z_nm is None else torch.as_tensor(np.asarray(z_nm, np.float64))
    if len(fr) and (int(fr.min()) < 0 or int(fr.max()) >= n_frames):
        raise FluoreconError(f"frame numbers must be in 1..{n_frames}")
    out = torch.zeros(n_frames, h * w, dtype=torch.float64)
    for s in range(0, len(fr), chunk):
        sl = slice(s, s + chunk)
        sx, sy = psf.sigmas(z[sl], pixel_size)
        ex = integrated_gaussian(x[sl], sx, w)
        ey = integrated_gaussian(y[sl], sy, h)
        img = (ph[sl, None, None] * ey[:, :, None] * ex[:, None, :]).reshape(-1, h * w)
        out.index_add_(0, fr[sl], img)
    out = out.reshape(n_frames, h, w) + torch.as_tensor(np.asarray(background, np.float64)).reshape(
        (-1, 1, 1) if np.ndim(background) == 1 else np.shape(background))
    return out.numpy().astype(np.float32)


def simulate_movie(n_frames: int, shape: tuple[int, int], pixel_size: float = 100.0, *, density: float = 0.1,
                   structure_kind: str = "uniform", positions: np.ndarray | None = None,
                   kinetics: Blinking | None = None, psf: GaussianPSF | AstigmaticPSF | float = 130.0,
                   camera: SMLMCamera | None = None, background: float = 20.0,
                   z_range: tuple[float, float] | None = None,
                   seed: int | np.random.Generator | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Simulate an SMLM movie: blinking emitters on a structure, PSF, camera.

    Parameters
    ----------
    n_frames : int
    shape : (int, int)
        Frame size ``(Y, X)`` in pixels.
    pixel_size : float
        nm per camera pixel.
    density : float
        Mean number of *active* emitters per µm² per frame (sets the number of fluorophores through
        the kinetics' duty cycle) — ignored when ``positions`` is given.
    structure_kind : {"uniform", "filaments", "clusters"}
    positions : (N, 2|3) array, optional
        Fluorophore positions in nm (overrides density/structure).
    kinetics : Blinking
    psf : GaussianPSF, AstigmaticPSF or float (Gaussian sigma, nm)
    camera : SMLMCamera
        Default: :meth:`SMLMCamera.smlm2016`.
    background : float
        Photons per pixel per frame.
    z_range : (float, float), optional
        Axial range (nm) of fluorophores for a 3D PSF.
    seed : int or Generator

    Returns
    -------
    frames : (T, Y, X) float32 ADU
    truth : dict of columns (see :func:`blinking_emitters`), only emitters with at least 1 photon.
    """
    rng = as_rng(seed)
    if n_frames < 1:
        raise FluoreconError("n_frames must be ≥ 1")
    kin = kinetics or Blinking()
    cam = camera or SMLMCamera.smlm2016()
    h, w = int(shape[0]), int(shape[1])
    if positions is None:
        area = h * w * (pixel_size / 1000.0) ** 2
        n = max(int(rng.poisson(density * area / kin.duty)), 1)
        positions = structure(structure_kind, n, (w * pixel_size, h * pixel_size), rng, z_range=z_range)
    truth = blinking_emitters(positions, n_frames, kin, rng)
    keep = truth["intensity [photon]"] >= 1.0
    truth = {k: v[keep] for k, v in truth.items()}
    expected = render_expected(truth["frame"], truth["x [nm]"], truth["y [nm]"], truth["intensity [photon]"],
                               n_frames, (h, w), pixel_size, psf, background, z_nm=truth["z [nm]"])
    frames = cam.simulate(expected, rng)
    return frames, truth


# ------------------------------------------------------------------------------------------- forward
class LocalizationForward:
    """Forward model of a localization table: re-render the movie (PSF × photons + background → camera).

    ``expected(table)`` maps a localization table (a :class:`~fluorecon.tasks.contract.Table`, a dict
    of columns, or a task ``Result`` whose main output is the table) to the noiseless movie in ADU,
    so that the trust layer can compare it with the recording and find frames or regions with
    missed or invented emitters. Background comes from the table's ``offset [photon]`` column
    (nearest localization in the same frame... here: the frame's median) or ``background``.

    Examples
    --------
    >>> fwd = LocalizationForward((2, 8, 8), 100.0, 100.0, SMLMCamera(baseline=100, gain=1, read_noise=1), 5.0)
    >>> tab = {"frame": np.array([1]), "x [nm]": np.array([400.0]), "y [nm]": np.array([400.0]),
    ...        "intensity [photon]": np.array([500.0])}
    >>> e = fwd.expected(tab)
    >>> e.shape, round(float(e[0].sum() - 64 * 105)), float(e[1].min())
    ((2, 8, 8), 500, 105.0)
    """

    def __init__(self, shape: tuple[int, int, int], pixel_size: float, psf: GaussianPSF | AstigmaticPSF | float,
                 camera: SMLMCamera, background: float | np.ndarray | None = None):
        self.shape = tuple(int(s) for s in shape)
        self.pixel_size = float(pixel_size)
        self.psf = psf if isinstance(psf, GaussianPSF | AstigmaticPSF) else GaussianPSF(float(psf))
        self.camera = camera
        self.background = background

    def _columns(self, table: Any) -> dict[str, np.ndarray]:
        if hasattr(table, "outputs") and hasattr(table, "main"):
            table = table.outputs[table.main]
        cols = table.columns if hasattr(table, "columns") else table
        for c in ("frame", "x [nm]", "y [nm]", "intensity [photon]"):
            if c not in cols:
                raise FluoreconError(f"the localization table has no column {c!r}")
        return cols

    def expected(self, table: Any) -> np.ndarray:
        """Noiseless movie (ADU) predicted by the localizations."""
        cols = self._columns(table)
        t, h, w = self.shape
        bg: Any = self.background
        if bg is None:
            bg = np.zeros(t)
            if "offset [photon]" in cols and len(cols["frame"]):
                fr = np.asarray(cols["frame"], np.int64)
                off = np.asarray(cols["offset [photon]"], np.float64)
                med = float(np.median(off))
                bg[:] = med
                sums = np.bincount(fr - 1, off, minlength=t)[:t]
                cnt = np.bincount(fr - 1, minlength=t)[:t]
                bg = np.where(cnt > 0, sums / np.maximum(cnt, 1), med)
        z = cols.get("z [nm]") if self.psf.three_d else None
        ph = render_expected(cols["frame"], cols["x [nm]"], cols["y [nm]"], cols["intensity [photon]"], t, (h, w),
                             self.pixel_size, self.psf, bg, z_nm=z)
        return np.asarray(self.camera.expected(ph), np.float32)

    __call__ = expected

    def variance(self, expected: Any) -> Any:
        """Noise variance (ADU²) of the recording given its mean."""
        return self.camera.variance(expected)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "smlm-localizations", "shape": list(self.shape), "pixel_size_nm": self.pixel_size,
                "psf": self.psf.to_dict(), "camera": self.camera.model_dump(mode="json"),
                "background": None if self.background is None else np.asarray(self.background).tolist()}
