"""Uncertainty: deep ensembles, probabilistic heads, calibration, recalibration and conformal intervals.

Three sources of a per-pixel predictive distribution ``(mean, scale)``:

* **Deep ensembles** — N networks trained from different seeds; ``mean`` and ``std`` over members
  (:func:`ensemble_stats`, :func:`train_ensemble`). Treated as Gaussian.
* **Probabilistic head** — ``UNet(head="laplace"|"gaussian").forward_dist(x) -> (mean, scale)`` trained
  with the negative log-likelihood (:func:`laplace_nll`, :func:`gaussian_nll`).
* **Split conformal** — turns any ``(mean, scale)`` into intervals with a finite-sample coverage
  guarantee on exchangeable data (:class:`ConformalCalibrator`).

Calibration is measured as the coverage of central intervals at nominal levels (default 50–95 %) and
their mean absolute gap (ECE, :func:`calibration_report`). :func:`fit_scale_factor` fits **one** factor
on a calibration split that rescales every ``scale`` and so fixes all levels at once (if the shape of
the distribution is right).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from fluorecon.errors import FluoreconError
from fluorecon.trust._common import as_float_array

__all__ = [
    "DEFAULT_LEVELS", "ConformalCalibrator", "calibration_report", "conformal_quantile", "coverage",
    "ensemble_stats", "expected_calibration_error", "fit_scale_factor", "gaussian_nll", "interval",
    "interval_halfwidth", "laplace_nll", "predict_with_uncertainty", "seed_spread", "train_ensemble",
    "calibrate_bundle", "attach_trust_statistics",
]

DEFAULT_LEVELS: tuple[float, ...] = (0.5, 0.6, 0.7, 0.8, 0.9, 0.95)
_DISTS = ("gaussian", "laplace")


def _check_dist(dist: str) -> str:
    if dist not in _DISTS:
        raise FluoreconError(f"unknown predictive distribution {dist!r}", hint=f"use one of {_DISTS}")
    return dist


def _check_levels(levels: Sequence[float]) -> np.ndarray:
    lv = np.asarray(levels, dtype=np.float64)
    if lv.ndim != 1 or lv.size == 0 or np.any((lv <= 0) | (lv >= 1)):
        raise FluoreconError(f"coverage levels must be numbers strictly between 0 and 1, got {levels}",
                             hint="e.g. levels=(0.5, 0.8, 0.9, 0.95)")
    return lv


def interval_halfwidth(level: float | np.ndarray, dist: str = "gaussian") -> np.ndarray:
    """Half-width of the central ``level`` interval in units of the distribution's scale.

    Gaussian (scale = σ): ``Φ⁻¹((1+level)/2)``; Laplace (scale = b): ``-ln(1-level)``.

    Examples
    --------
    >>> round(float(interval_halfwidth(0.95, "gaussian")), 3)
    1.96
    >>> round(float(interval_halfwidth(0.5, "laplace")), 4)
    0.6931
    """
    lv = np.asarray(level, dtype=np.float64)
    if _check_dist(dist) == "gaussian":
        return stats.norm.ppf(0.5 + lv / 2)
    return -np.log1p(-lv)


def interval(mean, scale, level: float = 0.9, dist: str = "gaussian", factor: float = 1.0):
    """Central ``level`` interval ``(low, high)`` of a per-pixel Gaussian/Laplace prediction.

    Examples
    --------
    >>> lo, hi = interval(np.zeros(2), np.ones(2), 0.95)
    >>> np.round(hi, 2).tolist()
    [1.96, 1.96]
    """
    m = as_float_array(mean, "mean")
    s = as_float_array(scale, "scale") * factor
    h = interval_halfwidth(level, dist) * s
    return m - h, m + h


def _normalised_errors(truth, mean, scale, max_n: int | None = None, seed: int = 0) -> np.ndarray:
    t = as_float_array(truth, "truth").ravel()
    m = as_float_array(mean, "mean").ravel()
    s = as_float_array(scale, "scale").ravel()
    if not (t.size == m.size == s.size):
        raise FluoreconError(f"truth, mean and scale differ in size ({t.size}, {m.size}, {s.size})",
                             hint="pass arrays of the same shape")
    if np.any(s < 0):
        raise FluoreconError("scale has negative values", hint="pass a standard deviation / Laplace scale ≥ 0")
    u = np.abs(t - m) / np.maximum(s, 1e-12)
    if max_n is not None and u.size > max_n:
        u = np.random.default_rng(seed).choice(u, max_n, replace=False)
    return u


def coverage(truth, mean, scale, levels: Sequence[float] = DEFAULT_LEVELS, dist: str = "gaussian",
             factor: float = 1.0) -> dict[float, float]:
    """Fraction of pixels whose truth lies inside the central interval, per nominal level.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = rng.normal(size=100_000)
    >>> cov = coverage(y, np.zeros_like(y), np.ones_like(y), levels=(0.5, 0.9))
    >>> abs(cov[0.9] - 0.9) < 0.01
    True
    """
    lv = _check_levels(levels)
    u = np.sort(_normalised_errors(truth, mean, scale))
    hw = interval_halfwidth(lv, dist) * factor
    cov = np.searchsorted(u, hw, side="right") / u.size
    return {float(level): float(c) for level, c in zip(lv, cov, strict=True)}


def expected_calibration_error(cov: dict[float, float]) -> float:
    """Mean absolute gap between observed coverage and nominal level, over the levels given."""
    return float(np.mean([abs(c - lv) for lv, c in cov.items()]))


def fit_scale_factor(truth, mean, scale, levels: Sequence[float] = DEFAULT_LEVELS, dist: str = "gaussian",
                     method: str = "coverage", max_n: int = 2_000_000, seed: int = 0) -> float:
    """Fit ONE factor ``c`` so that ``c * scale`` is calibrated on a calibration split.

    Parameters
    ----------
    truth, mean, scale : array
        Calibration split (never the test split).
    levels : sequence of float
        Nominal levels whose squared coverage gaps are minimised (``method="coverage"``).
    dist : {"gaussian", "laplace"}
    method : {"coverage", "nll"}
        ``"coverage"`` minimises Σ (coverage(c) - level)² over ``levels`` by a dense search in log c;
        ``"nll"`` is the maximum-likelihood factor (Gaussian ``c² = mean(u²)``, Laplace ``c = mean(u)``).

    Returns
    -------
    float

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = 3 * rng.normal(size=50_000)               # true σ = 3, claimed σ = 1: over-confident
    >>> round(fit_scale_factor(y, np.zeros_like(y), np.ones_like(y)), 1)
    3.0
    """
    u = _normalised_errors(truth, mean, scale, max_n=max_n, seed=seed)
    if _check_dist(dist) and method == "nll":
        return float(np.sqrt(np.mean(u**2)) if dist == "gaussian" else np.mean(u))
    if method != "coverage":
        raise FluoreconError(f"unknown recalibration method {method!r}", hint="use 'coverage' or 'nll'")
    lv = _check_levels(levels)
    u = np.sort(u)
    hw = interval_halfwidth(lv, dist)
    # Each level's coverage is an ECDF step function of c; a dense log grid then a local refinement.
    med = float(np.median(u / hw[np.argmin(np.abs(lv - 0.5))])) if u.size else 1.0
    centre = np.log(max(med, 1e-12))

    def loss(logc: np.ndarray) -> np.ndarray:
        cov = np.searchsorted(u, np.exp(logc)[:, None] * hw[None, :], side="right") / u.size
        return np.sum((cov - lv[None, :]) ** 2, axis=1)

    grid = centre + np.linspace(-6, 6, 1201)
    best = grid[np.argmin(loss(grid))]
    fine = best + np.linspace(-0.02, 0.02, 401)
    return float(np.exp(fine[np.argmin(loss(fine))]))


def calibration_report(truth, mean, scale, levels: Sequence[float] = DEFAULT_LEVELS, dist: str = "gaussian",
                       factor: float = 1.0) -> dict:
    """Coverage per level, ECE and the mean interval width of a (rescaled) predictive distribution.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> y = rng.normal(size=20_000)
    >>> calibration_report(y, 0 * y, 1 + 0 * y)["ece"] < 0.01
    True
    """
    cov = coverage(truth, mean, scale, levels, dist, factor)
    s = as_float_array(scale, "scale") * factor
    return {"coverage": cov, "ece": expected_calibration_error(cov), "factor": float(factor),
            "mean_scale": float(np.mean(s)), "dist": dist}


def conformal_quantile(scores, alpha: float) -> float:
    """Split-conformal quantile: the ⌈(n+1)(1-α)⌉-th smallest score (∞ if that exceeds n).

    With calibration and test scores exchangeable, ``P(test score ≤ q) ≥ 1 - α`` for any n.

    Examples
    --------
    >>> conformal_quantile(np.arange(1, 20), 0.1)   # n=19: the 18th smallest
    18.0
    """
    s = np.sort(as_float_array(scores, "scores").ravel())
    if not 0 < alpha < 1:
        raise FluoreconError(f"alpha must be in (0, 1), got {alpha}", hint="e.g. alpha=0.1 for 90 % intervals")
    n = s.size
    k = int(np.ceil((n + 1) * (1 - alpha)))
    return float("inf") if k > n else float(s[k - 1])


@dataclass
class ConformalCalibrator:
    """Split-conformal intervals ``mean ± q_level * scale`` from normalised residual scores.

    The score of a calibration pixel is ``|truth - mean| / scale`` (scale from an ensemble or a
    probabilistic head, or 1 for plain absolute residuals). The guarantee holds for pixels exchangeable
    with the calibration pixels — e.g. random pixels of images from the same acquisition; neighbouring
    pixels of one image are correlated, so the guarantee is marginal over images, not per region.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> cal = ConformalCalibrator().fit(rng.normal(size=5000), np.zeros(5000), np.ones(5000))
    >>> lo, hi = cal.interval(np.zeros(3), np.ones(3), 0.9)
    >>> bool(1.5 < hi[0] < 1.8)
    True
    """

    levels: tuple[float, ...] = DEFAULT_LEVELS
    quantiles: dict | None = None
    n: int = 0

    def fit(self, truth, mean, scale=None, max_n: int | None = None, seed: int = 0) -> ConformalCalibrator:
        sc = np.ones_like(as_float_array(mean, "mean")) if scale is None else scale
        u = _normalised_errors(truth, mean, sc, max_n=max_n, seed=seed)
        self.quantiles = {float(lv): conformal_quantile(u, 1 - lv) for lv in _check_levels(self.levels)}
        self.n = int(u.size)
        return self

    def interval(self, mean, scale=None, level: float = 0.9):
        if self.quantiles is None:
            raise FluoreconError("conformal calibrator is not fitted", hint="call .fit(truth, mean, scale) first")
        if float(level) not in self.quantiles:
            raise FluoreconError(f"level {level} was not calibrated", hint=f"use one of {sorted(self.quantiles)}")
        m = as_float_array(mean, "mean")
        s = np.ones_like(m) if scale is None else as_float_array(scale, "scale")
        q = self.quantiles[float(level)]
        return m - q * s, m + q * s

    def coverage(self, truth, mean, scale=None) -> dict[float, float]:
        t = as_float_array(truth, "truth")
        out = {}
        for lv in self.quantiles or {}:
            lo, hi = self.interval(mean, scale, lv)
            out[lv] = float(np.mean((t >= lo) & (t <= hi)))
        return out

    def to_dict(self) -> dict:
        return {"levels": list(self.levels), "quantiles": self.quantiles, "n": self.n}


# ----------------------------------------------------------------------------------- losses (torch)
def gaussian_nll(mean, scale, target, eps: float = 1e-6):
    """Mean Gaussian negative log-likelihood (torch), ``scale`` = σ. Constant terms dropped."""
    import torch

    s = torch.clamp(scale, min=eps)
    return torch.mean(torch.log(s) + 0.5 * ((target - mean) / s) ** 2)


def laplace_nll(mean, scale, target, eps: float = 1e-6):
    """Mean Laplace negative log-likelihood (torch), ``scale`` = b. Constant terms dropped."""
    import torch

    b = torch.clamp(scale, min=eps)
    return torch.mean(torch.log(b) + torch.abs(target - mean) / b)


# ---------------------------------------------------------------------------------------- ensembles
def ensemble_stats(predictions: Sequence[np.ndarray] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel mean and standard deviation (ddof=1) over ensemble members' predictions.

    Examples
    --------
    >>> m, s = ensemble_stats([np.zeros(3), np.ones(3) * 2])
    >>> m.tolist(), np.round(s, 3).tolist()
    ([1.0, 1.0, 1.0], [1.414, 1.414, 1.414])
    """
    p = np.stack([as_float_array(q, "prediction") for q in predictions], 0)
    if p.shape[0] < 2:
        raise FluoreconError("an ensemble needs at least 2 members", hint="train with several seeds")
    return p.mean(0), p.std(0, ddof=1)


