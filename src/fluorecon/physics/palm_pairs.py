"""Training and test pairs for learned super-resolution, simulated with the physics layer.

Two kinds of pairs (the review's Fig. 1c–d):

- **sparse → dense PALM** (ANNA-PALM): fluorophores on a structure (:func:`fluorecon.physics.smlm.structure`)
  blink (:func:`~fluorecon.physics.smlm.blinking_emitters`); every emission brighter than
  ``min_photons`` is localised with the Cramér–Rao precision of a Gaussian PSF on an EMCCD
  (σ = √2 · σ_PSF / √photons) and rendered as a histogram on a fine grid. The *sparse* image holds
  the first ``k_frames`` frames, the *dense* image all ``n_frames``; the *widefield* image is the
  diffraction-limited image of the same field on the camera grid (Gaussian PSF, Poisson noise);
  ``structure`` is the fluorophore density itself (ground truth).
- **cross-modality** (Wang et al. 2019): a phantom (:mod:`fluorecon.physics.phantoms`) seen through a
  low-resolution modality (low-NA widefield, or confocal) with camera noise
  (:class:`fluorecon.physics.forward.Forward`), and the same specimen through the high-resolution
  one (high-NA widefield, or a STED-like PSF ``sted_factor`` times narrower), noiseless. Gaussian
  PSF widths: 0.21 λ/NA (widefield) and 0.15 λ/NA (confocal), as :func:`fluorecon.physics.psf.gaussian_psf_from_optics`.

:func:`consistency_forward` is the forward model that maps a high-resolution image back to the
low-resolution one (the Gaussian of width √(σ_low² − σ_high²)): what ``fluorecon verify`` uses to
check a prediction against its low-resolution input.

Examples
--------
>>> p = palm_pair((16, 16), n_frames=200, k_frames=20, seed=0)
>>> p.sparse.shape, p.dense.shape, p.widefield.shape, p.factor
((64, 64), (64, 64), (16, 16), 4)
>>> bool(p.sparse.sum() < p.dense.sum())
True
>>> low, high, truth = cross_modality_pair((32, 32), seed=0)
>>> low.shape == high.shape == truth.shape
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage

from fluorecon.errors import FluoreconError
from fluorecon.physics import phantoms
from fluorecon.physics.camera import Camera
from fluorecon.physics.forward import Forward
from fluorecon.physics.smlm import Blinking, blinking_emitters, structure
from fluorecon.utils import as_rng

__all__ = [
    "MODES",
    "PALMPair",
    "bin_to_camera",
    "consistency_forward",
    "cross_modality_pair",
    "modality_sigmas",
    "palm_pair",
    "render_counts",
    "widefield_forward",
]

MODES = ("na", "sted")


@dataclass
class PALMPair:
    """A simulated PALM field: sparse and dense renderings, widefield image and ground truth.

    Attributes
    ----------
    sparse, dense : (Y·f, X·f) float32
        Localisation counts per render pixel from the first ``k_frames`` frames and from all frames.
    structure : (Y·f, X·f) float32
        Fluorophores per render pixel (the specimen).
    widefield : (Y, X) float32
        Diffraction-limited image on the camera grid (photons, with background and Poisson noise).
    factor : int
        Camera pixel / render pixel.
    render_pixel, camera_pixel : float
        Pixel sizes (nm).
    info : dict
        Numbers of fluorophores and localisations, frames, PSF width.
    """

    sparse: np.ndarray
    dense: np.ndarray
    structure: np.ndarray
    widefield: np.ndarray
    factor: int
    render_pixel: float
    camera_pixel: float
    info: dict[str, Any] = field(default_factory=dict)


def render_counts(x_nm: np.ndarray, y_nm: np.ndarray, shape: tuple[int, int], pixel: float) -> np.ndarray:
    """Histogram of positions (nm, top-left origin) on a ``shape`` grid of ``pixel`` nm, float32.

    Examples
    --------
    >>> render_counts(np.array([15.0]), np.array([5.0]), (2, 3), 10.0).tolist()
    [[0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]
    """
    h, w = shape
    img, _, _ = np.histogram2d(np.asarray(y_nm, float), np.asarray(x_nm, float), bins=(h, w),
                               range=((0, h * pixel), (0, w * pixel)))
    return img.astype(np.float32)


def palm_pair(shape: tuple[int, int], *, n_frames: int = 500, k_frames: int = 50, camera_pixel: float = 100.0,
              render_pixel: float = 25.0, structure_kind: str = "filaments", labels_per_um2: float = 100.0,
              n_filaments: int = 3, kinetics: Blinking | None = None, psf_sigma: float = 130.0,
              min_photons: float = 300.0, widefield_photons: float = 200.0, background: float = 10.0,
              gaps: int = 0, gap_nm: float = 500.0, spurious_per_um2: float = 0.0,
              seed: int | np.random.Generator | None = None) -> PALMPair:
    """Simulate one PALM field: K-frame and all-frame renderings, widefield image, ground truth.

    Parameters
    ----------
    shape : (int, int)
        Field size in **camera** pixels ``(Y, X)``.
    n_frames, k_frames : int
        Movie length and the number of frames of the sparse image (``1 ≤ k_frames ≤ n_frames``).
    camera_pixel, render_pixel : float
        Pixel sizes (nm); their ratio must be an integer.
    structure_kind : {"filaments", "clusters", "uniform"}
    labels_per_um2 : float
        Fluorophores per µm² of field.
    n_filaments : int
        Filaments in the field (``"filaments"``).
    kinetics : Blinking, optional
        Blinking (default: on 2 frames, off 50, 5 % bleaching per on-event, 2000 photons).
    psf_sigma : float
        Gaussian PSF σ (nm) for the localisation precision and the widefield image.
    min_photons : float
        Emissions with fewer photons are not detected.
    widefield_photons : float
        Expected photons per camera pixel of the widefield image at the brightest structure.
    background : float
        Widefield background (photons per pixel).
    gaps, gap_nm : int, float
        Cut ``gaps`` holes of diameter ``gap_nm`` into the structure (all fluorophores within
        ``gap_nm / 2`` of a randomly chosen fluorophore are removed from the specimen, so the truth,
        both renderings and the widefield image lack them). A network trained on continuous filaments
        may bridge them: an opportunity to hallucinate. Centres in ``info["gap_centres_nm"]`` (x, y).
    spurious_per_um2 : float
        False localisations (background or noise detections) per µm² **per frame**, uniform in the
        field and in time, rendered in both images but absent from the truth and the widefield image.
    seed : int or Generator

    Returns
    -------
    PALMPair

    Raises
    ------
    FluoreconError
        ``k_frames`` outside ``1..n_frames``, a non-integer pixel ratio, an empty field.
    """
    if n_frames < 1:
        raise FluoreconError(f"the movie needs at least one frame, got n_frames={n_frames}")
    if not 1 <= k_frames <= n_frames:
        raise FluoreconError(f"K = {k_frames} frames for the sparse image, but the movie has {n_frames}",
                             hint="choose 1 ≤ K ≤ the movie length")
    ratio = camera_pixel / render_pixel
    factor = int(round(ratio))
    if factor < 1 or abs(ratio - factor) > 1e-6:
        raise FluoreconError(f"camera pixel {camera_pixel} nm / render pixel {render_pixel} nm is not an integer",
                             hint="choose a render pixel that divides the camera pixel (e.g. 100 / 25)")
    h, w = int(shape[0]), int(shape[1])
    if h < 1 or w < 1:
        raise FluoreconError(f"empty field {shape}")
    rng = as_rng(seed)
    kin = kinetics or Blinking()
    fov = (w * camera_pixel, h * camera_pixel)
    n = max(1, int(rng.poisson(labels_per_um2 * fov[0] * fov[1] / 1e6)))
    pos = structure(structure_kind, n, fov, rng, n_filaments=n_filaments)
    centres = np.zeros((0, 2))
    if gaps > 0:
        centres = pos[rng.choice(len(pos), size=min(int(gaps), len(pos)), replace=False), :2]
        d2 = ((pos[:, None, :2] - centres[None]) ** 2).sum(-1)
        kept = (d2 > (gap_nm / 2) ** 2).all(1)
        if not kept.any():
            raise FluoreconError(f"{gaps} gaps of {gap_nm} nm remove the whole structure",
                                 hint="use fewer or smaller gaps, or a larger field")
        pos = pos[kept]
    em = blinking_emitters(pos, n_frames, kin, rng)
    ph = em["intensity [photon]"]
    keep = ph >= min_photons
    sd = math.sqrt(2.0) * psf_sigma / np.sqrt(np.maximum(ph[keep], 1.0))
    lx = em["x [nm]"][keep] + rng.normal(0, 1, keep.sum()) * sd
    ly = em["y [nm]"][keep] + rng.normal(0, 1, keep.sum()) * sd
    fr = em["frame"][keep]
    fine = (h * factor, w * factor)
    truth = render_counts(pos[:, 0], pos[:, 1], fine, render_pixel)
    wf_sig = ndimage.gaussian_filter(truth.astype(np.float64), psf_sigma / render_pixel, mode="constant")
    wf_sig = wf_sig.reshape(h, factor, w, factor).sum(axis=(1, 3))
    peak = max(float(np.percentile(wf_sig, 99.5)), 1e-9)
    wf = rng.poisson(widefield_photons * wf_sig / peak + background).astype(np.float32)
    if spurious_per_um2 > 0:   # drawn last: the specimen, its localisations and the widefield image stay as without
        n_sp = int(rng.poisson(spurious_per_um2 * fov[0] * fov[1] / 1e6 * n_frames))
        lx = np.concatenate([lx, rng.uniform(0, fov[0], n_sp)])
        ly = np.concatenate([ly, rng.uniform(0, fov[1], n_sp)])
        fr = np.concatenate([fr, rng.integers(1, n_frames + 1, n_sp)])
    sparse = render_counts(lx[fr <= k_frames], ly[fr <= k_frames], fine, render_pixel)
    dense = render_counts(lx, ly, fine, render_pixel)
    info = {"fluorophores": int(n), "localizations": int(keep.sum()), "sparse_localizations": int(sparse.sum()),
            "n_frames": int(n_frames), "k_frames": int(k_frames), "psf_sigma_nm": float(psf_sigma),
            "structure": structure_kind, "gap_centres_nm": centres.tolist(), "gap_nm": float(gap_nm),
            "spurious_localizations": int(len(lx) - keep.sum())}
    return PALMPair(sparse, dense, truth, wf, factor, float(render_pixel), float(camera_pixel), info)


def bin_to_camera(image: np.ndarray, factor: int) -> np.ndarray:
    """Sum ``factor``×``factor`` blocks of a PALM-grid image onto the camera grid.

    Examples
    --------
    >>> bin_to_camera(np.ones((8, 8), np.float32), 4).tolist()
    [[16.0, 16.0], [16.0, 16.0]]
    """
    a = np.asarray(image, np.float32)
    h, w = a.shape[-2] // factor, a.shape[-1] // factor
    if h < 1 or w < 1 or (h * factor, w * factor) != a.shape[-2:]:
        raise FluoreconError(f"an image of {a.shape} is not a whole number of {factor}×{factor} camera pixels",
                             hint="crop the rendering to whole camera pixels")
    return a.reshape(*a.shape[:-2], h, factor, w, factor).sum(axis=(-3, -1))


def widefield_forward(psf_sigma_px: float) -> Forward:
    """Forward model from a PALM prediction binned to the camera grid (:func:`bin_to_camera`) to the widefield image.

    A Gaussian of ``psf_sigma_px`` **camera** pixels (binning first and blurring after is the same as
    the reverse up to the pixel's box, which the verify checker's PSF-width test tolerates); zero padding,
    as nothing outside the field emits. Scale and background are left to the checker's fit.

    Examples
    --------
    >>> widefield_forward(1.3).expected(np.ones((8, 8), np.float32)).shape
    (8, 8)
    """
    k = 2 * int(math.ceil(3.5 * psf_sigma_px)) + 1
    return Forward(psf={"kind": "gaussian", "shape": [k, k], "sigma": float(psf_sigma_px)}, padding="constant")


# ------------------------------------------------------------------------------------------ cross-modality
def modality_sigmas(mode: str = "na", *, pixel_size: float = 0.05, na_low: float = 0.8, na_high: float = 1.4,
                    wavelength: float = 0.52, sted_factor: float = 3.0) -> tuple[float, float]:
    """Gaussian PSF σ (pixels) of the low- and high-resolution modality.

    ``"na"``: widefield at ``na_low`` → ``na_high`` (σ = 0.21 λ/NA); ``"sted"``: confocal at ``na_high``
    (σ = 0.15 λ/NA) → a STED-like PSF ``sted_factor`` times narrower.

    Examples
    --------
    >>> [round(s, 2) for s in modality_sigmas("na", pixel_size=0.05)]
    [2.73, 1.56]
    """
    if mode not in MODES:
        raise FluoreconError(f"unknown modality pair {mode!r}", hint=f"use one of {', '.join(MODES)}")
    if not (pixel_size > 0 and wavelength > 0 and na_low > 0 and na_high > 0):
        raise FluoreconError("pixel size, wavelength and NAs must be > 0")
    if mode == "na":
        if na_low >= na_high:
            raise FluoreconError(f"low NA {na_low} must be below the high NA {na_high}")
        return 0.21 * wavelength / na_low / pixel_size, 0.21 * wavelength / na_high / pixel_size
    if sted_factor <= 1:
        raise FluoreconError(f"sted_factor must be > 1, got {sted_factor}")
    s = 0.15 * wavelength / na_high / pixel_size
    return s, s / sted_factor


def consistency_forward(sigma_low: float, sigma_high: float, camera: Camera | None = None) -> Forward:
    """The forward model high-resolution image → low-resolution image: a Gaussian of √(σ_low² − σ_high²) px.

    Examples
    --------
    >>> f = consistency_forward(2.73, 1.56)
    >>> round(float(f.expected(np.ones((16, 16), np.float32)).mean()), 4)
    1.0
    """
    s = math.sqrt(max(sigma_low**2 - sigma_high**2, 1e-6))
    k = 2 * int(math.ceil(3.5 * s)) + 1
    return Forward(psf={"kind": "gaussian", "shape": [k, k], "sigma": float(s)}, camera=camera)


def cross_modality_pair(shape: tuple[int, int], *, mode: str = "na", pixel_size: float = 0.05, na_low: float = 0.8,
                        na_high: float = 1.4, wavelength: float = 0.52, sted_factor: float = 3.0,
                        photons: float = 100.0, kind: str = "filaments", offset: float = 100.0,
                        read_noise: float = 1.0, seed: int | np.random.Generator | None = None
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simulate ``(low, high, truth)``: the noisy low-resolution recording (ADU), the noiseless
    high-resolution image (ADU above the offset, same photon scale) and the phantom.

    Parameters
    ----------
    shape : (int, int)
    mode, pixel_size, na_low, na_high, wavelength, sted_factor
        See :func:`modality_sigmas` (pixel size and wavelength in µm).
    photons : float
        Expected photons at phantom intensity 1.
    kind : str
        Phantom kind (:data:`fluorecon.physics.phantoms.KINDS`).
    offset, read_noise : float
        Camera baseline (ADU) and read noise (e-); gain 1 ADU/e-.
    seed : int or Generator
    """
    rng = as_rng(seed)
    s_lo, s_hi = modality_sigmas(mode, pixel_size=pixel_size, na_low=na_low, na_high=na_high,
                                 wavelength=wavelength, sted_factor=sted_factor)
    truth = np.asarray(phantoms.phantom(kind, tuple(shape), int(rng.integers(2**31 - 1))), np.float32)
    cam = Camera(photons=photons, gain=1.0, offset=offset, read_noise=read_noise)
    k_lo = 2 * int(math.ceil(3.5 * s_lo)) + 1
    k_hi = 2 * int(math.ceil(3.5 * s_hi)) + 1
    low, _ = Forward(psf={"kind": "gaussian", "shape": [k_lo, k_lo], "sigma": s_lo}, camera=cam).simulate(truth, rng)
    high = Forward(psf={"kind": "gaussian", "shape": [k_hi, k_hi], "sigma": s_hi}).signal(truth)
    high = np.asarray(high, np.float32) * np.float32(photons * cam.total_gain)
    return np.asarray(low, np.float32), high, truth
