"""Distribution shift: is this input like the data the model was trained on?

At training time :func:`training_statistics` summarises the (normalised) training images:

* the intensity histogram after normalisation,
* the noise level (wavelet MAD estimate, scikit-image) per patch,
* the mean and covariance of the network's bottleneck features (channel means per patch),

and calibrates a threshold for each distance on **held-out** training patches (the 99th percentile of
the held-out patches' distances to the statistics of the others), so that an in-distribution patch
crosses a threshold only about 1 % of the time. :func:`shift_score` cuts a new input into patches of the
same size, computes the same three distances and warns — with the number and its threshold — when
the median patch is beyond a threshold.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from fluorecon.errors import FluoreconError
from fluorecon.trust._common import as_float_array

__all__ = ["bottleneck_features", "find_bottleneck", "js_divergence", "shift_score", "training_statistics"]

HIST_RANGE = (-0.5, 1.5)
QUANTILE = 0.99


def js_divergence(p, q) -> float:
    """Jensen–Shannon divergence (base 2, in [0, 1]) between two histograms.

    Examples
    --------
    >>> js_divergence([1, 0], [0, 1])
    1.0
    >>> js_divergence([1, 2, 3], [1, 2, 3])
    0.0
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    p = p / p.sum()
    q = q / q.sum()
    m = 0.5 * (p + q)

    def kl(a, b):
        nz = a > 0
        return float(np.sum(a[nz] * np.log2(a[nz] / b[nz])))

    return max(0.0, 0.5 * kl(p, m) + 0.5 * kl(q, m))


def _hist(a: np.ndarray, bins: int) -> np.ndarray:
    edges = np.linspace(*HIST_RANGE, bins + 1)
    clipped = np.clip(a.ravel(), HIST_RANGE[0], HIST_RANGE[1] - 1e-9)  # out-of-range mass in end bins
    return np.histogram(clipped, edges)[0].astype(np.float64)


def _noise(a: np.ndarray) -> float:
    from skimage.restoration import estimate_sigma

    return float(estimate_sigma(a.astype(np.float64), channel_axis=None))


