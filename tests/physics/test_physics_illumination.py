"""Tests of the illumination forward model (flat-field, dark-field, baseline, shadows)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fluorecon.errors import FluoreconError
from fluorecon.physics.illumination import (
    IlluminationForward,
    MaskForward,
    baseline_drift,
    darkfield,
    shadow_mask,
    simulate_tiles,
    vignetting,
)

# Small tensors: one torch thread (two threads on a loaded 2-core machine are much slower).
pytestmark = pytest.mark.usefixtures("one_torch_thread")




def test_fields_have_documented_properties():
    f = vignetting((40, 50), strength=0.4, seed=0)
    assert f.shape == (40, 50) and abs(f.mean() - 1) < 1e-5 and f.min() > 0
    # the corner farthest from the centre is ~60 % of the centre (strength 0.4, plus tilt)
    assert 0.45 < f.min() / f.max() < 0.75
    d = darkfield((16, 16), level=7, seed=1)
    assert abs(d.mean() - 7) < 1e-3 and d.min() >= 0
    b = baseline_drift(20, level=10, seed=0)
    assert b.shape == (20,) and b[0] > b[-1]
    m = shadow_mask((32, 32), n=2, seed=0)
    assert m.max() == 1.0 and m.min() < 0.6


def test_forward_matches_formula_numpy_and_torch():
    sim = simulate_tiles(5, (16, 16), baseline_level=10, photons=None, seed=3)
    f = IlluminationForward(sim["flatfield"], sim["darkfield"], sim["baseline"])
    ref = sim["flatfield"] * (sim["truth"] + sim["baseline"][:, None, None]) + sim["darkfield"]
    np.testing.assert_allclose(f.expected(sim["truth"]), ref, rtol=1e-5)
    np.testing.assert_allclose(sim["stack"], ref, rtol=1e-5)  # noiseless simulation
    t = f.expected(torch.as_tensor(sim["truth"]))
    assert isinstance(t, torch.Tensor)
    np.testing.assert_allclose(t.numpy(), ref, rtol=1e-5)
    assert f.to_dict()["kind"] == "illumination"
    with pytest.raises(FluoreconError, match="noise model"):
        f.variance(ref)
    assert MaskForward(np.array([0.0, 1.0])).expected(np.array([3.0, 3.0])).tolist() == [0.0, 3.0]


def test_poisson_noise_level():
    sim = simulate_tiles(4, (32, 32), photons=100, dark_level=0, seed=0)
    gain = 100 / 100  # ADU per photon in simulate_tiles (scale 100 / photons)
    resid = sim["stack"] - sim["expected"]
    assert abs(resid.var() / (gain * sim["expected"].mean()) - 1) < 0.1


def test_bad_shapes():
    with pytest.raises(FluoreconError):
        vignetting((5,))
    with pytest.raises(FluoreconError):
        vignetting((8, 8), strength=1.5)
