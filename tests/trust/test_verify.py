"""Tests of fluorecon.trust.verify against independent references (forward-model ground truth, analytic tails)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage, stats

from fluorecon.errors import FluoreconError
from fluorecon.physics.camera import Camera
from fluorecon.physics.forward import Forward
from fluorecon.physics.phantoms import mixed, puncta
from fluorecon.trust import verify as V
from fluorecon.trust.verify import forward_model_check, verify, verify_result

CAM = Camera(photons=40, offset=100, read_noise=1.5, background=2)


def blur_forward(sigma: float = 1.6, camera: Camera | None = CAM) -> Forward:
    return Forward(psf={"kind": "gaussian", "shape": [15, 15], "sigma": sigma}, camera=camera)


def blob(shape, centre, sigma):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return np.exp(-0.5 * ((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / sigma**2)


@pytest.fixture(scope="module")
def scene():
    fwd = blur_forward()
    truth = mixed((96, 96), seed=3).astype(np.float64)
    x, _ = fwd.simulate(truth, seed=4)
    return fwd, truth, x.astype(np.float64)


def test_truth_in_arbitrary_units_is_not_flagged_and_scale_is_recovered(scene):
    fwd, truth, x = scene
    res = verify(x, 250.0 * truth, fwd)
    assert res.regions == []
    assert res.scale == pytest.approx(1 / 250.0, rel=0.03)  # the forward model's units are truth units
    assert abs(res.background) < 1.0  # ADU: the camera offset is in f already
    d = res.to_dict()
    assert {"flagged", "regions", "scale", "forward_model"} <= set(d)


def test_added_and_missing_punctum_are_located(scene):
    fwd, truth, x = scene
    b = blob(truth.shape, (40, 55), 1.6)
    res = verify(x, truth + 1.5 * b, fwd)
    assert res.n_added >= 1 and res.regions[0]["kind"] == "added"
    assert np.hypot(*(np.array(res.regions[0]["centroid"]) - (40, 55))) < 3
    assert res.regions[0]["p_value"] < 1e-6
    # the specimen has the punctum, the reconstruction does not: missing
    x2, _ = fwd.simulate(truth + 1.5 * b, seed=5)
    res2 = verify(x2, truth, fwd)
    assert [r["kind"] for r in res2.regions][:1] == ["missing"]
    assert np.hypot(*(np.array(res2.regions[0]["centroid"]) - (40, 55))) < 3


def test_image_level_false_alarm_rate_identity_low_counts():
    """Truth checked against Poisson recordings at ~3 counts/pixel: rate of any region ≈ alpha or less."""
    alpha, n = 0.2, 40
    hits = 0
    for seed in range(n):
        rng = np.random.default_rng(seed)
        truth = 3.0 * (0.3 + mixed((48, 48), seed=seed))
        x = rng.poisson(truth).astype(np.float64)
        res = verify(x, truth, None, gain=1.0, offset=0.0, read_noise=0.0, check_forward=False, alpha=alpha)
        hits += bool(res.regions)
    # binomial(40, 0.2): P(X > 15) < 0.5 %
    assert hits <= 15


def test_skew_normalisation_maps_gamma_quantiles_to_normal_quantiles_in_both_tails():
    k = 20.0  # standardised Gamma(k): skewness 2/sqrt(k)
    q = np.array([1e-5, 1e-4, 1e-3, 0.01, 0.1, 0.6, 0.9, 0.99, 0.999, 0.9999, 0.99999])
    t = (stats.gamma.ppf(q, k) - k) / np.sqrt(k)
    z = V._normalise_skew(t, np.full_like(t, 2 / np.sqrt(k)))
    np.testing.assert_allclose(z, stats.norm.ppf(q), atol=0.06)
    # without the correction both tails would be off by far more
    assert abs(t[-1] - stats.norm.ppf(q[-1])) > 0.5 and abs(t[0] - stats.norm.ppf(q[0])) > 0.5
    # a negative skewness mirrors it
    np.testing.assert_allclose(V._normalise_skew(-t, np.full_like(t, -2 / np.sqrt(k))), -stats.norm.ppf(q), atol=0.06)


def test_light_tail_of_poisson_matched_filter_is_normal_after_the_correction():
    """0.5 counts per pixel: the lower tail of the matched-filter statistic (an ``added`` structure) is far shorter
    than the normal one; corrected, its tail probability is close to the normal one (and not above it)."""
    rng = np.random.default_rng(0)
    mu = 0.5
    g = np.arange(-5, 6) ** 2
    t = np.exp(-0.5 * (g[:, None] + g[None, :]) / 1.2**2)
    x = rng.poisson(mu, (40000, 11, 11)).astype(float)
    T = ((x - mu) * t).sum((1, 2)) / np.sqrt(mu * (t * t).sum())
    gam = mu * (t**3).sum() / (mu * (t * t).sum()) ** 1.5  # exact skewness of the weighted Poisson sum
    z = V._normalise_skew(T, np.full_like(T, gam))
    ref = stats.norm.cdf(-2.5)
    assert 0.6 * ref < np.mean(z < -2.5) < 1.2 * ref
    assert np.mean(T < -2.5) < 0.2 * ref


def test_euler_characteristic_tail_matches_simulated_fields():
    rng = np.random.default_rng(0)
    sigma, n, z = 2.0, 400, 3.3
    maxima = []
    for _ in range(n):
        f = ndimage.gaussian_filter(rng.normal(size=(64, 64)), sigma, mode="wrap")
        maxima.append(f.max() / f.std())
    emp = np.mean(np.array(maxima) > z)
    fwhm = np.full(2, sigma * np.sqrt(8 * np.log(2)))
    p = V._p_max(z, V._resels(np.array([64, 64]) / fwhm), 64 * 64)
    assert 0.6 * emp <= p <= 1.6 * emp + 0.01


def test_smooth_intensity_drift_is_absorbed_by_the_scale_field_not_reported():
    """The recording's specimen is 25 % brighter on one side and 25 % darker on the other (illumination drift)."""
    fwd = blur_forward()
    truth = mixed((128, 128), seed=7).astype(np.float64)
    ramp = 1.0 + 0.25 * np.linspace(-1, 1, 128)[None, :] * np.ones((128, 1))
    x, _ = fwd.simulate(truth * ramp, seed=8)
    x = x.astype(np.float64)
    fixed = verify(x, 5.0 * truth, fwd, scale_degree=0, check_forward=False)
    res = verify(x, 5.0 * truth, fwd, check_forward=False)
    # one global scale leaves the drift in the residual (its spread far above the noise); the field does not
    assert fixed.misfit["spread"] > 1.5 and res.misfit["spread"] < 1.25
    assert res.regions == [] and not res.misfit["flagged"]
    lo, hi = res.info["scale_field"]["range"]
    assert lo * 5 == pytest.approx(0.75, abs=0.06) and hi * 5 == pytest.approx(1.25, abs=0.06)
    # a punctum the reconstruction adds is still found
    fake = truth + 1.5 * blob(truth.shape, (64, 100), 1.6)
    assert [r["kind"] for r in verify(x, fake, fwd, check_forward=False).regions][:1] == ["added"]


