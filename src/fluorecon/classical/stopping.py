"""Stopping rules for Richardson–Lucy that need no ground truth.

``"crossval"`` (= ``"auto"``, the default rule): **Poisson thinning cross-validation.** The data are
converted to photon counts ``z = (x − offset + c)/a`` with the gain ``a`` and the read-noise shift
``c`` of the Poisson–Gaussian model (estimated from the image, or given), so that ``Var z ≈ E z``.
Binomial thinning splits the counts into two independent Poisson images with half the mean each,
``z₁ ~ Binom(z, ½)``, ``z₂ = z − z₁``. RL runs on ``z₁`` and after every iteration ``j`` the held-out
half scores the blurred estimate ``m_j = H x_j + b/2``:

    R(j) = ‖G (z₂ − m_j)‖²,   G = |H| / (|H|² + δ)   (δ = 1e-3, |H| normalised to 1 at 0)

Because ``z₂`` is independent of ``x_j``, ``E R(j) = ‖G H (x* − x_j)‖² + const``: an unbiased
estimate (up to a constant) of the estimation error in an *almost deblurred* space (``G H ≈ 1``
wherever the OTF is above ~3 %). The plain predictive likelihood (``G = 1``) measures the error of the
*blurred* estimate and over-iterates 2–4× for small PSFs; the sharpened risk follows the image-space
error. The minimum over ``j`` is found with patience (the run stops once the risk has not improved
for ``max(3, 0.3 j*)`` iterations); the halves then swap roles and the two curves are summed (two
folds halve the variance of the pick). With all the photons the optimum lies later, at
``round(1.25 · j*)`` iterations (calibrated on simulations: with twice the counts the
noise-limited bandwidth widens; the factor is the median ratio of full-data to half-data optimum over
filaments, puncta, nuclei and membranes, Gaussian PSFs σ = 1–2.5 px, 10–2000 photons).

Validated against the truth (``tests/classical/test_stopping.py``): the pick is within 5 % of the
oracle-best NRMSE on ≥ 8 of 10 simulated cases (varied PSF, noise level and structure), for plain
and accelerated RL.

``"change"``: relative change of the estimate below ``tol``. ``"discrepancy"``: Poisson
discrepancy principle (Bertero et al. 2010) — conservative, stops early.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from scipy.stats import poisson

from fluorecon.errors import FluoreconError
from fluorecon.physics.noise_model import estimate_poisson_gaussian
from fluorecon.physics.psf import psf_to_otf

__all__ = ["CV_DELTA", "CV_FACTOR", "STOPS", "HoldoutRisk", "photon_model", "thin"]

STOPS = (None, "auto", "crossval", "change", "discrepancy")
CV_DELTA = 1e-3
CV_FACTOR = 1.25


def _fit_gain(data: np.ndarray) -> tuple[float | None, float, float]:
    """``(a, c, r²)`` of the Poisson–Gaussian fit ``Var = a·mean + a·c`` from the physics noise model.

    ``(y + c)/a`` then behaves like Poisson counts (Var = mean). ``(None, 0, nan)`` when no fit is possible.
    """
    try:
        nm = estimate_poisson_gaussian(data)
        a = float(nm.gain)
        if not np.isfinite(a) or a <= 0:
            return None, 0.0, float("nan")
        b = getattr(nm, "intercept", None)
        if b is None or not np.isfinite(b):
            b = float(nm.read_noise_adu) ** 2 - a * float(nm.offset)
        return a, float(b) / a, float(getattr(nm, "r2", np.nan))
    except Exception:
        return None, 0.0, float("nan")


def _estimate_gain(data: np.ndarray) -> tuple[float | None, float]:
    """``(a, c)`` of :func:`_fit_gain` (used by the discrepancy rule)."""
    a, c, _ = _fit_gain(data)
    return a, c


def _poisson_deviance_table() -> tuple[np.ndarray, np.ndarray]:
    """E[2(y ln(y/m) − y + m)] for y ~ Poisson(m), tabulated on log-spaced m (≈1 + 1/(6m) for large m)."""
    ms = np.logspace(-3, 3, 121)
    ev = []
    for m in ms:
        k = np.arange(0, int(m + 12 * np.sqrt(m) + 30))
        pk = poisson.pmf(k, m)
        with np.errstate(divide="ignore", invalid="ignore"):
            dev = 2 * (np.where(k > 0, k * np.log(k / m), 0.0) - k + m)
        ev.append(float((pk * dev).sum()))
    return np.log(ms), np.asarray(ev)


_DEV_TABLE: tuple[np.ndarray, np.ndarray] | None = None


def _expected_deviance(m: np.ndarray) -> float:
    global _DEV_TABLE
    if _DEV_TABLE is None:
        _DEV_TABLE = _poisson_deviance_table()
    lm, ev = _DEV_TABLE
    mm = np.clip(m, 1e-3, None)
    vals = np.where(mm > 1e3, 1.0 + 1.0 / (6.0 * mm), np.interp(np.log(mm), lm, ev))
    return float(vals.mean())


def photon_model(data: np.ndarray, gain: float | None = None, read_noise: float = 0.0) -> tuple[float | None, float, str]:
    """``(a, c, how)`` such that ``(data + c)/a`` has variance ≈ mean (Poisson-like counts).

    ``gain`` (ADU/e-) and ``read_noise`` (e- rms) when known; otherwise the Poisson–Gaussian fit of
    the image (:func:`fluorecon.physics.noise_model.estimate_poisson_gaussian`). ``data`` must
    already have the camera offset removed. ``a`` is None when no fit is possible.

    Examples
    --------
    >>> photon_model(np.zeros((4, 4)), gain=2.0, read_noise=1.5)
    (2.0, 4.5, 'given')
    """
    if gain is not None:
        if not np.isfinite(gain) or gain <= 0:
            raise FluoreconError(f"gain must be > 0, got {gain}", hint="camera gain in ADU per photo-electron")
        return float(gain), float(gain) * float(read_noise) ** 2, "given"
    a, c, r2 = _fit_gain(data)
    if a is not None:
        return a, c, "estimated" if not (r2 < 0.5) else f"estimated, poor fit r²={r2:.2f}"
    a = _rough_gain(data)
    return a, 0.0, "rough"


def _rough_gain(data: np.ndarray) -> float | None:
    """Fallback gain when the Poisson–Gaussian fit fails (small or flat images): ``Var ≈ a·mean``.

    The noise variance comes from the difference of each pixel and the mean of its neighbours along
    the trailing two axes (white noise: ``1 + 1/4`` of the variance), the mean from the 3×3 average.
    """
    x = np.asarray(data, dtype=np.float64)
    if x.ndim < 2 or min(x.shape[-2:]) < 3:
        return None
    core = x[..., 1:-1, 1:-1]
    nb = (x[..., :-2, 1:-1] + x[..., 2:, 1:-1] + x[..., 1:-1, :-2] + x[..., 1:-1, 2:]) / 4
    var = float(np.median((core - nb) ** 2) / 0.4549 / 1.25)  # median of χ²₁ = 0.4549
    mean = float(np.median(np.clip((core + 4 * nb) / 5, 0, None)))
    if not np.isfinite(var) or var <= 0 or mean <= 0:
        return None
    return var / mean


def thin(counts: np.ndarray, seed: int | np.random.Generator | None = 0, p: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Binomial (Poisson) thinning: two independent Poisson images with means ``p·λ`` and ``(1 − p)·λ``.

    Examples
    --------
    >>> a, b = thin(np.full((8, 8), 10), seed=0)
    >>> bool(((a + b) == 10).all())
    True
    """
    rng = np.random.default_rng(seed)
    n = np.asarray(counts)
    x1 = rng.binomial(n.astype(np.int64), p)
    return x1.astype(np.float32), (n - x1).astype(np.float32)


