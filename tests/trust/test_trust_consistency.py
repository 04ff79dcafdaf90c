"""Forward-model consistency and residual whiteness, against analytic expectations."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import gaussian_filter

from fluorecon.errors import FluoreconError
from fluorecon.trust.consistency import consistency, normalized_residual, residual_whiteness


class BlurPoisson:
    """A minimal forward model: Gaussian blur, photons per unit intensity, background; Poisson noise."""

    camera = "poisson"

    def __init__(self, sigma=1.5, photons=50.0, background=5.0):
        self.sigma, self.photons, self.background = sigma, photons, background

    def expected(self, y):
        return self.photons * gaussian_filter(np.asarray(y, float), self.sigma, mode="reflect") + self.background

    def variance(self, m):
        return np.asarray(m, float)


def _truth(seed, shape=(64, 64)):
    rng = np.random.default_rng(seed)
    y = np.zeros(shape)
    for _ in range(12):
        cy, cx = rng.integers(4, shape[0] - 4, 2)
        y[cy - 2:cy + 2, cx - 2:cx + 2] += rng.uniform(0.5, 1)
    return gaussian_filter(y, 1.0)


def test_truth_scores_zero_excess_up_to_sampling_error():
    fw = BlurPoisson()
    excess, coh, maps = [], [], []
    for seed in range(30):
        y = _truth(seed)
        x = np.random.default_rng(100 + seed).poisson(fw.expected(y)).astype(float)
        r = consistency(x, y, fw, sigma=2.0)
        excess.append(r.excess_score)
        coh.append(r.coherent_excess_score)
        maps.append(r.coherent_excess_map)
        assert abs(r.z_score) < 5
    # analytic: E[r²] = 1 exactly, SD of the mean r² over N pixels ≈ sqrt((2 + 1/λ) / N)
    se = np.sqrt(2.2 / (64 * 64) / 30)
    assert abs(np.mean(excess)) < 4 * se
    assert abs(np.mean(coh)) < 0.1
    # zero expectation everywhere, including the borders (exact border weights)
    m = np.mean(maps, axis=0)
    assert abs(m[:3].mean()) < 0.3 and abs(m[:, -3:].mean()) < 0.3


def test_inserted_structure_gives_large_local_excess():
    fw = BlurPoisson()
    y = _truth(1)
    x = np.random.default_rng(5).poisson(fw.expected(y)).astype(float)
    bad = y.copy()
    bad[40:46, 10:16] += 0.6  # a structure that is not in the data
    r = consistency(x, bad, fw, sigma=2.0)
    inside = r.coherent_excess_map[41:45, 11:15].mean()
    outside = np.delete(r.coherent_excess_map.ravel(), np.ravel_multi_index(np.mgrid[36:50, 6:20].reshape(2, -1), (64, 64))).mean()
    assert inside > 50
    assert abs(outside) < 1.0
    assert r.coherent_map[42, 12] < 0  # the reconstruction adds signal: negative residual
    assert consistency(x, y, fw).excess_score < r.excess_score


def test_identity_forward_with_known_sigma():
    rng = np.random.default_rng(0)
    y = _truth(3) * 10
    x = y + rng.normal(0, 0.5, y.shape)
    r, info = normalized_residual(x, y, None, noise_variance=0.25)
    assert abs(r.std() - 1) < 0.05 and info["noise_model"] == "noise_variance"


def test_estimated_noise_when_no_model():
    rng = np.random.default_rng(0)
    y = np.full((96, 96), 10.0)
    x = y + rng.normal(0, 2.0, y.shape)
    r = consistency(x, y)  # identity, noise estimated from the recording
    assert abs(r.excess_score) < 0.15


def test_whiteness_passes_white_noise_and_flags_structure():
    rng = np.random.default_rng(0)
    passes = [residual_whiteness(np.random.default_rng(s).normal(size=(96, 96))).white for s in range(10)]
    assert sum(passes) >= 9
    smooth = gaussian_filter(rng.normal(size=(96, 96)), 1.0)
    w = residual_whiteness(smooth)
    assert not w.white and w.autocorr["0,1"] > 0.3
    # a residual that contains image structure (an over-smoothing denoiser) is correlated with the image
    img = _truth(2) * 20
    resid = rng.normal(size=img.shape) + 0.3 * (img - gaussian_filter(img, 3))
    w2 = residual_whiteness(resid, image=img)
    assert not w2.white and w2.image_corr > 0.05


def test_bad_inputs():
    with pytest.raises(FluoreconError, match="shape"):
        consistency(np.ones((8, 8)), np.ones((4, 4)), lambda y: y, noise_variance=1.0)
    with pytest.raises(FluoreconError, match="NaN"):
        consistency(np.full((8, 8), np.nan), np.ones((8, 8)), noise_variance=1.0)
    with pytest.raises(FluoreconError, match="sigma"):
        consistency(np.ones((8, 8)), np.ones((8, 8)), noise_variance=1.0, sigma=0)
    with pytest.raises(FluoreconError, match="too small"):
        residual_whiteness(np.ones((2, 2)))
