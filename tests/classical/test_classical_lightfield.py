"""Light-field RL: converges towards the truth on noise-free data; the discrepancy rule stops on noise."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fluorecon.classical.lightfield import poisson_deviance, richardson_lucy_lightfield
from fluorecon.errors import FluoreconError
from fluorecon.physics.camera import Camera
from fluorecon.physics.lightfield import LightFieldOperator, LightFieldOptics, simulate_lightfield

OPT = LightFieldOptics(magnification=20, na=0.5, wavelength=0.52, medium_index=1.0, pitch=100.0, f_ml=2000.0,
                       nnum=5, osr=1)


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    op = LightFieldOperator(OPT, [-4.0, 0.0, 4.0], (40, 40))
    truth = np.zeros(op.volume_shape, np.float32)
    rng = np.random.default_rng(0)
    for z in range(3):
        ys, xs = rng.integers(8, 32, 3), rng.integers(8, 32, 3)
        truth[z, ys, xs] = 200.0
    return op, truth


def _err(x, t):
    return float(np.linalg.norm(x - t) / np.linalg.norm(t))


def test_rl_on_noise_free_data_converges_towards_the_truth(setup):
    op, truth = setup
    clean = op.forward(truth)
    errs = []
    resid = []

    def cb(k, x):
        errs.append(_err(x.numpy(), truth))
        resid.append(float(np.linalg.norm(op.forward(x.numpy()) - clean)))

    vol = richardson_lucy_lightfield(clean, op, 60, callback=cb)
    assert errs[-1] < 0.6 * errs[4] and resid[-1] < 0.2 * resid[0]
    # the flux is kept (RL's fixed point of sum(A x) = sum(d)); beads land at their depth
    assert abs(op.forward(vol).sum() / clean.sum() - 1) < 0.02
    z, y, x = np.unravel_index(np.argmax(truth), truth.shape)
    assert np.argmax(vol[:, y, x]) == z


def test_discrepancy_rule_stops_before_fitting_noise(setup):
    op, truth = setup
    cam = Camera(photons=1.0, gain=2.0, offset=100.0, read_noise=1.5)
    lf, _ = simulate_lightfield(truth * 5, op, cam, seed=1)
    vol, info = richardson_lucy_lightfield(lf, op, 200, offset=100.0, stop="discrepancy", gain=2.0, read_noise=1.5,
                                           return_info=True)
    assert info["stop_reason"] == "discrepancy" and 2 <= info["iterations"] < 200
    assert info["deviance"][-1] <= info["expected_deviance"] * 1.0001
    # a change rule and a fixed count run too
    _, info2 = richardson_lucy_lightfield(lf, op, 200, offset=100.0, stop="change", tol=1e-2, return_info=True)
    assert info2["stop_reason"] == "change"


def test_deviance_is_zero_at_the_data_and_positive_elsewhere():
    z = torch.tensor([0.0, 3.0, 10.0])
    assert poisson_deviance(z, z.clamp(min=1e-6)) < 1e-4
    assert poisson_deviance(z, z + 1) > 0


def test_bad_input_is_refused(setup):
    op, _ = setup
    with pytest.raises(FluoreconError, match="does not match"):
        richardson_lucy_lightfield(np.ones((35, 40)), op, 2)
    with pytest.raises(FluoreconError, match="stop rule"):
        richardson_lucy_lightfield(np.ones((40, 40)), op, 2, stop="magic")
    with pytest.raises(FluoreconError, match="NaN"):
        richardson_lucy_lightfield(np.full((40, 40), np.nan), op, 2)
