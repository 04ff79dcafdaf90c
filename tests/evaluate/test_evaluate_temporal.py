"""evaluate.temporal: flicker, temporal FRC and held-out-frame error against analytic cases."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.errors import FluoreconError
from fluorecon.evaluate.temporal import flicker, flicker_per_frame, heldout_frame_error, temporal_frc

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
