"""tasks.denoise: one entry point for classical and learned denoising, output in input units."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from fluorecon.errors import FluoreconError, FluoreconWarning
from fluorecon.physics.camera import Camera
from fluorecon.physics.phantoms import phantom
from fluorecon.tasks.denoise import denoise, learned_methods

CAM = Camera(photons=30.0, gain=2.0, offset=100.0, read_noise=2.0)


@pytest.fixture(scope="module")
def pair():
    y = phantom("filaments", (64, 64), seed=0)
    return CAM.simulate(y, seed=1).astype(np.uint16), np.asarray(CAM.expected(y), np.float64)


def _mse(a, b):
    return float(np.mean((np.asarray(a, np.float64) - b) ** 2))


def test_classical_in_input_units(pair):
    x, truth = pair
    y, info = denoise(x, "YX", method="auto", candidates=("tv", "wavelet"))
    assert y.dtype == np.float32 and y.shape == x.shape
    assert info["kind"] == "classical" and info["method"] in ("tv", "wavelet")
    assert set(info["losses"]) == {"tv", "wavelet"}
    assert abs(y.mean() - truth.mean()) < 0.02 * truth.mean()  # ADU, not normalised
    assert _mse(y, truth) < 0.5 * _mse(x, truth)


def test_replay_params_reproduce_without_estimation(pair):
    """The contract out-of-core processing relies on: method + info['params'] reproduce the run."""
    x, _ = pair
    y, info = denoise(x, "YX", method="wavelet", vst=True)
    assert info["params"]["noise_model"]["gain"] > 0
    y2, info2 = denoise(x, "YX", method=info["method"], **info["params"])
    np.testing.assert_array_equal(y, y2)
    assert info2["calibrated"] is False and info2["sigma"] is None


def test_accepts_imagedata(pair):
    from fluorecon.io import ImageData

    x, _ = pair
    img = ImageData(data=x, axes="YX", voxel_size=None, metadata={})
    y, info = denoise(img, method="tv")
    assert info["axes"] == "YX" and y.shape == x.shape


@pytest.mark.skipif("n2v" not in learned_methods(), reason="learned engine (fluorecon.learn.single_image) unavailable")
def test_learned_scheme_runs_and_returns_input_units(pair):
    x, truth = pair
    y, info = denoise(x, "YX", method="n2v", budget_s=30, steps=4, seed=0, device="cpu", progress=False,
                      patch_size=32, batch_size=4, model={"depth": 1, "width": 4}, tta=False, guard=False)
    assert info["kind"] == "learned" and info["steps"] == 4
    assert y.dtype == np.float32 and y.shape == x.shape
    assert abs(y.mean() - x.mean()) < 0.2 * x.mean()  # denormalised back to ADU (a 4-step net is far from good)


def test_bad_inputs(pair):
    x, _ = pair
    with pytest.raises(FluoreconError):
        denoise(x, "ZYX", method="tv")  # axes do not match
    with pytest.raises(FluoreconError, match="learned"):
        denoise(x, "YX", method="tv", steps=3)
    with pytest.raises(FluoreconError, match="classical"):
        denoise(x, "YX", method="n2v", params={"weight": 0.1})
    with pytest.raises(FluoreconError):
        denoise(x, "YX", method="", budget_s=1)
    with pytest.raises(FluoreconError):
        denoise(x, "YX", method="not-a-method", budget_s=1)
    with pytest.raises(FluoreconError, match="budget"):
        denoise(x, "YX", method="n2v", budget_s=0)


# ------------------------------------------------------------------ guarded learned results (issue 14)
def _stretched_widefield(shape=(96, 96), seed=0, photons=20.0, background=0.3):
    """Physics first: phantom → widefield blur → structured background → camera → 8-bit stretch.

    Returns the uint8 recording and the same stretch of the noiseless recording (the truth).
    """
    from fluorecon.physics.psf import gaussian_psf
    from fluorecon.physics.sampling import fft_convolve

    y = phantom("mixed", shape, seed=seed)
    s = np.asarray(fft_convolve(y, gaussian_psf((21, 21), 2.0)), np.float64)
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]] / max(shape)
    s = s + background * (0.5 + 0.5 * np.sin(2 * np.pi * (1.3 * xx + 0.7 * yy) + seed))
    cam = Camera(photons=photons, gain=1.5, offset=100.0, read_noise=3.0)
    raw = cam.simulate(s, seed=seed + 1).astype(np.float64)
    lo, hi = np.percentile(raw, [0.5, 99.9])

    def stretch(a):
        return np.clip((a - lo) / (hi - lo) * 255, 0, 255)

    return np.round(stretch(raw)).astype(np.uint8), stretch(np.asarray(cam.expected(s), np.float64))


TINY_LEARN = dict(device="cpu", progress=False, patch_size=32, batch_size=8, model={"depth": 1, "width": 8})


@pytest.mark.skipif("n2v" not in learned_methods(), reason="learned engine unavailable")
def test_guard_falls_back_to_classical_when_the_network_is_worse():
    x, truth = _stretched_widefield(seed=0)
    with pytest.warns(FluoreconWarning, match="not better"):
        y, info = denoise(x, "YX", method="n2v", steps=2, seed=0, **TINY_LEARN)  # 2 steps: a useless network
    assert info["requested"] == "n2v" and info["fallback"] == "classical" and info["choice"] == "classical"
    assert info["kind"] == "classical" and info["warnings"] and info["bundle"] is not None
    losses = info["heldout"]["losses"]
    assert losses["learned"] > losses["classical"] and info["heldout"]["pixels"] == 24 * 24
    c, cinfo = denoise(x, "YX", method="auto")
    np.testing.assert_allclose(y, c, rtol=1e-5, atol=1e-4)
    assert info["method"] == cinfo["method"]
    assert _mse(y, truth) < _mse(x, truth)  # against the forward model's truth
    json.dumps({k: v for k, v in info.items() if k != "bundle"})  # everything else is JSON


@pytest.mark.skipif("n2v" not in learned_methods(), reason="learned engine unavailable")
def test_best_returns_the_lowest_heldout_loss_and_auto_stays_classical():
    x, truth = _stretched_widefield(seed=1, photons=8.0)
    y, info = denoise(x, "YX", method="best", steps=40, seed=0, **TINY_LEARN)
    losses = info["heldout"]["losses"]
    assert info["choice"] == min(("learned", "classical", "ensemble", "input"), key=losses.get)
    assert info["requested"] == "best" and info["fallback"] is None
    assert _mse(y, truth) < _mse(x, truth)
    _, ainfo = denoise(x, "YX")  # the default stays classical and fast: no training at all
    assert ainfo["kind"] == "classical" and "bundle" not in ainfo


def test_input_score_uses_the_true_noise_variance():
    """The input's held-out score 2σ̂² needs σ̂²: compare it with the camera model's variance."""
    from fluorecon.tasks.denoise import _noise_variance

    y = phantom("mixed", (128, 128), seed=2)
    cam = Camera(photons=40.0, gain=2.0, offset=100.0, read_noise=3.0)
    x = cam.simulate(y, seed=3)
    e = np.asarray(cam.expected(y), np.float64)
    true = float(np.mean(cam.variance(e)))
    assert abs(_noise_variance(x, e) - true) < 0.25 * true


@pytest.mark.slow
@pytest.mark.skipif("n2v" not in learned_methods(), reason="learned engine unavailable")
@pytest.mark.parametrize("case", ["stretched8bit", "low_counts", "structured_background"])
def test_guarded_n2v_never_returns_the_worse_result(case):
    """Where unguarded training can go wrong: whatever the budget (steps) and seed, the guarded result is
    never worse (true MSE against the forward model's truth) than the worse of input and classical, and
    within 15 % of the better of them — the network is returned only when it is at least about as good."""
    kw = {"stretched8bit": {}, "low_counts": {"photons": 3.0}, "structured_background": {"background": 1.5}}[case]
    for seed in (0, 1, 2):
        x, truth = _stretched_widefield(seed=seed, **kw)
        c, _ = denoise(x, "YX", method="auto")
        m_raw, m_cls = _mse(x, truth), _mse(c, truth)
        for steps in (3, 60):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FluoreconWarning)
                y, info = denoise(x, "YX", method="n2v", steps=steps, seed=seed, **TINY_LEARN)
            m_out = _mse(y, truth)
            assert m_out <= max(m_raw, m_cls), (case, seed, steps, info["heldout"])
            assert m_out <= 1.15 * min(m_cls, m_raw), (case, seed, steps, info["choice"], info["heldout"])
            if steps == 3:  # a 3-step network is useless: the guard must have noticed
                assert info["fallback"] is not None and info["warnings"]


def test_best_is_a_task_method_and_difference_correlation_flags_correlated_noise():
    from scipy import ndimage as ndi

    from fluorecon.tasks.denoise import DenoiseParams, difference_correlation

    assert DenoiseParams(method="best").method == "best"
    x, _ = _stretched_widefield(shape=(128, 128), seed=0)
    white = difference_correlation(x)
    smooth = difference_correlation(ndi.gaussian_filter(x.astype(np.float64), 0.7))
    assert white < -0.3 and smooth > -0.1  # the guard warns above -0.1
