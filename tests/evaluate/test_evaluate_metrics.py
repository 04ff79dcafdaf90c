"""Metrics against independent references: scikit-image, analytic FRC cut-offs, scipy's bootstrap."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.ndimage import gaussian_filter
from skimage import metrics as skm

from fluorecon.errors import FluoreconError
from fluorecon.evaluate.metrics import (
    FRC_THRESHOLD,
    affine_fit,
    bootstrap_ci,
    checkerboard_split,
    frc,
    halves_frc,
    nrmse,
    psnr,
    ri_psnr,
    single_image_frc,
    ssim,
    summarize,
    summary_table,
)


@pytest.fixture
def pair():
    rng = np.random.default_rng(3)
    target = gaussian_filter(rng.random((64, 64)), 1.5).astype(np.float32)
    pred = (target + 0.02 * rng.standard_normal(target.shape)).astype(np.float32)
    return pred, target


def test_psnr_matches_skimage(pair):
    pred, target = pair
    assert psnr(pred, target, data_range=1.0) == pytest.approx(
        skm.peak_signal_noise_ratio(target, pred, data_range=1.0), rel=1e-6)
    t16 = (target * 60000).astype(np.uint16)
    p16 = (pred.clip(0, 1) * 60000).astype(np.uint16)
    assert psnr(p16, t16) == pytest.approx(skm.peak_signal_noise_ratio(t16, p16), rel=1e-6)  # dtype range
    assert psnr(target, target, data_range=1.0) == float("inf")


def test_psnr_requires_data_range_for_float(pair):
    with pytest.raises(FluoreconError, match="data_range"):
        psnr(*pair)
    with pytest.raises(FluoreconError, match="positive"):
        psnr(*pair, data_range=-1)


@pytest.mark.parametrize("shape", [(48, 40), (9, 32, 30), (5, 24, 24)])
def test_ssim_matches_skimage_2d_3d(shape):
    rng = np.random.default_rng(0)
    t = gaussian_filter(rng.random(shape), 1.0)
    p = t + 0.05 * rng.standard_normal(shape)
    win = 7 if min(shape) >= 7 else 5
    ref = skm.structural_similarity(t, p, data_range=1.0, win_size=win)
    assert ssim(p, t, data_range=1.0) == pytest.approx(ref, rel=1e-6)
    assert ssim(t, t, data_range=1.0) == pytest.approx(1.0)


@pytest.mark.parametrize("norm", ["euclidean", "min-max", "mean"])
def test_nrmse_matches_skimage(pair, norm):
    pred, target = pair
    ref = skm.normalized_root_mse(target.astype(np.float64), pred.astype(np.float64), normalization=norm)
    assert nrmse(pred, target, normalization=norm) == pytest.approx(ref, rel=1e-6)


def test_ri_psnr_ignores_affine_scale_and_fits_pred_onto_target(pair):
    pred, target = pair
    base = ri_psnr(pred, target)
    assert ri_psnr(3.7 * pred - 12.0, target) == pytest.approx(base, abs=1e-6)
    assert base > psnr(3.7 * pred - 12.0, target, data_range=1.0) + 20
    # Direction: the prediction is fitted onto the target. A flat prediction (pure noise, no
    # structure) is then worth exactly the "predict the mean" baseline 10·log10(1/var(target_n));
    # fitting the target onto it instead would give it a near-perfect score.
    rng = np.random.default_rng(1)
    flat = 0.5 + 1e-3 * rng.standard_normal(target.shape)
    lo, hi = np.percentile(target, [0.1, 99.9])
    baseline = 10 * np.log10(1.0 / np.var((target.astype(np.float64) - lo) / (hi - lo)))
    assert ri_psnr(flat, target) == pytest.approx(baseline, abs=0.05)
    assert ri_psnr(flat, target) < base - 5
    a, b = affine_fit(2 * target + 1, target)
    assert a == pytest.approx(0.5) and b == pytest.approx(-0.5)


def test_ri_psnr_matches_csbdeep_recipe(pair):
    """Re-derive CSBDeep's normalize_minmse + percentile normalisation independently with lstsq."""
    pred, target = pair
    lo, hi = np.percentile(target, [0.1, 99.9])
    tn = (target.astype(np.float64) - lo) / (hi - lo)
    A = np.stack([pred.ravel().astype(np.float64), np.ones(pred.size)], 1)
    coef, *_ = np.linalg.lstsq(A, tn.ravel(), rcond=None)
    fitted = (A @ coef).reshape(pred.shape)
    ref = skm.peak_signal_noise_ratio(tn, fitted, data_range=1.0)
    assert ri_psnr(pred, target) == pytest.approx(ref, rel=1e-6)


