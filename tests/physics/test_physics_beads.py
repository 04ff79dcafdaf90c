"""PSF extraction from beads: recovers a known PSF from a synthetic bead image, rejects bad beads."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.errors import FluoreconError
from fluorecon.physics.beads import extract_psf_from_beads
from fluorecon.physics.psf import gaussian_psf, psf_fwhm

SIGMA = (2.5, 1.6, 1.2)


def _add_bead(img, centre, amplitude):
    """Anisotropic Gaussian bead at a sub-pixel centre (analytic, no interpolation)."""
    box = [slice(max(0, int(c) - 12), min(s, int(c) + 13)) for c, s in zip(centre, img.shape, strict=True)]
    grids = np.meshgrid(*[np.arange(b.start, b.stop) for b in box], indexing="ij")
    r2 = sum(((g - c) / s) ** 2 for g, c, s in zip(grids, centre, SIGMA, strict=True))
    img[tuple(box)] += amplitude * np.exp(-0.5 * r2)


def _bead_image(seed=0):
    rng = np.random.default_rng(seed)
    img = np.zeros((32, 128, 128))
    for c in [(16, 20, 20), (15, 20, 100), (17, 64, 60), (16, 105, 25), (16, 100, 100)]:
        _add_bead(img, np.asarray(c) + rng.uniform(-0.5, 0.5, 3), 2000.0)  # sub-pixel positions
    _add_bead(img, (16, 64, 1), 2000.0)  # cut by the border
    _add_bead(img, (16, 57, 60), 1000.0)  # close neighbour of the third bead
    img = rng.poisson(img + 20).astype(np.float32)
    return img, gaussian_psf((21, 21, 21), SIGMA)


def test_recovers_known_psf():
    img, truth = _bead_image()
    psf, info = extract_psf_from_beads(img, voxel_size=(0.2, 0.1, 0.1), crop_shape=(21, 21, 21))
    assert psf.shape == (21, 21, 21) and abs(float(psf.sum()) - 1) < 1e-5
    assert info["n_detected"] >= 6
    assert info["n_used"] == 4  # border bead and the close pair rejected
    assert info["rejected"]["neighbour"] >= 1 and info["rejected"]["border"] >= 1
    corr = np.corrcoef(psf.ravel(), truth.ravel())[0, 1]
    assert corr > 0.98
    f_true = psf_fwhm(truth)
    f_est = psf_fwhm(psf)
    assert all(abs(a - b) / b < 0.12 for a, b in zip(f_est, f_true, strict=True)), (f_est, f_true)
    assert np.unravel_index(np.argmax(psf), psf.shape) == (10, 10, 10)


def test_saturated_beads_rejected():
    img, _ = _bead_image()
    sat = img.copy()
    sat[10:22, 10:30, 10:30] = np.minimum(2 * sat[10:22, 10:30, 10:30], 3000)  # a bright, clipped bead
    _, info = extract_psf_from_beads(sat.astype(np.uint16), crop_shape=(21, 21, 21), saturation=3000)
    assert info["rejected"]["saturated"] == 1 and info["n_used"] == 3


def test_bad_bead_images():
    with pytest.raises(FluoreconError, match="flat"):
        extract_psf_from_beads(np.ones((16, 16)))
    with pytest.raises(FluoreconError):
        extract_psf_from_beads(np.full((16, 16), np.nan))
    with pytest.raises(FluoreconError):
        extract_psf_from_beads(np.ones((2, 2, 2, 2)))


def test_real_beads(shared_data):
    import tifffile

    folder = shared_data("biapol-confocal-deconv")
    img = tifffile.imread(folder / "Bead_Image1_crop.tif")
    ref = tifffile.imread(folder / "psf_averaged_beads.tif")
    psf, info = extract_psf_from_beads(img, voxel_size=(0.125, 0.0225, 0.0225))
    assert info["n_used"] == 4
    f_ref = psf_fwhm(ref)
    assert all(abs(a - b) / b < 0.15 for a, b in zip(info["fwhm_px"], f_ref, strict=True))