def test_dark_variance_floor_is_the_recording_variance():
    rng = np.random.default_rng(0)
    x = rng.poisson(np.where(np.arange(256)[None, :] < 40, 1.5, 30.0) * np.ones((256, 1))).astype(float)
    assert V._dark_variance(x) == pytest.approx(1.5, rel=0.15)  # Poisson: variance = mean in the dark part
    assert V._dark_variance(np.full((64, 64), 3.0)) == pytest.approx(1 / 12)  # quantisation of integer data


def test_psf_mismatch_is_detected_and_true_psf_is_not():
    truth = puncta((128, 128), seed=1, size=(0.3, 0.8))
    cam = Camera(photons=1000, offset=100, read_noise=1.5)
    assumed = blur_forward(1.6, cam)
    for true_sigma, expect in ((1.6, False), (2.4, True), (1.07, True)):
        x, _ = blur_forward(true_sigma, cam).simulate(truth, seed=2)
        d = forward_model_check(x, assumed.expected(truth), assumed)
        assert d["flagged"] is expect, (true_sigma, d["verdict"])
        assert d["psf_scale"] == pytest.approx(true_sigma / 1.6, rel=0.2)


def test_duck_typed_forward_and_task_result():
    from fluorecon.tasks.contract import IdentityForward, Result

    rng = np.random.default_rng(0)
    truth = 20.0 * (0.2 + mixed((64, 64), seed=0))
    x = rng.poisson(truth).astype(np.float64)
    fw = IdentityForward()  # variance() raises: the noise model is estimated
    assert verify(x, truth / 20, fw).regions == []
    res = Result(outputs={"image": truth.astype(np.float32)}, forward=fw)
    out = verify_result(x, res)
    assert out.regions == [] and out.scale == pytest.approx(1.0, rel=0.05)

    class Blur:  # any object with expected/variance
        def expected(self, y):
            return ndimage.gaussian_filter(np.asarray(y, float), 1.5)

        def variance(self, m):
            return np.maximum(m, 1e-3)

    xb = rng.poisson(Blur().expected(truth)).astype(np.float64)
    fake = truth.copy()
    fake += 60 * blob(truth.shape, (30, 30), 1.5)
    r = verify(xb, fake, Blur())
    assert r.regions and r.regions[0]["kind"] == "added"