def train_ensemble(config: Any, data: Any, n_members: int = 5, seeds: Sequence[int] | None = None, **kwargs) -> Any:
    """Train ``n_members`` models from different seeds with the engine and return one ensemble Bundle.

    Each member is ``fluorecon.learn.train.train(config with seed=s, data)``; the first member's bundle
    is returned with ``.members`` holding every member's model (the engine's bundle stores members as
    ``member-K.safetensors``).
    """
    from fluorecon.learn.train import train

    if n_members < 2:
        raise FluoreconError(f"n_members must be ≥ 2, got {n_members}", hint="use e.g. n_members=5")
    seeds = list(seeds) if seeds is not None else [int(getattr(config, "seed", 0)) + 1000 * k for k in range(n_members)]
    bundles = []
    for s in seeds[:n_members]:
        cfg = config.model_copy(update={"seed": int(s)}) if hasattr(config, "model_copy") else config
        bundles.append(train(cfg, data, **kwargs))
    first = bundles[0]
    first.members = [b.model for b in bundles]
    first.provenance["ensemble_seeds"] = [int(s) for s in seeds[:n_members]]
    return first


def seed_spread(values: Sequence[float] | np.ndarray) -> dict:
    """Spread of a result across retraining seeds (the review's reproducibility concern).

    Examples
    --------
    >>> seed_spread([30.0, 31.0, 29.0])["std"]
    1.0
    """
    v = as_float_array(values, "values").ravel()
    return {"n": int(v.size), "mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else 0.0,
            "min": float(v.min()), "max": float(v.max())}


