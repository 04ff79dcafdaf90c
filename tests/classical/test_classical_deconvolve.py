"""Richardson–Lucy / Wiener against independent references (scikit-image, forward-model truth)."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.restoration import richardson_lucy as sk_rl

from fluorecon.classical.deconvolve import (
    deconvolve_block,
    required_margin,
    richardson_lucy,
    richardson_lucy_blocks,
    wiener,
)
from fluorecon.errors import FluoreconError
from fluorecon.physics.psf import gaussian_psf
from fluorecon.physics.sampling import fft_convolve


def _nrmse(a, t):
    return float(np.linalg.norm(a - t) / np.linalg.norm(t))


@pytest.fixture(scope="module")
def scene3d():
    from fluorecon.physics.phantoms import phantom

    truth = phantom("filaments", (16, 40, 40), seed=1).astype(np.float32) + 0.01
    psf = gaussian_psf((9, 9, 9), (2.0, 1.5, 1.5))
    return truth, psf, fft_convolve(truth, psf)


@pytest.mark.parametrize(("shape", "pshape"), [((40, 50), (7, 7)), ((40, 50), (6, 9)),
                                                 ((16, 30, 28), (7, 5, 9)), ((16, 30, 28), (6, 5, 8))])
def test_matches_skimage(shape, pshape, rng):
    img = (rng.random(shape) * 50).astype(np.float32)
    psf = rng.random(pshape).astype(np.float32)
    psf /= psf.sum()
    ref = sk_rl(img, psf, num_iter=7, clip=False)
    ours = richardson_lucy(img, psf, 7, padding="skimage")
    assert np.abs(ours - ref).max() / np.abs(ref).max() <= 1e-4


def test_matches_skimage_filter_epsilon(rng):
    img = rng.random((20, 24, 24)).astype(np.float32)
    psf = gaussian_psf((5, 7, 7), 1.2)
    ref = sk_rl(img, psf, num_iter=5, clip=False, filter_epsilon=0.3)
    ours = richardson_lucy(img, psf, 5, padding="skimage", filter_epsilon=0.3)
    plain = sk_rl(img, psf, num_iter=5, clip=False)
    assert np.abs(plain - ref).max() > 1e-2 * np.abs(ref).max()  # the filter actually acted
    assert np.abs(ours - ref).max() / np.abs(ref).max() <= 1e-4


def test_nrmse_decreases_monotonically(scene3d):
    truth, psf, blurred = scene3d
    errs: list[float] = []
    richardson_lucy(blurred, psf, 12, callback=lambda k, x: errs.append(_nrmse(x, truth)))
    assert len(errs) == 12
    assert errs[-1] < 0.8 * _nrmse(blurred, truth)  # (the first step from a flat start is a double blur)
    assert all(b < a for a, b in zip(errs, errs[1:], strict=False))


def test_accelerated_needs_fewer_iterations(scene3d):
    truth, psf, blurred = scene3d
    plain: list[float] = []
    acc: list[float] = []
    richardson_lucy(blurred, psf, 20, callback=lambda k, x: plain.append(_nrmse(x, truth)))
    richardson_lucy(blurred, psf, 20, accelerate=True, callback=lambda k, x: acc.append(_nrmse(x, truth)))
    target = plain[-1]
    k_acc = next(i for i, e in enumerate(acc) if e <= target) + 1
    assert k_acc <= 13  # plain needs 20


def test_tv_and_background_and_offset(scene3d):
    truth, psf, blurred = scene3d
    raw = blurred * 100 + 5.0 + 100.0  # background 5, camera offset 100
    out = richardson_lucy(raw, psf, 10, offset=100.0, background=5.0)
    naive = richardson_lucy(raw, psf, 10)
    # RL conserves flux: with the model's background the object keeps only the specimen's light
    assert abs(out.mean() - 100 * blurred.mean()) < 0.1 * 100 * blurred.mean()
    assert naive.mean() > 100 * blurred.mean() + 100
    _, info = richardson_lucy(raw, psf, 10, offset=100.0, background="auto", return_info=True)
    assert 5.0 <= info["background"] <= 5.0 + 100 * blurred.min() + 0.5  # background + the specimen's dim floor
    tv = richardson_lucy(blurred, psf, 10, tv=0.002)
    plain = richardson_lucy(blurred, psf, 10)
    assert tv.min() >= 0 and _nrmse(tv, truth) < _nrmse(blurred, truth)
    assert np.abs(tv - plain).max() > 1e-3 * plain.max()


def test_stopping_rule_sensible_range(scene3d):
    truth, psf, blurred = scene3d
    rng = np.random.default_rng(0)
    photons = 200.0
    noisy = rng.poisson(blurred * photons).astype(np.float32)
    errs: list[float] = []
    richardson_lucy(noisy, psf, 80, callback=lambda k, x: errs.append(_nrmse(x / photons, truth)))
    best = min(errs)
    k_best = int(np.argmin(errs)) + 1
    for stop in ("change", "auto"):
        _, info = richardson_lucy(noisy, psf, 80, stop=stop, return_info=True)
        k = info["iterations"]
        assert 1 < k < 80, (stop, k)
        assert errs[k - 1] <= 1.15 * best, (stop, k, errs[k - 1], best)
    # the discrepancy principle is conservative (Bertero et al. 2010): it stops before the optimum,
    # once the residual is as small as Poisson noise predicts, never in the noise-amplifying regime
    _, info = richardson_lucy(noisy, psf, 80, stop="discrepancy", gain=1.0, return_info=True)
    k = info["iterations"]
    assert 1 < k <= k_best and errs[k - 1] < 0.8 * _nrmse(noisy / photons, truth)
    assert info["criterion"][-1] <= 1.0 < info["criterion"][0]


def test_block_equals_whole_volume(scene3d):
    _, psf, blurred = scene3d
    psf = gaussian_psf((5, 7, 7), (1.0, 1.5, 1.5))
    whole = richardson_lucy(blurred, psf, 5)
    blocks, info = richardson_lucy_blocks(blurred, psf, 5, block_shape=(8, 20, 20), return_info=True)
    assert info["n_blocks"] == 8  # blocks cut through the filaments
    assert np.abs(whole - blocks).max() / whole.max() <= 1e-3
    # margins too small break it: the test can fail
    bad = richardson_lucy_blocks(blurred, psf, 5, block_shape=(8, 20, 20), margin=1)
    assert np.abs(whole - bad).max() / whole.max() > 1e-3


def test_block_accelerated_uses_global_alphas(scene3d):
    _, _, blurred = scene3d
    psf = gaussian_psf((5, 5, 5), 1.0)
    out, info = richardson_lucy_blocks(blurred, psf, 5, block_shape=(16, 20, 20), method="rl-accel", return_info=True)
    whole = richardson_lucy(blurred, psf, 5, accelerate=True, alphas=info["alphas"])
    assert len(info["alphas"]) == 5 and max(info["alphas"]) > 0
    assert np.abs(whole - out).max() / whole.max() <= 1e-3


def test_required_margin():
    assert required_margin((9, 9), 3, exact=True) == (24, 24)
    m = required_margin((17, 17, 17), 10)
    assert all(8 < v < 160 for v in m)
    with pytest.raises(FluoreconError):
        required_margin((9, 9), 0)


def test_deconvolve_block_pure(rng):
    blk = rng.random((20, 20)).astype(np.float32)
    psf = gaussian_psf((5, 5), 1.0)
    a = deconvolve_block(blk, psf, {"method": "rl", "iterations": 3, "background": 0.0})
    b = deconvolve_block(blk.copy(), psf, {"method": "rl", "iterations": 3, "background": 0.0})
    assert np.array_equal(a, b)
    with pytest.raises(FluoreconError):
        deconvolve_block(blk, psf, {"method": "rl", "iterations": 3, "background": "auto"})


def test_wiener_inverts_noiseless_blur():
    from fluorecon.physics.phantoms import phantom

    truth = phantom("filaments", (64, 64), seed=1).astype(np.float32)
    psf = gaussian_psf((9, 9), 1.0)
    blurred = fft_convolve(truth, psf, padding="periodic")
    for reg in ("identity", "laplacian"):
        out = wiener(blurred, psf, 1e-7, reg=reg, padding="periodic")
        assert _nrmse(out, truth) < 0.01 < _nrmse(blurred, truth)
    # noisy, reflect boundary, balance chosen by GCV: clearly better than the blurred data
    blurred = fft_convolve(truth, psf)
    out, info = wiener(blurred + np.random.default_rng(0).normal(0, 0.02, blurred.shape).astype(np.float32),
                       psf, return_info=True)
    assert info["balance"] > 0 and _nrmse(out, truth) < 0.85 * _nrmse(blurred, truth)


def test_wiener_butterworth_converges_fast(scene3d):
    truth, psf, blurred = scene3d
    errs: list[float] = []
    richardson_lucy(blurred, psf, 2, backprojector="wb", callback=lambda k, x: errs.append(_nrmse(x, truth)))
    plain: list[float] = []
    richardson_lucy(blurred, psf, 2, callback=lambda k, x: plain.append(_nrmse(x, truth)))
    assert min(errs) < plain[-1]


def test_channels_batch(rng):
    img = rng.random((2, 24, 24)).astype(np.float32)
    psf = gaussian_psf((5, 5), 1.0)
    out = richardson_lucy(img, psf, 3)
    assert np.allclose(out[1], richardson_lucy(img[1], psf, 3))


@pytest.mark.parametrize("psf", [np.full((5, 5), np.nan), np.zeros((5, 5)), -np.ones((5, 5)), np.ones((3, 5, 5, 5))])
def test_bad_psf(psf, rng):
    with pytest.raises(FluoreconError):
        richardson_lucy(rng.random((16, 16, 16)), psf, 3)


def test_bad_inputs(rng):
    img = rng.random((16, 16)).astype(np.float32)
    psf = gaussian_psf((5, 5), 1.0)
    off = np.zeros((9, 9))
    off[0, 0] = 1
    with pytest.raises(FluoreconError, match="off-centre"):
        richardson_lucy(img, off, 3)
    with pytest.raises(FluoreconError, match="≥ 1"):
        richardson_lucy(img, psf, 0)
    with pytest.raises(FluoreconError):
        richardson_lucy(np.full((8, 8), np.nan), psf, 3)
    with pytest.raises(FluoreconError, match="zero everywhere"):
        richardson_lucy(np.zeros((16, 16)), psf, 3)
    with pytest.raises(FluoreconError):
        richardson_lucy(img, psf, 3, padding="bogus")
    # negatives (read noise below the offset) are clipped, not propagated
    neg = img - 0.5
    out, info = richardson_lucy(neg, psf, 3, return_info=True)
    assert out.min() >= 0 and info["negative_pixels_clipped"] > 0
