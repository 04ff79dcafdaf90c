"""The composed Forward model: order of operations, differentiability, serialisation, noise."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy import ndimage

from fluorecon.errors import FluoreconError
from fluorecon.physics.camera import Camera
from fluorecon.physics.forward import Forward
from fluorecon.physics.psf import gaussian_psf

# Small tensors: one torch thread (two threads on a loaded 2-core machine are much slower).
pytestmark = pytest.mark.usefixtures("one_torch_thread")




def test_expected_is_blur_then_block_mean_then_camera():
    rng = np.random.default_rng(0)
    y = rng.random((24, 30)).astype(np.float64)
    psf = gaussian_psf((7, 7), 1.3)
    cam = Camera(photons=50, gain=2.0, offset=100, read_noise=1.0, background=2.0)
    fwd = Forward(psf=psf, subsample=(2, 3), camera=cam)
    ref = ndimage.convolve(y, psf.astype(np.float64), mode="reflect")
    ref = ref.reshape(12, 2, 10, 3).mean(axis=(1, 3))
    ref = 100 + 2.0 * (50 * ref + 2.0)
    out = fwd.expected(y)
    assert out.shape == (12, 10)
    np.testing.assert_allclose(out, ref, rtol=1e-6)
    np.testing.assert_allclose(fwd(y), out)


def test_expected_batched_torch_and_differentiable():
    fwd = Forward(psf={"kind": "gaussian", "shape": [5, 5], "sigma": 1.0}, subsample=2, camera=Camera(photons=10))
    y = torch.rand(2, 1, 8, 8, dtype=torch.float64, requires_grad=True)
    out = fwd.expected(y)
    assert isinstance(out, torch.Tensor) and out.shape == (2, 1, 4, 4)
    assert torch.autograd.gradcheck(fwd.expected, (y[:1, :, :6, :6].detach().requires_grad_(),), fast_mode=True)
    # numpy batch equals per-image results
    yn = y.detach().numpy()
    np.testing.assert_allclose(fwd.expected(yn)[1, 0], fwd.expected(yn[1, 0]))


def test_simulate_noise_matches_variance():
    fwd = Forward(psf=gaussian_psf((9, 9), 2.0), camera=Camera(photons=100, gain=1.5, offset=100, read_noise=2.0))
    y = np.full((64, 64), 0.4, np.float32)
    y[16:48, 16:48] = 0.9
    xs = np.stack([fwd.simulate(y, seed=s)[0] for s in range(60)]).astype(np.float64)
    mu = fwd.expected(y)
    var = fwd.variance(mu)
    np.testing.assert_allclose(xs.mean(0).mean(), mu.mean(), rtol=0.01)
    z = (xs - mu) / np.sqrt(var)
    assert abs(z.mean()) < 0.02
    assert z.var() == pytest.approx(1.0, abs=0.03)  # standardised residuals are unit-variance


def test_simulate_returns_pair_and_is_seeded():
    fwd = Forward(psf=gaussian_psf((5, 5), 1.0), subsample=2, camera=Camera(photons=20))
    y = np.random.default_rng(1).random((16, 16))
    x1, y1 = fwd.simulate(y, seed=5)
    x2, _ = fwd.simulate(y, seed=5)
    assert x1.shape == (8, 8) and y1.shape == (16, 16)
    assert x1.dtype == np.float32 and y1.dtype == np.float32
    np.testing.assert_array_equal(x1, x2)
    np.testing.assert_allclose(y1, y, rtol=1e-6)
    assert not np.array_equal(x1, fwd.simulate(y, seed=6)[0])


@pytest.mark.parametrize(
    "fwd",
    [
        Forward(),
        Forward(psf={"kind": "gaussian_optics", "shape": [9, 9], "voxel_size": [0.1, 0.1], "na": 1.2, "wavelength": 0.5},
                subsample=2, camera=Camera(photons=30, em_gain=20.0, bit_depth=16)),
        Forward(psf=np.random.default_rng(0).random((3, 5, 5)), subsample=(1, 2, 2), padding="constant"),
        Forward(psf=gaussian_psf((17, 33, 33), 2.0), camera={"photons": 5.0}),  # large: base64
    ],
)
def test_to_dict_round_trip(fwd):
    d = json.loads(json.dumps(fwd.to_dict()))
    back = Forward.from_dict(d)
    assert back.to_dict() == fwd.to_dict()
    if fwd.psf is not None:
        np.testing.assert_array_equal(back.psf, fwd.psf)
    y = np.random.default_rng(2).random((6, 20, 20) if fwd.psf is not None and fwd.psf.ndim == 3 else (20, 20))
    np.testing.assert_allclose(back.expected(y), fwd.expected(y), rtol=1e-6)


def test_analytic_psf_stored_as_parameters():
    d = Forward(psf={"kind": "gaussian", "shape": [9, 9], "sigma": 1.5}).to_dict()
    assert d["psf"] == {"spec": {"kind": "gaussian", "shape": [9, 9], "sigma": 1.5}}


def test_variance_without_camera_and_bad_inputs():
    fwd = Forward(psf=gaussian_psf((3, 3), 1.0))
    with pytest.raises(FluoreconError, match="no camera"):
        fwd.variance(np.ones(3))
    with pytest.raises(FluoreconError, match="NaN"):
        fwd.expected(np.array([[np.nan, 1.0], [1.0, 1.0]]))
    with pytest.raises(FluoreconError, match="2 dimensions but the forward model's PSF has 3"):
        Forward(psf=np.ones((3, 3, 3))).expected(np.ones((8, 8)))
    with pytest.raises(FluoreconError, match="sums to"):
        Forward(psf=np.zeros((3, 3)))
    with pytest.raises(FluoreconError, match="subsample"):
        Forward(subsample=0)
    with pytest.raises(FluoreconError, match="Camera"):
        Forward(camera="sCMOS")
    with pytest.raises(FluoreconError, match="padding"):
        Forward(padding="mirror")
    with pytest.raises(FluoreconError, match="newer"):
        Forward.from_dict({"schema": 99})