def test_three_d_and_leading_channel_axes():
    fwd = Forward(psf={"kind": "gaussian", "shape": [7, 9, 9], "sigma": [1.5, 1.2, 1.2]}, camera=CAM)
    truth = mixed((16, 40, 40), seed=0)
    x, _ = fwd.simulate(truth, seed=1)
    assert verify(x, truth, fwd).regions == []
    rng = np.random.default_rng(1)
    t2 = 10 + 30 * np.stack([mixed((40, 40), seed=2), mixed((40, 40), seed=3)])
    x2 = rng.poisson(t2).astype(float)
    fake = t2.copy()
    fake[1] += 40 * blob((40, 40), (20, 20), 1.5)
    res = verify(x2, fake, None, axes="CYX", gain=1, offset=0, read_noise=0)
    assert res.regions and res.regions[0]["peak"][0] == 1 and res.regions[0]["kind"] == "added"


@pytest.mark.parametrize(("recon", "kw", "match"), [
    (np.ones((32, 33)), {}, "--axes"),
    (np.where(np.eye(32) > 0, np.nan, 1.0), {}, r"first at pixel \(0, 0\)"),
    (-np.ones((32, 32)), {}, "negative"),
    (np.zeros((32, 32)), {}, "all zeros"),
    (np.ones((32, 32)), {"gain": 0.0}, "gain"),
])
def test_bad_input_is_a_clear_error(recon, kw, match):
    x = np.random.default_rng(0).poisson(10, (32, 32)).astype(float)
    with pytest.raises(FluoreconError, match=match):
        verify(x, recon, None, **kw)


def test_psf_with_more_dimensions_than_the_image():
    f3 = Forward(psf={"kind": "gaussian", "shape": [5, 5, 5], "sigma": 1.0})
    x = np.random.default_rng(0).poisson(10, (32, 32)).astype(float)
    with pytest.raises(FluoreconError, match="dimensions"):
        verify(x, np.ones((32, 32)), f3)


# ------------------------------------------------------------------ recording domain: other grids, tables
def _where(res, kind="added"):
    return [r["centroid"] for r in res.regions if r["kind"] == kind]


def test_subsampling_forward_checks_on_the_recording_grid():
    """A 2×-sub-sampled recording of a fine-grid truth: truth clean, an invented punctum found where it was put."""
    fwd = Forward(psf={"kind": "gaussian", "shape": [15, 15], "sigma": 2.0}, subsample=2, camera=CAM)
    truth = mixed((96, 96), seed=3).astype(np.float64)
    x, _ = fwd.simulate(truth, seed=4)
    assert x.shape == (48, 48)
    res = verify(x, 3.0 * truth, fwd)
    assert res.regions == [] and res.info["domain"] == "recording"
    assert res.scale == pytest.approx(1 / 3.0, rel=0.05)
    fake = truth + 2.0 * blob(truth.shape, (40, 60), 2.0)
    res = verify(x, fake, fwd)
    added = _where(res)
    assert added and np.hypot(*(np.array(added[0]) - (19.75, 29.75))) < 2
    assert res.maps["z"].shape == x.shape and res.to_dict()["unconfirmed_max"] is None


