"""verify's global sub-pixel translation fit, against scenes moved analytically (the forward model's ground truth)."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.physics.camera import Camera
from fluorecon.physics.forward import Forward
from fluorecon.trust.verify import MIN_SHIFT, verify

N = 96
SHIFT = (0.45, -0.25)


def _blobs(seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.uniform(-4, N + 4, (60, 2)), rng.uniform(0.8, 2.5, 60), rng.uniform(0.3, 1.0, 60)


def scene(d=(0.0, 0.0), seed: int = 0) -> np.ndarray:
    """Gaussian blobs (some beyond the edges) moved by ``d`` pixels: an exact translation, no interpolation."""
    pos, sig, amp = _blobs(seed)
    yy, xx = np.mgrid[:N, :N].astype(float)
    return sum(a * np.exp(-0.5 * ((yy - p[0] - d[0]) ** 2 + (xx - p[1] - d[1]) ** 2) / s**2)
               for p, s, a in zip(pos, sig, amp, strict=True))


@pytest.fixture(scope="module")
def moved():
    fwd = Forward(psf={"kind": "gaussian", "shape": [15, 15], "sigma": 1.6},
                  camera=Camera(photons=300, offset=100, read_noise=1.5, background=2))
    x, _ = fwd.simulate(scene(SHIFT), seed=4)
    return fwd, np.asarray(x, np.float64)


def test_a_subpixel_drift_is_fitted_not_reported(moved):
    fwd, x = moved
    res = verify(x, 50.0 * scene(), fwd, check_forward=False)
    np.testing.assert_allclose(res.info["shift"], SHIFT, atol=0.03)
    assert res.regions == [] and not res.misfit["flagged"]
    # without the fit the same drift leaves edge dipoles everywhere
    still = verify(x, 50.0 * scene(), fwd, check_forward=False, fit_shift=False)
    assert len(still.regions) >= 3
    assert {r["kind"] for r in still.regions} == {"added", "missing"}


def test_the_shift_fit_does_not_hide_a_hallucinated_punctum(moved):
    fwd, x = moved
    yy, xx = np.mgrid[:N, :N]
    fake = scene() + 0.5 * np.exp(-0.5 * ((yy - 40) ** 2 + (xx - 55) ** 2) / 1.6**2)
    res = verify(x, fake, fwd, check_forward=False)
    np.testing.assert_allclose(res.info["shift"], SHIFT, atol=0.03)
    assert res.regions and res.regions[0]["kind"] == "added"
    assert np.hypot(*(np.array(res.regions[0]["centroid"]) - (40, 55))) < 3


def test_without_drift_nothing_is_resampled():
    fwd = Forward(psf={"kind": "gaussian", "shape": [15, 15], "sigma": 1.6},
                  camera=Camera(photons=300, offset=100, read_noise=1.5, background=2))
    x, _ = fwd.simulate(scene(seed=1), seed=5)
    res = verify(x, scene(seed=1), fwd, check_forward=False)
    plain = verify(x, scene(seed=1), fwd, check_forward=False, fit_shift=False)
    assert res.info["shift"] == [0.0, 0.0]  # below MIN_SHIFT: the prediction is left as it is
    assert MIN_SHIFT <= 0.1
    np.testing.assert_array_equal(res.maps["z"], plain.maps["z"])


def test_the_translation_is_reported_in_the_summary_and_json(moved):
    fwd, x = moved
    res = verify(x, scene(), fwd, check_forward=False)
    assert "translated by (+0.4" in res.summary()
    np.testing.assert_allclose(res.to_dict()["info"]["shift"], SHIFT, atol=0.03)
