"""Camera noise model: empirical mean/variance of simulations vs the analytic formulas."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.errors import FluoreconError
from fluorecon.physics.camera import Camera


def test_pure_poisson_variance_equals_mean():
    cam = Camera(photons=1.0, gain=1.0, offset=0.0, read_noise=0.0)
    for lam in (0.5, 3.0, 40.0):
        x = cam.simulate(np.full(200_000, lam), seed=1)
        assert x.mean() == pytest.approx(lam, rel=0.01)
        assert x.var() == pytest.approx(lam, rel=0.02)
        assert np.all(x == np.round(x))  # photon counts are integers


@pytest.mark.parametrize(
    "params",
    [
        dict(photons=80, gain=2.5, offset=100, read_noise=3.0, background=4.0),
        dict(photons=30, gain=0.8, offset=50, read_noise=1.2, em_gain=50.0),
        dict(photons=200, gain=1.0, offset=100, read_noise=2.0, bit_depth=12),
    ],
)
def test_empirical_mean_and_variance_match_model(params):
    cam = Camera(**params)
    for s in (0.1, 0.7):
        x = cam.simulate(np.full(200_000, s), seed=7).astype(np.float64)
        mu = float(cam.expected(np.float64(s)))
        # independent closed form, not via cam.variance
        g = params["gain"] * params.get("em_gain", 1.0)
        excess = 2.0 if "em_gain" in params else 1.0
        lam = params["photons"] * s + params.get("background", 0.0)
        var = g * g * excess * lam + (params["gain"] * params["read_noise"]) ** 2
        var += 1 / 12 if "bit_depth" in params else 0.0
        assert x.mean() == pytest.approx(mu, rel=0.01)
        assert float(cam.variance(np.float64(mu))) == pytest.approx(var, rel=1e-9)
        assert x.var() == pytest.approx(var, rel=0.03)


def test_quantisation_and_saturation():
    cam = Camera(photons=5000, gain=1.0, offset=100, read_noise=2.0, bit_depth=12, saturation=3000)
    x = cam.simulate(np.linspace(0, 1, 1000), seed=0)
    assert np.all(x == np.round(x))
    assert x.max() == 3000 and x.min() >= 0
    cam8 = Camera(photons=1000, gain=1.0, offset=0, bit_depth=8)
    assert cam8.simulate(np.ones(100), seed=0).max() == 255


def test_seeded_and_shape_preserving():
    cam = Camera(photons=50)
    s = np.random.default_rng(0).random((2, 16, 16))
    a, b = cam.simulate(s, seed=3), cam.simulate(s, seed=3)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, cam.simulate(s, seed=4))
    assert a.shape == s.shape and a.dtype == np.float32


def test_conversions_invert_expected():
    cam = Camera(photons=40, gain=2.0, offset=90, em_gain=10.0, background=3.0)
    s = np.array([0.0, 0.25, 1.0])
    adu = cam.expected(s)
    np.testing.assert_allclose(cam.to_signal(adu), s)
    np.testing.assert_allclose(cam.to_photons(adu), 40 * s + 3)


def test_expected_and_variance_work_on_torch():
    import torch

    cam = Camera(photons=10, gain=2, offset=5, read_noise=1)
    t = torch.tensor([0.0, 1.0], requires_grad=True)
    e = cam.expected(t)
    e.sum().backward()
    assert torch.allclose(t.grad, torch.tensor([20.0, 20.0]))
    assert torch.allclose(cam.variance(e.detach()), torch.tensor([4.0, 44.0]))


@pytest.mark.parametrize(
    ("kw", "field"),
    [(dict(photons=-5), "photons"), (dict(gain=0), "gain"), (dict(read_noise=-1), "read_noise"),
     (dict(em_gain=0.5), "em_gain"), (dict(bit_depth=0), "bit_depth"), (dict(offset=-3), "offset"),
     (dict(background=-1), "background"), (dict(offset=float("inf")), "finite"), (dict(foo=1), "foo")],
)
def test_bad_camera_parameters(kw, field):
    with pytest.raises(FluoreconError) as e:
        Camera(**kw)
    assert field in str(e.value) and e.value.hint


def test_bad_signals():
    cam = Camera()
    with pytest.raises(FluoreconError, match="negative"):
        cam.simulate(np.array([-1.0, 1.0]))
    with pytest.raises(FluoreconError, match="NaN"):
        cam.simulate(np.array([np.nan]))
    with pytest.raises(FluoreconError, match="empty"):
        cam.simulate(np.array([]))
    with pytest.raises(FluoreconError, match="unrealistically large"):
        Camera(photons=1e9).simulate(np.array([1e6]))
