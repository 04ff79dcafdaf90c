"""Classical denoisers, parameter-free: each is tuned on the image itself by J-invariant calibration.

Methods: non-local means (``nlm``), total variation (``tv``, Chambolle), wavelet shrinkage
(``wavelet``, BayesShrink/VisuShrink) from scikit-image, and ``bm3d`` (the ``bm3d`` package).

**Self-calibration (Noise2Self, Batson & Royer 2019).** A denoiser made J-invariant — the prediction
for a pixel never sees that pixel (it is replaced by the mean of its neighbours and the denoiser is run
on that input) — has a self-supervised loss ``‖g(x) − x‖²`` on the masked pixels that equals the
ground-truth loss ``‖g(x) − y‖²`` plus the (constant) noise variance, as long as the noise is
independent between pixels. Minimising it over each method's parameter grid therefore picks the
parameter a user with the clean image would have picked, from the noisy image alone; comparing the
minima across methods is how ``method="auto"`` chooses (among nlm, tv, wavelet; + bm3d with the VST). We use :func:`skimage.restoration.calibrate_denoiser` (one mask of stride 4, i.e. the loss
on 1/16 of the pixels in 2D) on a central crop (≤ 256² in 2D, ≤ 16×128×128 in 3D; 128² / 4×96×96 for
BM3D, whose cost dominates) so that calibrating NLM, TV and wavelets costs a few seconds on a 512²
image; the final denoiser (not the J-invariant version, which is noisier) then runs on the whole image
with the chosen parameters. Known bias: the blind-spot input (neighbour mean) is smoother than the
data, so the calibrated smoothing is somewhat weaker than the oracle's (TV weight ≈ 2× lower on
simulated membranes, ≈ 20 % more MSE than the oracle).

For BM3D, ``sigma_psd`` is calibrated the same way with its fast hard-thresholding stage only, then
the full two-stage BM3D at that sigma is scored too and the better of the two is kept (on low-count
data the Wiener stage built on a mis-specified Gaussian model is sometimes worse).

**Variance stabilisation.** With ``vst=True`` the image is first mapped by the generalised Anscombe
transform (:mod:`fluorecon.classical.vst`) with a Poisson–Gaussian noise model — the one given, or
:func:`fluorecon.physics.noise_model.estimate_poisson_gaussian` of the image — denoised, and mapped
back with the exact unbiased inverse (Mäkitalo & Foi). Losses are then measured in the stabilised
domain.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> clean = np.zeros((64, 64), np.float32); clean[16:48, 16:48] = 10
>>> noisy = clean + rng.normal(0, 2, clean.shape).astype(np.float32)
>>> out, info = denoise_classical(noisy, method="tv")
>>> bool(np.mean((out - clean) ** 2) < np.mean((noisy - clean) ** 2))
True
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from fluorecon.errors import FluoreconError, FluoreconWarning

__all__ = ["AUTO_CANDIDATES", "AUTO_CANDIDATES_VST", "METHODS", "denoise_classical", "method_grid", "apply_method",
           "self_supervised_loss", "holdout_mask", "holdout_replace", "holdout_loss"]

METHODS = ("nlm", "tv", "wavelet", "bm3d")
#: What ``method="auto"`` compares by default. BM3D is left out: it costs 10–30× more, and its loss can
#: only be afforded on a 128² crop, where on the FMD benchmark it won by < 1 % while losing ≈ 1 dB on the
#: whole image (see benchmarks/denoise_real.md). Pass ``candidates=METHODS`` to include it.
AUTO_CANDIDATES = ("nlm", "tv", "wavelet")
#: With the VST the noise is close to stationary unit-variance Gaussian, the crop's loss ranks methods
#: reliably, and BM3D is then the best method on the FMD benchmark: ``auto`` includes it.
AUTO_CANDIDATES_VST = METHODS
STRIDE = 4
CALIB_CROP_2D = 256
CALIB_CROP_3D = (16, 128, 128)
BM3D_CROP_2D = (128, 128)
BM3D_CROP_3D = (4, 96, 96)
MIN_SIZE = 8


# ----------------------------------------------------------------------------------- the denoisers


def _nlm(x: np.ndarray, h: float, sigma: float, patch_size: int = 5, patch_distance: int = 6) -> np.ndarray:
    from skimage.restoration import denoise_nl_means

    if x.ndim == 3:  # a 13³ search window is ~10× the cost of 13² per voxel: keep 3D affordable
        patch_size, patch_distance = 3, 3
    return denoise_nl_means(x, h=h, sigma=sigma, fast_mode=True, patch_size=patch_size,
                            patch_distance=patch_distance)


def _tv(x: np.ndarray, weight: float) -> np.ndarray:
    from skimage.restoration import denoise_tv_chambolle

    return denoise_tv_chambolle(x, weight=weight)


def _wavelet(x: np.ndarray, sigma: float, method: str = "BayesShrink", wavelet: str = "db2") -> np.ndarray:
    from skimage.restoration import denoise_wavelet

    return denoise_wavelet(x, sigma=sigma, method=method, mode="soft", wavelet=wavelet, rescale_sigma=True)


def _bm3d(x: np.ndarray, sigma_psd: float, stage: str = "all") -> np.ndarray:
    import bm3d

    st = bm3d.BM3DStages.HARD_THRESHOLDING if stage == "hard" else bm3d.BM3DStages.ALL_STAGES
    if x.ndim == 3:  # the bm3d package is 2D: run plane by plane
        return np.stack([np.asarray(bm3d.bm3d(p, sigma_psd=sigma_psd, stage_arg=st), dtype=x.dtype) for p in x])
    return np.asarray(bm3d.bm3d(x, sigma_psd=sigma_psd, stage_arg=st), dtype=x.dtype)


_FUNCS: dict[str, Callable[..., np.ndarray]] = {"nlm": _nlm, "tv": _tv, "wavelet": _wavelet, "bm3d": _bm3d}


def method_grid(method: str, sigma: float) -> dict[str, list]:
    """Parameter grid searched for ``method``, centred on the estimated noise level ``sigma``.

    Examples
    --------
    >>> sorted(method_grid("tv", 0.1))
    ['weight']
    """
    s = float(sigma)
    if method == "nlm":
        return {"h": [s * k for k in (0.5, 0.7, 0.9, 1.2, 1.6, 2.2)], "sigma": [s]}
    if method == "tv":
        return {"weight": [s * k for k in np.geomspace(0.2, 5.0, 9)]}
    if method == "wavelet":
        return {"sigma": [s * k for k in (0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)], "method": ["BayesShrink", "VisuShrink"]}
    if method == "bm3d":
        return {"sigma_psd": [s * k for k in (0.5, 0.75, 1.1, 1.6)], "stage": ["hard"]}
    raise FluoreconError(f"unknown classical denoiser {method!r}", hint=f"use one of {', '.join(METHODS)} or 'auto'")


def apply_method(x: np.ndarray, method: str, params: dict[str, Any]) -> np.ndarray:
    """Run one classical denoiser with explicit parameters (no calibration); float32 out.

    Examples
    --------
    >>> apply_method(np.zeros((16, 16), np.float32), "tv", {"weight": 0.1}).shape
    (16, 16)
    """
    if method not in _FUNCS:
        raise FluoreconError(f"unknown classical denoiser {method!r}", hint=f"use one of {', '.join(METHODS)}")
    try:
        return np.asarray(_FUNCS[method](x, **params), dtype=np.float32)
    except TypeError as e:
        raise FluoreconError(f"bad parameters {params!r} for {method}: {e}",
                             hint="see fluorecon.classical.denoise.method_grid for the parameter names") from None


def self_supervised_loss(x: np.ndarray, method: str, params: dict[str, Any], stride: int = STRIDE) -> float:
    """J-invariant (Noise2Self) loss of one parameter set: MSE to the noisy image on one masked grid.

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(size=(32, 32)).astype(np.float32)
    >>> self_supervised_loss(x, "tv", {"weight": 0.5}) > 0
    True
    """
    from skimage.restoration import calibrate_denoiser

    _, (_, losses) = calibrate_denoiser(x, _FUNCS[method], {k: [v] for k, v in params.items()}, stride=stride,
                                        approximate_loss=True, extra_output=True)
    return float(losses[0])


# ------------------------------------------------------------------------------------ calibration


def _central_crop(x: np.ndarray, size: Sequence[int]) -> np.ndarray:
    sl = tuple(slice(max((n - s) // 2, 0), max((n - s) // 2, 0) + min(s, n)) for n, s in zip(x.shape, size, strict=True))
    return x[sl]


def _calibrate(crop: np.ndarray, method: str, sigma: float) -> dict[str, Any]:
    from skimage.restoration import calibrate_denoiser

    t0 = time.perf_counter()
    grid = method_grid(method, sigma)
    _, (tested, losses) = calibrate_denoiser(crop, _FUNCS[method], grid, stride=STRIDE, approximate_loss=True,
                                             extra_output=True)
    i = int(np.argmin(losses))
    best = dict(tested[i])
    best_loss = float(losses[i])
    curve = [{"params": _jsonable(p), "loss": float(v)} for p, v in zip(tested, losses, strict=True)]
    if method == "bm3d":
        full = dict(best, stage="all")
        lf = self_supervised_loss(crop, "bm3d", full)
        curve.append({"params": _jsonable(full), "loss": lf})
        if lf < best_loss:
            best, best_loss = full, lf
    return {"params": best, "loss": best_loss, "grid": curve, "seconds": time.perf_counter() - t0}


def _jsonable(p: dict[str, Any]) -> dict[str, Any]:
    return {k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in p.items()}


def _estimate_sigma(x: np.ndarray) -> float:
    """Noise SD (wavelet MAD); 0 for a constant image (skimage returns NaN there, with RuntimeWarnings)."""
    from skimage.restoration import estimate_sigma

    if not np.ptp(x) > 0:
        return 0.0
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        s = float(estimate_sigma(x, average_sigmas=True))
    return s if np.isfinite(s) else 0.0


# ---------------------------------------------------------------------------------------- public


def denoise_classical(image: Any, method: str = "auto", vst: bool = False, noise_model: Any = None, *,
                      axes: str | None = None, params: dict[str, Any] | None = None,
                      candidates: Sequence[str] | None = None, inverse: str = "exact",
                      normalization: Sequence[float] | None = None) -> tuple[np.ndarray, dict]:
    """Denoise with a classical method tuned on the image itself (J-invariant self-calibration).

    Parameters
    ----------
    image : array-like
        2D ``YX``, 3D ``ZYX`` (denoised as a volume; BM3D plane by plane), or a stack with leading
        ``T``/``C`` axes (each plane/volume denoised on its own; parameters calibrated once per channel
        on the middle time point).
    method : {"auto", "nlm", "tv", "wavelet", "bm3d"}
        ``"auto"`` calibrates every method in ``candidates`` and keeps the one with the lowest
        self-supervised loss.
    vst : bool
        Apply the generalised Anscombe transform first (Poisson–Gaussian data) and its exact unbiased
        inverse after.
    noise_model : NoiseModel, dict or PoissonGaussian, optional
        Camera noise parameters for the VST (``gain``, ``offset``, ``read_noise[_adu]``, ADU). Default:
        estimated from the image by :func:`fluorecon.physics.noise_model.estimate_poisson_gaussian`.
    axes : str, optional
        Axes of ``image`` (default ``YX``/``ZYX`` from its dimensionality).
    params : dict, optional
        Skip calibration and use these parameters (in units of the internally normalised image:
        ``(x − p0.1)/(p99.9 − p0.1)``; needs an explicit ``method``).
    candidates : sequence of str
        Methods compared by ``"auto"``. Default: ``AUTO_CANDIDATES`` (nlm, tv, wavelet) without VST,
        ``AUTO_CANDIDATES_VST`` (those + bm3d) with it — see their comments for the evidence.
    inverse : {"exact", "closed_form", "algebraic"}
        VST inverse.
    normalization : (float, float), optional
        ``(low, scale)`` of the internal normalisation ``(x − low)/scale`` (in the VST domain with
        ``vst``), as reported in ``info["normalization"]``; default: the image's 0.1/99.9 percentiles.
        Giving it with ``params`` (and ``noise_model`` with ``vst``) reproduces a run exactly with no
        estimation at all, e.g. block by block on a large image.

    Returns
    -------
    (numpy.ndarray, dict)
        The denoised image (float32, same shape and intensity units as the input) and an info dict:
        ``method`` (chosen), ``params``, ``losses`` (best self-supervised loss of each calibrated
        method, in normalised units²), ``calibration`` (the full grid per method), ``sigma``
        (estimated noise std in input units), ``vst`` (noise model used or None), ``seconds``.

    Raises
    ------
    FluoreconError
        Unknown method, invalid image, image too small, or ``params`` with ``method="auto"``.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> noisy = rng.poisson(5.0, (64, 64)).astype(np.float32)
    >>> out, info = denoise_classical(noisy, method="auto", candidates=("tv", "wavelet"))
    >>> info["method"] in ("tv", "wavelet"), out.dtype
    (True, dtype('float32'))
    """
    from fluorecon.validation import as_image

    t0 = time.perf_counter()
    if method != "auto" and method not in METHODS:
        raise FluoreconError(f"unknown classical denoiser {method!r}", hint=f"use one of auto, {', '.join(METHODS)}")
    if candidates is None:
        candidates = AUTO_CANDIDATES_VST if vst else AUTO_CANDIDATES
    cands = list(candidates) if method == "auto" else [method]
    bad = [c for c in cands if c not in METHODS]
    if bad or not cands:
        raise FluoreconError(f"unknown candidate method(s) {bad or cands!r}", hint=f"choose among {', '.join(METHODS)}")
    if params is not None and method == "auto":
        raise FluoreconError("explicit params need an explicit method", hint="e.g. method='tv', params={'weight': 0.1}")
    if inverse not in ("exact", "closed_form", "algebraic"):
        raise FluoreconError(f"unknown VST inverse {inverse!r}", hint="use 'exact', 'closed_form' or 'algebraic'")
    arr, ax = as_image(image, axes)
    n_sp = 3 if "Z" in ax else 2
    spatial = arr.shape[-n_sp:]
    if min(spatial) < (2 if n_sp == 3 and spatial[0] < MIN_SIZE else MIN_SIZE) or min(spatial[-2:]) < MIN_SIZE:
        raise FluoreconError(f"image too small to denoise (spatial shape {spatial})",
                             hint=f"self-calibration needs at least {MIN_SIZE} pixels along Y and X")
    if "bm3d" in cands and min(spatial[-2:]) < 16:
        raise FluoreconError(f"image too small for BM3D (spatial shape {spatial})", hint="BM3D needs ≥ 16 pixels along Y and X; use tv or wavelet")

    nm = None
    if vst:
        from fluorecon.classical.vst import as_poisson_gaussian

        if noise_model is None:
            from fluorecon.physics.noise_model import estimate_poisson_gaussian

            noise_model = estimate_poisson_gaussian(arr)
        nm = as_poisson_gaussian(noise_model)

    lead_shape = arr.shape[: arr.ndim - n_sp]
    lead_axes = ax[: arr.ndim - n_sp]
    out = np.empty_like(arr)
    blocks = list(np.ndindex(*lead_shape)) if lead_shape else [()]
    cal_cache: dict[Any, dict] = {}
    info: dict[str, Any] = {}
    for idx in blocks:
        # Calibrate once per channel on the middle time point; reuse for the other planes.
        key = idx[lead_axes.index("C")] if "C" in lead_axes else None
        if key not in cal_cache:
            ref = list(idx)
            if "T" in lead_axes:
                ref[lead_axes.index("T")] = lead_shape[lead_axes.index("T")] // 2
            cal_cache[key] = _calibrate_block(arr[tuple(ref)], method, cands, nm, params, normalization)
        cal = cal_cache[key]
        out[idx] = _apply_block(arr[idx], cal, nm, inverse)
        info = cal
    if len(cal_cache) > 1:
        info = dict(next(iter(cal_cache.values())))
        info["per_channel"] = {str(k): {"method": v["method"], "params": v["params"], "losses": v["losses"]}
                               for k, v in cal_cache.items()}
    info = {k: v for k, v in info.items() if not k.startswith("_")}
    info["vst"] = None if nm is None else dict(nm.to_dict(), inverse=inverse)
    info["axes"] = ax
    info["seconds"] = time.perf_counter() - t0
    return out, info


def _forward(x: np.ndarray, nm) -> np.ndarray:
    if nm is None:
        return x.astype(np.float32, copy=False)
    from fluorecon.classical.vst import generalized_anscombe

    return generalized_anscombe(x, nm).astype(np.float32)


def _calibrate_block(x: np.ndarray, method: str, cands: list[str], nm, params: dict | None,
                     normalization: Sequence[float] | None) -> dict[str, Any]:
    d = _forward(x, nm)
    if normalization is not None:
        lo, scale = (float(v) for v in normalization)
        if not (np.isfinite(lo) and np.isfinite(scale) and scale > 0):
            raise FluoreconError(f"normalization must be (low, scale > 0), got {normalization!r}",
                                 hint="pass info['normalization'] from an earlier run, or leave it None")
    else:
        lo, hi = (float(v) for v in np.percentile(d, [0.1, 99.9]))
        scale = hi - lo if hi > lo else float(np.ptp(d)) or 1.0
    xn = ((d - lo) / scale).astype(np.float32)
    info: dict[str, Any] = {"_lo": lo, "_scale": scale, "normalization": [lo, scale]}
    if params is not None:  # reproduce a run: no estimation at all
        info.update(method=method, params=_jsonable(params), losses={}, calibration={}, calibrated=False,
                    sigma=None, sigma_normalised=None)
        return info
    sigma = _estimate_sigma(xn)
    info.update(sigma=sigma * scale, sigma_normalised=sigma)
    if sigma <= 0:
        warnings.warn("no noise detected (estimated sigma 0): image returned unchanged", FluoreconWarning, stacklevel=3)
        info.update(method="none", params={}, losses={}, calibration={}, calibrated=False)
        return info
    crop_size = (CALIB_CROP_2D,) * 2 if xn.ndim == 2 else CALIB_CROP_3D
    crop = _central_crop(xn, crop_size)
    cal = {}
    for m in cands:
        c = crop if m != "bm3d" else _central_crop(xn, BM3D_CROP_3D if xn.ndim == 3 else BM3D_CROP_2D)
        cal[m] = _calibrate(c, m, sigma)
        cal[m]["crop_shape"] = list(c.shape)
    losses = {m: v["loss"] for m, v in cal.items()}
    if "bm3d" in cal and len(cal) > 1:
        # BM3D is calibrated on a smaller crop (its cost): score the others' best parameters there too,
        # so that "auto" compares losses measured on the same pixels.
        c = _central_crop(xn, BM3D_CROP_3D if xn.ndim == 3 else BM3D_CROP_2D)
        losses = {m: (v["loss"] if m == "bm3d" else self_supervised_loss(c, m, v["params"])) for m, v in cal.items()}
        info["losses_crop_shape"] = list(c.shape)
    best = min(losses, key=losses.get)
    info.update(method=best, params=_jsonable(cal[best]["params"]), losses=losses,
                calibration={m: {"params": _jsonable(v["params"]), "loss": v["loss"], "grid": v["grid"],
                                 "seconds": v["seconds"], "crop_shape": v["crop_shape"]} for m, v in cal.items()},
                calibrated=True, loss_domain="vst" if nm is not None else "normalised intensity")
    return info


def _apply_block(x: np.ndarray, cal: dict[str, Any], nm, inverse: str) -> np.ndarray:
    if cal["method"] == "none":
        return x.astype(np.float32, copy=True)
    d = _forward(x, nm)
    xn = ((d - cal["_lo"]) / cal["_scale"]).astype(np.float32)
    yn = apply_method(xn, cal["method"], cal["params"])
    y = yn.astype(np.float64) * cal["_scale"] + cal["_lo"]
    if nm is not None:
        from fluorecon.classical.vst import inverse_generalized_anscombe

        y = inverse_generalized_anscombe(y, nm, method=inverse)
    return y.astype(np.float32)


# ------------------------------------------------------------------------- held-out pixel scoring
#: Neighbourhood half-width of the held-out pixels' replacement (5×5 without the centre, N2V2-style).
HOLDOUT_RADIUS = 2


def holdout_mask(shape: Sequence[int], stride: int | None = None, offset: Sequence[int] | None = None) -> np.ndarray:
    """Boolean mask of held-out pixels: one pixel per ``stride``×``stride`` cell of the last two axes.

    The same YX grid is used in every plane of a stack. Held-out pixels are ``stride`` ≥ 3 apart, so
    the 5×5 neighbourhood that replaces one (:func:`holdout_replace`) never contains another.

    Parameters
    ----------
    shape : sequence of int
        Image shape (the last two axes are Y and X).
    stride : int, optional
        Grid spacing; default 8 (1/64 of the pixels), 4 for images under 128 pixels along Y or X.
    offset : (int, int), optional
        Position of the held-out pixel inside each cell (default ``(stride // 2, stride // 2 - 1)``).

    Examples
    --------
    >>> m = holdout_mask((64, 64))
    >>> int(m.sum()), m.shape
    (256, (64, 64))
    """
    shape = tuple(int(v) for v in shape)
    if len(shape) < 2:
        raise FluoreconError(f"held-out pixels need an image with Y and X axes, got shape {shape}", hint="pass a 2D or larger image")
    if stride is None:
        stride = 8 if min(shape[-2:]) >= 128 else 4
    if stride < 3:
        raise FluoreconError(f"held-out stride must be ≥ 3, got {stride}", hint="e.g. stride=8")
    oy, ox = offset if offset is not None else (stride // 2, stride // 2 - 1)
    m2 = np.zeros(shape[-2:], dtype=bool)
    m2[oy % stride::stride, ox % stride::stride] = True
    return np.broadcast_to(m2, shape).copy()


def holdout_replace(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Replace the held-out pixels by the (lower) median of their 5×5 neighbourhood without the centre.

    The lower median of an even number of values commutes with any increasing pixelwise map, so
    replacing before or after a variance-stabilising transform gives the same pixels.

    Examples
    --------
    >>> x = np.arange(100, dtype=np.float32).reshape(10, 10)
    >>> m = holdout_mask(x.shape, stride=4)
    >>> xr = holdout_replace(x, m)
    >>> bool(np.array_equal(xr[~m], x[~m])), float(xr[m][0] - x[m][0])  # only held-out pixels change
    (True, -1.0)
    """
    x = np.asarray(image, dtype=np.float32)
    m = np.asarray(mask, dtype=bool)
    if m.shape != x.shape:
        raise FluoreconError(f"held-out mask shape {m.shape} differs from the image's {x.shape}",
                             hint="build it with holdout_mask(image.shape)")
    r = HOLDOUT_RADIUS
    pad = [(0, 0)] * (x.ndim - 2) + [(r, r), (r, r)]
    xp = np.pad(x, pad, mode="symmetric")
    idx = np.nonzero(m)
    lead, iy, ix = idx[:-2], idx[-2], idx[-1]
    vals = [xp[(*lead, iy + r + dy, ix + r + dx)] for dy in range(-r, r + 1) for dx in range(-r, r + 1) if dy or dx]
    v = np.stack(vals, axis=-1)
    k = (v.shape[-1] - 1) // 2
    out = x.copy()
    out[m] = np.partition(v, k, axis=-1)[..., k]
    return out


def holdout_loss(pred_heldout: np.ndarray, image: np.ndarray, mask: np.ndarray, scale: float | None = None) -> float:
    """Held-out-pixel loss: MSE between predictions made *without* the held-out pixels and those pixels.

    ``pred_heldout`` is the denoiser's output on :func:`holdout_replace` of the image (or just its
    values at the mask). Because those predictions never saw the noise at the held-out pixels, the
    expected loss is the true MSE there plus the noise variance, the same for every method: lower is
    better, and differences between methods are differences of true MSE (Noise2Self). Returned in
    units of ``scale`` (default: the image's 0.1–99.9 percentile range), so losses are comparable
    across images.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> truth = np.full((64, 64), 10.0, np.float32); x = truth + rng.normal(0, 1, truth.shape).astype(np.float32)
    >>> m = holdout_mask(x.shape)
    >>> good = holdout_loss(np.full(x.shape, 10.0), x, m, scale=1.0)   # ≈ σ² = 1
    >>> bad = holdout_loss(np.full(x.shape, 11.0), x, m, scale=1.0)    # ≈ 1 + 1
    >>> bool(0.7 < good < 1.3 and bad > good + 0.5)
    True
    """
    x = np.asarray(image, dtype=np.float64)
    m = np.asarray(mask, dtype=bool)
    p = np.asarray(pred_heldout, dtype=np.float64)
    pv = p[m] if p.shape == m.shape else p.ravel()
    if pv.size != int(m.sum()):
        raise FluoreconError(f"{pv.size} held-out predictions for {int(m.sum())} held-out pixels",
                             hint="pass the full prediction, or its values at the mask")
    if scale is None:
        lo, hi = np.percentile(x, [0.1, 99.9])
        scale = float(hi - lo) if hi > lo else 1.0
    return float(np.mean((pv - x[m]) ** 2) / scale ** 2)