def _patches(images: Sequence[np.ndarray], size: int, max_patches: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Random patches of ``size`` along every spatial axis (whole images if smaller)."""
    out: list[np.ndarray] = []
    per = max(1, int(np.ceil(max_patches / max(len(images), 1))))
    for im in images:
        shp = im.shape
        if all(s <= size for s in shp):
            out.append(im)
            continue
        for _ in range(per):
            starts = [int(rng.integers(0, max(s - size, 0) + 1)) for s in shp]
            out.append(im[tuple(slice(st, st + min(size, s)) for st, s in zip(starts, shp, strict=True))])
    rng.shuffle(out)
    return out[:max_patches]


def _tiles(image: np.ndarray, size: int) -> list[np.ndarray]:
    """Non-overlapping tiles of ``size`` (the image itself when smaller)."""
    shp = image.shape
    if all(s <= size for s in shp):
        return [image]
    starts = [list(range(0, s - size + 1, size)) if s > size else [0] for s in shp]
    out = []
    for idx in np.ndindex(*[len(st) for st in starts]):
        off = [st[i] for st, i in zip(starts, idx, strict=True)]
        out.append(image[tuple(slice(o, o + size) for o in off)])
    return out


def find_bottleneck(model: Any, example: np.ndarray) -> str | None:
    """Name of the module whose output is the network's bottleneck (lowest spatial resolution).

    A module named ``bottleneck`` or ``bottom`` (fluorecon's UNet) wins; otherwise the last module executed at the smallest spatial size.
    """
    import torch

    names = dict(model.named_modules())
    for preferred in ("bottleneck", "bottom"):  # fluorecon's UNet calls it ``bottom``
        if preferred in names:
            return preferred
    seen: list[tuple[str, int]] = []
    hooks = []
    for name, mod in model.named_modules():
        if not name:
            continue

        def hook(m, i, o, name=name):
            if isinstance(o, torch.Tensor) and o.ndim >= 3:
                seen.append((name, int(np.prod(o.shape[2:]))))

        hooks.append(mod.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(_to_tensor(model, example))
    finally:
        for h in hooks:
            h.remove()
    if not seen:
        return None
    smallest = min(s for _, s in seen)
    return [n for n, s in seen if s == smallest][-1]


def _to_tensor(model: Any, a: np.ndarray):
    import torch

    p = next(model.parameters(), None)
    return torch.as_tensor(np.ascontiguousarray(a), dtype=p.dtype if p is not None else torch.float32)[None, None]


def bottleneck_features(model: Any, patches: Sequence[np.ndarray], layer: str) -> np.ndarray:
    """Channel means of ``layer``'s output for each (normalised) patch: array ``(n_patches, channels)``."""
    import torch

    mod = dict(model.named_modules()).get(layer)
    if mod is None:
        raise FluoreconError(f"the model has no layer {layer!r}", hint="recompute the training statistics")
    feats: list[np.ndarray] = []
    box: dict = {}
    h = mod.register_forward_hook(lambda m, i, o: box.__setitem__("o", o))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for p in patches:
                div = 16
                crop = tuple(slice(0, max(div, s - s % div)) for s in p.shape)
                q = p[crop]
                if any(s < div for s in q.shape):
                    q = np.pad(q, [(0, max(0, div - s)) for s in q.shape], mode="reflect")
                model(_to_tensor(model, q))
                o = box["o"]
                feats.append(o.mean(dim=tuple(range(2, o.ndim)))[0].double().cpu().numpy())
    finally:
        h.remove()
        model.train(was_training)
    return np.stack(feats)


def _mahalanobis(f: np.ndarray, mean: np.ndarray, prec: np.ndarray) -> np.ndarray:
    d = f - mean
    return np.sqrt(np.maximum(np.einsum("ij,jk,ik->i", d, prec, d), 0))


def _shrunk_precision(f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and precision of features with shrinkage toward the diagonal (few patches, many channels)."""
    mean = f.mean(0)
    cov = np.cov(f, rowvar=False) if f.shape[0] > 1 else np.eye(f.shape[1])
    cov = np.atleast_2d(cov)
    n, c = f.shape
    lam = min(1.0, c / max(n, 1))  # more shrinkage when channels ≳ patches
    target = np.diag(np.diag(cov))
    cov = (1 - lam) * cov + lam * target + 1e-8 * np.eye(c) * max(float(np.trace(cov)) / c, 1e-12)
    return mean, np.linalg.pinv(cov)


def training_statistics(model: Any, images: Sequence[np.ndarray] | np.ndarray, normalizer: Any = None, *,
                        patch_size: int = 64, max_patches: int = 512, bins: int = 64, holdout: float = 0.25,
                        seed: int = 0, calibration_images: Sequence[np.ndarray] | np.ndarray | None = None,
                        false_alarm: float = 0.05) -> dict:
    """Summarise the training inputs so that later inputs can be compared with them (JSON-able dict).

    Parameters
    ----------
    model : torch.nn.Module or None
        The trained network (for bottleneck features); ``None`` skips the feature statistics.
    images : sequence of arrays or array
        Training **inputs** (spatial arrays; a stacked array is split along its first axis when it has
        more dimensions than the patches).
    normalizer : object with ``normalize``, optional
        The bundle's normaliser; ``None`` means the images are normalised already.
    patch_size, max_patches : int
        Patches used for the statistics and the held-out calibration.
    bins : int
        Histogram bins on [-0.5, 1.5] (normalised units; out-of-range values go to the end bins).
    holdout : float
        Fraction of patches held out to calibrate the thresholds.
    calibration_images : sequence of arrays, optional
        Images **never used for training** (e.g. the validation split; same normalisation as ``images``).
        Their patches calibrate the per-patch thresholds, and the **image-level** decision (:func:`shift_score`
        warns when any statistic's median over an image's tiles exceeds its threshold) is calibrated on them as
        one statistic: each image's largest statistic relative to its median over the calibration images, with
        a split-conformal threshold — an in-distribution image is flagged with probability ≤ ``false_alarm``
        (exchangeable images; needs ≥ ``1/false_alarm − 1`` calibration images, fewer extrapolate a
        log-normal tail).
    false_alarm : float
        Image-level false-alarm rate the ``calibration_images`` set the thresholds for.

    Returns
    -------
    dict
        ``histogram``, ``noise``, ``features`` and ``thresholds`` (99th percentiles on held-out patches).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> st = training_statistics(None, [rng.random((64, 64)) for _ in range(8)], patch_size=32)
    >>> sorted(st["thresholds"])
    ['histogram_js', 'noise_log_ratio']
    """
    rng = np.random.default_rng(seed)
    if isinstance(images, np.ndarray) and images.ndim >= 3 and (model is None or _model_dim(model) < images.ndim):
        images = list(images)
    ims = [as_float_array(im, "training image") for im in images]
    if not ims:
        raise FluoreconError("no training images given", hint="pass the training inputs")
    norm = (lambda a: a) if normalizer is None else (lambda a: np.asarray(normalizer.normalize(a.astype(np.float32)),
                                                                          dtype=np.float64))
    patches = [norm(p) for p in _patches(ims, patch_size, max_patches, rng)]
    if len(patches) < 4:
        raise FluoreconError(f"only {len(patches)} training patches: too few to calibrate shift thresholds",
                             hint="pass more training images or a smaller patch_size")
    n_hold = max(2, int(round(holdout * len(patches))))
    fit, held = patches[n_hold:], patches[:n_hold]
    hist = sum(_hist(p, bins) for p in fit)
    noise_fit = np.array([_noise(p) for p in fit])
    noise_med = float(np.median(noise_fit))
    js_held = [js_divergence(_hist(p, bins) + 1e-12, hist + 1e-12) for p in held]
    lr_held = [abs(np.log(max(_noise(p), 1e-12) / max(noise_med, 1e-12))) for p in held]
    stats: dict = {
        "version": 1, "patch_size": int(patch_size), "n_patches": len(patches), "hist_range": list(HIST_RANGE),
        "histogram": (hist / hist.sum()).tolist(),
        "noise": {"median": noise_med, "p01": float(np.quantile(noise_fit, 0.01)),
                  "p99": float(np.quantile(noise_fit, 0.99))},
        "thresholds": {"histogram_js": float(np.quantile(js_held, QUANTILE)),
                       "noise_log_ratio": float(max(np.quantile(lr_held, QUANTILE), np.log(1.25)))},
        "held_out": {"histogram_js_median": float(np.median(js_held)), "noise_log_ratio_median": float(np.median(lr_held))},
    }
    if model is not None:
        layer = find_bottleneck(model, _crop16(fit[0]))
        if layer is not None:
            f_fit = bottleneck_features(model, fit, layer)
            f_held = bottleneck_features(model, held, layer)
            mean, prec = _shrunk_precision(f_fit)
            d_held = _mahalanobis(f_held, mean, prec)
            d_fit = _mahalanobis(f_fit, mean, prec)
            stats["features"] = {"layer": layer, "mean": mean.tolist(), "precision": prec.tolist()}
            stats["thresholds"]["feature_mahalanobis"] = float(np.quantile(d_held, QUANTILE))
            stats["held_out"]["feature_mahalanobis_median"] = float(np.median(d_held))
            stats["held_out"]["feature_mahalanobis_fit_median"] = float(np.median(d_fit))
    if calibration_images is not None:
        if not 0 < false_alarm < 1:
            raise FluoreconError(f"false_alarm must be in (0, 1), got {false_alarm}", hint="e.g. 0.05")
        _calibrate_on_images(stats, model, calibration_images, norm, bins, false_alarm)
    return stats


def _calibrate_on_images(stats: dict, model: Any, images: Any, norm: Any, bins: int, false_alarm: float = 0.05
                         ) -> None:
    """Per-patch and image-level thresholds from images that were never used for training."""
    if isinstance(images, np.ndarray) and images.ndim >= 3 and (model is None or _model_dim(model) < images.ndim):
        images = list(images)
    ims = [norm(as_float_array(im, "calibration image")) for im in images]
    size = int(stats["patch_size"])
    per_image = [_tile_distances(t, stats, model) for t in (_tiles(im, size) for im in ims) if t]
    if not per_image:
        raise FluoreconError(f"the calibration images are smaller than the patch size {size}",
                             hint="pass larger held-out images or a smaller patch_size")
    for k in per_image[0]:
        pooled = np.concatenate([d[k] for d in per_image])
        stats["thresholds"][k] = float(max(np.quantile(pooled, QUANTILE), np.log(1.25))) if k == "noise_log_ratio" \
            else float(np.quantile(pooled, QUANTILE))
    medians = {k: np.array([float(np.median(d[k])) for d in per_image]) for k in per_image[0]}
    # one image-level statistic: the largest of the statistics, each relative to its typical unseen value; a
    # threshold per statistic at 1 % each (three statistics, a dozen images) flagged 3 of 10 unseen images
    scale = {k: max(float(np.median(v)), 1e-12) for k, v in medians.items()}
    combined = np.max([v / scale[k] for k, v in medians.items()], axis=0)
    n = combined.size
    rank = int(math.ceil((n + 1) * (1.0 - false_alarm)))
    q = float(np.sort(combined)[rank - 1]) if rank <= n else _image_threshold(combined)
    stats["image_thresholds"] = {k: max(q * scale[k], np.log(1.1) if k == "noise_log_ratio" else 0.0)
                                 for k in medians}
    stats["calibration"] = {"source": "images never used for training", "n_images": len(per_image),
                            "n_patches": int(sum(len(next(iter(d.values()))) for d in per_image)),
                            "false_alarm": float(false_alarm), "combined_threshold": q,
                            "image_level": "split-conformal threshold on the largest statistic relative to its "
                                           "median over the held-out images" + (
                                               "" if rank <= n else f" (only {n} images: log-normal tail of the "
                                               "held-out values, as fewer than 1/false_alarm − 1 cannot give it)")}


def _image_threshold(values: np.ndarray, floor: float = 0.0) -> float:
    """Threshold of an image-level statistic from a few held-out images: their largest value, or the 99th
    percentile of a log-normal fitted to them when that is larger (a handful of images cannot pin down a 99 %
    quantile; the fitted tail keeps the false-alarm rate near 1 % per statistic)."""
    v = np.maximum(np.asarray(values, np.float64), 1e-12)
    thr = float(v.max())
    if v.size >= 3:
        lv = np.log(v)
        thr = max(thr, float(np.exp(lv.mean() + 2.326 * lv.std(ddof=1))))
    return max(thr, floor)


def _tile_distances(tiles: list[np.ndarray], stats: dict, model: Any) -> dict[str, np.ndarray]:
    """Per-tile distances to the training statistics (normalised tiles)."""
    bins = len(stats["histogram"])
    hist = np.asarray(stats["histogram"], dtype=np.float64)
    per: dict[str, np.ndarray] = {
        "histogram_js": np.array([js_divergence(_hist(t, bins) + 1e-12, hist + 1e-12) for t in tiles]),
        "noise_log_ratio": np.array([abs(np.log(max(_noise(t), 1e-12) / max(stats["noise"]["median"], 1e-12)))
                                     for t in tiles]),
    }
    feat = stats.get("features")
    if feat is not None and model is not None:
        try:
            f = bottleneck_features(model, tiles, feat["layer"])
            per["feature_mahalanobis"] = _mahalanobis(f, np.asarray(feat["mean"]), np.asarray(feat["precision"]))
        except FluoreconError:
            pass
    return per


def _model_dim(model: Any) -> int:
    return int(getattr(model, "dim", 2))


def _crop16(a: np.ndarray) -> np.ndarray:
    crop = tuple(slice(0, max(16, s - s % 16)) for s in a.shape)
    q = a[crop]
    if any(s < 16 for s in q.shape):
        q = np.pad(q, [(0, max(0, 16 - s)) for s in q.shape], mode="reflect")
    return q


_LABELS = {
    "histogram_js": ("the intensity distribution differs from the training data", "histogram divergence"),
    "noise_log_ratio": ("the noise level differs from the training data", "noise ratio"),
    "feature_mahalanobis": ("the network sees features unlike its training data", "feature distance"),
}


def shift_score(image, stats: dict, *, model: Any = None, normalizer: Any = None) -> dict:
    """Distances of an input from the training statistics, with thresholds and plain-language warnings.

    Parameters
    ----------
    image : array
        One spatial image (un-normalised, as given to the model).
    stats : dict
        Output of :func:`training_statistics` (``Bundle.training_stats``).
    model, normalizer
        The bundle's model (for bottleneck features) and normaliser.

    Returns
    -------
    dict
        ``histogram_js``, ``noise_ratio``, ``feature_mahalanobis`` (median over patches), their
        ``thresholds``, ``ratios`` (value / threshold; > 1 means shifted), ``worst_ratio``,
        ``fraction_shifted`` (patches beyond any threshold) and ``warnings``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> st = training_statistics(None, [rng.random((64, 64)) for _ in range(8)], patch_size=32)
    >>> shift_score(rng.random((64, 64)), st)["worst_ratio"] < 1.5
    True
    >>> shift_score(3 * rng.random((64, 64)), st)["worst_ratio"] > 1
    True
    """
    if isinstance(stats, dict) and isinstance(stats.get("shift"), dict):
        stats = stats["shift"]  # trust-layer statistics nested under "shift"
    if isinstance(stats, dict) and isinstance(stats.get("histogram"), dict) and "thresholds" not in stats:
        return _shift_score_uncalibrated(image, stats, normalizer)
    if not isinstance(stats, dict) or "histogram" not in stats or "thresholds" not in stats:
        raise FluoreconError("the training statistics are missing or incomplete",
                             hint="retrain, or compute them with fluorecon.trust.shift.training_statistics")
    x = as_float_array(image, "image")
    xn = x if normalizer is None else np.asarray(normalizer.normalize(x.astype(np.float32)), dtype=np.float64)
    size = int(stats.get("patch_size", 64))
    tiles = _tiles(xn, size)
    bins = len(stats["histogram"])
    hist = np.asarray(stats["histogram"], dtype=np.float64)
    th = stats["thresholds"]
    per: dict[str, np.ndarray] = {
        "histogram_js": np.array([js_divergence(_hist(t, bins) + 1e-12, hist + 1e-12) for t in tiles]),
        "noise_log_ratio": np.array([abs(np.log(max(_noise(t), 1e-12) / max(stats["noise"]["median"], 1e-12)))
                                     for t in tiles]),
    }
    noise_ratio = float(np.median([_noise(t) for t in tiles]) / max(stats["noise"]["median"], 1e-12))
    feat = stats.get("features")
    if feat is not None and model is not None and "feature_mahalanobis" in th:
        try:
            f = bottleneck_features(model, tiles, feat["layer"])
            per["feature_mahalanobis"] = _mahalanobis(f, np.asarray(feat["mean"]), np.asarray(feat["precision"]))
        except FluoreconError:
            pass
    values = {k: float(np.median(v)) for k, v in per.items()}
    # the decision is on the image-level statistic: its own threshold when calibrated on unseen images
    ith = stats.get("image_thresholds") or {}
    used = {k: float(ith.get(k, th[k])) for k in values}
    ratios = {k: values[k] / max(used[k], 1e-12) for k in values}
    beyond = np.zeros(len(tiles), bool)
    for k, v in per.items():
        beyond |= v > th[k]
    warnings = []
    for k, r in ratios.items():
        if r > 1:
            what, name = _LABELS[k]
            shown = f"{name} {noise_ratio:.2f}× the training median" if k == "noise_log_ratio" else \
                f"{name} {values[k]:.3g}, " + (f"images never used for training stay below {used[k]:.3g}"
                                               if k in ith else f"training data stay below {th[k]:.3g} in 99% of patches")
            warnings.append(f"input looks unlike the training data: {what} ({shown}); the result may be unreliable")
    return {"histogram_js": values["histogram_js"], "noise_ratio": noise_ratio,
            "feature_mahalanobis": values.get("feature_mahalanobis"), "values": values,
            "thresholds": {k: used[k] for k in values}, "image_level": bool(ith), "ratios": ratios,
            "worst_ratio": float(max(ratios.values())), "fraction_shifted": float(beyond.mean()),
            "n_patches": len(tiles), "warnings": warnings}


# Fixed thresholds for statistics that were stored without held-out calibration (the engine's own
# ``_training_stats``: histogram with edges/counts and a noise sigma). Deliberately loose.
UNCALIBRATED_THRESHOLDS = {"histogram_js": 0.1, "noise_log_ratio": float(np.log(1.5))}


def _noise_second_difference(a: np.ndarray) -> float:
    """Robust noise sigma from the MAD of second differences along the last axis (the engine's estimator)."""
    d = a[..., 2:] - 2 * a[..., 1:-1] + a[..., :-2]
    return float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(6))


def _shift_score_uncalibrated(image, stats: dict, normalizer: Any) -> dict:
    """Shift score against histogram/noise statistics stored without calibrated thresholds."""
    x = as_float_array(image, "image")
    xn = x if normalizer is None else np.asarray(normalizer.normalize(x.astype(np.float32)), dtype=np.float64)
    edges = np.asarray(stats["histogram"]["edges"], dtype=np.float64)
    counts = np.asarray(stats["histogram"]["counts"], dtype=np.float64)
    h = np.histogram(np.clip(xn.ravel(), edges[0], edges[-1]), edges)[0].astype(np.float64)
    values = {"histogram_js": js_divergence(h + 1e-12, counts + 1e-12)}
    noise_ratio = None
    if stats.get("noise_sigma"):
        noise_ratio = _noise_second_difference(xn) / max(float(stats["noise_sigma"]), 1e-12)
        values["noise_log_ratio"] = abs(float(np.log(max(noise_ratio, 1e-12))))
    th = {k: UNCALIBRATED_THRESHOLDS[k] for k in values}
    ratios = {k: values[k] / th[k] for k in values}
    warnings = []
    for k, r in ratios.items():
        if r > 1:
            what, name = _LABELS[k]
            shown = f"{name} {noise_ratio:.2f}× the training level" if k == "noise_log_ratio" else \
                f"{name} {values[k]:.3g}, above the fixed limit {th[k]:.3g}"
            warnings.append(f"input looks unlike the training data: {what} ({shown}); the result may be unreliable")
    return {"histogram_js": values["histogram_js"], "noise_ratio": noise_ratio, "feature_mahalanobis": None,
            "values": values, "thresholds": th, "ratios": ratios, "worst_ratio": float(max(ratios.values())),
            "fraction_shifted": None, "n_patches": 1, "warnings": warnings,
            "note": "training statistics without calibrated thresholds: fixed limits used; store "
                    "fluorecon.trust.shift.training_statistics(...) in the bundle for calibrated ones"}
