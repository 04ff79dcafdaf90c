"""PSF models, measured-PSF cleaning and PSF↔OTF conversions, against analytic references."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from fluorecon.errors import FluoreconError, FluoreconWarning
from fluorecon.physics import psf as P


def _fwhm_from_second_moment(p: np.ndarray, axis: int) -> float:
    """Independent FWHM of a Gaussian from its second central moment (not from psf_fwhm)."""
    prof = p.sum(axis=tuple(i for i in range(p.ndim) if i != axis))
    x = np.arange(prof.size)
    mu = (prof * x).sum() / prof.sum()
    var = (prof * (x - mu) ** 2).sum() / prof.sum()
    return 2 * np.sqrt(2 * np.log(2)) * np.sqrt(var)


@pytest.mark.parametrize(("shape", "sigma"), [((41, 41), 3.0), ((31, 41, 41), (4.0, 2.0, 3.0)), ((64,), 5.0)])
def test_gaussian_psf_sum_centre_fwhm(shape, sigma):
    p = P.gaussian_psf(shape, sigma)
    assert p.dtype == np.float32 and p.shape == shape
    assert p.sum() == pytest.approx(1.0, abs=1e-5)
    assert np.unravel_index(np.argmax(p), p.shape) == tuple(s // 2 for s in shape)
    sig = np.broadcast_to(np.asarray(sigma, float), (len(shape),))
    for ax in range(len(shape)):
        assert _fwhm_from_second_moment(p, ax) == pytest.approx(2.3548 * sig[ax], rel=0.01)
        # the half-maximum crossing (interpolated) agrees too
        assert P.psf_fwhm(p)[ax] == pytest.approx(2.3548 * sig[ax], rel=0.02)


def test_gaussian_psf_from_optics_matches_zhang_formula():
    na, wl, n = 1.2, 0.6, 1.33
    p = P.gaussian_psf_from_optics((41, 61, 61), (0.1, 0.02, 0.02), na, wl, n)
    fz, fy, fx = P.psf_fwhm(p, (0.1, 0.02, 0.02))
    assert fy == pytest.approx(2.3548 * 0.21 * wl / na, rel=0.03)
    assert fz == pytest.approx(2.3548 * 0.66 * wl * n / na**2, rel=0.03)
    conf = P.gaussian_psf_from_optics((61, 61), 0.02, na, wl, n, confocal=True)
    assert P.psf_fwhm(conf, 0.02)[0] < fy  # confocal is sharper


@pytest.mark.parametrize("model", ["born-wolf", "gibson-lanni"])
@pytest.mark.parametrize(("na", "wl", "n"), [(1.4, 0.52, 1.518), (0.8, 0.6, 1.0)])
def test_widefield_lateral_fwhm_is_rayleigh_like(model, na, wl, n):
    dxy = wl / na / 10
    p = P.widefield_psf((9, 65, 65), (0.1, dxy, dxy), na, wl, n, model=model, sample_ri=min(n, 1.33))
    assert p.sum() == pytest.approx(1.0, abs=1e-5)
    assert np.unravel_index(np.argmax(p), p.shape) == (4, 32, 32)
    _, fy, fx = P.psf_fwhm(p, (0.1, dxy, dxy))
    assert fy == pytest.approx(0.51 * wl / na, rel=0.10)
    assert fx == pytest.approx(fy, rel=0.02)


def test_widefield_2d_is_in_focus_plane_and_symmetric():
    p2 = P.widefield_psf((33, 33), 0.04, 1.2, 0.5, 1.33)
    p3 = P.widefield_psf((5, 33, 33), (0.2, 0.04, 0.04), 1.2, 0.5, 1.33)
    np.testing.assert_allclose(p2, p3[2] / p3[2].sum(), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(p2, p2[::-1, ::-1], atol=1e-7)  # centred at shape // 2 (odd)
    np.testing.assert_allclose(p2, p2.T, atol=1e-7)


def test_gibson_lanni_depth_aberration_changes_psf():
    kw = dict(shape=(21, 33, 33), voxel_size=(0.2, 0.05, 0.05), na=1.4, wavelength=0.52, refractive_index=1.518)
    bw = P.widefield_psf(**kw)
    gl = P.widefield_psf(**kw, model="gibson-lanni", sample_ri=1.33, depth=10.0)
    # spherical aberration lowers and spreads the peak and makes the axial profile asymmetric
    assert gl.max() < 0.8 * bw.max()
    axial = gl[:, 16, 16]
    assert not np.allclose(axial, axial[::-1], rtol=0.05)


def test_born_wolf_fallback_agrees_with_psfmodels():
    shape, vs = (9, 49, 49), (0.2, 0.03, 0.03)
    ref = P.widefield_psf(shape, vs, 0.9, 0.55, 1.0)
    own = P._born_wolf_fallback(shape, vs, 0.9, 0.55, 1.0)
    own = (own / own.sum()).astype(np.float32)
    # in-focus plane: both are the Airy pattern
    assert P.psf_fwhm(own[4], vs[1:])[0] == pytest.approx(P.psf_fwhm(ref[4], vs[1:])[0], rel=0.03)
    assert np.abs(own[4] / own[4].max() - ref[4] / ref[4].max()).max() < 0.03
    # out of focus too (non-paraxial defocus phase): whole 3D PSFs agree to a few % of the peak
    assert np.abs(own - ref).max() < 0.03 * ref.max()


def test_fallback_used_when_psfmodels_fails(monkeypatch):
    import psfmodels

    def boom(*a, **k):
        raise RuntimeError("simulated failure")

    monkeypatch.setattr(psfmodels, "make_psf", boom)
    with pytest.warns(FluoreconWarning, match="psfmodels failed"):
        p = P.widefield_psf((65, 65), 0.02, 1.4, 0.52)
    assert P.psf_fwhm(p, 0.02)[0] == pytest.approx(0.51 * 0.52 / 1.4, rel=0.10)


@pytest.mark.parametrize(
    ("kw", "words"),
    [
        (dict(na=1.6, refractive_index=1.518), "smaller than the immersion"),
        (dict(wavelength=-0.5), "wavelength must be positive"),
        (dict(wavelength=520), "nanometres"),
        (dict(na=0), "numerical aperture"),
        (dict(refractive_index=0.5, na=0.4), "below 1"),
        (dict(voxel_size=(0.1, -0.1)), "voxel_size"),
        (dict(model="airy"), "unknown widefield PSF model"),
        (dict(shape=(0, 5)), "shape"),
    ],
)
def test_widefield_bad_parameters(kw, words):
    args = dict(shape=(15, 15), voxel_size=0.05, na=1.2, wavelength=0.5, refractive_index=1.518) | kw
    with pytest.raises(FluoreconError) as e:
        P.widefield_psf(**args)
    assert words in str(e.value) and e.value.hint


def test_gaussian_bad_parameters():
    with pytest.raises(FluoreconError, match="sigma"):
        P.gaussian_psf((9, 9), -1)
    with pytest.raises(FluoreconError, match="3 values but the shape has 2"):
        P.gaussian_psf((9, 9), (1, 2, 3))
    with pytest.raises(FluoreconError, match="smaller than the immersion"):
        P.gaussian_psf_from_optics((9, 9), 0.1, na=1.5, wavelength=0.5, refractive_index=1.33)


@pytest.mark.parametrize(("pshape", "grid"), [((5, 5), (16, 17)), ((4, 7, 6), (8, 16, 15)), ((3,), (10,))])
def test_psf_otf_round_trip_and_dc(pshape, grid):
    rng = np.random.default_rng(0)
    p = rng.random(pshape).astype(np.float32)
    p /= p.sum()
    otf = P.psf_to_otf(p, grid)
    assert otf.shape[-1] == grid[-1] // 2 + 1
    assert float(otf.reshape(-1)[0].real) == pytest.approx(1.0, abs=1e-5)  # DC = sum of the PSF
    back = P.otf_to_psf(otf, pshape, grid).numpy()
    np.testing.assert_allclose(back, p, atol=1e-6)
    full = P.psf_to_otf(p, grid, real=False)
    np.testing.assert_allclose(P.otf_to_psf(full, pshape, grid).numpy(), p, atol=1e-6)


def test_otf_of_centred_symmetric_psf_is_real():
    otf = P.psf_to_otf(P.gaussian_psf((9, 9), 1.5), (32, 32), real=False).numpy()
    assert np.abs(otf.imag).max() < 1e-6  # centre moved exactly to the origin


def test_otf_matches_numpy_reference():
    p = np.random.default_rng(1).random((5, 6))
    grid = (12, 14)
    pad = np.zeros(grid)
    pad[:5, :6] = p
    ref = np.fft.rfftn(np.roll(pad, (-2, -3), axis=(0, 1)))
    np.testing.assert_allclose(P.psf_to_otf(p, grid).numpy(), ref, atol=1e-10)


def test_psf_to_otf_rejects_too_small_grid():
    with pytest.raises(FluoreconError, match="larger than the OTF grid"):
        P.psf_to_otf(np.ones((9, 9)), (5, 5))


def test_load_psf_cleans_a_noisy_shifted_bead():
    rng = np.random.default_rng(3)
    true = P.gaussian_psf((15, 41, 41), (2.0, 1.5, 1.5)).astype(np.float64)
    shifted = ndimage.shift(true, (1.3, -2.6, 3.4), order=3)
    bead = 5000 * shifted / shifted.max() + 100 + rng.normal(0, 2, true.shape)
    p = P.load_psf(bead, crop_shape=(11, 31, 31))
    assert p.shape == (11, 31, 31) and p.dtype == np.float32
    assert p.min() >= 0 and p.sum() == pytest.approx(1.0, abs=1e-5)
    com = ndimage.center_of_mass(p)
    np.testing.assert_allclose(com, (5, 15, 15), atol=0.15)
    ref = P.gaussian_psf((11, 31, 31), (2.0, 1.5, 1.5))
    assert np.abs(p - ref).max() < 0.08 * ref.max()


def test_load_psf_from_file_via_io(tmp_path):
    from fluorecon.io import write_image

    bead = (P.gaussian_psf((21, 21), 2.0) * 1e4 + 50).astype(np.float32)
    f = tmp_path / "bead.tif"
    write_image(f, bead, axes="YX")
    p = P.load_psf(f)
    assert p.shape == (21, 21) and np.unravel_index(p.argmax(), p.shape) == (10, 10)
    with pytest.raises(FluoreconError, match="not found"):
        P.load_psf(tmp_path / "missing.tif")


def test_load_psf_bad_inputs():
    with pytest.raises(FluoreconError, match="sums to"):
        P.load_psf(np.zeros((9, 9)))
    with pytest.raises(FluoreconError, match="empty after subtracting"):
        P.load_psf(np.ones((9, 9)), background=5.0)
    with pytest.raises(FluoreconError, match="4 dimensions"):
        P.load_psf(np.ones((2, 3, 4, 5)))


def test_prepare_psf_resamples_to_image_voxel_size():
    fine = P.gaussian_psf((41, 41), 4.0)  # σ = 4 px at 0.05 µm = 0.2 µm
    p = P.prepare_psf(fine, (64, 64), voxel_size_psf=(0.05, 0.05), voxel_size_image=(0.1, 0.1))
    assert p.sum() == pytest.approx(1.0, abs=1e-5)
    assert p.shape[0] % 2 == 1
    assert _fwhm_from_second_moment(p, 0) == pytest.approx(2.3548 * 2.0, rel=0.05)  # σ = 2 px now
    np.testing.assert_allclose(ndimage.center_of_mass(p), [s // 2 for s in p.shape], atol=0.05)


def test_prepare_psf_crops_to_image_with_warning():
    with pytest.warns(FluoreconWarning, match="cropped"):
        p = P.prepare_psf(P.gaussian_psf((31, 21, 21), (5, 2, 2)), (8, 64, 64))
    assert p.shape == (8, 21, 21)
    with pytest.raises(FluoreconError, match="3 dimensions"):
        P.prepare_psf(np.ones((3, 3, 3)), (32, 32))


def test_make_psf_specs():
    assert P.make_psf({"kind": "gaussian", "shape": [7, 7], "sigma": 1.0}).shape == (7, 7)
    with pytest.raises(FluoreconError, match="unknown PSF kind"):
        P.make_psf({"kind": "foo"})
    with pytest.raises(FluoreconError, match="bad parameters"):
        P.make_psf({"kind": "gaussian", "shape": [7, 7], "sigma": 1.0, "bogus": 1})


def test_vectorial_model_is_close_to_scalar_in_focus():
    kw = dict(shape=(65, 65), voxel_size=0.02, na=1.2, wavelength=0.5, refractive_index=1.33)
    sc = P.widefield_psf(**kw)
    vec = P.widefield_psf(**kw, vectorial=True)
    assert vec.sum() == pytest.approx(1.0, abs=1e-5)
    # polarisation broadens the high-NA spot a little, never by much
    assert 1.0 <= P.psf_fwhm(vec, 0.02)[0] / P.psf_fwhm(sc, 0.02)[0] < 1.15
