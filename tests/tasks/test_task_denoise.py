"""tasks.denoise: one entry point for classical and learned denoising, output in input units."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.errors import FluoreconError
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
                      patch_size=32, batch_size=4, model={"depth": 1, "width": 4}, tta=False)
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
