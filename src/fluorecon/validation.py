"""Input validation shared by every entry point.

Every public function that takes an image or a PSF from a user goes through :func:`as_image` /
:func:`check_psf` first, so that bad input fails early with one clear :class:`FluoreconError` that
names the problem and says how to fix it, instead of a NumPy/torch traceback deep inside an
algorithm.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from fluorecon.errors import FluoreconError, FluoreconWarning

AXES_ALPHABET = "TCZYX"
_DEFAULT_AXES = {2: "YX", 3: "ZYX"}

__all__ = [
    "AXES_ALPHABET",
    "as_image",
    "check_axes",
    "check_positive",
    "check_psf",
    "to_numpy",
]


def to_numpy(array: Any, name: str = "image") -> np.ndarray:
    """Convert an array-like (NumPy, torch, dask-computed, nested lists) to a NumPy array.

    Examples
    --------
    >>> to_numpy([[1, 2], [3, 4]]).shape
    (2, 2)
    """
    if array is None:
        raise FluoreconError(f"{name} is None", hint=f"pass a NumPy array for {name}")
    if hasattr(array, "detach") and hasattr(array, "cpu"):  # torch.Tensor without importing torch
        array = array.detach().cpu().numpy()
    try:
        arr = np.asarray(array)
    except (ValueError, TypeError) as e:  # ragged nested lists etc.
        raise FluoreconError(f"{name} cannot be read as an array ({e})",
                             hint=f"pass a rectangular numeric array for {name}") from None
    return arr


def check_axes(axes: str, ndim: int | None = None, name: str = "image") -> str:
    """Validate an axes string such as ``"ZYX"`` or ``"TCYX"`` and return it upper-cased.

    Rules: letters from ``T C Z Y X``, no repeats, ending with the spatial axes ``YX`` (``Z`` just
    before them when present), and ``len(axes) == ndim`` when ``ndim`` is given.

    Examples
    --------
    >>> check_axes("zyx", 3)
    'ZYX'
    """
    if not isinstance(axes, str) or not axes:
        raise FluoreconError(f"axes for {name} must be a non-empty string such as 'YX' or 'ZYX', got {axes!r}",
                             hint="use letters from T C Z Y X, one per array dimension")
    ax = axes.upper()
    bad = sorted(set(ax) - set(AXES_ALPHABET))
    if bad:
        raise FluoreconError(f"axes {axes!r} for {name} contain unknown letter(s) {''.join(bad)!r}",
                             hint="use only T, C, Z, Y, X (e.g. 'YX', 'ZYX', 'CYX', 'TZYX')")
    if len(set(ax)) != len(ax):
        raise FluoreconError(f"axes {axes!r} for {name} repeat a letter", hint="name each dimension once")
    if not ax.endswith("YX"):
        raise FluoreconError(f"axes {axes!r} for {name} must end with the spatial axes 'YX'",
                             hint="reorder the array so that the last two axes are Y and X (e.g. np.moveaxis)")
    if "Z" in ax and not ax.endswith("ZYX"):
        raise FluoreconError(f"axes {axes!r} for {name}: Z must come just before YX",
                             hint="reorder the array to ...ZYX (e.g. 'CZYX' rather than 'ZCYX')")
    order = [AXES_ALPHABET.index(c) for c in ax]
    if order != sorted(order):
        raise FluoreconError(f"axes {axes!r} for {name} are not in the order T C Z Y X",
                             hint="transpose the array to the order T C Z Y X (e.g. 'TCZYX', 'CZYX', 'TYX')")
    if ndim is not None and len(ax) != ndim:
        raise FluoreconError(f"{name} has {ndim} dimension(s) but axes {axes!r} name {len(ax)}",
                             hint=f"give axes with exactly {ndim} letters (e.g. {_DEFAULT_AXES.get(ndim, 'TZYX')!r}) "
                                  "or reshape/squeeze the array")
    return ax


def as_image(array: Any, axes: str | None = None, name: str = "image") -> tuple[np.ndarray, str]:
    """Check an image and return it as ``float32`` together with its axes.

    Parameters
    ----------
    array : array-like
        NumPy array (or torch tensor / nested list). Must be non-empty, real, numeric and finite.
    axes : str, optional
        Axes string (``"YX"``, ``"ZYX"``, ``"CYX"``, ``"TZYX"``...). When None, ``YX`` is assumed for
        2D and ``ZYX`` for 3D; other dimensionalities need explicit axes.
    name : str
        Name used in error messages (e.g. ``"prediction"``).

    Returns
    -------
    (numpy.ndarray, str)
        The image as a ``float32`` array (a copy only when needed) and the validated axes.

    Raises
    ------
    FluoreconError
        Empty, non-numeric, complex, NaN/Inf values, or dimensions that do not match the axes.

    Examples
    --------
    >>> img, axes = as_image(np.ones((4, 5), dtype=np.uint16))
    >>> img.dtype, axes
    (dtype('float32'), 'YX')
    """
    arr = to_numpy(array, name)
    if arr.dtype == object or arr.dtype.kind in "USVO":
        raise FluoreconError(f"{name} is not numeric (dtype {arr.dtype})",
                             hint=f"pass a numeric array (integer or float) for {name}")
    if arr.dtype.kind == "c":
        raise FluoreconError(f"{name} is complex-valued", hint="pass the real part or the magnitude (np.abs)")
    if arr.ndim == 0:
        raise FluoreconError(f"{name} is a scalar, not an image", hint="pass a 2D (YX) or 3D (ZYX) array")
    if arr.size == 0:
        raise FluoreconError(f"{name} is empty (shape {arr.shape})",
                             hint="check that the file was read correctly and that no crop removed everything")
    if axes is None:
        if arr.ndim not in _DEFAULT_AXES:
            raise FluoreconError(f"{name} has {arr.ndim} dimension(s) (shape {arr.shape}); axes cannot be guessed",
                                 hint="give axes explicitly, e.g. axes='TYX', 'CZYX' or 'TZYX' (a 1D array is not an image)")
        axes = _DEFAULT_AXES[arr.ndim]
    ax = check_axes(axes, arr.ndim, name)
    if arr.dtype.kind == "b":
        arr = arr.astype(np.float32)
    with np.errstate(over="ignore", invalid="ignore"):
        out = arr.astype(np.float32, copy=False)
    if not np.isfinite(out).all():
        src = arr if arr.dtype.kind == "f" else out
        n_nan = int(np.isnan(src).sum())
        n_inf = int(np.isinf(src).sum())
        what = ", ".join(s for s in (f"{n_nan} NaN" if n_nan else "", f"{n_inf} Inf" if n_inf else "") if s)
        if what:
            raise FluoreconError(f"{name} contains non-finite values ({what})",
                                 hint="replace them first, e.g. np.nan_to_num(image) or mask/crop the bad region")
        raise FluoreconError(f"{name} has values too large for float32 (max |value| {np.abs(arr).max():.3g})",
                             hint="rescale the image (e.g. divide by its maximum) before processing")
    return out, ax


def check_psf(psf: Any, image_ndim: int, image_shape: Sequence[int] | None = None,
              name: str = "PSF") -> np.ndarray:
    """Check a point-spread function against an image and return it normalised to unit sum.

    The PSF covers the trailing ``psf.ndim`` (spatial) axes of the image. Along any axis where the
    PSF is larger than the image it is cropped symmetrically about its centre ``shape // 2`` (a
    :class:`FluoreconWarning` says so; real stacks often have fewer planes than their PSF). Tiny
    negative values (round-off from resampling or Fourier shifts, at most 1 % of the peak) are
    clipped to 0; larger negative values are an error, because they usually mean the background was
    over-subtracted.

    Parameters
    ----------
    psf : array-like
        The PSF.
    image_ndim : int
        Number of dimensions of the image it will be applied to.
    image_shape : sequence of int, optional
        Shape of the image; the trailing ``psf.ndim`` entries are its spatial extent.

    Returns
    -------
    numpy.ndarray
        ``float32`` PSF with unit sum.

    Raises
    ------
    FluoreconError
        Empty, non-finite, more dimensions than the image, sum ≤ 0, or substantially negative.

    Examples
    --------
    >>> p = check_psf(np.ones((3, 3)), image_ndim=2)
    >>> float(p.sum())
    1.0
    """
    arr = to_numpy(psf, name)
    if arr.dtype == object or arr.dtype.kind in "USVOc":
        raise FluoreconError(f"{name} is not a real numeric array (dtype {arr.dtype})", hint="pass a real-valued PSF array")
    if arr.ndim == 0 or arr.size == 0:
        raise FluoreconError(f"{name} is empty (shape {arr.shape})", hint="pass a non-empty 2D or 3D PSF")
    if arr.ndim > image_ndim:
        squeezable = arr.ndim - sum(1 for s in arr.shape if s == 1)
        hint = ("squeeze the singleton axes (np.squeeze)" if squeezable <= image_ndim else
                "use a PSF with as many dimensions as the image's spatial axes (a 2D PSF for a 2D image, "
                "e.g. the in-focus plane psf[psf.shape[0] // 2] of a 3D PSF)")
        raise FluoreconError(f"{name} has {arr.ndim} dimensions (shape {arr.shape}) but the image has only {image_ndim}",
                             hint=hint)
    out = arr.astype(np.float64)
    if not np.isfinite(out).all():
        raise FluoreconError(f"{name} contains NaN or Inf values", hint="replace them (np.nan_to_num) or re-measure the PSF")
    total = float(out.sum())
    peak = float(np.abs(out).max())
    if total <= 0 or peak == 0:
        raise FluoreconError(f"{name} sums to {total:.3g} (must be positive)",
                             hint="a PSF must be a non-negative blur kernel with positive total; check the file "
                                  "or the background subtraction")
    if out.min() < -0.01 * out.max():
        raise FluoreconError(f"{name} has negative values (min {out.min():.3g}, max {out.max():.3g})",
                             hint="subtract less background or clip it with np.clip(psf, 0, None); "
                                  "fluorecon.physics.psf.load_psf does this for measured PSFs")
    out = np.clip(out, 0, None)
    if image_shape is not None:
        img_sp = tuple(int(s) for s in image_shape)[-arr.ndim:]
        if len(img_sp) < arr.ndim:
            raise FluoreconError(f"image shape {tuple(image_shape)} has fewer axes than the {name} ({arr.ndim})",
                                 hint="pass a PSF with at most as many dimensions as the image")
        slices = []
        cropped = []
        for ax, (p, n) in enumerate(zip(out.shape, img_sp, strict=True)):
            if p > n:
                start = p // 2 - n // 2  # keeps the centre at shape // 2
                slices.append(slice(start, start + n))
                cropped.append(f"axis {ax}: {p}→{n}")
            else:
                slices.append(slice(None))
        if cropped:
            warnings.warn(f"{name} of shape {out.shape} is larger than the image {tuple(img_sp)}; cropped "
                          f"({', '.join(cropped)}) about its centre", FluoreconWarning, stacklevel=2)
            out = out[tuple(slices)]
            if out.sum() <= 0:
                raise FluoreconError(f"{name} is zero after cropping to the image size",
                                     hint="centre the PSF (fluorecon.physics.psf.load_psf) before using it")
    out = out / out.sum()
    return out.astype(np.float32)


def check_positive(value: Any, name: str, hint: str | None = None, allow_zero: bool = False) -> float:
    """Return ``value`` as float, raising :class:`FluoreconError` unless it is finite and > 0 (≥ 0).

    Examples
    --------
    >>> check_positive(1.4, "NA")
    1.4
    """
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise FluoreconError(f"{name} must be a number, got {value!r}", hint=hint) from None
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        raise FluoreconError(f"{name} must be {'non-negative' if allow_zero else 'positive'}, got {value!r}",
                             hint=hint or f"give a {'non-negative' if allow_zero else 'positive'} {name}")
    return v
