"""Point-spread functions: analytic, physically based, measured; PSF ↔ OTF.

Conventions: a PSF is a NumPy ``float32`` array with unit sum whose centre is the voxel
``shape // 2``. Voxel sizes and wavelengths are in µm. For a 2D shape the functions return the
in-focus plane.

Models
------
* :func:`gaussian_psf` — Gaussian with σ in pixels.
* :func:`gaussian_psf_from_optics` — the best Gaussian approximations of Zhang, Zerubia &
  Olivo-Marin (Appl. Opt. 46, 1819, 2007): widefield σ_xy = 0.21 λ/NA, σ_z = 0.66 λ n/NA²;
  confocal (small pinhole) σ_xy = 0.15 λ/NA, σ_z = 0.50 λ n/NA².
* :func:`widefield_psf` — Born–Wolf (aberration-free, matched indices) or Gibson–Lanni (refractive
  index mismatch between sample and immersion, at a depth), computed with the maintained
  ``psfmodels`` package; if it is missing or fails, a scalar Born–Wolf diffraction integral
  implemented here is used (with a warning).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from fluorecon.errors import FluoreconError, FluoreconWarning
from fluorecon.validation import check_positive, check_psf, to_numpy

__all__ = [
    "center_of_mass",
    "center_psf",
    "gaussian_psf",
    "gaussian_psf_from_optics",
    "load_psf",
    "make_psf",
    "otf_to_psf",
    "prepare_psf",
    "psf_fwhm",
    "psf_to_otf",
    "widefield_psf",
]

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))


def _check_shape(shape: Any) -> tuple[int, ...]:
    if isinstance(shape, int | np.integer):
        shape = (int(shape),)
    try:
        shp = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise FluoreconError(f"PSF shape must be a tuple of integers, got {shape!r}", hint="e.g. shape=(31, 31)") from None
    if len(shp) not in (1, 2, 3) or any(s < 1 for s in shp):
        raise FluoreconError(f"PSF shape must have 1–3 positive sizes, got {shape!r}",
                             hint="e.g. (31, 31) for 2D or (33, 31, 31) for 3D")
    return shp


def _per_axis(value: Any, n: int, name: str, allow_zero: bool = False) -> tuple[float, ...]:
    vals = np.atleast_1d(np.asarray(value, dtype=float)).ravel()
    if vals.size == 1:
        vals = np.repeat(vals, n)
    if vals.size != n:
        raise FluoreconError(f"{name} has {vals.size} values but the shape has {n} axes",
                             hint=f"give one value or {n} values (in the order of the axes)")
    for v in vals:
        check_positive(v, name, allow_zero=allow_zero)
    return tuple(float(v) for v in vals)


def _check_optics(na: float, wavelength: float, refractive_index: float) -> tuple[float, float, float]:
    na = check_positive(na, "numerical aperture (NA)", hint="typical objectives have NA 0.1–1.49")
    wavelength = check_positive(wavelength, "wavelength",
                                hint="give the emission wavelength in µm, e.g. 0.52 (not 520 nm)")
    n = check_positive(refractive_index, "refractive index", hint="e.g. 1.518 for oil, 1.33 for water, 1.0 for air")
    if wavelength > 20:
        raise FluoreconError(f"wavelength {wavelength} looks like nanometres; fluorecon uses µm",
                             hint=f"give {wavelength / 1000:g} (µm) instead")
    if n < 1.0:
        raise FluoreconError(f"refractive index {n} is below 1", hint="e.g. 1.518 for oil, 1.33 for water, 1.0 for air")
    if na >= n:
        raise FluoreconError(f"NA {na} must be smaller than the immersion refractive index {n}",
                             hint="check the objective: NA ≤ n (e.g. NA 1.4 needs oil, n = 1.518)")
    return na, wavelength, n


def _grid(shape: tuple[int, ...]) -> list[np.ndarray]:
    """Coordinates (pixels) relative to the centre ``shape // 2``, broadcastable."""
    return list(np.meshgrid(*[np.arange(s) - s // 2 for s in shape], indexing="ij", sparse=True))


def gaussian_psf(shape: int | Sequence[int], sigma: float | Sequence[float]) -> np.ndarray:
    """Gaussian PSF sampled at voxel centres, unit sum, centred at ``shape // 2``.

    Parameters
    ----------
    shape : int or tuple of int
        Output shape (1D, 2D or 3D).
    sigma : float or sequence of float
        Standard deviation in pixels, one value or one per axis (FWHM = 2.355 σ).

    Examples
    --------
    >>> p = gaussian_psf((15, 15), 2.0)
    >>> round(float(p.sum()), 6), np.unravel_index(p.argmax(), p.shape)
    (1.0, (np.int64(7), np.int64(7)))
    """
    shp = _check_shape(shape)
    sig = _per_axis(sigma, len(shp), "sigma (pixels)")
    r2 = sum((g / s) ** 2 for g, s in zip(_grid(shp), sig, strict=True))
    p = np.exp(-0.5 * r2)
    return (p / p.sum()).astype(np.float32)


def gaussian_psf_from_optics(shape: int | Sequence[int], voxel_size: float | Sequence[float], na: float,
                             wavelength: float, refractive_index: float = 1.518,
                             confocal: bool = False) -> np.ndarray:
    """Gaussian approximation of a widefield or confocal PSF from the optics (Zhang et al. 2007).

    Parameters
    ----------
    shape : tuple of int
        ``(y, x)`` or ``(z, y, x)``.
    voxel_size : float or tuple of float
        Voxel size in µm per axis (``(z, y, x)`` or ``(y, x)``; one value = isotropic).
    na, wavelength, refractive_index : float
        Numerical aperture, emission wavelength (µm), immersion refractive index.
    confocal : bool
        Use the (small-pinhole) confocal approximation instead of widefield.

    Examples
    --------
    >>> p = gaussian_psf_from_optics((31, 31), 0.05, na=1.4, wavelength=0.52)
    >>> round(float(p.sum()), 5)
    1.0
    """
    shp = _check_shape(shape)
    vs = _per_axis(voxel_size, len(shp), "voxel_size (µm)")
    na, wl, n = _check_optics(na, wavelength, refractive_index)
    kxy, kz = (0.15, 0.50) if confocal else (0.21, 0.66)
    s_xy = kxy * wl / na
    s_z = kz * wl * n / na**2
    sig_um = (s_xy,) * min(2, len(shp))
    if len(shp) == 3:
        sig_um = (s_z, *sig_um)
    return gaussian_psf(shp, [s / v for s, v in zip(sig_um, vs, strict=True)])


def _born_wolf_fallback(shape: tuple[int, ...], voxel_size: tuple[float, ...], na: float, wavelength: float,
                        n: float) -> np.ndarray:
    """Scalar Born–Wolf PSF, 3D array: |∫₀¹ J0(k NA r ρ) exp(i k z √(n² − NA² ρ²)) ρ dρ|².

    The defocus phase is the exact (non-paraxial) one, so the axial extent is right at high NA.
    """
    from scipy.special import j0

    nz, ny, nx = shape
    dz, dy, dx = voxel_size
    k = 2 * np.pi / wavelength
    z = (np.arange(nz) - nz // 2) * dz
    yy = (np.arange(ny) - ny // 2) * dy
    xx = (np.arange(nx) - nx // 2) * dx
    r_max = np.hypot(np.abs(yy).max(), np.abs(xx).max()) + max(dx, dy)
    r = np.linspace(0, r_max, 512)
    rho = np.linspace(0, 1, 400)
    w = np.full(rho.size, rho[1] - rho[0])
    w[0] = w[-1] = w[0] / 2  # trapezoid weights
    v = k * na * r[:, None] * rho[None, :]
    out = np.empty((nz, ny, nx))
    rr = np.hypot(yy[:, None], xx[None, :])
    bessel = j0(v) * (rho * w)[None, :]
    for iz, zi in enumerate(z):
        phase = np.exp(1j * k * zi * np.sqrt(n**2 - (na * rho) ** 2))
        prof = np.abs(bessel @ phase) ** 2
        out[iz] = np.interp(rr, r, prof)
    return out


def widefield_psf(shape: int | Sequence[int], voxel_size: float | Sequence[float], na: float, wavelength: float,
                  refractive_index: float = 1.518, model: str = "born-wolf", *, sample_ri: float = 1.33,
                  depth: float = 0.0, vectorial: bool = False) -> np.ndarray:
    """Physically based widefield PSF (Born–Wolf or Gibson–Lanni), unit sum, centred at ``shape // 2``.

    Parameters
    ----------
    shape : tuple of int
        ``(z, y, x)`` for a 3D PSF, ``(y, x)`` for the in-focus plane.
    voxel_size : float or tuple of float
        Voxel size in µm (``(z, y, x)`` or ``(y, x)``).
    na, wavelength, refractive_index : float
        Numerical aperture, emission wavelength (µm), immersion refractive index.
    model : {"born-wolf", "gibson-lanni"}
        ``born-wolf``: no aberrations (sample index = immersion index). ``gibson-lanni``: the sample
        has index ``sample_ri`` and the emitter is ``depth`` µm below the coverslip, which adds the
        spherical aberration of the index mismatch.
    sample_ri, depth : float
        Gibson–Lanni only: sample refractive index and emitter depth (µm).
    vectorial : bool
        Use the vectorial (Richards–Wolf-type) model of ``psfmodels`` instead of the scalar one.

    Examples
    --------
    >>> p = widefield_psf((33, 33), 0.05, na=1.4, wavelength=0.52)
    >>> round(float(p.sum()), 5), p.shape
    (1.0, (33, 33))
    """
    shp = _check_shape(shape)
    if len(shp) not in (2, 3):
        raise FluoreconError(f"widefield_psf needs a 2D (y, x) or 3D (z, y, x) shape, got {shp}", hint="e.g. (33, 63, 63)")
    vs = _per_axis(voxel_size, len(shp), "voxel_size (µm)")
    na, wl, n = _check_optics(na, wavelength, refractive_index)
    model = str(model).lower().replace("_", "-")
    if model in ("widefield", "bornwolf"):
        model = "born-wolf"
    if model not in ("born-wolf", "gibson-lanni"):
        raise FluoreconError(f"unknown widefield PSF model {model!r}", hint="use 'born-wolf' or 'gibson-lanni'")
    if model == "gibson-lanni":
        ns = check_positive(sample_ri, "sample refractive index")
        pz = check_positive(depth, "depth (µm)", allow_zero=True)
    else:
        ns, pz = n, 0.0
    shp3 = shp if len(shp) == 3 else (1, *shp)
    vs3 = vs if len(vs) == 3 else (vs[0], *vs)
    nz, ny, nx = shp3
    side = max(ny, nx)
    side += 1 - side % 2  # psfmodels centres odd grids at side // 2
    dxy = vs3[1]
    if abs(vs3[1] - vs3[2]) > 1e-6 * vs3[1]:
        warnings.warn("widefield_psf: anisotropic lateral voxels; computing at the Y size and resampling X",
                      FluoreconWarning, stacklevel=2)
    zpos = (np.arange(nz) - nz // 2) * vs3[0]
    try:
        import psfmodels

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            vol = psfmodels.make_psf(zpos, side, dxy=dxy, dz=vs3[0], pz=pz, NA=na, wvl=wl, ns=ns, ni=n, ni0=n,
                                     model="vectorial" if vectorial else "scalar", normalize=False)
        vol = np.asarray(vol, dtype=np.float64)
        if not np.isfinite(vol).all() or vol.sum() <= 0:
            raise ValueError("psfmodels returned a non-finite or empty PSF")
    except Exception as e:
        if model == "gibson-lanni" and (abs(ns - n) > 1e-9 and pz > 0):
            raise FluoreconError(f"Gibson–Lanni PSF could not be computed by psfmodels ({e})",
                                 hint="install psfmodels (pip install psfmodels) or use model='born-wolf'") from None
        warnings.warn(f"psfmodels failed ({e}); using fluorecon's scalar Born–Wolf integral", FluoreconWarning,
                      stacklevel=2)
        vol = _born_wolf_fallback((nz, side, side), (vs3[0], dxy, dxy), na, wl, n)
    if abs(vs3[1] - vs3[2]) > 1e-6 * vs3[1]:
        vol = ndimage.zoom(vol, (1, 1, vs3[1] / vs3[2]), order=1)
    # crop/pad laterally to the requested shape keeping the centre at shape // 2
    vol = _fit_to_shape(vol, shp3)
    if len(shp) == 2:
        vol = vol[0]
    vol = np.clip(vol, 0, None)
    return (vol / vol.sum()).astype(np.float32)


def _fit_to_shape(arr: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Crop or zero-pad each axis so that the centre ``arr.shape // 2`` lands on ``shape // 2``."""
    out = arr
    for ax, (have, want) in enumerate(zip(arr.shape, shape, strict=True)):
        if have > want:
            start = have // 2 - want // 2
            out = np.take(out, np.arange(start, start + want), axis=ax)
        elif have < want:
            before = want // 2 - have // 2
            pad = [(0, 0)] * out.ndim
            pad[ax] = (before, want - have - before)
            out = np.pad(out, pad)
    return out


def make_psf(spec: dict[str, Any]) -> np.ndarray:
    """Build a PSF from a JSON-able description (used by ``Forward.from_dict`` and the CLI).

    ``spec["kind"]`` is ``"gaussian"`` (keys ``shape``, ``sigma``), ``"gaussian_optics"`` (keys of
    :func:`gaussian_psf_from_optics`) or ``"widefield"`` (keys of :func:`widefield_psf`).

    Examples
    --------
    >>> make_psf({"kind": "gaussian", "shape": [9, 9], "sigma": 1.5}).shape
    (9, 9)
    """
    if not isinstance(spec, dict) or "kind" not in spec:
        raise FluoreconError(f"PSF description must be a dict with a 'kind', got {spec!r}",
                             hint="e.g. {'kind': 'gaussian', 'shape': [15, 15], 'sigma': 2.0}")
    kw = {k: v for k, v in spec.items() if k != "kind"}
    funcs = {"gaussian": gaussian_psf, "gaussian_optics": gaussian_psf_from_optics, "widefield": widefield_psf}
    kind = spec["kind"]
    if kind not in funcs:
        raise FluoreconError(f"unknown PSF kind {kind!r}", hint=f"use one of {sorted(funcs)}")
    try:
        return funcs[kind](**kw)
    except TypeError as e:
        raise FluoreconError(f"bad parameters for a {kind} PSF: {e}", hint="check the keys of the PSF description") from None


# --------------------------------------------------------------------------------------- PSF ↔ OTF


def psf_to_otf(psf: Any, shape: Sequence[int], real: bool = True):
    """Optical transfer function of ``psf`` on a grid of ``shape``.

    The PSF is zero-padded to ``shape`` and circularly shifted so that its centre ``psf.shape // 2``
    sits at the origin, then ``torch.fft.rfftn`` (``real=True``) or ``fftn`` is taken over the last
    ``psf.ndim`` axes. Leading axes of ``psf`` (if any, beyond ``len(shape)``) are batch axes.

    Parameters
    ----------
    psf : numpy.ndarray or torch.Tensor
    shape : sequence of int
        Spatial grid size (≥ the PSF size along each axis).
    real : bool
        Half-spectrum (``rfftn``) or full spectrum.

    Returns
    -------
    torch.Tensor
        Complex OTF (``complex64`` for float32 input, ``complex128`` for float64).

    Examples
    --------
    >>> otf = psf_to_otf(gaussian_psf((5, 5), 1.0), (16, 16))
    >>> tuple(otf.shape), round(float(otf[0, 0].real), 5)
    ((16, 9), 1.0)
    """
    import torch

    t = psf if isinstance(psf, torch.Tensor) else torch.as_tensor(np.ascontiguousarray(to_numpy(psf, "PSF")))
    if not t.is_floating_point():
        t = t.to(torch.float32)
    shape = tuple(int(s) for s in shape)
    nd = len(shape)
    if t.ndim < nd:
        raise FluoreconError(f"PSF has {t.ndim} dims but the OTF grid {shape} has {nd}", hint="use a grid with as many axes as the PSF")
    pshape = tuple(t.shape[-nd:])
    if any(p > s for p, s in zip(pshape, shape, strict=True)):
        raise FluoreconError(f"PSF shape {pshape} is larger than the OTF grid {shape}",
                             hint="crop the PSF first (fluorecon.validation.check_psf with image_shape)")
    pad = []
    for p, s in zip(reversed(pshape), reversed(shape), strict=True):
        pad += [0, s - p]
    tp = torch.nn.functional.pad(t, pad)
    tp = torch.roll(tp, shifts=[-(p // 2) for p in pshape], dims=list(range(-nd, 0)))
    dims = list(range(-nd, 0))
    return torch.fft.rfftn(tp, dim=dims) if real else torch.fft.fftn(tp, dim=dims)


def otf_to_psf(otf, psf_shape: Sequence[int], shape: Sequence[int]):
    """Inverse of :func:`psf_to_otf`: back to a PSF of ``psf_shape`` centred at ``psf_shape // 2``.

    ``shape`` is the spatial grid the OTF was computed on; whether the OTF is a half spectrum is
    inferred from its last axis.

    Examples
    --------
    >>> p = gaussian_psf((5, 5), 1.0)
    >>> q = otf_to_psf(psf_to_otf(p, (16, 16)), (5, 5), (16, 16))
    >>> bool(np.allclose(q.numpy(), p, atol=1e-6))
    True
    """
    import torch

    shape = tuple(int(s) for s in shape)
    psf_shape = tuple(int(s) for s in psf_shape)
    nd = len(shape)
    dims = list(range(-nd, 0))
    real = otf.shape[-1] != shape[-1] or shape[-1] == 1
    t = torch.fft.irfftn(otf, s=shape, dim=dims) if real else torch.fft.ifftn(otf, dim=dims).real
    t = torch.roll(t, shifts=[p // 2 for p in psf_shape], dims=dims)
    idx = (Ellipsis, *[slice(0, p) for p in psf_shape])
    return t[idx]


# ------------------------------------------------------------------------------------ measured PSFs


def _estimate_background(psf: np.ndarray) -> float:
    """Median of the outer shell (2 voxels thick, or 5 % of the size) — the bead should not reach it."""
    mask = np.zeros(psf.shape, dtype=bool)
    for ax, s in enumerate(psf.shape):
        w = max(1, min(2, s // 20 + 1)) if s > 4 else 0
        if w == 0:
            continue
        sl = [slice(None)] * psf.ndim
        sl[ax] = slice(0, w)
        mask[tuple(sl)] = True
        sl[ax] = slice(s - w, s)
        mask[tuple(sl)] = True
    if not mask.any():
        return float(np.min(psf))
    return float(np.median(psf[mask]))


def center_of_mass(psf: np.ndarray) -> tuple[float, ...]:
    """Sub-pixel centre of mass of the bright part of ``psf`` (values above 5 % of the peak).

    Thresholding keeps residual background noise far from the centre from biasing the estimate.

    Examples
    --------
    >>> center_of_mass(gaussian_psf((9, 9), 1.0))
    (4.0, 4.0)
    """
    w = np.clip(psf - 0.05 * psf.max(), 0, None)
    if w.sum() <= 0:
        w = np.clip(psf, 0, None)
    com = ndimage.center_of_mass(w)
    return tuple(round(float(c), 6) for c in com)


def center_psf(psf: np.ndarray) -> np.ndarray:
    """Shift ``psf`` (sub-pixel, cubic spline) so that its centre of mass is at ``shape // 2``.

    Examples
    --------
    >>> p = np.roll(gaussian_psf((15, 15), 1.5), (2, -1), axis=(0, 1))
    >>> [round(c, 2) for c in center_of_mass(center_psf(p))]
    [7.0, 7.0]
    """
    psf = np.asarray(psf, dtype=np.float64)
    com = center_of_mass(psf)
    shift = [s // 2 - c for s, c in zip(psf.shape, com, strict=True)]
    if max(abs(s) for s in shift) < 1e-3:
        return psf
    # integer part by roll (exact), sub-pixel part by spline interpolation
    ishift = [int(np.round(s)) for s in shift]
    out = np.roll(psf, ishift, axis=tuple(range(psf.ndim)))
    frac = [s - i for s, i in zip(shift, ishift, strict=True)]
    if max(abs(f) for f in frac) > 1e-3:
        out = ndimage.shift(out, frac, order=3, mode="constant", cval=0.0)
    return np.clip(out, 0, None)


def load_psf(path_or_array: str | Path | Any, background: str | float | None = "auto",
             crop_shape: Sequence[int] | None = None, center: bool = True) -> np.ndarray:
    """Load a measured PSF (bead image) and clean it: background, centring, cropping, unit sum.

    Parameters
    ----------
    path_or_array : path or array-like
        A file readable by :func:`fluorecon.io.read_image` (TIFF, NPY, ...) or an array.
    background : "auto", float or None
        ``"auto"``: median of the outer shell of the stack; a number: subtracted as is; None/0: none.
    crop_shape : tuple of int, optional
        Crop to this shape about the centre (after centring). Odd sizes keep the PSF symmetric.
    center : bool
        Move the sub-pixel centre of mass (of the part above 5 % of the peak) to ``shape // 2``.

    Returns
    -------
    numpy.ndarray
        ``float32``, non-negative, unit sum.

    Examples
    --------
    >>> bead = gaussian_psf((21, 21), 2.0) * 1000 + 10
    >>> p = load_psf(bead, crop_shape=(15, 15))
    >>> p.shape, round(float(p.sum()), 5)
    ((15, 15), 1.0)
    """
    if isinstance(path_or_array, str | Path):
        path = Path(path_or_array)
        if not path.exists():
            raise FluoreconError(f"PSF file not found: {path}", hint="check the path given with --psf")
        from fluorecon.io import read_image

        arr = np.asarray(read_image(path).data)
        arr = np.squeeze(arr)
        name = f"PSF file {path.name}"
    else:
        arr = to_numpy(path_or_array, "PSF")
        name = "PSF"
    if arr.ndim not in (1, 2, 3):
        raise FluoreconError(f"{name} has {arr.ndim} dimensions (shape {arr.shape})", hint="a PSF must be 2D (YX) or 3D (ZYX)")
    arr = check_psf(np.clip(arr, 0, None) if np.asarray(arr).dtype.kind in "ui" else arr, arr.ndim, name=name)
    psf = arr.astype(np.float64)
    if background == "auto":
        bg = _estimate_background(psf)
    elif background is None:
        bg = 0.0
    else:
        bg = float(background)
    psf = np.clip(psf - bg, 0, None)
    if psf.sum() <= 0:
        raise FluoreconError(f"{name} is empty after subtracting the background ({bg:.3g})",
                             hint="use background=0 or a smaller value")
    if center:
        psf = center_psf(psf)
    if crop_shape is not None:
        cs = _check_shape(crop_shape)
        if len(cs) != psf.ndim:
            raise FluoreconError(f"crop_shape {cs} does not match the PSF's {psf.ndim} dimensions",
                                 hint=f"give {psf.ndim} sizes")
        psf = _fit_to_shape(psf, [min(c, s) for c, s in zip(cs, psf.shape, strict=True)])
    psf = np.clip(psf, 0, None)
    return (psf / psf.sum()).astype(np.float32)


def prepare_psf(psf: Any, image_shape: Sequence[int], voxel_size_psf: Sequence[float] | None = None,
                voxel_size_image: Sequence[float] | None = None, center: bool = True,
                max_factor: int = 1) -> np.ndarray:
    """Make a PSF ready for an image: same voxel size, no larger than the image, centred, unit sum.

    Parameters
    ----------
    psf : array-like
        PSF covering the trailing ``psf.ndim`` axes of the image.
    image_shape : tuple of int
        Shape of the image (leading non-spatial axes allowed).
    voxel_size_psf, voxel_size_image : tuple of float, optional
        Voxel sizes (µm) of the PSF and image spatial axes. When both are given and differ, the
        PSF is resampled (``scipy.ndimage.zoom``, linear) to the image's voxel size.
    center : bool
        Re-centre the centre of mass on ``shape // 2`` after resampling.
    max_factor : int
        Crop to at most ``max_factor·n − (max_factor − 1)`` per axis: 1 = the image size, 2 = ``2n − 1``
        (a widefield PSF that couples every pair of planes of the stack; RL supports it).

    Examples
    --------
    >>> p = prepare_psf(gaussian_psf((21, 21), 2.0), (64, 64), (0.05, 0.05), (0.1, 0.1))
    >>> p.shape, round(float(p.sum()), 5)
    ((11, 11), 1.0)
    """
    image_shape = tuple(int(s) for s in image_shape)
    p = check_psf(psf, len(image_shape)).astype(np.float64)
    if voxel_size_psf is not None and voxel_size_image is not None:
        vp = np.atleast_1d(np.asarray(voxel_size_psf, dtype=float))[-p.ndim:]
        vi = np.atleast_1d(np.asarray(voxel_size_image, dtype=float))[-p.ndim:]
        if vp.size != p.ndim or vi.size != p.ndim or (vp <= 0).any() or (vi <= 0).any():
            raise FluoreconError(f"voxel sizes {tuple(voxel_size_psf)} / {tuple(voxel_size_image)} do not match the "
                                 f"PSF's {p.ndim} dimensions", hint="give one positive size (µm) per spatial axis")
        zoom = vp / vi
        if np.any(np.abs(zoom - 1) > 1e-3):
            # odd output sizes keep a well-defined centre voxel
            out_shape = [max(1, int(round(s * z))) for s, z in zip(p.shape, zoom, strict=True)]
            out_shape = [s + 1 - s % 2 for s in out_shape]
            c_in = np.array([s // 2 for s in p.shape], float)
            c_out = np.array([s // 2 for s in out_shape], float)
            # output voxel j sits at physical (j - c_out)·vi → input index c_in + (j - c_out)·vi/vp
            p = ndimage.affine_transform(p, 1 / zoom, offset=c_in - c_out / zoom, output_shape=out_shape,
                                         order=1, mode="constant", cval=0.0)
            p = np.clip(p, 0, None)
            if p.sum() <= 0:
                raise FluoreconError("PSF vanished after resampling to the image voxel size",
                                     hint="check voxel_size_psf and voxel_size_image (µm)")
    limit = tuple(max(1, max_factor * n - (max_factor - 1)) for n in image_shape)
    p = check_psf(p, len(image_shape), limit)
    if center:
        p = center_psf(p)
    p = np.clip(p, 0, None)
    return (p / p.sum()).astype(np.float32)


def psf_fwhm(psf: np.ndarray, voxel_size: float | Sequence[float] = 1.0) -> tuple[float, ...]:
    """Full width at half maximum along each axis through the peak (linear interpolation).

    Examples
    --------
    >>> round(psf_fwhm(gaussian_psf((41,), 4.0))[0], 1)
    9.4
    """
    p = np.asarray(psf, dtype=float)
    vs = _per_axis(voxel_size, p.ndim, "voxel_size")
    peak = np.unravel_index(np.argmax(p), p.shape)
    out = []
    for ax in range(p.ndim):
        idx = list(peak)
        idx[ax] = slice(None)
        prof = p[tuple(idx)]
        half = prof.max() / 2
        i0 = int(np.argmax(prof))
        left = i0
        while left > 0 and prof[left - 1] >= half:
            left -= 1
        right = i0
        while right < prof.size - 1 and prof[right + 1] >= half:
            right += 1
        xl = left - 1 + (half - prof[left - 1]) / (prof[left] - prof[left - 1]) if left > 0 else float(left)
        xr = right + (prof[right] - half) / (prof[right] - prof[right + 1]) if right < prof.size - 1 else float(right)
        out.append(float((xr - xl) * vs[ax]))
    return tuple(out)
