"""Camera model: photon shot noise, EM gain, read noise, gain, offset, quantisation, saturation.

The input ``signal`` is the normalised, noiseless image at the camera (≥ 0; 1.0 is "bright").
The recording chain, per pixel, is::

    photo-electrons  n ~ Poisson(photons · signal + background)
    EM register      m ~ Gamma(shape=n, scale=em_gain)          (only when em_gain is set; m = n otherwise)
    read noise       e = m + Normal(0, read_noise)              (electrons rms)
    ADU              a = gain · e + offset                      (gain in ADU per electron)
    digitiser        a = clip(round(a), 0, 2**bit_depth − 1)    (only when bit_depth is set)
    saturation       a = min(a, saturation)                     (only when saturation is set)

Mean and variance (before clipping)::

    E[a]   = offset + gain · G · (photons · signal + background)      with G = em_gain or 1
    Var[a] = gain · G · F · (E[a] − offset) + gain² · read_noise² (+ 1/12 when quantised)

with excess noise factor F = 2 for the Gamma EM model (F = 1 without EM gain). The Gamma model of
the EM register is the standard continuous approximation (Basden et al. 2003): given n input
electrons the output is Gamma(n, G), so Var = 2 n G² on average — the familiar √2 excess noise.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fluorecon.errors import FluoreconError, validation_message
from fluorecon.validation import to_numpy

__all__ = ["Camera"]


class Camera(BaseModel):
    """A scientific camera (sCMOS/CCD, or EMCCD with ``em_gain``).

    Parameters
    ----------
    photons : float
        Expected photo-electrons at signal 1.0 (the photon budget; quantum efficiency folded in).
    gain : float
        ADU per electron (after EM multiplication).
    offset : float
        Camera baseline in ADU.
    read_noise : float
        Read noise in electrons rms.
    em_gain : float or None
        EM multiplication gain (> 1) for an EMCCD; None for sCMOS/CCD.
    bit_depth : int or None
        Digitiser bits: round and clip to ``[0, 2**bit_depth − 1]``. None = float output.
    saturation : float or None
        Full-well/saturation level in ADU (values above are clipped). None = no saturation.
    background : float
        Uniform background in photo-electrons per pixel (autofluorescence, out-of-focus light).

    Examples
    --------
    >>> cam = Camera(photons=100, gain=2.0, offset=100, read_noise=1.5)
    >>> float(cam.expected(np.array(1.0)))
    300.0
    >>> x = cam.simulate(np.full((64, 64), 0.5), seed=0)
    >>> bool(abs(x.mean() - 200) < 2)
    True
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    photons: float = Field(100.0, gt=0, description="photo-electrons at signal 1.0")
    gain: float = Field(1.0, gt=0, description="ADU per electron")
    offset: float = Field(100.0, ge=0, description="baseline (ADU)")
    read_noise: float = Field(1.5, ge=0, description="read noise (e- rms)")
    em_gain: float | None = Field(None, description="EM gain (>1) or None")
    bit_depth: int | None = Field(None, ge=1, le=32, description="digitiser bits or None")
    saturation: float | None = Field(None, gt=0, description="saturation level (ADU) or None")
    background: float = Field(0.0, ge=0, description="background (photo-electrons per pixel)")

    @field_validator("em_gain")
    @classmethod
    def _em(cls, v):
        if v is not None and not v > 1:
            raise ValueError("em_gain must be > 1 (or None for a camera without EM register)")
        return v

    def __init__(self, **data: Any):
        try:
            super().__init__(**data)
        except ValidationError as e:
            errs = validation_message(e)
            raise FluoreconError(f"invalid camera parameters ({errs})",
                                 hint="photons and gain must be > 0; offset, read_noise and background ≥ 0; "
                                      "em_gain > 1 or None; bit_depth 1–32") from None
        if any(not np.isfinite(v) for v in (self.photons, self.gain, self.offset, self.read_noise, self.background)):
            raise FluoreconError("camera parameters must be finite numbers", hint="check for NaN/Inf values")

    # ------------------------------------------------------------------------------------------
    @property
    def excess(self) -> float:
        """Excess noise factor F (2 with EM gain, 1 otherwise)."""
        return 2.0 if self.em_gain else 1.0

    @property
    def total_gain(self) -> float:
        """ADU per photo-electron: ``gain · em_gain``."""
        return self.gain * (self.em_gain or 1.0)

    def expected(self, signal: Any):
        """Mean recording in ADU (no clipping, differentiable for torch input).

        Examples
        --------
        >>> Camera(photons=10, gain=1, offset=5).expected(np.array([0.0, 1.0])).tolist()
        [5.0, 15.0]
        """
        return self.offset + self.total_gain * (self.photons * signal + self.background)

    def variance(self, expected_adu: Any):
        """Variance (ADU²) of a recording whose mean is ``expected_adu`` (Poisson–Gaussian model).

        Examples
        --------
        >>> float(Camera(photons=10, gain=2, offset=0, read_noise=1).variance(np.array(20.0)))
        44.0
        """
        signal_adu = expected_adu - self.offset
        signal_adu = signal_adu.clip(min=0) if hasattr(signal_adu, "clip") else max(signal_adu, 0.0)
        var = self.total_gain * self.excess * signal_adu + (self.gain * self.read_noise) ** 2
        if self.bit_depth is not None:
            var = var + 1.0 / 12.0
        return var

    def to_photons(self, adu: Any):
        """Convert ADU to photo-electrons (background included): ``(adu − offset) / (gain · em_gain)``.

        Examples
        --------
        >>> float(Camera(gain=2, offset=100).to_photons(np.array(300.0)))
        100.0
        """
        return (adu - self.offset) / self.total_gain

    def to_signal(self, adu: Any):
        """Convert ADU back to the normalised signal scale (background removed): inverse of ``expected``.

        Examples
        --------
        >>> cam = Camera(photons=50, gain=2, offset=100, background=3)
        >>> float(cam.to_signal(cam.expected(np.array(0.4))))
        0.4
        """
        return (self.to_photons(adu) - self.background) / self.photons

    def simulate(self, signal: Any, seed: int | np.random.Generator | None = None) -> np.ndarray:
        """Draw a noisy recording (``float32`` ADU) of the noiseless ``signal``.

        Negative signal values (e.g. round-off after blurring) are clipped to 0.

        Examples
        --------
        >>> cam = Camera(photons=100, bit_depth=12)
        >>> x = cam.simulate(np.ones((8, 8)), seed=1)
        >>> bool(np.all(x == np.round(x))), x.dtype
        (True, dtype('float32'))
        """

        s = to_numpy(signal, "signal").astype(np.float64)
        if s.size == 0:
            raise FluoreconError("signal is empty", hint="pass a non-empty image")
        if not np.isfinite(s).all():
            raise FluoreconError("signal contains NaN or Inf", hint="replace them first (np.nan_to_num)")
        if s.min() < -1e-3 * max(1.0, float(np.abs(s).max())):
            raise FluoreconError(f"signal has negative values (min {s.min():.3g}); light intensity cannot be negative",
                                 hint="rescale the signal to [0, 1] (e.g. image / image.max()) before simulating")
        rng = np.random.default_rng(seed)
        lam = self.photons * np.clip(s, 0, None) + self.background
        if lam.max() > 1e12:
            raise FluoreconError(f"expected photon count {lam.max():.3g} is unrealistically large",
                                 hint="the signal should be normalised to about [0, 1]; lower 'photons'")
        n = rng.poisson(lam).astype(np.float64)
        if self.em_gain:
            pos = n > 0
            m = np.zeros_like(n)
            m[pos] = rng.gamma(n[pos], self.em_gain)
            n = m
        if self.read_noise > 0:
            n = n + rng.normal(0.0, self.read_noise, size=n.shape)
        adu = self.gain * n + self.offset
        if self.bit_depth is not None:
            adu = np.clip(np.round(adu), 0, 2.0**self.bit_depth - 1)
        if self.saturation is not None:
            adu = np.minimum(adu, self.saturation)
        return adu.astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable parameters (``Camera(**d)`` rebuilds it)."""
        return self.model_dump()
