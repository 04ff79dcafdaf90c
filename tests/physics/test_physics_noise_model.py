"""Noise-model estimation recovers the known parameters of simulated cameras; real-data smoke test."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fluorecon.errors import FluoreconError
from fluorecon.physics.camera import Camera
from fluorecon.physics.noise_model import (
    NoiseModel,
    estimate_poisson_gaussian,
    fit_variance_line,
    photon_transfer,
)
from fluorecon.physics.phantoms import phantom
from fluorecon.physics.psf import gaussian_psf
from fluorecon.physics.sampling import fft_convolve


@pytest.fixture(scope="module")
def scene():
    y = phantom("mixed", (128, 128), seed=0)
    return 0.05 + fft_convolve(y, gaussian_psf((13, 13), 2.0))


CAMERAS = [
    Camera(photons=200, gain=2.0, offset=100, read_noise=3.0),
    Camera(photons=50, gain=0.5, offset=400, read_noise=1.5, background=5),
    Camera(photons=20, gain=3.0, offset=100, read_noise=1.0, em_gain=10.0),
]


@pytest.mark.parametrize("cam", CAMERAS, ids=["scmos", "low-light", "emccd"])
def test_photon_transfer_recovers_gain_within_10_percent(scene, cam):
    frames = np.stack([cam.simulate(scene, seed=s) for s in range(10)])
    nm = photon_transfer(frames, offset=cam.offset)
    true = NoiseModel.from_camera(cam)
    assert nm.gain == pytest.approx(true.gain, rel=0.10)
    assert nm.method == "photon_transfer" and nm.offset_known
    # the fitted variance curve matches the true one over the fitted range
    m = np.linspace(*nm.mean_range, 20)
    np.testing.assert_allclose(nm.variance(m), true.variance(m), rtol=0.12)
    if cam.em_gain is None:
        assert nm.read_noise_adu == pytest.approx(true.read_noise_adu, abs=0.35 * true.read_noise_adu + 0.5)
        assert abs(nm.noise_correlation) < 0.05  # simulated camera noise is white


def test_photon_transfer_tolerates_bleaching_and_motion(scene):
    cam = CAMERAS[0]
    frames = []
    for t in range(12):
        moved = np.roll(scene, t // 4, axis=1) * (0.97**t)  # bleaching + a 1-px jump every 4 frames
        frames.append(cam.simulate(moved, seed=t))
    nm = photon_transfer(np.stack(frames)[:, None], axis=0, offset=cam.offset)  # (T, 1, Y, X) works too
    assert nm.gain == pytest.approx(2.0, rel=0.10)


@pytest.mark.parametrize("cam", CAMERAS[:2], ids=["scmos", "low-light"])
def test_single_image_estimate_within_15_percent(cam):
    yy, xx = np.mgrid[:192, :192]
    smooth = 0.1 + 0.9 * np.exp(-((yy - 90) ** 2 + (xx - 100) ** 2) / (2 * 50.0**2))
    x = cam.simulate(smooth, seed=0)
    nm = estimate_poisson_gaussian(x, offset=cam.offset)
    true = NoiseModel.from_camera(cam)
    assert nm.gain == pytest.approx(true.gain, rel=0.15)
    assert nm.method == "single_image"


def test_single_image_on_structured_scene(scene):
    cam = CAMERAS[0]
    nm = estimate_poisson_gaussian(cam.simulate(np.stack([scene, scene[::-1]]), seed=1))  # 2 planes
    assert nm.gain == pytest.approx(2.0, rel=0.2)
    assert not nm.offset_known


def test_unknown_offset_keeps_the_variance_line():
    cam = CAMERAS[0]
    ramp = np.tile(np.linspace(0.0, 1.0, 128), (128, 1))
    frames = np.stack([cam.simulate(ramp, seed=s) for s in range(6)])
    nm = photon_transfer(frames)
    # the darkest pixels have no light here, so the assumed offset is about right
    assert nm.offset == pytest.approx(100, abs=3)
    true = NoiseModel.from_camera(cam)
    m = np.linspace(120, 450, 10)
    np.testing.assert_allclose(nm.variance(m), true.variance(m), rtol=0.05)


def test_fit_variance_line_ignores_outlier_bins():
    m = np.linspace(100, 1000, 30)
    v = 2 * m + 50
    v[-4:] *= 3  # motion-inflated bright bins
    a, b, _, _ = fit_variance_line(m, v, np.full(30, 10_000))
    assert a == pytest.approx(2.0, rel=1e-3) and b == pytest.approx(50, abs=1)


def test_noise_model_dict_round_trip_and_camera():
    nm = NoiseModel(gain=2.0, offset=100, read_noise_adu=4.0, method="given")
    d = json.loads(json.dumps(nm.to_dict()))
    back = NoiseModel.from_dict(d)
    assert back.variance(300.0) == pytest.approx(nm.variance(300.0)) == pytest.approx(2 * 200 + 16)
    assert nm.variance(50.0) == pytest.approx(16.0)  # below the offset only read noise
    cam = nm.to_camera(photons=10)
    assert cam.read_noise == pytest.approx(2.0) and cam.gain == 2.0


def test_bad_inputs():
    with pytest.raises(FluoreconError, match="at least 3 repeated frames"):
        photon_transfer(np.ones((2, 32, 32)))
    with pytest.raises(FluoreconError, match="axis 3 does not exist"):
        photon_transfer(np.ones((5, 32, 32)), axis=3)
    with pytest.raises(FluoreconError, match="NaN"):
        photon_transfer(np.full((4, 32, 32), np.nan))
    with pytest.raises(FluoreconError, match="too small"):
        estimate_poisson_gaussian(np.ones((8, 8)))
    with pytest.raises(FluoreconError, match="constant"):
        estimate_poisson_gaussian(np.full((64, 64), 7.0))
    with pytest.raises(FluoreconError, match="not positive"):
        # variance decreasing with the mean is not Poisson–Gaussian data
        rng = np.random.default_rng(0)
        level = np.tile(np.linspace(10, 1000, 64), (64, 1))
        photon_transfer(level + rng.normal(0, 1, (8, 64, 64)) * (1100 - level) / 30)


def test_highpass_removes_live_specimen_changes(scene):
    """Smooth frame-to-frame changes (a live cell) inflate the raw temporal variance, not the high-pass one."""
    cam = CAMERAS[0]
    rng = np.random.default_rng(0)
    frames = []
    for t in range(10):
        wobble = fft_convolve(rng.standard_normal(scene.shape), gaussian_psf((25, 25), 3.0))
        frames.append(cam.simulate(scene * (1 + 0.1 * wobble / wobble.std()), seed=t))
    frames = np.stack(frames)
    hp = photon_transfer(frames, offset=cam.offset)
    raw = photon_transfer(frames, offset=cam.offset, highpass=False)
    assert hp.gain == pytest.approx(2.0, rel=0.10)
    assert raw.gain > 1.3 * hp.gain
    assert raw.method == "photon_transfer_raw"


def test_real_lysosome_repeats(shared_data):
    import tifffile

    folder = shared_data("huanglab-lysosome-repeats")
    frames = tifffile.imread(folder / "1.tif")[:20]
    nm = photon_transfer(frames)
    single = estimate_poisson_gaussian(frames[0])
    # Recorded in docs/physics.md: gain ≈ 2.4 ADU/e- from 50 frames; the single-image fit agrees.
    assert 1.8 < nm.gain < 3.2
    assert nm.r2 > 0.98
    assert single.gain == pytest.approx(nm.gain, rel=0.2)
    assert nm.noise_correlation > 0.3  # raw differences are dominated by the live specimen