def test_shape_mismatch_and_nan(pair):
    pred, target = pair
    with pytest.raises(FluoreconError, match="shape"):
        psnr(pred[:10], target, data_range=1)
    bad = pred.copy()
    bad[0, 0] = np.nan
    with pytest.raises(FluoreconError, match="NaN"):
        ssim(bad, target)
    with pytest.raises(FluoreconError, match="empty"):
        nrmse(np.zeros((0, 3)), np.zeros((0, 3)))


# ------------------------------------------------------------------------------------ FRC


def _blurred_pair(n, sigma, noise, seed, ndim=2):
    rng = np.random.default_rng(seed)
    obj = rng.standard_normal((n,) * ndim)
    blurred = gaussian_filter(obj, sigma, mode="wrap")
    return (blurred + noise * rng.standard_normal(blurred.shape), blurred + noise * rng.standard_normal(blurred.shape),
            blurred)


def _expected_cutoff(sigma, noise, ndim=2):
    """Analytic 1/7 crossing for a white object (unit variance) blurred by a Gaussian of σ pixels.

    Signal spectrum S(k) = exp(-4π²σ²k²) (object PSD 1 × |OTF|²), white noise spectrum N = noise²,
    FRC = S/(S+N) = 1/7  ⇔  S/N = 1/6  ⇔  k = sqrt(ln(6/noise²)) / (2πσ).
    """
    return np.sqrt(np.log(6.0 / noise**2)) / (2 * np.pi * sigma)


@pytest.mark.parametrize("sigma,noise", [(2.0, 0.104), (3.0, 0.05), (1.5, 0.3)])
def test_frc_two_noise_realisations_give_the_psf_cutoff(sigma, noise):
    a, b, _ = _blurred_pair(256, sigma, noise, seed=int(sigma * 10))
    r = frc(a, b)
    expected = _expected_cutoff(sigma, noise)
    # Tolerance 5 %: ~800 Fourier samples per ring near the cut-off give a curve s.d. of ~0.035,
    # i.e. ≈2 % in k at the steep crossing; apodisation smooths the spectrum by ~1 bin (0.4 %).
    assert r.crossed
    assert r.cutoff == pytest.approx(expected, rel=0.05)
    assert r.resolution_px == pytest.approx(1 / expected, rel=0.05)
    assert np.all(r.threshold == pytest.approx(FRC_THRESHOLD))


def test_fsc_3d_and_anisotropic_voxel_reporting():
    a, b, _ = _blurred_pair(48, 1.5, 0.2, seed=5, ndim=3)
    r = frc(a, b, voxel_size=(0.3, 0.1, 0.1))
    expected = _expected_cutoff(1.5, 0.2)
    assert r.info["kind"] == "FSC"
    assert r.cutoff == pytest.approx(expected, rel=0.08)
    # Per-axis scaling: same cycles/pixel on every axis → resolution in µm scales with the voxel size.
    assert r.resolution_um[0] == pytest.approx(3 * r.resolution_um[2])
    assert r.resolution == pytest.approx(0.1 / r.cutoff)


def test_frc_of_independent_noise_is_near_zero():
    rng = np.random.default_rng(11)
    r = frc(rng.standard_normal((256, 256)), rng.standard_normal((256, 256)))
    big = r.counts >= 100
    # Each bin is an average of n independent products: s.d. ≈ 1/sqrt(n).
    assert np.nanmax(np.abs(r.curve[big]) * np.sqrt(r.counts[big])) < 5
    assert abs(np.nanmean(r.curve[big])) < 0.02
    assert r.cutoff < 0.02 and r.resolution_px > 50


def test_frc_detects_better_snr():
    a1, b1, _ = _blurred_pair(128, 2.0, 0.3, seed=1)
    a2, b2, _ = _blurred_pair(128, 2.0, 0.03, seed=1)
    assert frc(a2, b2).cutoff > frc(a1, b1).cutoff + 0.03


def test_checkerboard_split_geometry():
    img = np.arange(7 * 9, dtype=float).reshape(7, 9)
    a, b = checkerboard_split(img)
    assert a.shape == b.shape == (3, 4)
    np.testing.assert_array_equal(a, img[0:6:2, 0:8:2])
    np.testing.assert_array_equal(b, img[1:6:2, 1:8:2])
    a3, b3 = checkerboard_split(np.zeros((4, 10, 10)))
    assert a3.shape == (4, 5, 5)


