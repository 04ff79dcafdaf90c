"""SMLM forward model: integrated PSF, cameras, blinking, movies, re-rendering from a table."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate

from fluorecon.errors import FluoreconError
from fluorecon.physics.smlm import (
    AstigmaticPSF,
    Blinking,
    GaussianPSF,
    LocalizationForward,
    SMLMCamera,
    blinking_emitters,
    integrated_gaussian,
    render_expected,
    simulate_movie,
    structure,
)


def test_integrated_gaussian_matches_quadrature():
    c, s = 3.3, 0.9
    e = integrated_gaussian(np.array([c]), np.array([s]), 7)[0]
    ref = [integrate.quad(lambda u: math.exp(-0.5 * ((u - c) / s) ** 2) / (s * math.sqrt(2 * math.pi)), k, k + 1)[0]
           for k in range(7)]
    np.testing.assert_allclose(e, ref, atol=1e-10)


def test_smlm2016_camera_conversion():
    cam = SMLMCamera.smlm2016()
    assert cam.baseline == 100 and cam.em_gain == 300 and cam.read_noise == 74.4
    assert cam.gain == pytest.approx(1 / 45)  # 45 e-/ADU → 1/45 ADU per electron
    assert cam.total_gain == pytest.approx(300 / 45)
    assert float(cam.to_photons(cam.expected(np.array(37.0)))) == pytest.approx(37.0)


@pytest.mark.parametrize("cam", [SMLMCamera(baseline=100, gain=1 / 45, em_gain=300, read_noise=74.4),
                                 SMLMCamera(baseline=50, gain=2.0, read_noise=1.5)])
def test_camera_mean_and_variance(cam):
    lam = np.full((300, 300), 6.0, np.float32)
    x = cam.simulate(lam, seed=0)
    mu = float(cam.expected(lam)[0, 0])
    assert x.mean() == pytest.approx(mu, rel=0.01)
    assert x.var() == pytest.approx(float(cam.variance(np.array(mu))), rel=0.05)


def test_scmos_maps_and_bad_gain():
    off = (100 + 10 * np.arange(16)[None, :] * np.ones((16, 1))).tolist()
    rn = np.full((16, 16), 2.0)
    rn[:, :8] = 10.0
    cam = SMLMCamera(baseline=0, gain=1.0, offset_map=off, read_noise_map=rn.tolist())
    x = cam.simulate(np.zeros((2000, 16, 16), np.float32), seed=0)
    np.testing.assert_allclose(x.mean(0), np.asarray(off), atol=1.1)  # 5 SE of the mean
    sd = x.std(0)
    assert sd[:, :8].mean() == pytest.approx(10, rel=0.05) and sd[:, 8:].mean() == pytest.approx(2, rel=0.05)
    with pytest.raises(FluoreconError, match="gain"):
        SMLMCamera(gain=0)
    with pytest.raises(FluoreconError, match="em_gain"):
        SMLMCamera(em_gain=0.5)


def test_blinking_duty_cycle_and_bleaching():
    pos = np.zeros((400, 3))
    k = Blinking(on_time=2.0, off_time=18.0, bleach=0.0, photons=1000, photons_cv=0.0)
    em = blinking_emitters(pos, 200, k, seed=0)
    on_frac = em["on_fraction"].sum() / (400 * 200)
    assert on_frac == pytest.approx(k.duty, rel=0.1)
    # photons per full on-frame
    full = em["on_fraction"] > 0.999
    np.testing.assert_allclose(em["intensity [photon]"][full], 1000.0, rtol=2e-3)
    bleached = blinking_emitters(pos, 200, Blinking(on_time=2, off_time=18, bleach=0.5), seed=0)
    assert len(bleached["frame"]) < 0.3 * len(em["frame"])


def test_structures_inside_fov():
    for kind in ("uniform", "filaments", "clusters"):
        p = structure(kind, 500, (2000.0, 1000.0), seed=1)
        assert p.shape == (500, 3)
        assert (p[:, 0] >= 0).all() and (p[:, 0] < 2000).all() and (p[:, 1] >= 0).all() and (p[:, 1] < 1000).all()
    with pytest.raises(FluoreconError):
        structure("spirals", 5, (10.0, 10.0))


def test_render_pixel_centre_convention():
    # an emitter at the centre of pixel (row 4, col 6): x = 6.5 px, y = 4.5 px
    img = render_expected([1], [650.0], [450.0], [1000.0], 1, (11, 13), 100.0, GaussianPSF(90.0), background=2.0)
    sig = img[0] - 2.0
    assert np.unravel_index(sig.argmax(), sig.shape) == (4, 6)
    yy, xx = np.indices(sig.shape)
    assert (sig * xx).sum() / sig.sum() + 0.5 == pytest.approx(6.5, abs=1e-3)
    assert (sig * yy).sum() / sig.sum() + 0.5 == pytest.approx(4.5, abs=1e-3)
    assert sig.sum() == pytest.approx(1000.0, rel=1e-4)


def test_astigmatic_widths():
    psf = AstigmaticPSF(100.0, 250.0, 400.0)
    sx, sy = psf.sigmas(np.array([-250.0, 0.0, 250.0]), 100.0)
    assert sy[0] == pytest.approx(1.0) and sx[2] == pytest.approx(1.0) and sx[1] == pytest.approx(sy[1])
    dsx, dsy = psf.dsigmas_dz(np.array([100.0]), 100.0)
    h = 1e-3
    num = (psf.sigmas(np.array([100.0 + h]), 100.0)[0] - psf.sigmas(np.array([100.0 - h]), 100.0)[0]) / (2 * h)
    assert dsx[0] == pytest.approx(num[0], rel=1e-5)


def test_movie_mean_matches_truth():
    cam = SMLMCamera(baseline=100, gain=2.0, read_noise=1.0)
    frames, truth = simulate_movie(40, (32, 32), 100.0, density=1.0, psf=120.0, camera=cam, background=10.0, seed=3)
    assert frames.shape == (40, 32, 32) and frames.dtype == np.float32
    photons = cam.to_photons(frames).sum() - 10.0 * frames.size
    # emitters near the edge lose part of their PSF: compare with the noiseless rendering of the truth
    ref = render_expected(truth["frame"], truth["x [nm]"], truth["y [nm]"], truth["intensity [photon]"], 40,
                          (32, 32), 100.0, 120.0).sum()
    assert ref > 0.85 * truth["intensity [photon]"].sum()
    assert photons == pytest.approx(ref, rel=0.01)
    assert truth["frame"].min() >= 1 and truth["frame"].max() <= 40


def test_forward_rerenders_the_movie():
    cam = SMLMCamera(baseline=100, gain=1.0, read_noise=1.0)
    frames, truth = simulate_movie(5, (24, 24), 100.0, density=0.5, psf=130.0, camera=cam, background=15.0, seed=0)
    fwd = LocalizationForward(frames.shape, 100.0, 130.0, cam, background=15.0)
    e = fwd.expected(truth)
    assert e.shape == frames.shape
    chi2 = ((frames - e) ** 2 / fwd.variance(e)).mean()
    assert chi2 == pytest.approx(1.0, abs=0.1)
    with pytest.raises(FluoreconError, match="intensity"):
        fwd.expected({"frame": [1], "x [nm]": [1.0], "y [nm]": [1.0]})
    assert fwd.to_dict()["kind"] == "smlm-localizations"
