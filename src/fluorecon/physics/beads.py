"""Measure a PSF from an image of sub-resolution fluorescent beads.

Pipeline (:func:`extract_psf_from_beads`):

1. **Detect**: local maxima of the Gaussian-smoothed image (``skimage.feature.peak_local_max``)
   above ``threshold_rel`` of the (background-subtracted) maximum.
2. **Reject** beads whose crop box would leave the image (border), that have a neighbour of
   ≥ ``neighbour_ratio`` of their brightness within the box (overlapping PSFs), and saturated ones
   (a plateau of ≥ 2 voxels at the image/dtype maximum).
3. **Register** with sub-pixel precision: centre of mass of the bright part, then a refinement by
   upsampled cross-correlation against the first average
   (``skimage.registration.phase_cross_correlation``, ``upsample_factor``); Fourier/spline shift.
4. **Average** the unit-sum beads, subtract the background (median of the outer shell), clip at 0,
   normalise to unit sum.

Examples
--------
>>> from fluorecon.physics.psf import gaussian_psf
>>> img = np.full((64, 64), 10.0)
>>> for cy, cx in [(16, 16), (16, 46), (46, 20), (45, 47)]:
...     img[cy - 7:cy + 8, cx - 7:cx + 8] += 1000 * gaussian_psf((15, 15), 1.5)
>>> psf, info = extract_psf_from_beads(img, crop_shape=(13, 13))
>>> psf.shape, info["n_used"]
((13, 13), 4)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from fluorecon.errors import FluoreconError
from fluorecon.validation import to_numpy

__all__ = ["extract_psf_from_beads"]


def _shell_median(a: np.ndarray) -> float:
    mask = np.zeros(a.shape, bool)
    for ax in range(a.ndim):
        sl = [slice(None)] * a.ndim
        sl[ax] = slice(0, 2)
        mask[tuple(sl)] = True
        sl[ax] = slice(a.shape[ax] - 2, None)
        mask[tuple(sl)] = True
    return float(np.median(a[mask]))


def _com(a: np.ndarray) -> np.ndarray:
    w = np.clip(a - 0.2 * a.max(), 0, None)
    if w.sum() <= 0:
        w = np.clip(a, 0, None)
    return np.asarray(ndimage.center_of_mass(w), dtype=float)


def _fwhm_guess(smooth: np.ndarray, peak: tuple[int, ...], bg: float) -> list[float]:
    out = []
    top = smooth[peak] - bg
    for ax in range(smooth.ndim):
        idx = list(peak)
        idx[ax] = slice(None)
        prof = smooth[tuple(idx)] - bg
        c = peak[ax]
        lo = c
        while lo > 0 and prof[lo] > top / 2:
            lo -= 1
        hi = c
        while hi < prof.size - 1 and prof[hi] > top / 2:
            hi += 1
        out.append(float(max(hi - lo, 1)))
    return out


def extract_psf_from_beads(image: Any, voxel_size: Sequence[float] | None = None, crop_shape: Sequence[int] | None = None,
                           min_distance: int | None = None, threshold_rel: float = 0.2, neighbour_ratio: float = 0.1,
                           max_beads: int = 200, upsample_factor: int = 10, saturation: float | None = None,
                           smooth_sigma: float = 1.0) -> tuple[np.ndarray, dict]:
    """Average isolated beads into a PSF (see the module docstring for the steps).

    Parameters
    ----------
    image : array-like
        2D (YX) or 3D (ZYX) bead image (raw counts; the background is handled here).
    voxel_size : tuple of float, optional
        µm per axis; only used to report the FWHM in µm.
    crop_shape : tuple of int, optional
        PSF size (odd sizes keep a centre voxel). Default: about 3 FWHM either side of the centre,
        limited to the image.
    min_distance : int, optional
        Minimum peak separation for detection (default: the FWHM guess).
    threshold_rel : float
        Detection threshold relative to the brightest (background-subtracted) bead.
    neighbour_ratio : float
        A bead is rejected when another peak of at least this fraction of its brightness lies inside
        its crop box.
    saturation : float, optional
        Saturation level; default the dtype maximum for integer images, else the image maximum.

    Returns
    -------
    (numpy.ndarray, dict)
        ``float32`` PSF (unit sum, centred at ``shape // 2``) and an info dict: ``n_detected``,
        ``n_used``, ``positions`` (sub-pixel, of the used beads), ``rejected`` (reason → count),
        ``fwhm_px`` / ``fwhm_um``, ``background``.

    Raises
    ------
    FluoreconError
        Not 2D/3D, non-finite, flat image, or no isolated bead found.
    """
    from skimage.feature import peak_local_max
    from skimage.registration import phase_cross_correlation

    from fluorecon.physics.psf import psf_fwhm

    raw = to_numpy(image, "bead image")
    raw = np.squeeze(raw)
    if raw.ndim not in (2, 3):
        raise FluoreconError(f"bead image must be 2D or 3D, got shape {raw.shape}", hint="pass a YX or ZYX stack")
    if raw.dtype.kind not in "biuf" or not np.isfinite(raw).all():
        raise FluoreconError("bead image must be real and finite", hint="replace NaN/Inf first")
    if saturation is None:
        saturation = float(np.iinfo(raw.dtype).max) if raw.dtype.kind in "ui" else float(raw.max())
    img = raw.astype(np.float64)
    bg = float(np.median(img))
    smooth = ndimage.gaussian_filter(img, smooth_sigma)
    top = float(smooth.max()) - bg
    if top <= 0 or float(img.std()) == 0:
        raise FluoreconError("bead image is flat: no beads to detect", hint="check the file and the channel")
    # size guess from the brightest bead that is not saturated (a clipped plateau looks wider)
    cand = peak_local_max(smooth, min_distance=2, threshold_abs=bg + threshold_rel * top, exclude_border=False,
                          num_peaks=50)
    ok = [tuple(int(v) for v in c) for c in cand if img[tuple(c)] < saturation]
    brightest = ok[0] if ok else tuple(int(b) for b in np.unravel_index(int(np.argmax(smooth)), smooth.shape))
    fwhm = _fwhm_guess(smooth, brightest, bg)
    if crop_shape is None:
        half = [int(np.clip(round(3 * f), 3, (s - 1) // 2)) for f, s in zip(fwhm, img.shape, strict=True)]
        crop = tuple(2 * h + 1 for h in half)
    else:
        crop = tuple(int(c) for c in crop_shape)
        if len(crop) != img.ndim or any(c < 3 for c in crop):
            raise FluoreconError(f"crop_shape {crop_shape} does not fit the {img.ndim}D bead image",
                                 hint=f"give {img.ndim} sizes ≥ 3")
        crop = tuple(min(c, s - (1 - s % 2)) for c, s in zip(crop, img.shape, strict=True))
        half = [c // 2 for c in crop]
    md = int(min_distance) if min_distance is not None else max(2, int(round(min(fwhm))))
    peaks = peak_local_max(smooth, min_distance=md, threshold_abs=bg + threshold_rel * top, exclude_border=False,
                           num_peaks=max_beads * 4)
    heights = np.array([smooth[tuple(p)] - bg for p in peaks]) if len(peaks) else np.zeros(0)
    rejected = {"border": 0, "neighbour": 0, "saturated": 0}
    used: list[np.ndarray] = []
    positions = []
    # Boxes that reach past the image (z-stacks are often barely taller than the PSF) are filled with
    # the background level; a bead is rejected only when its core (±1 FWHM) is cut by the border.
    padw = [h + 2 for h in half]
    padded = np.pad(img, [(w, w) for w in padw], mode="constant", constant_values=bg)
    for i, p in enumerate(peaks):
        if any(c < f or c > s - 1 - f for c, f, s in zip(p, fwhm, img.shape, strict=True)):
            rejected["border"] += 1
            continue
        near = False
        for j, q in enumerate(peaks):
            if j != i and all(abs(int(a) - int(b)) <= h for a, b, h in zip(p, q, half, strict=True)) \
                    and heights[j] >= neighbour_ratio * heights[i]:
                near = True
                break
        if near:
            rejected["neighbour"] += 1
            continue
        box = tuple(slice(c + w - h - 1, c + w + h + 2) for c, h, w in zip(p, half, padw, strict=True))
        sub = padded[box]
        if int((sub >= saturation).sum()) >= 2:
            rejected["saturated"] += 1
            continue
        sub = sub - bg
        com = _com(sub)
        centre = np.array([h + 1 for h in half], float)
        shifted = ndimage.shift(sub, centre - com, order=3, mode="nearest")
        inner = tuple(slice(1, 1 + c) for c in crop)
        bead = shifted[inner]
        s = bead.sum()
        if s <= 0:
            continue
        used.append(bead / s)
        positions.append((np.asarray(p, float) - np.array(half) - 1 + com).tolist())
        if len(used) >= max_beads:
            break
    if not used:
        raise FluoreconError(f"no isolated bead found ({len(peaks)} peak(s) detected; rejected: {rejected})",
                             hint="use a larger field of view, a smaller crop_shape, or a lower threshold_rel")
    avg = np.mean(used, axis=0)
    if len(used) > 1 and upsample_factor > 1:
        # refine: register every bead to the first average with sub-pixel cross-correlation
        refined = []
        for b in used:
            shift, _, _ = phase_cross_correlation(avg, b, upsample_factor=upsample_factor, normalization=None)
            refined.append(ndimage.shift(b, shift, order=3, mode="nearest"))
        avg = np.mean(refined, axis=0)
    avg = avg - _shell_median(avg)
    avg = np.clip(avg, 0, None)
    if avg.sum() <= 0:
        raise FluoreconError("averaged bead is empty after background subtraction", hint="use a larger crop_shape")
    psf = (avg / avg.sum()).astype(np.float32)
    f_px = psf_fwhm(psf)
    info: dict[str, Any] = {"n_detected": int(len(peaks)), "n_used": len(used), "positions": positions,
                            "rejected": rejected, "crop_shape": list(crop), "background": bg,
                            "fwhm_px": [float(v) for v in f_px]}
    if voxel_size is not None:
        vs = tuple(float(v) for v in voxel_size)[-psf.ndim:]
        info["fwhm_um"] = [float(a * b) for a, b in zip(f_px, vs, strict=True)]
    return psf, info