@pytest.mark.parametrize("sigma,noise", [(2.0, 0.104), (3.0, 0.05), (1.5, 0.3)])
def test_single_image_frc_matches_two_image_frc(sigma, noise):
    a, b, _ = _blurred_pair(256, sigma, noise, seed=7)
    two = frc(a, b).cutoff
    one = single_image_frc(a)
    assert one.cutoff == pytest.approx(two, rel=0.10)
    assert one.cutoff == pytest.approx(_expected_cutoff(sigma, noise), rel=0.10)
    # Without the quarter-count correction the estimate is biased low, as derived in the docstring.
    raw = single_image_frc(a, snr_correction=False).cutoff
    assert raw < one.cutoff


def test_single_image_frc_without_shift_correction_would_be_biased():
    """Sanity check of the geometry: ignoring the (½,½) offset makes the curve drop early."""
    img, _, _ = _blurred_pair(256, 1.5, 0.05, seed=2)
    a, b = checkerboard_split(img)
    shifted = frc(a, b, shift_b=(0.5, 0.5)).cutoff
    naive = frc(a, b).cutoff
    assert naive < shifted


def test_frc_bad_input():
    with pytest.raises(FluoreconError, match="same shape"):
        frc(np.zeros((32, 32)), np.zeros((32, 30)))
    with pytest.raises(FluoreconError, match="2D or 3D"):
        frc(np.zeros((4, 4, 16, 16)), np.zeros((4, 4, 16, 16)))
    with pytest.raises(FluoreconError, match="threshold"):
        frc(np.ones((32, 32)), np.ones((32, 32)), threshold=3)
    with pytest.raises(FluoreconError, match="voxel_size"):
        frc(np.ones((32, 32)), np.ones((32, 32)), voxel_size=(1, 2, 3))


def test_half_bit_threshold_is_above_one_seventh_for_small_rings():
    a, b, _ = _blurred_pair(64, 2.0, 0.1, seed=0)
    r = frc(a, b, threshold="half-bit")
    assert np.all(r.threshold[1:] > 0.17)


# ------------------------------------------------------------------------------------ statistics


def test_bootstrap_ci_agrees_with_scipy_percentile():
    from scipy.stats import bootstrap

    vals = np.random.default_rng(0).normal(30, 2, 40)
    ci = bootstrap_ci(vals, n=4000, seed=1)
    ref = bootstrap((vals,), np.mean, n_resamples=4000, method="percentile", random_state=1).confidence_interval
    assert ci.value == pytest.approx(vals.mean())
    assert ci.low == pytest.approx(ref.low, abs=0.15)
    assert ci.high == pytest.approx(ref.high, abs=0.15)
    # Same seed → same interval; median as statistic works too.
    assert bootstrap_ci(vals, n=4000, seed=1) == ci
    med = bootstrap_ci(vals, np.median, n=500, seed=0)
    assert med.low <= np.median(vals) <= med.high


def test_bootstrap_ci_coverage_is_about_95_percent():
    rng = np.random.default_rng(5)
    hits = 0
    for _ in range(200):
        v = rng.normal(0, 1, 30)
        ci = bootstrap_ci(v, n=400, seed=rng)
        hits += ci.low <= 0 <= ci.high
    assert 0.88 <= hits / 200 <= 0.99


def test_bootstrap_bad_input_and_summary_table():
    with pytest.raises(FluoreconError):
        bootstrap_ci([])
    with pytest.raises(FluoreconError, match="NaN"):
        bootstrap_ci([1.0, np.inf])
    assert bootstrap_ci([2.0]) == (2.0, 2.0, 2.0)
    s = summarize({"psnr": [30.0, 32.0, 34.0]}, n=500)
    assert s["psnr"]["mean"] == pytest.approx(32.0) and s["psnr"]["low"] < 32 < s["psnr"]["high"]
    table = summary_table({"RL": {"psnr": [30.0, 32.0], "ssim": [0.8, 0.9]}, "net": {"psnr": [35.0, 36.0]}}, n=200)
    lines = table.splitlines()
    assert lines[0].startswith("| method | psnr (mean [95% CI])")
    assert "| RL | 31.000 [" in lines[2] and "—" in lines[3]


