"""Poisson–Gaussian noise models fitted from data.

A camera recording ``x`` (ADU) with mean ``μ`` has variance::

    Var[x] = gain · (μ − offset) + read_noise_adu²          (μ ≥ offset)
           = gain · μ + intercept,   intercept = read_noise_adu² − gain · offset

``gain`` is the slope of the variance against the mean — ADU per photo-electron for an sCMOS/CCD
camera (for an EMCCD it is ``gain · em_gain · 2``: the excess factor is folded in). Two estimators:

* :func:`photon_transfer` — from repeated frames of the same field: the temporal variance is
  measured from **differences of consecutive frames**, which cancels the fixed structure and slow
  drifts such as bleaching. Live specimens also change between frames (motion, diffusion); those
  changes are band-limited by the PSF while camera noise is white, so by default the noise is read
  from the spatial high-pass (unit-norm 3×3 second difference) of each difference. Each sample is
  binned by the mean of the *other* frames around it (a selection that shares noise with the
  sample would bias the slope) and placed at the mean of its own pair; bin variances reject
  spatially clustered outliers (motion) and values beyond 10 predicted σ; a robust straight line
  (Siegel start, reweighted least squares) is fitted.
* :func:`estimate_poisson_gaussian` — from a single image, in the spirit of Foi et al. (IEEE TIP 17,
  1737, 2008): a unit-norm high-pass residual (the separable second difference, which ignores
  locally linear signal) estimates the noise, a smoothed image the local mean; only the flattest
  half of the pixels in each intensity bin is used (edges leak signal into the residual), bin
  variances are robust, and the same weighted line is fitted.

The data determine ``gain`` and ``intercept`` only: ``offset`` and ``read_noise_adu`` cannot be
separated without a dark reference. Give ``offset=`` when you know the camera baseline; otherwise
it is estimated as the darkest level present in the data (0.1th percentile of the local mean — the
assumption is that some pixels record no light) and ``offset_known`` is False. ``variance(mean)`` is
exact for the fitted line in either case.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from fluorecon.errors import FluoreconError
from fluorecon.physics.camera import Camera
from fluorecon.validation import to_numpy

__all__ = ["NoiseModel", "estimate_poisson_gaussian", "fit_variance_line", "photon_transfer"]


@dataclass
class NoiseModel:
    """Fitted Poisson–Gaussian noise model (all quantities in ADU).

    Examples
    --------
    >>> nm = NoiseModel(gain=2.0, offset=100.0, read_noise_adu=3.0)
    >>> float(nm.variance(np.array(150.0)))
    109.0
    """

    gain: float
    offset: float
    read_noise_adu: float
    intercept: float | None = None
    gain_stderr: float | None = None
    offset_known: bool = True
    method: str = "given"
    n_samples: int = 0
    mean_range: tuple[float, float] | None = None
    r2: float | None = None
    bins: dict[str, list[float]] = field(default_factory=dict)
    noise_correlation: float | None = None  # neighbour correlation of raw frame differences (photon_transfer)

    def __post_init__(self):
        if self.intercept is None:
            self.intercept = self.read_noise_adu**2 - self.gain * self.offset

    def variance(self, mean: Any):
        """Expected variance (ADU²) at mean ``mean`` (NumPy or torch); ``read_noise_adu²`` below the offset."""
        d = mean - self.offset
        d = d.clip(min=0) if hasattr(d, "clip") else max(d, 0.0)
        return self.gain * d + self.read_noise_adu**2

    @property
    def read_noise_electrons(self) -> float:
        """Read noise in electrons rms (``read_noise_adu / gain``)."""
        return self.read_noise_adu / self.gain

    def to_camera(self, photons: float = 100.0):
        """A :class:`~fluorecon.physics.camera.Camera` with this gain/offset/read noise (sCMOS-like).

        Examples
        --------
        >>> NoiseModel(gain=2.0, offset=100.0, read_noise_adu=3.0).to_camera().read_noise
        1.5
        """

        return Camera(photons=photons, gain=self.gain, offset=max(self.offset, 0.0),
                      read_noise=self.read_noise_adu / self.gain)

    @classmethod
    def from_camera(cls, camera) -> NoiseModel:
        """The exact noise model of a simulated camera (for comparisons)."""
        q = 1 / 12 if camera.bit_depth is not None else 0.0
        return cls(gain=camera.total_gain * camera.excess, offset=camera.offset,
                   read_noise_adu=float(np.sqrt((camera.gain * camera.read_noise) ** 2 + q)), method="camera")

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable dict."""
        d = asdict(self)
        d["read_noise_electrons"] = self.read_noise_electrons
        if d["mean_range"] is not None:
            d["mean_range"] = [float(v) for v in d["mean_range"]]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NoiseModel:
        """Inverse of :meth:`to_dict`."""
        keys = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        if keys.get("mean_range") is not None:
            keys["mean_range"] = tuple(keys["mean_range"])
        return cls(**keys)


