"""Structured illumination (SIM): sinusoidal patterns, the widefield OTF, raw-frame simulation, and the
forward model of a SIM reconstruction.

Conventions
-----------
- Frequencies are in **cycles per raw pixel** and wave vectors are ``(ky, kx)``; a pattern with line
  spacing ``ls`` µm at raw pixel size ``dx`` µm has ``|k| = dx / ls``.
- Pattern of angle ``d``, phase ``p``: ``I(r) = 1 + m_d cos(2π k_d·r + φ_{d,p})`` with ``r = (y, x)`` in
  raw-pixel units. Frames are ordered angle-major, phase fastest (``raw.reshape(A, P, Y, X)``).
- A reconstruction lives on a grid ``u`` times finer (default 2): its sample ``j`` sits at raw
  coordinate ``j / u`` (Fourier interpolation), so the raw frames are the reconstruction re-imaged and
  **Fourier-cropped** to the raw grid (band-limited sampling; exact when the OTF support is below the raw
  Nyquist frequency, which :func:`check_sampling` enforces).

Examples
--------
>>> pat = SIMPattern.regular(n_angles=3, n_phases=3, k=0.2, modulation=0.8)
>>> pat.n_frames, pat.illumination((8, 8), upsample=1).shape
(9, (9, 8, 8))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fluorecon.errors import FluoreconError
from fluorecon.physics.camera import Camera

__all__ = [
    "SIMForward",
    "SIMPattern",
    "check_sampling",
    "fourier_crop",
    "fourier_pad",
    "otf_2d",
    "simulate_sim",
]


@dataclass
class SIMPattern:
    """The illumination of a 2D-SIM acquisition.

    Attributes
    ----------
    k : (A, 2) array
        Wave vector per angle, cycles per raw pixel, ``(ky, kx)``.
    phases : (A, P) array
        Phase of each frame, radians.
    modulation : (A,) array
        Modulation depth per angle (0…1).
    """

    k: np.ndarray
    phases: np.ndarray
    modulation: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.k = np.asarray(self.k, np.float64).reshape(-1, 2)
        self.phases = np.asarray(self.phases, np.float64).reshape(len(self.k), -1)
        self.modulation = np.broadcast_to(np.asarray(self.modulation, np.float64), (len(self.k),)).copy()
        if np.any(self.modulation < 0) or np.any(self.modulation > 1.5):
            raise FluoreconError(f"modulation depths {self.modulation.tolist()} are out of range",
                                 hint="a sinusoidal pattern's modulation is between 0 and 1")

    @classmethod
    def regular(cls, n_angles: int = 3, n_phases: int = 3, k: float = 0.2, modulation: float = 0.8,
                angle0: float = 0.0, phase0: float = 0.0) -> SIMPattern:
        """Equally spaced angles (over π) and phases (over 2π) at frequency ``k`` cycles/pixel."""
        ang = angle0 + np.pi * np.arange(n_angles) / n_angles
        kv = k * np.stack([np.sin(ang), np.cos(ang)], axis=1)
        ph = phase0 + 2 * np.pi * np.arange(n_phases)[None, :] / n_phases + np.zeros((n_angles, 1))
        return cls(kv, ph, np.full(n_angles, modulation))

    @property
    def n_angles(self) -> int:
        return len(self.k)

    @property
    def n_phases(self) -> int:
        return self.phases.shape[1]

    @property
    def n_frames(self) -> int:
        return self.n_angles * self.n_phases

    def illumination(self, shape: Sequence[int], upsample: int = 1) -> np.ndarray:
        """Patterns ``(A·P, Y·u, X·u)`` on a grid ``upsample`` times finer than the raw one."""
        ny, nx = (int(s) * upsample for s in shape)
        y = np.arange(ny)[:, None] / upsample
        x = np.arange(nx)[None, :] / upsample
        out = np.empty((self.n_frames, ny, nx), np.float64)
        i = 0
        for a in range(self.n_angles):
            arg = 2 * np.pi * (self.k[a, 0] * y + self.k[a, 1] * x)
            for p in range(self.n_phases):
                out[i] = 1.0 + self.modulation[a] * np.cos(arg + self.phases[a, p])
                i += 1
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"k": self.k.tolist(), "phases": self.phases.tolist(), "modulation": self.modulation.tolist(),
                "period_px": [float(1 / max(np.hypot(*kv), 1e-12)) for kv in self.k],
                "angle_rad": [float(math.atan2(kv[0], kv[1])) for kv in self.k]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SIMPattern:
        return cls(np.asarray(d["k"]), np.asarray(d["phases"]), np.asarray(d["modulation"]))


def otf_2d(shape: Sequence[int], pixel_size: float, na: float, wavelength: float, upsample: int = 1) -> np.ndarray:
    """Incoherent in-focus widefield OTF on the FFT grid (unshifted), real, peak 1.

    ``OTF(ρ) = (2/π)(acos ρ − ρ√(1−ρ²))`` with ``ρ = |k| / (2 NA / λ)``: the diffraction-limited
    transfer function of a circular pupil. ``shape`` and ``pixel_size`` are the raw grid's; the OTF is
    returned on the grid ``upsample`` times finer (same frequencies, wider band).

    Examples
    --------
    >>> o = otf_2d((64, 64), 0.08, 1.4, 0.52)
    >>> float(o[0, 0]), bool(o[0, 32] == 0)
    (1.0, True)
    """
    ny, nx = (int(s) * upsample for s in shape)
    fy = np.fft.fftfreq(ny, d=pixel_size / upsample)
    fx = np.fft.fftfreq(nx, d=pixel_size / upsample)
    rho = np.hypot(fy[:, None], fx[None, :]) / (2 * na / wavelength)
    rho = np.clip(rho, 0, 1)
    return ((2 / np.pi) * (np.arccos(rho) - rho * np.sqrt(1 - rho**2))).astype(np.float64)


def check_sampling(pixel_size: float, na: float, wavelength: float) -> None:
    """Refuse raw pixels too coarse for the OTF (SIM needs the widefield band below the raw Nyquist)."""
    if pixel_size <= 0 or na <= 0 or wavelength <= 0:
        raise FluoreconError(f"pixel size, NA and wavelength must be positive (got {pixel_size}, {na}, {wavelength})",
                             hint="e.g. --voxel-size 0.08 0.08 --na 1.4 --wavelength 0.52")
    cut = 2 * na / wavelength
    nyq = 1 / (2 * pixel_size)
    if cut > nyq * 1.0001:
        raise FluoreconError(f"raw pixels of {pixel_size} µm undersample the OTF (cut-off {cut:.3g} cycles/µm > "
                             f"Nyquist {nyq:.3g})", hint=f"SIM raw data need pixels ≤ {wavelength / (4 * na):.3g} µm; "
                             "check --voxel-size, --na and --wavelength")


def fourier_pad(img: np.ndarray, factor: int) -> np.ndarray:
    """Band-limited (Fourier) interpolation of the last two axes by an integer factor (sample j ↔ j/u)."""
    if factor == 1:
        return np.asarray(img)
    f = np.fft.fftshift(np.fft.fft2(img), axes=(-2, -1))
    ny, nx = f.shape[-2:]
    out = np.zeros((*f.shape[:-2], ny * factor, nx * factor), np.complex128)
    y0 = (ny * factor) // 2 - ny // 2
    x0 = (nx * factor) // 2 - nx // 2
    out[..., y0:y0 + ny, x0:x0 + nx] = f
    res = np.fft.ifft2(np.fft.ifftshift(out, axes=(-2, -1))) * factor**2
    return res if np.iscomplexobj(img) else res.real


def fourier_crop(img: np.ndarray, factor: int) -> np.ndarray:
    """Inverse of :func:`fourier_pad`: keep the central frequencies (band-limited sampling)."""
    if factor == 1:
        return np.asarray(img)
    f = np.fft.fftshift(np.fft.fft2(img), axes=(-2, -1))
    ny, nx = (s // factor for s in f.shape[-2:])
    y0 = f.shape[-2] // 2 - ny // 2
    x0 = f.shape[-1] // 2 - nx // 2
    c = f[..., y0:y0 + ny, x0:x0 + nx]
    return np.fft.ifft2(np.fft.ifftshift(c, axes=(-2, -1))).real / factor**2


class SIMForward:
    """Forward model of a SIM reconstruction: re-illuminate, blur, sample to the raw grid, camera.

    ``expected(y)`` maps a reconstruction ``y`` on the fine grid (``upsample`` × the raw grid) to the
    expected raw frames ``(A·P, Y, X)`` in the recording's units (``scale·…+ offset``); ``variance``
    is the Poisson–Gaussian variance of a camera (``gain`` ADU/e-, ``read_noise`` e-) when given.

    Examples
    --------
    >>> pat = SIMPattern.regular(k=0.2)
    >>> f = SIMForward(pat, otf_2d((16, 16), 0.08, 1.2, 0.52, upsample=2), upsample=2)
    >>> f.expected(np.ones((32, 32))).shape
    (9, 16, 16)
    """

    def __init__(self, pattern: SIMPattern, otf_fine: np.ndarray, upsample: int = 2, *, offset: float = 0.0,
                 gain: float | None = None, read_noise: float = 0.0):
        self.pattern = pattern
        self.otf = np.asarray(otf_fine, np.float64)
        self.upsample = int(upsample)
        self.offset = float(offset)
        self.gain = gain
        self.read_noise = float(read_noise)

    def expected(self, y: Any) -> np.ndarray:
        y = np.asarray(y, np.float64)
        if y.shape != self.otf.shape:
            raise FluoreconError(f"reconstruction shape {y.shape} does not match the forward model's {self.otf.shape}",
                                 hint="give the reconstruction on the fine grid the SIM task produced")
        raw_shape = tuple(s // self.upsample for s in y.shape)
        ill = self.pattern.illumination(raw_shape, self.upsample)
        blurred = np.fft.ifft2(np.fft.fft2(ill * y[None]) * self.otf[None]).real
        return (fourier_crop(blurred, self.upsample) + self.offset).astype(np.float32)

    def variance(self, expected: Any) -> np.ndarray:
        if self.gain is None:
            raise FluoreconError("no camera noise model is attached to this SIM forward model",
                                 hint="give --gain (ADU/e-) and --read-noise (e-), or let verify estimate them")
        signal = np.clip(np.asarray(expected, np.float64) - self.offset, 0, None)
        return (self.gain * signal + (self.gain * self.read_noise) ** 2).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "sim", "pattern": self.pattern.to_dict(), "upsample": self.upsample, "offset": self.offset,
                "gain": self.gain, "read_noise": self.read_noise, "otf_shape": list(self.otf.shape)}


def simulate_sim(truth: np.ndarray, pattern: SIMPattern, *, pixel_size: float, na: float, wavelength: float,
                 upsample: int = 2, camera: Camera | None = None, seed: int | np.random.Generator | None = None,
                 phase_jitter: float = 0.0, contrast: Sequence[float] | None = None,
                 ) -> tuple[np.ndarray, dict[str, Any]]:
    """Raw SIM frames of ``truth`` (given on the fine grid, ``upsample`` × the raw grid).

    Parameters
    ----------
    truth : (Y·u, X·u) array
        Specimen in [0, 1] on the fine grid.
    pattern : SIMPattern
        Nominal illumination; ``phase_jitter`` (radians SD) and per-angle ``contrast`` factors model
        imperfections (the true pattern is returned in the info).
    pixel_size : float
        Raw pixel size, µm.
    camera : Camera, optional
        Noise model (photons at intensity 1, gain, offset, read noise); None = noiseless.

    Returns
    -------
    raw : (A·P, Y, X) float32
        Frames, angle-major, phase fastest.
    info : dict
        ``pattern`` (the true one, JSON), ``otf`` (fine grid), ``expected`` (noiseless frames, camera units).

    Examples
    --------
    >>> t = np.zeros((64, 64)); t[20:40, 30] = 1
    >>> raw, info = simulate_sim(t, SIMPattern.regular(k=0.2), pixel_size=0.08, na=1.2, wavelength=0.52)
    >>> raw.shape
    (9, 32, 32)
    """
    rng = np.random.default_rng(seed)
    truth = np.asarray(truth, np.float64)
    if truth.ndim != 2 or truth.shape[0] % upsample or truth.shape[1] % upsample:
        raise FluoreconError(f"the truth must be 2D with sides divisible by {upsample}, got {truth.shape}")
    check_sampling(pixel_size, na, wavelength)
    true = SIMPattern(pattern.k.copy(), pattern.phases + rng.normal(0, phase_jitter, pattern.phases.shape),
                      pattern.modulation * (np.asarray(contrast) if contrast is not None else 1.0))
    raw_shape = tuple(s // upsample for s in truth.shape)
    otf = otf_2d(raw_shape, pixel_size, na, wavelength, upsample=upsample)
    if camera is None:
        fwd = SIMForward(true, otf, upsample)
        expected = fwd.expected(truth)
        return expected.astype(np.float32), {"pattern": true.to_dict(), "otf": otf, "expected": expected}
    fwd = SIMForward(true, otf, upsample)
    signal = np.clip(fwd.expected(truth), 0, None)
    raw = camera.simulate(signal, seed=rng)
    return np.asarray(raw, np.float32), {"pattern": true.to_dict(), "otf": otf,
                                          "expected": np.asarray(camera.expected(signal), np.float32)}