# ------------------------------------------------------------------------------ bundle predictions
def predict_with_uncertainty(bundle: Any, image, axes: str, **predict_kwargs) -> tuple[np.ndarray, np.ndarray, dict]:
    """Mean and per-pixel standard deviation from a bundle's ensemble members and/or probabilistic head.

    Uses the engine's tiled ``predict(..., return_scale=True)`` (members' spread combined with the
    head's variance, Laplace ``b`` → sd ``√2 b``), then multiplies the standard deviation by the
    bundle's one-factor recalibration (``bundle.training_stats["calibration"]["factor"]``) if fitted.

    Returns
    -------
    mean, std : ndarray
        In the units of the input (denormalised).
    info : dict
        ``{"source": "ensemble"|"laplace head"|"gaussian head"|"ensemble + ... head", "n_members", "factor"}``.
    """
    from fluorecon.learn.predict import predict

    members = list(getattr(bundle, "members", None) or [])
    model = members[0] if members else getattr(bundle, "model", None)
    head = getattr(model, "head", None)
    if len(members) < 2 and not head:
        raise FluoreconError("this model has no uncertainty estimate (no ensemble members, no probabilistic head)",
                             hint="train with head='laplace' or as an ensemble (several seeds)")
    stats_ = getattr(bundle, "training_stats", None) or {}
    factor = float((stats_.get("calibration") or {}).get("factor", 1.0))
    mean, std = predict(bundle, image, axes, return_scale=True, **predict_kwargs)
    parts = (["ensemble"] if len(members) >= 2 else []) + ([f"{head} head"] if head else [])
    info = {"source": " + ".join(parts), "n_members": max(1, len(members)), "factor": factor}
    return np.asarray(mean, np.float64), np.asarray(std, np.float64) * factor, info


