"""Tests of the light-sheet shadow simulator and the occlusion forward model (against analytic values)."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.errors import FluoreconError
from fluorecon.physics.noise_model import NoiseModel
from fluorecon.physics.occlusion import (
    OcclusionForward,
    absorbers,
    check_mask,
    propagate_sheet,
    random_shadow_mask,
    simulate_shadows,
)
from fluorecon.trust.verify import verify


def test_beer_lambert_behind_one_absorber_in_both_directions():
    od = np.zeros((9, 12))
    od[4, 3] = np.log(4.0)  # transmission 1/4 through that pixel
    fwd = propagate_sheet(od, spread=0.0)
    np.testing.assert_allclose(fwd[4, :4], 1.0)
    np.testing.assert_allclose(fwd[4, 4:], 0.25, rtol=1e-6)
    np.testing.assert_allclose(np.delete(fwd, 4, axis=0), 1.0)
    back = propagate_sheet(od, spread=0.0, direction=-1)
    np.testing.assert_allclose(back[4, 3:], 1.0)
    np.testing.assert_allclose(back[4, :3], 0.25, rtol=1e-6)
    both = propagate_sheet(od, spread=0.0, direction=0)  # dual-sided: the mean of the two sheets
    np.testing.assert_allclose(both[4, 5:], 0.625, rtol=1e-6)
    np.testing.assert_allclose(both[4, :3], 0.625, rtol=1e-6)
    # the Y axis is the transpose
    np.testing.assert_allclose(propagate_sheet(od.T, axis=-2, spread=0.0), fwd.T)


def test_refill_and_spread_soften_the_shadow_with_distance():
    od = np.zeros((41, 200))
    od[17:24, 5] = 5.0  # a 7-pixel-wide, nearly opaque absorber
    m = propagate_sheet(od, spread=0.3)

    def edge_width(col: np.ndarray) -> int:  # pixels between 20 % and 80 % of the step
        return int(np.sum((col[:20] > 0.2) & (col[:20] < 0.8)))

    assert edge_width(m[:, 190]) > edge_width(m[:, 10])
    refilled = propagate_sheet(od, spread=0.0, refill=0.01)
    # refill r per pixel: 1 − I decays as (1 − r)^distance
    np.testing.assert_allclose(1 - refilled[20, 106], (1 - refilled[20, 6]) * 0.99**100, rtol=1e-4)


def test_absorber_central_ray_has_the_drawn_transmission():
    for seed in range(3):
        od = absorbers((48, 64), n=1, transmission=(0.05, 0.05), seed=seed)
        row = od[np.unravel_index(np.argmax(od), od.shape)[0]]
        assert np.exp(-row.sum()) == pytest.approx(0.05, rel=0.02)


def test_simulation_statistics_and_forward_model():
    sim = simulate_shadows((2, 96, 96), seed=3, photons=100.0, read_noise=0.0)
    m = sim["mask"]
    assert m.shape == (2, 96, 96) and 0 <= m.min() < 0.3 and m.max() == 1.0
    fwd = OcclusionForward(m, offset=sim["offset"])
    np.testing.assert_allclose(fwd.expected(sim["truth"]), sim["expected"], rtol=1e-5, atol=1e-3)
    # offset not attenuated: under a total shadow the recording is the offset
    assert fwd.expected(np.full_like(m, 500.0))[m < 1e-3].max(initial=100.0) == pytest.approx(100.0, abs=0.5)
    # Poisson camera (gain 1): the residual variance equals the expected photo-electrons
    resid = sim["recording"] - sim["expected"]
    assert np.var(resid) == pytest.approx(np.mean(sim["expected"] - 100.0), rel=0.05)
    with pytest.raises(FluoreconError, match="no noise model"):
        fwd.variance(sim["expected"])
    nm = NoiseModel(gain=1.0, offset=100.0, read_noise_adu=0.0)
    np.testing.assert_allclose(OcclusionForward(m, 100.0, nm).variance(np.full(3, 150.0)), 50.0)
    assert fwd.to_dict()["kind"] == "occlusion"


def test_verify_accepts_the_truth_and_flags_added_structure_through_the_mask():
    sim = simulate_shadows((96, 96), seed=4, photons=100.0)
    fwd = OcclusionForward(sim["mask"], offset=sim["offset"])
    ok = verify(sim["recording"], sim["truth"], fwd, gain=1.0, offset=100.0, fit_scale=False, background=None)
    assert not ok.flagged
    bad = sim["truth"].copy()
    clear = np.argwhere(sim["mask"][8:-8, 8:-8] > 0.99)[0] + 8
    bad[clear[0] - 3:clear[0] + 3, clear[1] - 3:clear[1] + 3] += 300.0
    v = verify(sim["recording"], bad, fwd, gain=1.0, offset=100.0, fit_scale=False, background=None)
    assert v.flagged and any(r["kind"] == "added" for r in v.regions)


def test_random_masks_are_seeded():
    a = random_shadow_mask((32, 32), np.random.default_rng(5))
    b = random_shadow_mask((32, 32), np.random.default_rng(5))
    np.testing.assert_array_equal(a, b)


def test_bad_input():
    with pytest.raises(FluoreconError, match=r"\[0, 1\]"):
        check_mask(np.full((4, 4), 2.0), (4, 4))
    with pytest.raises(FluoreconError, match="does not match"):
        check_mask(np.ones((5, 4)), (3, 4, 4))
    with pytest.raises(FluoreconError, match="NaN"):
        check_mask(np.full((4, 4), np.nan), (4, 4))
    with pytest.raises(FluoreconError, match="direction"):
        propagate_sheet(np.zeros((4, 4)), direction=2)
    with pytest.raises(FluoreconError, match="≥ 0"):
        propagate_sheet(-np.ones((4, 4)))
    with pytest.raises(FluoreconError, match="transmission range"):
        absorbers((16, 16), transmission=(0.0, 0.5))
    with pytest.raises(FluoreconError, match="shape"):
        simulate_shadows((4, 4, 4, 4))
