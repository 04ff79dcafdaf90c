"""evaluate.temporal: flicker, temporal FRC and held-out-frame error against analytic cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from fluorecon.errors import FluoreconError
from fluorecon.evaluate.temporal import (
    flicker,
    flicker_per_frame,
    heldout_frame_error,
    j_invariant,
    jinv_heldout_pixel_error,
    jinv_mask,
    midpoint_interpolation,
    temporal_frc,
)

SIGMA = 0.5


@pytest.fixture(scope="module")
def static():
    rng = np.random.default_rng(0)
    scene = rng.random((1, 32, 32)).repeat(200, axis=0)
    return scene, scene + rng.normal(0, SIGMA, scene.shape)


def test_flicker_of_independent_noise_is_sqrt2_sigma(static):
    scene, noisy = static
    assert flicker(noisy, truth=scene) == pytest.approx(np.sqrt(2) * SIGMA, rel=0.02)
    assert flicker(scene, truth=scene) == 0.0


def test_temporal_smoothing_divides_flicker_by_the_window(static):
    scene, noisy = static
    k = 5  # moving average of k frames: Δ = (n[t+k] − n[t]) / k  →  √2 σ / k
    smooth = np.stack([noisy[t:t + k].mean(0) for t in range(noisy.shape[0] - k + 1)])
    assert flicker(smooth, truth=scene[: smooth.shape[0]]) == pytest.approx(np.sqrt(2) * SIGMA / k, rel=0.03)


def test_flicker_against_the_raw_lowpass_without_truth(static):
    scene, noisy = static
    # the Gaussian low-pass (σ_t = 2) of the noise changes little from frame to frame: ≈ √2 σ for the raw
    assert flicker(noisy, raw=noisy) == pytest.approx(np.sqrt(2) * SIGMA, rel=0.1)
    assert flicker(scene, raw=noisy) < 0.2 * flicker(noisy, raw=noisy)


def test_moving_truth_explains_the_change():
    t = np.arange(50, dtype=float)[:, None, None]
    truth = np.sin(0.2 * t + np.linspace(0, 3, 16)[None, :, None]) * np.ones((1, 1, 16))
    assert flicker(truth, truth=truth) == 0.0
    assert flicker_per_frame(truth + 1.0, truth=truth).max() == pytest.approx(0.0, abs=1e-12)  # a constant offset


def test_temporal_frc_is_snr_ratio():
    rng = np.random.default_rng(1)
    s = rng.normal(0, 1, (128, 16, 16))
    r = temporal_frc(s + rng.normal(0, 1, s.shape), s + rng.normal(0, 1, s.shape))
    assert r.freq[0] == 0 and r.freq[-1] == 0.5
    assert np.mean(r.curve[1:]) == pytest.approx(0.5, abs=0.03)
    identical = temporal_frc(s, s)
    assert np.allclose(identical.curve[1:], 1.0) and identical.cutoff == 0.5


def test_heldout_frame_error_ranks_by_true_error(static):
    scene, noisy = static
    kept, held = noisy[0::2], noisy[1::2]
    # the raw kept frames: interpolation halves the noise variance → σ²/2 + σ² (held-out noise)
    assert heldout_frame_error(kept, held) == pytest.approx(1.5 * SIGMA**2, rel=0.05)
    # the truth: only the held-out frames' own noise
    assert heldout_frame_error(scene[0::2], held) == pytest.approx(SIGMA**2, rel=0.05)
    with pytest.raises(FluoreconError, match="do not fit"):
        heldout_frame_error(kept, held[:, :4])
    with pytest.raises(FluoreconError, match="reference"):
        flicker(noisy)


def _moving_scene(t=12, n=48, step=3, seed=0):
    """A smooth periodic scene moving ``step`` px per frame along X (exact integer shifts)."""
    rng = np.random.default_rng(seed)
    base = ndimage.gaussian_filter(rng.random((n, n)), 1.5, mode="wrap")
    base = (base - base.min()) / (base.max() - base.min())
    return np.stack([np.roll(base, step * k, axis=1) for k in range(t)])


def test_motion_compensated_heldout_error_removes_the_motion_term():
    truth = 5.0 * _moving_scene()
    noisy = truth + np.random.default_rng(1).normal(0, SIGMA, truth.shape)
    kept, held = truth[0::2], noisy[1::2]
    flows = np.zeros((kept.shape[0] - 1, 2, *kept.shape[1:]))
    flows[:, 1] = 6.0  # the true motion between kept frames: 6 px along X
    # along the motion, the truth's interpolation is the held-out truth: only the noise variance remains
    assert heldout_frame_error(kept, held, flows) == pytest.approx(SIGMA ** 2, rel=0.06)
    # in place, the motion adds a large error that does not come from the restoration
    assert heldout_frame_error(kept, held) > 2.0 * SIGMA ** 2
    mid = midpoint_interpolation(kept, flows)
    assert np.abs(mid - truth[1::2][:-1])[:, :, 3:-3].max() < 1e-5  # exact away from the clamped edge
    with pytest.raises(FluoreconError, match="do not fit"):
        midpoint_interpolation(kept, flows[:-1])


def test_jinv_masks_cover_every_pixel_once_and_stay_apart():
    shape = (5, 12, 12)
    total = sum(jinv_mask(shape, 4, (a, b)).astype(int) for a in range(4) for b in range(4))
    assert (total == 1).all()
    m = jinv_mask(shape, 4, (1, 2))
    ys, xs = np.nonzero(m[0])
    d = np.abs(ys[:, None] - ys[None]) + np.abs(xs[:, None] - xs[None])
    assert d[d > 0].min() >= 4  # a 5×5 replacement neighbourhood never reads another held-out pixel
    assert not (m[0] & m[1]).any()  # the grid moves: the same place in the next frame is not held out


def test_j_invariant_output_ignores_the_pixel_itself():
    x = np.random.default_rng(0).random((6, 16, 16)).astype(np.float32)

    def f(m):
        return ndimage.gaussian_filter(m, 1.0)

    y = j_invariant(f, x)
    x2 = x.copy()
    x2[3, 7, 9] += 100.0
    y2 = j_invariant(f, x2)
    assert y2[3, 7, 9] == pytest.approx(y[3, 7, 9], abs=1e-4)  # its own value is never used
    assert abs(y2[3, 7, 10] - y[3, 7, 10]) > 1.0  # but its neighbours use it


def test_noise2self_score_is_true_error_plus_noise_variance():
    # Batson & Royer: for J-invariant f, E‖f(x) − x‖² = E‖f(x) − y‖² + σ² (independent zero-mean noise)
    truth = _moving_scene(t=8, n=64) * 4.0
    sigma = 1.0
    x = truth + np.random.default_rng(2).normal(0, sigma, truth.shape)
    for s in (0.7, 1.5):
        def f(m, s=s):
            return ndimage.gaussian_filter(m, s)

        true_mse = float(np.mean((j_invariant(f, x) - truth) ** 2))
        assert jinv_heldout_pixel_error(f, x) == pytest.approx(true_mse + sigma ** 2, abs=0.03)


def test_j_invariant_chunk_equals_the_whole_movie_away_from_its_cut():
    # a spatiotemporal filter reaching one frame either side: the masks of a chunk starting at frame 5
    # are the whole movie's passes renamed, so inside the chunk the J-invariant result is the whole one's
    x = np.random.default_rng(1).random((24, 16, 16)).astype(np.float32)

    def f(m):
        return ndimage.uniform_filter(m, (3, 3, 3), mode="nearest")

    whole = j_invariant(f, x)
    np.testing.assert_allclose(j_invariant(f, x[5:20])[1:-1], whole[6:19], atol=1e-6)
    assert np.abs(j_invariant(f, x[5:20])[0] - whole[5]).max() > 1e-3   # at the cut it is not (the check has teeth)
