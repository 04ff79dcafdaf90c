"""Tests of the haze forward model."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from fluorecon.errors import FluoreconError
from fluorecon.physics.scattering import AdditiveForward, HazeForward, simulate_haze

# Small tensors: one torch thread (two threads on a loaded 2-core machine are much slower).
pytestmark = pytest.mark.usefixtures("one_torch_thread")




def test_haze_is_depth_dependent_blur_plus_background():
    y = np.zeros((3, 64, 64), np.float32)
    y[:, 32, 32] = 1000
    f = HazeForward(alpha=(0.0, 1.0), sigma=(2.0, 6.0), background=(0.0, 4.0))
    x = f.expected(y)
    np.testing.assert_allclose(x[0], y[0], atol=1e-4)  # surface: no haze
    # deepest plane: the halo carries α = 1 of the flux, spread with σ = 6, on top of β = 4
    ref = y[2] + ndimage.gaussian_filter(y[2], 6.0, mode="reflect") + 4.0
    np.testing.assert_allclose(x[2], ref, rtol=1e-4, atol=1e-4)
    mid = f.params_at(0.5)
    assert mid == (0.5, 4.0, 2.0)
    assert f.to_dict()["kind"] == "haze"
    with pytest.raises(FluoreconError):
        HazeForward(sigma=(0.0, 1.0))


def test_simulate_haze_and_additive_forward():
    s = simulate_haze((3, 32, 32), seed=0, photons=None)
    np.testing.assert_allclose(s["recording"], s["truth"] + s["haze"], rtol=1e-5)
    assert s["haze"][2].mean() > s["haze"][0].mean()
    a = AdditiveForward(s["haze"])
    np.testing.assert_allclose(a.expected(s["truth"]), s["recording"], rtol=1e-5)
