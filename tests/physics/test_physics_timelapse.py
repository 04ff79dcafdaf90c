"""physics.timelapse: simulated time-lapses with exact ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.errors import FluoreconError
from fluorecon.physics.timelapse import simulate_timelapse


def test_static_scene_without_bleaching_is_constant():
    s = simulate_timelapse((32, 32), n_frames=6, speed=0, deformation=0, bleaching=0, seed=0)
    assert np.allclose(s["truth"], s["truth"][:1], atol=1e-5)
    assert s["movie"].shape == (6, 32, 32) and s["movie"].dtype == np.float32


def test_noise_is_poisson_gaussian_around_the_expected_recording():
    s = simulate_timelapse((32, 32), n_frames=64, speed=0, deformation=0, bleaching=0, photons=50, seed=1)
    resid = s["movie"] - s["expected"]
    assert abs(resid.mean()) < 0.1
    cam = s["camera"]
    assert resid.var() == pytest.approx(float(np.mean(cam.variance(s["expected"]))), rel=0.05)


def test_bleaching_and_drift():
    s = simulate_timelapse((32, 32), n_frames=10, speed=1.0, deformation=0, bleaching=1.0, seed=2)
    assert s["bleach"][-1] == pytest.approx(np.exp(-1.0), rel=1e-5)
    a, b = s["truth"][0], s["truth"][1] / (s["bleach"][1] / s["bleach"][0])
    assert not np.allclose(a, b, atol=1e-3)  # it moved
    with pytest.raises(FluoreconError, match="at least 2 frames"):
        simulate_timelapse((8, 8), n_frames=1)