def _fold(psf: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Wrap a PSF larger than ``shape`` onto that grid (periodic sum), centre kept at ``shape // 2``.

    Its OTF on the grid is then the PSF's OTF sampled at the grid's frequencies.
    """
    if all(p <= n for p, n in zip(psf.shape, shape, strict=True)):
        return psf
    out = np.zeros(shape, dtype=np.float64)
    idx = np.ix_(*[(np.arange(p) - p // 2 + n // 2) % n for p, n in zip(psf.shape, shape, strict=True)])
    np.add.at(out, idx, psf)
    return out


@dataclass
class HoldoutRisk:
    """Sharpened held-out risk ``R(j) = ‖G (z₂ − m_j)‖²/N`` per iteration (module docstring).

    ``update(model)`` takes the blurred estimate ``m_j`` (incl. background, image grid) and returns
    ``R(j)``; ``best`` is the argmin over ``j ≥ 1`` and ``done`` is True once the risk has not improved
    for ``max(patience, 0.3·best)`` iterations.

    Examples
    --------
    >>> from fluorecon.physics.psf import gaussian_psf
    >>> r = HoldoutRisk(np.ones((16, 16), np.float32), gaussian_psf((5, 5), 1.0))
    >>> round(r.update(torch.ones(16, 16)), 6)
    0.0
    """

    holdout: Any
    psf: np.ndarray
    delta: float = CV_DELTA
    patience: int = 3
    device: Any = "cpu"
    values: list = field(default_factory=list)

    def __post_init__(self):
        self.z2 = torch.as_tensor(np.ascontiguousarray(self.holdout), dtype=torch.float32, device=self.device)
        shape = tuple(self.z2.shape)
        nd = len(shape)
        h = psf_to_otf(_fold(np.asarray(self.psf, np.float64), shape), shape, real=True).abs()
        h = h / h.flatten()[0].clamp(min=1e-30)
        g2 = (h / (h * h + self.delta)) ** 2
        w = torch.full((shape[-1] // 2 + 1,), 2.0, dtype=torch.float64)
        w[0] = 1.0
        if shape[-1] % 2 == 0:
            w[-1] = 1.0
        self.weight = (g2 * w.view(*([1] * (nd - 1)), -1)).to(torch.float32).to(self.device)
        self.n = float(np.prod(shape)) ** 2
        self.dims = list(range(-nd, 0))

    def update(self, model) -> float:
        m = model if isinstance(model, torch.Tensor) else torch.as_tensor(np.asarray(model), device=self.z2.device)
        r = torch.fft.rfftn(self.z2 - m, dim=self.dims)
        val = float(torch.sum(self.weight * (r.real * r.real + r.imag * r.imag))) / self.n
        self.values.append(val)
        return val

    @property
    def best(self) -> int:
        if len(self.values) < 2:
            return len(self.values) - 1
        return int(np.argmin(self.values[1:])) + 1

    @property
    def done(self) -> bool:
        b = self.best
        return b >= 1 and len(self.values) - 1 - b >= max(self.patience, math.ceil(0.3 * b))
