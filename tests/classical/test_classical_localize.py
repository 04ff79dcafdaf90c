"""Classical SMLM localization: MLE accuracy vs Cramér–Rao, detection, post-processing."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.classical.localize import (
    detect,
    drift_correct,
    filter_localizations,
    fit_mle,
    localize,
    merge,
    render,
)
from fluorecon.errors import FluoreconError
from fluorecon.evaluate.smlm import assess, match
from fluorecon.physics.smlm import AstigmaticPSF, Blinking, SMLMCamera, integrated_gaussian, simulate_movie

# Small tensors: one torch thread (two threads on a loaded 2-core machine are much slower).
pytestmark = pytest.mark.usefixtures("one_torch_thread")




def _rois(n, x, y, photons, bg, sigma, r=9, seed=0, sx=None, sy=None):
    ex = integrated_gaussian(np.array([x]), np.array([sx or sigma]), r)[0]
    ey = integrated_gaussian(np.array([y]), np.array([sy or sigma]), r)[0]
    mu = photons * np.outer(ey, ex) + bg
    return np.random.default_rng(seed).poisson(mu, (n, r, r)).astype(np.float64), mu


def test_mle_noiseless_exact():
    _, mu = _rois(1, 4.3, 3.8, 800.0, 5.0, 1.2)
    r = fit_mle(mu[None], 1.2)
    assert r["x"][0] == pytest.approx(4.3, abs=1e-4) and r["y"][0] == pytest.approx(3.8, abs=1e-4)
    assert r["photons"][0] == pytest.approx(800, rel=1e-4) and r["background"][0] == pytest.approx(5, rel=1e-3)


def test_mle_precision_reaches_crlb_monte_carlo():
    """Independent reference: the spread of 3000 fits of the same emitter equals the CRLB (Fisher information)."""
    rois, _ = _rois(3000, 4.4, 4.6, 1000.0, 10.0, 1.3)
    r = fit_mle(rois, 1.3)
    assert r["converged"].mean() > 0.99
    # unbiased
    assert r["x"].mean() == pytest.approx(4.4, abs=0.005) and r["photons"].mean() == pytest.approx(1000, rel=0.01)
    # efficient: empirical SD within ±10 % of the bound (SE of an SD estimate from 3000 samples ≈ 1.3 %)
    assert r["x"].std() / np.median(r["crlb_x"]) == pytest.approx(1.0, abs=0.1)
    assert r["y"].std() / np.median(r["crlb_y"]) == pytest.approx(1.0, abs=0.1)
    assert r["photons"].std() / np.median(r["crlb_photons"]) == pytest.approx(1.0, abs=0.1)
    # the analytic bound for a well-sampled Gaussian without background: σ²/N (Mortensen 2010, b = 0 limit)
    r0 = fit_mle(_rois(1, 4.5, 4.5, 1e5, 1e-3, 1.3, r=15)[1][None], 1.3)
    assert r0["crlb_x"][0] == pytest.approx(np.sqrt((1.3**2 + 1 / 12) / 1e5), rel=0.05)


def test_mle_fit_sigma_and_read_noise():
    rois, _ = _rois(500, 4.5, 4.5, 2000.0, 20.0, 1.6)
    r = fit_mle(rois + np.random.default_rng(1).normal(0, 3, rois.shape), 1.2, fit_sigma=True, read_var=9.0)
    assert np.median(r["sigma"]) == pytest.approx(1.6, rel=0.02)
    assert r["x"].std() / np.median(r["crlb_x"]) == pytest.approx(1.0, abs=0.15)


def test_mle_astigmatic_z():
    psf = AstigmaticPSF(100.0, 250.0, 400.0)
    z_true = np.array([-300.0, 0.0, 200.0])
    rs = []
    for z in z_true:
        sx, sy = psf.sigmas(np.array([z]), 100.0)
        rois, _ = _rois(200, 5.5, 5.5, 3000.0, 10.0, None, r=11, sx=float(sx[0]), sy=float(sy[0]), seed=int(z) + 1000)
        rs.append(fit_mle(rois, psf=psf, pixel_size=100.0))
    for z, r in zip(z_true, rs, strict=True):
        assert np.median(r["z"]) == pytest.approx(z, abs=15)
        assert r["z"].std() / np.median(r["crlb_z"]) == pytest.approx(1.0, abs=0.2)


def test_detect_finds_isolated_spot_only():
    rng = np.random.default_rng(0)
    img = rng.poisson(10.0, (3, 32, 32)).astype(np.float32)
    ex = integrated_gaussian(np.array([20.5]), np.array([1.3]), 32)[0]
    ey = integrated_gaussian(np.array([10.5]), np.array([1.3]), 32)[0]
    img[1] += 600 * np.outer(ey, ex)
    c = detect(img, 1.3, 5.0, noise_var=10.0)
    assert c.tolist() == [[1, 10, 20]]


@pytest.mark.parametrize("camera", [SMLMCamera(baseline=100, gain=0.5, read_noise=1.5), SMLMCamera.smlm2016()],
                         ids=["scmos", "smlm2016-emccd"])
def test_low_density_targets(camera):
    """Issue target: density 0.1 µm⁻²: lateral RMSE ≤ 1.2 × CRLB and Jaccard ≥ 0.9 (simulator ground truth)."""
    frames, truth = simulate_movie(300, (32, 32), 100.0, density=0.1, psf=130.0, camera=camera, background=20,
                                   kinetics=Blinking(on_time=2, off_time=40, photons=2000), seed=0)
    locs = localize(frames, camera, 100.0, 130.0)
    m = assess(locs, truth)
    assert m["jaccard"] >= 0.9
    ip, it = match(locs, truth)
    crlb2 = (locs["crlb_x [nm]"][ip] ** 2 + locs["crlb_y [nm]"][ip] ** 2).mean()
    assert m["rmse_lateral"] <= 1.2 * np.sqrt(crlb2)
    assert abs(m["bias_x"]) < 3 and abs(m["bias_y"]) < 3  # pixel-centre convention consistent with the simulator


def test_deviance_filter_removes_overlapping_pairs():
    """64² fields hold close fluorophore pairs whose overlapping images bias single-emitter fits; the
    Poisson-deviance filter (per degree of freedom ≤ 3) removes them and brings RMSE within 1.2 × CRLB."""
    cam = SMLMCamera.smlm2016()
    frames, truth = simulate_movie(150, (64, 64), 100.0, density=0.1, psf=130.0, camera=cam, background=20,
                                   kinetics=Blinking(on_time=2, off_time=40, photons=2000), seed=1)
    locs = localize(frames, cam, 100.0, 130.0)
    kept = filter_localizations(locs, max_deviance=3.0)
    assert 0.85 * len(locs["frame"]) < len(kept["frame"]) < len(locs["frame"])
    ratios = []
    for t in (locs, kept):
        ip, it = match(t, truth)
        crlb = np.sqrt(np.mean(t["crlb_x [nm]"][ip] ** 2 + t["crlb_y [nm]"][ip] ** 2))
        ratios.append(assess(t, truth)["rmse_lateral"] / crlb)
    assert ratios[1] < ratios[0] and ratios[1] <= 1.2
    assert np.median(kept["deviance"]) == pytest.approx(1.0, abs=0.15)


def test_localize_bad_input():
    cam = SMLMCamera()
    with pytest.raises(FluoreconError, match="pixel size"):
        localize(np.zeros((2, 16, 16)), cam, 0.0, 100.0)
    with pytest.raises(FluoreconError, match="sigma"):
        localize(np.zeros((2, 16, 16)), cam, 100.0, None)
    with pytest.raises(FluoreconError, match="T, Y, X"):
        localize(np.zeros((2, 2, 16, 16)), cam, 100.0, 100.0)


def test_render_histogram_and_gaussian_mass():
    t = {"x [nm]": np.array([55.0, 55.0, 155.0]), "y [nm]": np.array([55.0, 55.0, 55.0]),
         "uncertainty [nm]": np.array([10.0, 10.0, 10.0])}
    h = render(t, 10.0, (200.0, 100.0))
    assert h.shape == (10, 20) and h[5, 5] == 2 and h[5, 15] == 1
    g = render(t, 10.0, (200.0, 100.0), method="gaussian")
    assert g.sum() == pytest.approx(3.0, rel=1e-3)
    with pytest.raises(FluoreconError, match="'y \\[nm\\]'"):
        render({"x [nm]": np.zeros(1)}, 10.0)


def test_drift_correction_recovers_linear_drift():
    rng = np.random.default_rng(1)
    pos = rng.uniform(300, 2700, (500, 2))
    fr = np.repeat(np.arange(1, 201), 25)
    idx = rng.integers(0, 500, len(fr))
    dx, dy = 0.4 * fr, -0.25 * fr + 20 * np.sin(fr / 40)
    t = {"frame": fr, "x [nm]": pos[idx, 0] + dx + rng.normal(0, 8, len(fr)),
         "y [nm]": pos[idx, 1] + dy + rng.normal(0, 8, len(fr))}
    out, drift = drift_correct(t, segments=10)
    true = np.stack([0.4 * np.arange(1, 201), -0.25 * np.arange(1, 201) + 20 * np.sin(np.arange(1, 201) / 40)], 1)
    err = (drift - drift[0]) - (true - true[0])
    assert np.sqrt((err[10:-10] ** 2).mean()) < 8.0


def test_merge_and_filter():
    t = {"frame": np.array([1, 2, 4, 4, 7]), "x [nm]": np.array([100.0, 104.0, 98.0, 500.0, 101.0]),
         "y [nm]": np.array([0.0, 0.0, 0.0, 0.0, 0.0]), "intensity [photon]": np.array([10.0, 20.0, 30.0, 5.0, 7.0]),
         "uncertainty [nm]": np.array([10.0, 10.0, 10.0, 10.0, 10.0])}
    m = merge(t, 20.0, max_gap=2)
    order = np.argsort(m["x [nm]"])
    assert m["detections"][order].tolist() == [3, 1, 1]  # frame 7 is 3 frames after frame 4: new emitter
    assert m["intensity [photon]"][order].tolist()[:1] == [60.0]
    assert m["uncertainty [nm]"][order][0] == pytest.approx(10 / np.sqrt(3))
    f = filter_localizations(t, min_photons=8, max_uncertainty=15)
    assert f["x [nm]"].tolist() == [100.0, 104.0, 98.0]


# ----------------------------------------------------------------------------- nothing detected (empty table)
CAM_EMPTY = SMLMCamera(baseline=100.0, gain=1.0, read_noise=1.0)


def _expected_frame(spots, bg=10.0, sigma_px=1.3, shape=(24, 24)):
    """Forward model: background + Σ photons × integrated Gaussian at (x, y) in pixels (pixel k spans [k, k+1))."""
    img = np.full(shape, bg)
    for x, y, n in spots:
        ex = integrated_gaussian(np.array([x]), np.array([sigma_px]), shape[1])[0]
        ey = integrated_gaussian(np.array([y]), np.array([sigma_px]), shape[0])[0]
        img = img + n * np.outer(ey, ex)
    return img


@pytest.mark.parametrize("kwargs", [{}, {"fit_sigma": True}, {"psf": AstigmaticPSF(130.0, 300.0, 400.0)}])
def test_fit_mle_empty_has_the_keys_and_dtypes_of_a_fit(kwargs):
    """The cause of the KeyError: an empty batch must return every key a one-ROI fit of the same mode returns."""
    _, mu = _rois(1, 4.3, 3.8, 800.0, 5.0, 1.3)
    one, none = fit_mle(mu[None], 1.3, **kwargs), fit_mle(np.zeros((0, 9, 9)), 1.3, **kwargs)
    assert {k: v.dtype for k, v in none.items()} == {k: v.dtype for k, v in one.items()}
    assert all(len(v) == 0 for v in none.values()) and "deviance" in none


def test_localize_empty_frame_gives_empty_table_with_the_columns_of_a_fit():
    truth = (11.3, 8.6)  # pixels
    one = CAM_EMPTY.simulate(_expected_frame([(*truth, 5000.0)])[None], seed=1)
    empty = CAM_EMPTY.simulate(_expected_frame([])[None], seed=2)
    got = localize(one, CAM_EMPTY, 100.0, 130.0)
    assert len(got["frame"]) == 1
    assert abs(got["x [nm]"][0] / 100.0 - truth[0]) < 0.1 and abs(got["y [nm]"][0] / 100.0 - truth[1]) < 0.1
    for frames in (empty, np.full((2, 24, 24), 100.0, np.float32)):  # background + noise, and a flat baseline
        none = localize(frames, CAM_EMPTY, 100.0, 130.0)
        assert {k: v.dtype for k, v in none.items()} == {k: v.dtype for k, v in got.items()}
        assert all(len(v) == 0 for v in none.values())
    # 3D: the empty table keeps the z columns
    astig = localize(empty, CAM_EMPTY, 100.0, psf=AstigmaticPSF(130.0, 300.0, 400.0))
    assert {"z [nm]", "crlb_z [nm]", "deviance"} <= set(astig) and len(astig["z [nm]"]) == 0
    with pytest.raises(FluoreconError, match="no frames"):
        localize(np.zeros((0, 24, 24)), CAM_EMPTY, 100.0, 130.0)


def test_localize_movie_with_empty_frames():
    """Emitters are found only in the frames that hold them, where the forward model put them."""
    truth = {2: (6.4, 15.2), 4: (17.7, 5.5)}  # frame (from 1) → (x, y) in pixels
    exp = np.stack([_expected_frame([(*truth[f], 5000.0)] if f in truth else []) for f in range(1, 6)])
    got = localize(CAM_EMPTY.simulate(exp, seed=3), CAM_EMPTY, 100.0, 130.0)
    assert got["frame"].tolist() == [2, 4]
    for k, f in enumerate(got["frame"]):
        assert abs(got["x [nm]"][k] / 100.0 - truth[f][0]) < 0.1 and abs(got["y [nm]"][k] / 100.0 - truth[f][1]) < 0.1


def test_post_processing_of_an_empty_table():
    none = localize(CAM_EMPTY.simulate(_expected_frame([])[None], seed=2), CAM_EMPTY, 100.0, 130.0)
    assert render(none, 10.0, (2400.0, 2400.0)).shape == (240, 240)
    assert not render(none, 10.0, (2400.0, 2400.0), method="gaussian").any()
    m = merge(none)
    assert len(m["frame"]) == 0 and m["intensity [photon]"].dtype == np.float64
    assert len(filter_localizations(none, min_photons=10, max_deviance=3.0)["frame"]) == 0
    with pytest.raises(FluoreconError, match="table is empty"):
        drift_correct(none, segments=2)
