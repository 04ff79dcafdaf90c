"""Distribution-shift scores: larger for out-of-distribution inputs, calibrated on held-out patches."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from fluorecon.errors import FluoreconError
from fluorecon.trust.shift import js_divergence, shift_score, training_statistics


def _image(seed, noise=0.05, blobs=True, size=64):
    rng = np.random.default_rng(seed)
    y = gaussian_filter((rng.random((size, size)) > 0.97).astype(float), 2.0) * 8 if blobs else \
        0.5 + 0.4 * np.sin(np.arange(size) / 2.0)[None, :] * np.ones((size, 1))
    return np.clip(y, 0, 1) + rng.normal(0, noise, (size, size))


@pytest.fixture(scope="module")
def stats_and_model():
    from fluorecon.learn.nets import UNet

    torch.manual_seed(0)
    model = UNet(dim=2, depth=1, width=8).eval()
    train = [_image(s) for s in range(24)]
    st = training_statistics(model, train, None, patch_size=32, max_patches=64)
    return st, model


def test_statistics_are_json_able_and_calibrated(stats_and_model):
    st, model = stats_and_model
    json.dumps(st)
    assert st["features"]["layer"] == "bottom"
    assert set(st["thresholds"]) == {"histogram_js", "noise_log_ratio", "feature_mahalanobis"}
    # held-out in-distribution patches sit well below the 99% thresholds
    assert st["held_out"]["histogram_js_median"] < st["thresholds"]["histogram_js"]


def test_shift_score_larger_out_of_distribution(stats_and_model):
    st, model = stats_and_model
    ins = [shift_score(_image(100 + s), st, model=model) for s in range(3)]
    noisy = shift_score(_image(200, noise=0.3), st, model=model)
    other = shift_score(_image(300, blobs=False), st, model=model)
    for r in ins:
        assert r["worst_ratio"] < 1.3 and not r["warnings"]
    assert noisy["noise_ratio"] > 4 and noisy["ratios"]["noise_log_ratio"] > 2 and noisy["warnings"]
    assert other["ratios"]["histogram_js"] > 2 and other["warnings"]
    assert other["feature_mahalanobis"] > max(r["feature_mahalanobis"] for r in ins)
    assert "noise" in " ".join(noisy["warnings"])


def test_js_divergence_reference():
    from scipy.spatial.distance import jensenshannon

    p, q = np.array([1.0, 2, 3, 0]), np.array([2.0, 2, 1, 1])
    assert js_divergence(p, q) == pytest.approx(jensenshannon(p, q, base=2) ** 2)


def test_bad_inputs():
    with pytest.raises(FluoreconError, match="missing"):
        shift_score(np.ones((8, 8)), {})
    with pytest.raises(FluoreconError, match="too few"):
        training_statistics(None, [np.ones((8, 8))], patch_size=8)
    with pytest.raises(FluoreconError, match="no training images"):
        training_statistics(None, [])


def test_engine_format_statistics_fall_back_to_fixed_limits():
    train = [_image(s) for s in range(4)]
    flat = np.concatenate([t.ravel() for t in train])
    counts, edges = np.histogram(np.clip(flat, -1, 3), bins=64, range=(-1, 3))
    d = np.concatenate([t[..., 2:] - 2 * t[..., 1:-1] + t[..., :-2] for t in train], axis=None)
    sigma = float(1.4826 * np.median(np.abs(d - np.median(d))) / np.sqrt(6))
    stats = {"histogram": {"edges": edges.tolist(), "counts": counts.tolist()}, "noise_sigma": sigma}
    ok = shift_score(_image(50), stats)
    bad = shift_score(_image(51, noise=0.3), stats)
    assert ok["worst_ratio"] < 1 and not ok["warnings"] and "fixed limits" in ok["note"]
    assert bad["noise_ratio"] > 3 and bad["warnings"]


def test_image_level_statistic_calibrated_on_unseen_images_detects_each_kind_of_shift(stats_and_model):
    """Thresholds from images never used for training: unseen in-distribution images pass; structure, PSF-width
    and photon-level shifts are flagged at the image level (no network: histogram and noise statistics)."""
    train = [_image(s) for s in range(24)]
    cal = [_image(s) for s in range(100, 112)]
    st = training_statistics(None, train, None, patch_size=32, max_patches=64, calibration_images=cal)
    assert st["calibration"]["n_images"] == 12 and set(st["image_thresholds"]) == {"histogram_js", "noise_log_ratio"}
    assert all(st["image_thresholds"][k] <= st["thresholds"][k] + 1e-12 for k in st["image_thresholds"])
    fresh = [shift_score(_image(s), st) for s in range(200, 210)]
    assert sum(r["worst_ratio"] > 1 for r in fresh) <= 2 and all(r["image_level"] for r in fresh)
    rng = np.random.default_rng(5)
    shifted = {
        "structure": lambda s: _image(s, blobs=False),
        "psf width": lambda s: np.clip(gaussian_filter(_image(s, noise=0.0), 2.5) * 3, 0, 1)
        + rng.normal(0, 0.05, (64, 64)),
        "photon level": lambda s: _image(s, noise=0.15),
    }
    for kind, make in shifted.items():
        hits = sum(shift_score(make(s), st)["worst_ratio"] > 1 for s in range(300, 310))
        assert hits >= 8, (kind, hits)


def test_conformal_image_threshold_keeps_the_false_alarm_rate_on_unseen_images():
    """Split-conformal calibration on 39 unseen images at 10 %: fresh in-distribution images are flagged about
    that often (Binomial(40, 0.1): 9 or fewer in 94 % of draws), and a bad rate is a clear error."""
    train = [_image(s) for s in range(24)]
    cal = [_image(s) for s in range(100, 139)]
    st = training_statistics(None, train, None, patch_size=32, max_patches=64, calibration_images=cal,
                             false_alarm=0.1)
    assert st["calibration"]["false_alarm"] == 0.1 and st["calibration"]["n_images"] == 39
    flagged = sum(shift_score(_image(s), st)["worst_ratio"] > 1 for s in range(400, 440))
    assert flagged <= 9
    with pytest.raises(FluoreconError, match="false_alarm"):
        training_statistics(None, train, None, patch_size=32, max_patches=64, calibration_images=cal, false_alarm=0)
