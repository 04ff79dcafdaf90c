"""Tests of shadow detection and classical filling, against the simulated truth and scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.restoration import inpaint_biharmonic as sk_biharmonic

from fluorecon.classical.inpaint import (
    correct_attenuation,
    estimate_offset,
    estimate_shadow_mask,
    inpaint_biharmonic,
    inpaint_classical,
    occluded_mask,
)
from fluorecon.errors import FluoreconError
from fluorecon.physics.occlusion import simulate_shadows


def _psnr_in(a: np.ndarray, truth: np.ndarray, region: np.ndarray) -> float:
    rng = float(truth.max() - truth.min())
    return 10 * np.log10(rng**2 / np.mean((a - truth)[region] ** 2))


@pytest.fixture(scope="module")
def sim():
    return simulate_shadows((128, 128), n_absorbers=5, seed=11)


def test_mask_estimate_beats_no_estimate_and_finds_the_onset():
    ratios = []
    for seed in (11, 12, 13):  # mean over scenes: single scenes range 0.4–0.8 of the no-estimate error
        s = simulate_shadows((128, 128), n_absorbers=5, seed=seed)
        m = estimate_shadow_mask(s["recording"], offset=s["offset"])
        ratios.append(np.mean(np.abs(m - s["mask"])) / np.mean(1 - s["mask"]))
    assert np.mean(ratios) < 0.65
    # a clean step: onset at the right column, transmission of the step, nothing elsewhere
    rng = np.random.default_rng(0)
    x = rng.poisson(np.full((48, 96), 300.0)).astype(np.float32)
    x[20:30, 40:] *= 0.4
    est = estimate_shadow_mask(x, offset=0.0, shadow_width=12)
    cols = np.flatnonzero(est[25] < 0.9)
    assert cols.min() in range(38, 43) and est[25, 60:].mean() == pytest.approx(0.4, abs=0.06)
    assert est[:15].min() == 1.0 and est[35:].min() == 1.0
    # light from the other side, along Y: the transposed problem
    back = estimate_shadow_mask(x[:, ::-1].T, offset=0.0, shadow_width=12, axis=-2, direction=-1)
    np.testing.assert_array_equal(back, est[:, ::-1].T)
    both = estimate_shadow_mask(x, offset=0.0, shadow_width=12, direction=0)
    assert both[25, 60:].mean() == pytest.approx(0.4, abs=0.06)


def test_attenuation_correction_inverts_the_forward_model(sim):
    y = correct_attenuation(sim["expected"], sim["mask"], offset=sim["offset"], min_transmission=0.2)
    ok = sim["mask"] >= 0.2
    np.testing.assert_allclose(y[ok], sim["truth"][ok], rtol=1e-4)
    np.testing.assert_array_equal(y[~ok], sim["expected"][~ok])


def test_biharmonic_is_scikit_image_and_classical_beats_it(sim):
    shadow = sim["mask"] < 0.9
    ours = inpaint_biharmonic(sim["recording"], sim["mask"])
    ref = sk_biharmonic(sim["recording"].astype(np.float64), shadow)
    np.testing.assert_allclose(ours, ref, rtol=1e-5, atol=1e-3)
    cl = inpaint_classical(sim["recording"], sim["mask"], offset=sim["offset"])
    raw = _psnr_in(sim["recording"], sim["truth"], shadow)
    assert _psnr_in(cl, sim["truth"], shadow) > _psnr_in(ours, sim["truth"], shadow) + 1.0 > raw
    # stacks: planes are independent
    two = inpaint_classical(np.stack([sim["recording"]] * 2), sim["mask"], offset=sim["offset"])
    np.testing.assert_allclose(two[1], cl, rtol=1e-6)


def test_offset_and_occluded_convention():
    assert estimate_offset(np.full((2, 8, 8), 42.0)) == pytest.approx(42.0)
    np.testing.assert_array_equal(occluded_mask(np.array([[0, 1], [255, 0]])), [[1, 0], [0, 1]])


def test_bad_input():
    x = np.ones((16, 16), np.float32)
    with pytest.raises(FluoreconError, match="whole plane"):
        inpaint_classical(x, np.zeros((16, 16)))
    with pytest.raises(FluoreconError, match="illumination axis"):
        estimate_shadow_mask(x, axis=0)
    with pytest.raises(FluoreconError, match="NaN"):
        estimate_shadow_mask(np.full((16, 16), np.nan))
    with pytest.raises(FluoreconError, match="does not match"):
        inpaint_biharmonic(x, np.ones((8, 8)))
    with pytest.raises(FluoreconError, match="min_transmission"):
        correct_attenuation(x, np.ones((16, 16)), min_transmission=0)