# -------------------------------------------------------------------------------------- fitting


def _neighbour_correlation(diff: np.ndarray, level: np.ndarray, valid: np.ndarray) -> dict[tuple[int, int], float]:
    """Spatial correlation of frame differences at lateral offsets (dy, dx) in [-2, 2]².

    White camera noise gives ≈ 0; a value well above 0 means the noise was filtered or resampled
    (then single-image estimators and pixel-independent denoisers such as Noise2Void are biased).
    Computed on the dimmer 80 % of samples, where motion is rare.
    """
    d = np.where(valid & (level <= np.percentile(level, 80)), diff, np.nan)
    d = d - np.nanmean(d)
    var = np.nanmean(d * d)
    out: dict[tuple[int, int], float] = {}
    if not var > 0:
        return out
    ny, nx = d.shape[-2:]
    for dy in range(0, 3):
        for dx in range(-2, 3):
            if (dy, dx) <= (0, 0):
                continue
            a = d[..., dy:, max(dx, 0):nx + min(dx, 0)]
            b = d[..., : ny - dy, max(-dx, 0):nx - max(dx, 0)]
            r = float(np.nanmean(a * b) / var)
            out[(dy, dx)] = r
            out[(-dy, -dx)] = r
    return out


def _box_chi2_limit(rho: dict[tuple[int, int], float], p: float = 1e-5) -> float:
    """Upper ``1 − p`` quantile of the 3×3 mean of d²/var for Gaussian noise with correlations ``rho``.

    The mean of 9 squared unit normals with pairwise correlations ρ has variance ``2 Σ ρ² / 81``;
    it is approximated by a χ²_k / k with the same variance, ``k = 81 / Σ ρ²`` (k = 9 for white noise).
    """
    from scipy.stats import chi2

    s = 0.0
    for i in range(9):
        for j in range(9):
            off = (i // 3 - j // 3, i % 3 - j % 3)
            s += 1.0 if off == (0, 0) else rho.get(off, 0.0) ** 2
    k = 81.0 / s
    return float(chi2.isf(p, k) / k)


def _robust_bin_variance(values: np.ndarray, clip: float = 8.0, mad_only: bool = False) -> float:
    """Variance of zero-mean residuals, robust to outliers.

    ``mad_only``: (1.4826 · MAD)² — very robust, assumes near-Gaussian residuals. Otherwise the mean
    of squares after rejecting |v| > ``clip`` robust σ (keeps the genuine heavy tails of EM-gain
    noise while rejecting motion/edge outliers).
    """
    v = values
    mad = np.median(np.abs(v - np.median(v)))
    if mad_only and mad > 0:
        return float((1.4826 * mad) ** 2)
    if mad > 0:
        keep = np.abs(v) <= clip * 1.4826 * mad
        v = v[keep]
    return float(np.mean(v * v))


def fit_variance_line(means: np.ndarray, variances: np.ndarray, counts: np.ndarray,
                      n_iter: int = 5) -> tuple[float, float, float, float]:
    """Robust fit of ``var = a · mean + b`` over bins.

    Siegel repeated-median start, then weighted least squares (weights ``n / var²``: the variance
    of a sample variance is ``2 var² / n``) on the bins within 3 robust σ of the line. Returns
    ``(a, b, stderr_a, r2)``; ``r2`` is computed over the bins kept.

    Examples
    --------
    >>> m = np.linspace(100, 1000, 20)
    >>> a, b, _, _ = fit_variance_line(m, 2 * m + 5, np.full(20, 1000))
    >>> round(a, 6), round(b, 4)
    (2.0, 5.0)
    """
    m = np.asarray(means, float)
    v = np.asarray(variances, float)
    n = np.asarray(counts, float)
    ok = np.isfinite(m) & np.isfinite(v) & (v > 0) & (n > 1)
    m, v, n = m[ok], v[ok], n[ok]
    if m.size < 3 or np.ptp(m) <= 0:
        raise FluoreconError("not enough distinct intensity levels to fit a noise model",
                             hint="use an image (or frames) with a range of intensities, or photon_transfer on repeated frames")
    from scipy.stats import siegelslopes

    A = np.stack([m, np.ones_like(m)], axis=1)
    # Start from Siegel's repeated-median line (robust to up to half the bins being off the line,
    # e.g. motion at bright structures), then refine by weighted least squares on the bins whose
    # relative residual is within 3 robust σ of the line.
    res = siegelslopes(v, m)
    coef = np.array([res.slope, res.intercept])
    w = n / np.maximum(v, 1e-12) ** 2
    keep = np.ones(m.size, dtype=bool)
    for _ in range(n_iter):
        pred = np.maximum(A @ coef, 1e-12)
        rel = (v - pred) / pred
        scale = 1.4826 * np.median(np.abs(rel)) + 1e-6
        keep = np.abs(rel) <= 3 * scale
        if keep.sum() < 3:
            keep = np.argsort(np.abs(rel))[:3]
            keep = np.isin(np.arange(m.size), keep)
        w = n / pred**2 * keep
        coef = np.linalg.lstsq(A * np.sqrt(w)[:, None], v * np.sqrt(w), rcond=None)[0]
    a, b = float(coef[0]), float(coef[1])
    pred = A @ coef
    resid = v - pred
    dof = max(int(np.count_nonzero(w)) - 2, 1)
    sigma2 = float(np.sum(w * resid**2) / dof)
    try:
        cov = np.linalg.inv((A * w[:, None]).T @ A) * sigma2
        se = float(np.sqrt(max(cov[0, 0], 0)))
    except np.linalg.LinAlgError:
        se = float("nan")
    ss_tot = float(np.sum(w * (v - np.average(v, weights=w)) ** 2))
    r2 = 1 - float(np.sum(w * resid**2)) / ss_tot if ss_tot > 0 else float("nan")
    return a, b, se, r2


def _binned(mean: np.ndarray, resid: np.ndarray, n_bins: int, lo_q: float = 0.5, hi_q: float = 99.5,
            is_diff: bool = False, abscissa: np.ndarray | None = None, line: tuple[float, float] | None = None,
            clip: float | None = 10.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Equal-count bins of ``mean``; robust variance of ``resid`` (÷2 for frame differences) per bin.

    The bin's abscissa is the average of ``abscissa`` (default ``mean``) over its members. Without
    ``line`` the per-bin variance rejects residuals beyond 8 MAD-σ; with a previous fit ``line = (a,
    b)`` it rejects residuals beyond ``clip`` times the σ that line predicts — which keeps the genuine
    heavy tails of EM-gain noise (far outside the MAD core) while still rejecting motion outliers.
    """
    absc = mean if abscissa is None else abscissa
    lo, hi = np.percentile(mean, [lo_q, hi_q])
    sel = (mean >= lo) & (mean <= hi)
    mean, resid, absc = mean[sel], resid[sel], absc[sel]
    order = np.argsort(mean, kind="stable")
    chunks = np.array_split(order, n_bins)
    mb, vb, nb = [], [], []
    k = 2.0 if is_diff else 1.0
    for c in chunks:
        if c.size < 20:
            continue
        m = float(np.mean(absc[c]))
        r = resid[c]
        if line is None:
            v = _robust_bin_variance(r)
        elif clip is None:
            v = float(np.mean(r * r))
        else:
            pred = max(line[0] * m + line[1], 1e-12) * k
            rr = r[np.abs(r) <= clip * np.sqrt(pred)]
            v = float(np.mean(rr * rr)) if rr.size else pred
        mb.append(m)
        vb.append(v / k)
        nb.append(c.size)
    return np.array(mb), np.array(vb), np.array(nb)


def _finish(a: float, b: float, se: float, r2: float, offset: float | None, dark_level: float,
            method: str, n: int, mb: np.ndarray, vb: np.ndarray, nb: np.ndarray) -> NoiseModel:
    if not a > 0:
        raise FluoreconError(f"the fitted noise gain is not positive ({a:.3g}); the data do not follow a "
                             "Poisson–Gaussian model (or have too little intensity range)",
                             hint="use raw camera data (not background-subtracted, denoised or rescaled images), "
                                  "or repeated frames with photon_transfer")
    if offset is not None:
        off = float(offset)
        read2 = b + a * off
        known = True
    else:
        off = float(dark_level)
        read2 = b + a * off
        known = False
        if read2 < 0:  # the darkest pixels still receive light: put the offset where read noise would vanish
            off = -b / a
            read2 = 0.0
    return NoiseModel(gain=a, offset=off, read_noise_adu=float(np.sqrt(max(read2, 0.0))), intercept=b,
                      gain_stderr=se, offset_known=known, method=method, n_samples=int(n),
                      mean_range=(float(mb.min()), float(mb.max())), r2=r2,
                      bins={"mean": mb.tolist(), "variance": vb.tolist(), "count": nb.astype(int).tolist()})


def photon_transfer(frames: Any, axis: int = 0, offset: float | None = None, n_bins: int = 40,
                    window: int = 9, saturation: float | None = None, clip: float | None = 10.0,
                    highpass: bool = True, max_samples: int = 20_000_000) -> NoiseModel:
    """Fit a Poisson–Gaussian model from repeated frames (photon-transfer curve).

    Parameters
    ----------
    frames : array-like
        Stack of ≥ 3 repeated recordings of the same field (raw ADU), any number of spatial axes.
    axis : int
        The repetition (time) axis.
    offset : float, optional
        Known camera baseline (ADU). Otherwise estimated from the darkest pixels (see module doc).
    n_bins : int
        Number of equal-count intensity bins.
    window : int
        Number of neighbouring frames (excluding the pair itself) whose mean selects the intensity
        bin of each consecutive-frame difference.
    clip : float or None
        Differences beyond ``clip`` σ (σ predicted by the previous fit iteration) are treated as
        motion outliers and rejected; None keeps everything.
    highpass : bool
        Measure the noise in the spatial high-pass (unit-norm 3×3 second difference) of each
        frame difference (default). This removes the smooth changes of a live specimen between
        frames, which otherwise dominate the temporal variance, but assumes the camera noise is
        white. ``False`` uses the raw differences (exact for a static scene, and correct when the
        noise itself is spatially correlated).
    max_samples : int
        Memory guard: larger stacks are reduced to their first frames (at least 3) and, if still
        too large, a central spatial crop (the fit needs far fewer samples).
    saturation : float, optional
        Values ≥ this are excluded (default: the maximum value, if more than 0.01 % of samples reach it).

    Returns
    -------
    NoiseModel

    Examples
    --------
    >>> from fluorecon.physics.camera import Camera
    >>> rng = np.random.default_rng(0)
    >>> scene = np.tile(np.linspace(0.05, 1, 64), (64, 1))
    >>> cam = Camera(photons=200, gain=2.0, offset=100, read_noise=2.0)
    >>> stack = np.stack([cam.simulate(scene, seed=s) for s in range(20)])
    >>> nm = photon_transfer(stack, offset=100)
    >>> bool(abs(nm.gain - 2.0) < 0.1), bool(abs(nm.read_noise_adu - 4.0) < 1.0)
    (True, True)
    """

    x = to_numpy(frames, "frames")
    if x.dtype.kind not in "biuf":
        raise FluoreconError(f"frames must be numeric, got dtype {x.dtype}", hint="pass raw camera frames")
    if x.ndim < 2:
        raise FluoreconError(f"frames must be a stack (T, Y, X), got shape {x.shape}", hint="stack repeated frames along axis 0")
    try:
        x = np.moveaxis(x, axis, 0).astype(np.float64)
    except np.exceptions.AxisError:
        raise FluoreconError(f"frames axis {axis} does not exist for shape {x.shape}", hint="use --frames-axis 0 for (T, Y, X)") from None
    if x.shape[0] < 3:
        raise FluoreconError(f"need at least 3 repeated frames along axis {axis}, got {x.shape[0]}",
                             hint="use estimate_poisson_gaussian for a single image")
    if x.size == 0 or not np.isfinite(x).all():
        raise FluoreconError("frames are empty or contain NaN/Inf", hint="pass raw camera frames")
    x = _limit_frames(x, max_samples)
    if np.ptp(x) == 0:
        raise FluoreconError("frames are constant: there is no noise to measure", hint="pass raw camera frames")
    if saturation is None:
        top = x.max()
        if np.mean(x >= top) > 1e-4:
            saturation = top
    t = x.shape[0]
    h = max(1, int(window) // 2)
    # Bin selection uses the mean of the *other* frames near each pair (t, t+1): a selection that
    # shares noise with the pair would pick pixels whose noise happens to be low (regression to the
    # mean) and flatten the fitted slope. Each bin's abscissa is the mean of the pair itself, which
    # is then an unbiased estimate of the bin's true mean.
    csum = np.concatenate([np.zeros((1, *x.shape[1:])), np.cumsum(x, axis=0)])
    lo = np.clip(np.arange(t - 1) - h, 0, t - 1)
    hi = np.clip(np.arange(t - 1) + 1 + h, 0, t - 1)
    pair_sum = x[1:] + x[:-1]
    count = (hi - lo + 1 - 2).reshape(-1, *[1] * (x.ndim - 1))
    select = (csum[hi + 1] - csum[lo] - pair_sum) / np.maximum(count, 1)
    pair_mean = 0.5 * pair_sum
    diff = x[1:] - x[:-1]
    valid = np.ones(diff.shape, dtype=bool)
    if saturation is not None:
        valid &= (x[1:] < saturation) & (x[:-1] < saturation)
    rho_raw = _neighbour_correlation(diff, select, valid) if x.ndim >= 3 else {}
    if highpass and x.ndim >= 3 and min(x.shape[-2:]) >= 8:
        # Live specimens change between frames (motion, diffusion, blinking); those changes are
        # band-limited by the PSF, whereas camera noise is white. The unit-norm 3×3 second difference
        # of each frame difference keeps the noise variance (2σ² for white noise) and removes smooth
        # changes. The abscissa/selection are filtered with K² so they refer to the same pixels.
        def filt(a, k1=None, k2=None):
            if k2 is not None:
                return ndimage.convolve(a, k2.reshape((1,) * (a.ndim - 2) + k2.shape), mode="reflect")
            a = ndimage.convolve1d(a, k1, axis=a.ndim - 2, mode="reflect")
            return ndimage.convolve1d(a, k1, axis=a.ndim - 1, mode="reflect")

        diff = filt(diff, k1=_K1)
        pair_mean = filt(pair_mean, k2=_K2)
        select = filt(select, k2=_K2)
        valid = ndimage.minimum_filter(valid, size=(1,) * (valid.ndim - 2) + (3, 3), mode="constant", cval=False)
    if diff.size < 100 or valid.sum() < 100:
        raise FluoreconError("too few usable pixels in the frames to fit a noise model", hint="use larger frames")
    sel_v, diff_v, absc_v = select[valid], diff[valid], pair_mean[valid]
    mb, vb, nb = _binned(sel_v, diff_v, n_bins, is_diff=True, abscissa=absc_v)
    # Motion makes large frame differences cluster in space (a moved edge or spot), whereas shot and
    # read noise are white: the 3×3 mean of d²/(2·var) is ~χ²₉/9 for noise (P(> 4) ≈ 1e-5) but
    # large wherever something moved. Such samples are rejected.
    box = (ndimage.uniform_filter(diff * diff, size=(1,) * (diff.ndim - 2) + (3, 3), mode="reflect")
           if x.ndim >= 3 else None)
    rho = _neighbour_correlation(diff, select, valid) if x.ndim >= 3 else {}
    box_limit = _box_chi2_limit(rho)
    for _ in range(3 if clip is not None else 1):
        a, b, se, r2 = fit_variance_line(mb, vb, nb)
        if clip is not None and box is not None:
            var2 = np.maximum(2 * (a * select + b), 1e-12)
            still = valid & (box <= box_limit * var2)
            if still.sum() >= 100:
                sel_v, diff_v, absc_v = select[still], diff[still], pair_mean[still]
        mb, vb, nb = _binned(sel_v, diff_v, n_bins, is_diff=True, abscissa=absc_v, line=(a, b), clip=clip)
    mean_s = absc_v
    a, b, se, r2 = fit_variance_line(mb, vb, nb)
    dark = float(np.percentile(x.mean(axis=0), 0.1))
    nm = _finish(a, b, se, r2, offset, dark, "photon_transfer", mean_s.size, mb, vb, nb)
    nm.noise_correlation = (float(np.mean([rho_raw.get((0, 1), np.nan), rho_raw.get((1, 0), np.nan)]))
                            if rho_raw else None)
    nm.method = "photon_transfer" + ("" if highpass else "_raw")
    return nm


def _central_crop(a: np.ndarray, side: int) -> np.ndarray:
    sl = [slice(None)] * (a.ndim - 2)
    for n in a.shape[-2:]:
        start = max(0, n // 2 - side // 2)
        sl.append(slice(start, start + side))
    return a[tuple(sl)]


def _limit_frames(x: np.ndarray, max_samples: int) -> np.ndarray:
    if x.size <= max_samples:
        return x
    per_frame = x[0].size
    t = max(3, int(max_samples // per_frame))
    x = x[:t]
    if x.size > max_samples:
        side = int(np.sqrt(max_samples / (t * max(1, int(np.prod(x.shape[1:-2]))))))
        x = _central_crop(x, max(side, 16))
    return x


_K1 = np.array([1.0, -2.0, 1.0]) / np.sqrt(6.0)
_K2 = np.outer(_K1, _K1) ** 2  # weights of each pixel's variance in the residual's variance (sum 1)
_RING = np.ones((7, 7))
_RING[2:5, 2:5] = 0
_RING /= _RING.sum()
_GY = np.zeros((7, 7))  # gradient from the rows outside the 3×3 support
_GY[5:, :] = 1.0 / 14
_GY[:2, :] = -1.0 / 14


def estimate_poisson_gaussian(image: Any, offset: float | None = None, n_bins: int = 30,
                              flat_fraction: float = 0.5, robust: bool = False,
                              max_samples: int = 8_000_000) -> NoiseModel:
    """Fit a Poisson–Gaussian model from a single raw image (2D, or each plane of a stack).

    Parameters
    ----------
    image : array-like
        Raw camera image in ADU (not background-subtracted or rescaled). For ≥ 3D input every 2D
        plane (trailing Y, X) contributes samples.
    offset : float, optional
        Known camera baseline (ADU).
    n_bins : int
        Number of equal-count intensity bins.
    flat_fraction : float
        Fraction of the flattest pixels kept per bin (smallest local gradient of the smoothed image).
    robust : bool
        Per-bin variance from the MAD instead of a clipped mean of squares: more resistant to
        structure leaking into the residual (dense thin filaments), but biased for the skewed noise
        of EM-gain cameras.
    max_samples : int
        Memory guard: larger stacks use evenly spaced planes, then a central crop.

    Returns
    -------
    NoiseModel

    Examples
    --------
    >>> from fluorecon.physics.camera import Camera
    >>> yy, xx = np.mgrid[:256, :256]
    >>> scene = 0.1 + 0.9 * np.exp(-((yy - 128) ** 2 + (xx - 128) ** 2) / (2 * 70.0**2))
    >>> x = Camera(photons=300, gain=1.5, offset=100, read_noise=2.0).simulate(scene, seed=0)
    >>> bool(abs(estimate_poisson_gaussian(x).gain - 1.5) < 0.15)
    True
    """

    x = to_numpy(image, "image")
    if x.dtype.kind not in "biuf":
        raise FluoreconError(f"image must be numeric, got dtype {x.dtype}", hint="pass a raw camera image")
    if x.ndim < 2 or x.size == 0:
        raise FluoreconError(f"image must be at least 2D, got shape {x.shape}", hint="pass a (Y, X) image")
    if min(x.shape[-2:]) < 16:
        raise FluoreconError(f"image {x.shape} is too small to estimate noise", hint="use at least 16×16 pixels")
    x = x.astype(np.float64)
    if not np.isfinite(x).all():
        raise FluoreconError("image contains NaN or Inf", hint="pass a raw camera image")
    if np.ptp(x) == 0:
        raise FluoreconError("image is constant: there is no noise to measure",
                             hint="pass a raw camera image (not a mask or a synthetic constant)")
    planes = x.reshape(-1, *x.shape[-2:])
    if planes.size > max_samples:  # memory guard: evenly spaced planes, then a central crop
        keep = max(1, int(max_samples // planes[0].size))
        planes = planes[np.linspace(0, len(planes) - 1, keep).round().astype(int)] if keep < len(planes) else planes
        if planes.size > max_samples:
            side = int(np.sqrt(max_samples))
            planes = _central_crop(planes, side)
    top = x.max()
    sat = top if np.mean(x >= top) > 1e-3 else None
    means, resids, grads, abscs = [], [], [], []
    for p in planes:
        r = ndimage.convolve1d(ndimage.convolve1d(p, _K1, axis=0, mode="reflect"), _K1, axis=1, mode="reflect")
        # Selection (bin and flatness) only from pixels outside the residual's 3×3 support, so that it
        # does not prefer pixels whose noise happens to be small; abscissa = the K²-weighted mean of
        # the support, whose expectation is exactly the mean the residual variance refers to.
        m = ndimage.convolve(p, _RING, mode="reflect")
        absc = ndimage.convolve(p, _K2, mode="reflect")
        g = np.hypot(ndimage.convolve(p, _GY, mode="reflect"), ndimage.convolve(p, _GY.T, mode="reflect"))
        interior = (slice(3, -3), slice(3, -3))
        mm, rr, gg, aa = m[interior], r[interior], g[interior], absc[interior]
        ok = np.ones(mm.shape, dtype=bool)
        if sat is not None:
            ok &= ndimage.maximum_filter(p, 7)[interior] < sat
        means.append(mm[ok])
        abscs.append(aa[ok])
        resids.append(rr[ok])
        grads.append(gg[ok])
    mean = np.concatenate(means)
    resid = np.concatenate(resids)
    grad = np.concatenate(grads)
    absc = np.concatenate(abscs)
    if mean.size < 1000:
        raise FluoreconError("too few usable pixels to estimate noise", hint="use a larger, unsaturated image")
    lo, hi = np.percentile(mean, [0.5, 99.5])
    sel = (mean >= lo) & (mean <= hi)
    mean, resid, grad, absc = mean[sel], resid[sel], grad[sel], absc[sel]
    order = np.argsort(mean, kind="stable")
    mb, vb, nb = [], [], []
    for c in np.array_split(order, n_bins):
        if c.size < 50:
            continue
        gc = grad[c]
        keep = c[gc <= np.quantile(gc, flat_fraction)]
        mb.append(float(np.mean(absc[keep])))
        vb.append(_robust_bin_variance(resid[keep], mad_only=robust))
        nb.append(keep.size)
    mb_a, vb_a, nb_a = np.array(mb), np.array(vb), np.array(nb)
    a, b, se, r2 = fit_variance_line(mb_a, vb_a, nb_a)
    dark = float(np.percentile(mean, 0.1))
    return _finish(a, b, se, r2, offset, dark, "single_image", mean.size, mb_a, vb_a, nb_a)