def test_frc_with_the_physics_blur_and_poisson_noise():
    """FRC of two Poisson realisations of an object blurred by fluorecon's own Gaussian PSF."""
    psf_mod = importlib.import_module("fluorecon.physics.psf")
    sampling = importlib.import_module("fluorecon.physics.sampling")
    rng = np.random.default_rng(21)
    sigma = 2.0
    obj = 100.0 + 30.0 * rng.standard_normal((256, 256))  # white object, variance 900 photons²
    psf = psf_mod.gaussian_psf((33, 33), sigma)
    mean = np.asarray(sampling.fft_convolve(obj, psf, padding="periodic"))
    a = rng.poisson(mean).astype(np.float64)
    b = rng.poisson(mean).astype(np.float64)
    # Signal PSD 900·exp(-4π²σ²k²), Poisson noise PSD = mean photons = 100 → S/N = 1/6 at
    # k = sqrt(ln(6·9)) / (2πσ).
    expected = np.sqrt(np.log(6 * 900 / 100)) / (2 * np.pi * sigma)
    assert frc(a, b).cutoff == pytest.approx(expected, rel=0.06)


@settings(max_examples=40, deadline=None)
@given(
    shape=st.sampled_from([(8, 8), (16, 9), (7, 12, 10), (9, 9, 9)]),
    dtype=st.sampled_from([np.uint8, np.uint16, np.float32, np.float64]),
    seed=st.integers(0, 2**16),
)
def test_property_metrics_agree_with_skimage_and_are_invariant(shape, dtype, seed):
    rng = np.random.default_rng(seed)
    scale = 200 if np.dtype(dtype).kind == "u" else 1.0
    t = (rng.random(shape) * scale).astype(dtype)
    p = (rng.random(shape) * scale).astype(dtype)
    dr = float(scale)
    assert psnr(p, t, data_range=dr) == pytest.approx(skm.peak_signal_noise_ratio(t, p, data_range=dr), rel=1e-6)
    assert nrmse(p, t) == pytest.approx(skm.normalized_root_mse(t.astype(np.float64), p.astype(np.float64)), rel=1e-6)
    s = ssim(p, t, data_range=dr)
    assert -1.0 <= s <= 1.0 and ssim(t, t, data_range=dr) == pytest.approx(1.0)
    # Range invariance of RI-PSNR under a positive affine map of the prediction.
    assert ri_psnr(2.5 * p.astype(np.float64) + 7, t) == pytest.approx(ri_psnr(p, t), abs=1e-6)


# --------------------------------------------------------------------- FRC: halves and linear filters
def test_halves_frc_removes_the_diagonal_offset_of_the_checkerboard_split():
    obj = gaussian_filter(np.random.default_rng(3).standard_normal((256, 256)), 1.5, mode="wrap")
    a, b = checkerboard_split(obj)
    fixed = halves_frc(a, b, apodization=None).curve
    raw = frc(a, b, apodization=None).curve
    band = slice(1, 50)  # up to ~0.4 of the halves' Nyquist, where aliasing is negligible
    assert np.nanmean(fixed[band]) > 0.97
    # without the shift: the analytic ring average of cos(π(ky + kx)) pulls the curve down with k
    assert np.nanmean(raw[40:60]) < np.nanmean(fixed[40:60]) - 0.2
    with pytest.raises(FluoreconError, match="shift_b"):
        halves_frc(a, b, shift_b=[0, 0])


def test_frc_is_unchanged_by_a_linear_filter_applied_to_both_images():
    """The reason 'FRC before vs after deconvolution' is not evidence of resolution gain."""
    rng = np.random.default_rng(4)
    obj = gaussian_filter(rng.standard_normal((128, 128)), 2.0, mode="wrap")
    a = obj + 0.05 * rng.standard_normal(obj.shape)
    b = obj + 0.05 * rng.standard_normal(obj.shape)
    # a radially symmetric, real, positive (invertible) Fourier gain: a 'sharpening' filter
    ky, kx = np.meshgrid(np.fft.fftfreq(128), np.fft.fftfreq(128), indexing="ij")
    gain = 1.0 + 8.0 * (ky**2 + kx**2) ** 0.5

    def sharpen(x):
        return np.fft.ifft2(np.fft.fft2(x) * gain).real

    before = frc(a, b, apodization=None)
    after = frc(sharpen(a), sharpen(b), apodization=None)
    ok = np.isfinite(before.curve)
    ok[0] = False  # the removed mean: a ratio of round-off
    # not exactly equal: the gain varies a little inside each ring's width
    np.testing.assert_allclose(after.curve[ok], before.curve[ok], atol=0.02)
    assert after.cutoff == pytest.approx(before.cutoff, rel=0.03)