def test_sim_result_is_checked_against_its_raw_frames():
    from fluorecon.tasks.contract import execute
    from fluorecon.tasks.registry import get

    task = get("sim")
    ex = task.example()
    result = execute(task, ex["inputs"], task.params(**ex["params"]))
    raw = ex["inputs"]["image"]
    img = result.image
    assert img.shape == (96, 96) and raw.data.shape == (9, 48, 48) and img.min() < 0  # Wiener ringing
    res = verify_result(raw, result)
    assert res.regions == []  # (the Wiener filter's smoothing may still be reported as widespread misfit)
    fake = img + float(img.max()) * blob(img.shape, (40, 60), 1.5)
    res = verify(raw.data, fake, result.forward, axes="TYX")
    assert res.regions and all(r["kind"] == "added" for r in res.regions)
    for c in _where(res):  # leading frame index, then the raw grid's (y, x)
        assert len(c) == 3 and np.hypot(c[1] - 19.75, c[2] - 29.75) < 2


def test_localization_table_is_checked_against_the_movie():
    from fluorecon.physics.smlm import Blinking, SMLMCamera, simulate_movie
    from fluorecon.tasks.contract import Table, execute
    from fluorecon.tasks.registry import get

    task = get("localize")
    ex = task.example()
    movie = ex["inputs"]["movie"]
    _, truth = simulate_movie(6, (24, 24), 100.0, density=0.5, psf=130.0, camera=SMLMCamera.smlm2016(),
                              kinetics=Blinking(on_time=2, off_time=4), seed=0)  # the example's own truth
    result = execute(task, ex["inputs"], task.params(**ex["params"]))
    assert verify(movie.data, truth, result.forward, axes="TYX").regions == []
    res = verify_result(movie, result)
    assert res.n_added == 0 and res.scale == 1.0  # a table's photons are absolute units
    cols = {k: np.asarray(v) for k, v in result.image.columns.items()}
    fake = {k: np.append(v, v[0]) for k, v in cols.items()}
    fake["frame"][-1], fake["x [nm]"][-1], fake["y [nm]"][-1] = 3, 1250.0, 850.0  # frame 3 = index 2
    res = verify(movie.data, Table(fake, meta=result.image.meta), result.forward, axes="TYX")
    assert res.regions[0]["kind"] == "added"
    assert np.allclose(res.regions[0]["centroid"], (2, 8.0, 12.0), atol=1.0)


def test_negative_ringing_is_accepted_but_negative_light_is_not(scene):
    fwd, truth, x = scene
    ring = truth - 0.3 * blob(truth.shape, (70, 20), 0.4)  # a sub-PSF negative dip: the blurred light stays ≥ 0
    assert ring.min() < -0.2
    verify(x, ring, fwd, check_forward=False)
    dark = truth - 3.0 * blob(truth.shape, (70, 20), 3.0)
    with pytest.raises(FluoreconError, match="predicted from the reconstruction has .* negative"):
        verify(x, dark, fwd, check_forward=False)


def test_a_prediction_of_another_shape_names_both_shapes():
    fwd = Forward(psf={"kind": "gaussian", "shape": [9, 9], "sigma": 1.0}, subsample=2)
    x = np.random.default_rng(0).poisson(10, (32, 32)).astype(float)
    with pytest.raises(FluoreconError, match=r"\(24, 24\).*\(32, 32\)"):
        verify(x, np.ones((48, 48)), fwd)


def test_task_check_never_turns_a_result_into_an_error():
    """``--check`` (cli.taskcmd._verify): a check that cannot run says why; one that runs uses the task's f."""
    from fluorecon.cli.taskcmd import _verify
    from fluorecon.io import ImageData
    from fluorecon.tasks.contract import Result

    class Broken:
        def expected(self, y):
            raise RuntimeError("no pattern")

    rec = ImageData(np.random.default_rng(0).poisson(10, (32, 32)).astype(np.float32), "YX", None, {})
    for fwd in (None, Broken()):
        out = _verify(rec, Result(outputs={"image": np.ones((64, 64), np.float32)}, forward=fwd))
        assert out["summary"].startswith("check: not possible (") and out["flagged"] is None
    fine = Forward(psf={"kind": "gaussian", "shape": [9, 9], "sigma": 1.5}, subsample=2,
                   camera=Camera(photons=40, offset=100, read_noise=1.5))
    truth = mixed((64, 64), seed=1)
    x, _ = fine.simulate(truth, seed=2)
    out = _verify(ImageData(x, "YX", None, {}), Result(outputs={"image": truth.astype(np.float32)}, forward=fine))
    assert out["flagged"] is False and out["details"]["info"]["domain"] == "recording"
