"""Shared helpers of the classical deconvolution modules (validation, device, background)."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from scipy import ndimage

from fluorecon.errors import FluoreconError, FluoreconWarning
from fluorecon.utils import resolve_device
from fluorecon.validation import check_psf, to_numpy

PADDINGS = ("reflect", "skimage", "periodic")
_EPS_SKIMAGE = 1e-12


def _torch_dtype(dtype: Any):
    if dtype in (None, "float32", np.float32, torch.float32):
        return torch.float32
    if dtype in ("float64", np.float64, torch.float64):
        return torch.float64
    raise FluoreconError(f"unsupported dtype {dtype!r}", hint="use float32 (default) or float64")


def _device(device: Any):
    if isinstance(device, torch.device):
        return device
    return resolve_device(str(device))


def _check_iterations(iterations: Any, name: str = "iterations") -> int:
    if isinstance(iterations, bool) or not isinstance(iterations, int | np.integer):
        raise FluoreconError(f"{name} must be a positive integer, got {iterations!r}",
                             hint="e.g. iterations=20, or stop='auto' to let the stopping rule choose")
    if iterations < 1:
        raise FluoreconError(f"{name} must be ≥ 1, got {iterations}",
                             hint="RL needs at least one iteration; 10–50 are typical, or use stop='auto'")
    return int(iterations)


def _as_image(image: Any, name: str = "image") -> np.ndarray:
    arr = to_numpy(image, name)
    if arr.dtype.kind not in "biuf":
        raise FluoreconError(f"{name} must be a real numeric array (dtype {arr.dtype})", hint="pass a float or integer array")
    if arr.ndim < 1 or arr.size == 0:
        raise FluoreconError(f"{name} is empty (shape {arr.shape})", hint="pass a non-empty 2D or 3D image")
    if not np.isfinite(arr).all():
        raise FluoreconError(f"{name} contains NaN or Inf", hint="replace them first, e.g. np.nan_to_num(image)")
    return arr


def _prep_psf(psf: Any, image_shape: tuple[int, ...], max_factor: int = 2) -> np.ndarray:
    """Validate, crop and normalise; also reject far off-centre PSFs (likely a mistake).

    ``max_factor=2``: PSFs up to ``2n − 1`` per axis are kept (a widefield PSF that spans the whole
    stack couples every pair of planes); ``max_factor=1`` crops to the image.
    """
    limit = tuple(max(1, max_factor * int(n) - (max_factor - 1)) for n in image_shape)
    p = check_psf(psf, len(image_shape), limit)
    com = ndimage.center_of_mass(p)
    for ax, (c, s) in enumerate(zip(com, p.shape, strict=True)):
        if s >= 5 and abs(c - (s - 1) / 2) > max(2.0, s / 4):
            raise FluoreconError(f"PSF is far off-centre (centre of mass at {c:.1f} of {s} along axis {ax}; "
                                 f"centre is {s // 2})",
                                 hint="centre it with fluorecon.physics.psf.load_psf(psf) / prepare_psf(...), "
                                      "otherwise the result is shifted")
    return p


def estimate_background(image: Any, percentile: float = 0.5, sigma: float = 2.0) -> float:
    """Background level: a low percentile of the Gaussian-smoothed image (robust to noise).

    Examples
    --------
    >>> estimate_background(np.full((16, 16), 7.0))
    7.0
    """
    arr = np.asarray(image, dtype=np.float32)
    sm = ndimage.gaussian_filter(arr, sigma) if min(arr.shape) > 4 else arr
    return float(np.percentile(sm, percentile))


def _warn(msg: str) -> None:
    warnings.warn(msg, FluoreconWarning, stacklevel=3)
