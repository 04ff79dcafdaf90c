"""Shadow detection and classical filling of occluded regions (light-sheet shadows).

Three pieces, each plane by plane (the leading axes of a stack are planes):

* :func:`estimate_shadow_mask` — shadows are stripes that start behind an absorber and run to the far
  side along the illumination axis: each row's log ratio to its neighbouring rows is split where a
  brighter start best separates from a darker end (a change-point statistic that averages the
  structures of the whole row out); significant drops are shadows.
* :func:`correct_attenuation` + biharmonic fill (:func:`inpaint_classical`) — where the light is only
  partly blocked, the recording still holds the structure: divide by the transmission (the forward model
  ``x = b + M (y − b)`` inverted; noise grows as 1/√M). Where too little light is left
  (``M < min_transmission``), fill from the surroundings with scikit-image's biharmonic inpainting.
* :func:`inpaint_biharmonic` — the plain peer: every shadowed pixel (``M < threshold``) treated as
  missing and filled by :func:`skimage.restoration.inpaint_biharmonic`.

Examples
--------
>>> from fluorecon.physics.occlusion import simulate_shadows
>>> sim = simulate_shadows((96, 96), n_absorbers=3, seed=0)
>>> m = estimate_shadow_mask(sim["recording"], offset=sim["offset"])
>>> m.shape, bool(0 < m.min() and m.max() == 1)
((96, 96), True)
>>> out = inpaint_classical(sim["recording"], sim["mask"], offset=sim["offset"])
>>> shadow = sim["mask"] < 0.9
>>> err = lambda a: float(np.sqrt(np.mean((a - sim["truth"])[shadow] ** 2)))
>>> bool(err(out) < err(sim["recording"]))
True
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage
from skimage.restoration import inpaint_biharmonic as _sk_biharmonic

from fluorecon.errors import FluoreconError
from fluorecon.physics.occlusion import check_mask

__all__ = ["correct_attenuation", "estimate_offset", "estimate_shadow_mask", "inpaint_biharmonic",
           "inpaint_classical", "occluded_mask"]


def _image(image: Any, name: str = "image") -> np.ndarray:
    x = np.asarray(image, np.float32)
    if x.ndim < 2:
        raise FluoreconError(f"{name} must be an image (Y, X) or a stack of planes, got shape {x.shape}")
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise FluoreconError(f"{name} is empty or contains NaN/Inf", hint="replace them first (np.nan_to_num)")
    return x


def _check_axis(axis: int) -> int:
    if axis not in (-1, -2):
        raise FluoreconError(f"illumination axis must be -1 (X) or -2 (Y), got {axis}",
                             hint="shadows run along the light sheet's propagation direction: x or y")
    return axis


def estimate_offset(image: Any) -> float:
    """Camera offset guess: the 0.1th percentile of the lightly smoothed image (the darkest level present).

    Deep shadows, when there are some, hold almost no light, so this is close to the offset; without them
    it includes the dimmest background (the correction then treats that background as offset).

    Examples
    --------
    >>> estimate_offset(np.full((8, 8), 100.0))
    100.0
    """
    x = _image(image)
    s = ndimage.gaussian_filter(x.reshape(-1, *x.shape[-2:]), (0, 1.5, 1.5), mode="nearest")
    return float(np.percentile(s, 0.1))


def occluded_mask(mask: Any) -> np.ndarray:
    """A binary "occluded" mask (non-zero = occluded, scikit-image's convention) as a transmission map.

    Examples
    --------
    >>> occluded_mask(np.array([[0, 255]])).tolist()
    [[1.0, 0.0]]
    """
    m = np.asarray(mask)
    if not np.all(np.isfinite(m.astype(np.float64))):
        raise FluoreconError("mask contains NaN or Inf")
    return (m == 0).astype(np.float32)


def _row_shadows(r: np.ndarray, threshold: float, z: float, ln: int, opening: int) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``r`` (log ratio to the neighbouring rows, light entering at column 0): the most
    likely shadow onset (CUSUM split), its strength statistic, and the log attenuation behind it."""
    n_rows, n = r.shape
    c = np.cumsum(r, 1, dtype=np.float64)
    k = np.arange(1, n)
    left = c[:, :-1] / k
    right = (c[:, -1:] - c[:, :-1]) / (n - k)
    stat = np.sqrt(k * (n - k) / n) * (left - right)
    j = np.argmax(stat, 1)
    rows = np.arange(n_rows)
    drop = left[rows, j] - right[rows, j]
    sd = 1.4826 * np.median(np.abs(r - np.median(r, 1, keepdims=True)), 1)
    best = stat[rows, j] / np.maximum(sd, 1e-6)
    sig = (drop > threshold) & (best > z)
    inside = sig[:, None] & (np.arange(n)[None, :] > j[:, None])
    if opening > 1:  # shadows are wider than a few pixels; thinner detections are structure
        inside = ndimage.binary_opening(inside, structure=np.ones((opening, 1), bool))
    med = ndimage.median_filter(r, size=(1, ln), mode="nearest")
    att = np.where(inside, np.minimum(med, 0.0), 0.0)
    return np.where(att < -threshold, att, 0.0), np.where(sig, best, 0.0)


def estimate_shadow_mask(image: Any, *, axis: int = -1, direction: int = 1, offset: float | None = None,
                         shadow_width: float = 16.0, threshold: float = 0.1, z: float = 4.0,
                         length: int | None = None, smooth: float = 1.0) -> np.ndarray:
    """Estimate the transmission of the light sheet (shadow mask) from the image itself.

    Shadows start behind an absorber and run to the far side of the image along the illumination
    axis. Per plane: ``r`` = log of the lightly smoothed image minus its median across the axis
    (``2 × shadow_width`` wide: the unshadowed level of the neighbouring rows); per row, the split
    that best separates a brighter start from a darker end (a CUSUM statistic, in units of the row's
    robust SD) is the shadow onset when the drop exceeds ``threshold`` and the statistic ``z``;
    behind it, the attenuation follows a running median of ``r`` along the axis (shadows fade).

    Parameters
    ----------
    image : array (..., Y, X)
        Recording in camera units; leading axes are independent planes.
    axis : {-1, -2}
        Illumination (propagation) axis: X or Y.
    direction : {1, -1, 0}
        1: light enters at index 0 of the axis; -1: at the far end; 0: unknown or both sides (each row
        takes the more significant of the two).
    offset : float, optional
        Camera offset (ADU); :func:`estimate_offset` when None.
    shadow_width : float
        Widest shadow expected (pixels across the axis).
    threshold : float
        Smallest log attenuation reported (0.1 ≈ 10 % dimmer).
    z : float
        Significance of an onset, in robust SDs of the row.
    length : int, optional
        Running-median window along the axis behind the onset (default: a quarter of the image, ≥ 15).
    smooth : float
        Gaussian σ (pixels) applied before taking the log (noise).

    Returns
    -------
    np.ndarray
        Transmission in (0, 1], the image's shape, float32.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.poisson(np.full((48, 64), 200.0)).astype(float); x[20:28, 24:] *= 0.25
    >>> m = estimate_shadow_mask(x, offset=0.0, shadow_width=12)
    >>> round(float(m[24, 50]), 1), float(m[5, 50]), float(m[24, 10])
    (0.3, 1.0, 1.0)
    """
    x = _image(image)
    axis = _check_axis(axis)
    if direction not in (1, -1, 0):
        raise FluoreconError(f"direction must be 1, -1 or 0 (unknown/both), got {direction}")
    if shadow_width <= 0 or threshold < 0 or smooth < 0 or z < 0:
        raise FluoreconError("shadow_width must be > 0; threshold, z and smooth ≥ 0")
    off = estimate_offset(x) if offset is None else float(offset)
    planes = x.reshape(-1, *x.shape[-2:]) - off
    out = np.empty_like(planes)
    for k, p in enumerate(planes):
        q = p if axis == -1 else p.T
        n_along = q.shape[1]
        ln = (int(length) if length else max(15, n_along // 4)) | 1
        s = ndimage.gaussian_filter(q, smooth, mode="nearest") if smooth > 0 else q
        floor = max(1e-3 * float(np.median(np.abs(s))), 1e-6)
        log = np.log(np.maximum(s, 0) + floor)
        r = log - ndimage.median_filter(log, size=(int(2 * shadow_width) | 1, 1), mode="nearest")
        r = ndimage.gaussian_filter1d(r, 1.0, axis=0, mode="nearest")
        opening = max(int(shadow_width) // 4, 1)
        fwd, s_f = _row_shadows(r, threshold, z, ln, opening) if direction >= 0 else (None, None)
        if direction <= 0:
            bwd, s_b = _row_shadows(r[:, ::-1], threshold, z, ln, opening)
            bwd = bwd[:, ::-1]
            att = bwd if fwd is None else np.where((s_b > s_f)[:, None], bwd, fwd)
        else:
            att = fwd
        m = np.exp(att)
        out[k] = m if axis == -1 else m.T
    return np.clip(out, 0.0, 1.0).reshape(x.shape).astype(np.float32)


def correct_attenuation(image: Any, mask: Any, *, offset: float = 0.0, min_transmission: float = 0.25) -> np.ndarray:
    """Invert the forward model where enough light is left: ``b + (x − b)/M`` for ``M ≥ min_transmission``.

    Pixels below ``min_transmission`` are returned unchanged (fill them with an inpainting method).

    Examples
    --------
    >>> correct_attenuation(np.array([[150.0, 101.0]]), np.array([[0.5, 0.01]]), offset=100.0).tolist()
    [[200.0, 101.0]]
    """
    x = _image(image)
    m = check_mask(mask, x.shape)
    if not 0 < min_transmission <= 1:
        raise FluoreconError(f"min_transmission must be in (0, 1], got {min_transmission}")
    ok = m >= min_transmission
    out = x.copy()
    out[ok] = offset + (x[ok] - offset) / m[ok]
    return out


def _fill_planes(img: np.ndarray, missing: np.ndarray) -> np.ndarray:
    flat = img.reshape(-1, *img.shape[-2:])
    miss = missing.reshape(-1, *img.shape[-2:])
    out = flat.copy()
    for k in range(len(flat)):
        if not miss[k].any():
            continue
        if miss[k].all():
            raise FluoreconError("a whole plane is occluded: there is nothing to inpaint from",
                                 hint="check the mask (1 = not shadowed) or --mask-kind")
        out[k] = _sk_biharmonic(flat[k].astype(np.float64), miss[k], split_into_regions=True).astype(np.float32)
    return out.reshape(img.shape)


def inpaint_classical(image: Any, mask: Any, *, offset: float = 0.0, min_transmission: float = 0.25) -> np.ndarray:
    """Attenuation correction where the shadow is partial, biharmonic fill where it is (nearly) total.

    Parameters
    ----------
    image : array (..., Y, X)
        Recording (ADU).
    mask : array
        Transmission in [0, 1] ((Y, X) shared by the planes, or the image's shape).
    offset : float
        Camera offset (not attenuated).
    min_transmission : float
        Below this, the recording is too dark to divide (noise × 1/√M): the pixel is inpainted.

    Returns
    -------
    np.ndarray
        float32, the image's shape: the unshadowed image estimate in recording units.
    """
    x = _image(image)
    m = check_mask(mask, x.shape)
    y = correct_attenuation(x, m, offset=offset, min_transmission=min_transmission)
    return _fill_planes(y, m < min_transmission)


def inpaint_biharmonic(image: Any, mask: Any, *, threshold: float = 0.9) -> np.ndarray:
    """scikit-image's biharmonic inpainting of every shadowed pixel (``M < threshold``), plane by plane.

    Examples
    --------
    >>> x = np.tile(np.arange(16.0), (16, 1)); m = np.ones((16, 16)); m[6:9, 4:12] = 0
    >>> bool(np.allclose(inpaint_biharmonic(x * m, m), x, atol=1e-3))
    True
    """
    x = _image(image)
    m = check_mask(mask, x.shape)
    return _fill_planes(x, m < threshold)