def calibrate_bundle(bundle: Any, inputs: Sequence[np.ndarray], targets: Sequence[np.ndarray], axes: str = "YX",
                     levels: Sequence[float] = DEFAULT_LEVELS, dist: str = "laplace") -> dict:
    """Fit the bundle's one recalibration factor on a calibration split and store it.

    The factor goes to ``bundle.training_stats["calibration"]`` (with the coverage before/after on the
    calibration split itself); :func:`predict_with_uncertainty` and ``assess`` apply it. Use images that
    were **not** used for training. Intervals are of the ``dist`` family: Laplace by default (the family the
    trust benchmark validated: ±5 points of coverage at 50–95 % after one factor); the per-pixel SD ``s`` is
    read as a Laplace scale ``b = s/√2``. The factor multiplies the SD, whatever the family.

    Returns
    -------
    dict
        ``{"factor", "dist", "before", "after", "n_pixels"}``.
    """
    from fluorecon.learn.predict import predict

    _check_dist(dist)
    if len(inputs) != len(targets) or not len(inputs):
        raise FluoreconError("calibration needs as many targets as inputs (at least one pair)",
                             hint="pass held-out (input, ground truth) pairs")
    ms, ss, ts = [], [], []
    for x, t in zip(inputs, targets, strict=True):
        m, s = predict(bundle, x, axes, return_scale=True)
        ms.append(np.asarray(m, np.float64).ravel())
        ss.append(np.asarray(s, np.float64).ravel())
        ts.append(as_float_array(t, "target").ravel())
    m, s, t = np.concatenate(ms), np.concatenate(ss), np.concatenate(ts)
    scale = s / np.sqrt(2.0) if dist == "laplace" else s  # SD → the family's scale parameter
    factor = fit_scale_factor(t, m, scale, levels, dist=dist)
    out = {"factor": factor, "dist": dist, "before": calibration_report(t, m, scale, levels, dist=dist),
           "after": calibration_report(t, m, scale, levels, dist=dist, factor=factor), "n_pixels": int(t.size)}
    stats_ = dict(getattr(bundle, "training_stats", None) or {})
    stats_["calibration"] = {"factor": factor, "dist": dist, "levels": list(levels), "ece_before": out["before"]["ece"],
                             "ece_after": out["after"]["ece"], "n_pixels": out["n_pixels"]}
    bundle.training_stats = stats_
    return out


def attach_trust_statistics(bundle: Any, images: Sequence[np.ndarray], **kwargs) -> dict:
    """Compute calibrated shift statistics for a bundle and store them in ``training_stats["shift"]``.

    ``images`` are training inputs (un-normalised); the bundle's normaliser and model are used.
    """
    from fluorecon.trust.shift import training_statistics

    st = training_statistics(bundle.model, images, getattr(bundle, "normalizer", None), **kwargs)
    stats_ = dict(getattr(bundle, "training_stats", None) or {})
    stats_["shift"] = st
    bundle.training_stats = stats_
    return st
