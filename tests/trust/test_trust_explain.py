"""Explanations: the perturbation covariance map of a linear blur is the (flipped) PSF."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import convolve

from fluorecon.errors import FluoreconError
from fluorecon.trust.explain import explain, gradient_saliency, perturbation_covariance, region_mask


def _asymmetric_psf():
    yy, xx = np.mgrid[-3:4, -3:4]
    k = np.exp(-((yy - 0.8) ** 2 / 2.0 + (xx + 0.5) ** 2 / 0.8))  # off-centre, elongated
    k[0, 6] += 0.3  # and a lone side lobe so a missed flip cannot pass
    return k / k.sum()


def _row_of_blur(k, shape, c):
    """Independent reference: the operator's row, built by applying the blur to every unit impulse."""
    row = np.zeros(shape)
    for idx in np.ndindex(*shape):
        e = np.zeros(shape)
        e[idx] = 1
        row[idx] = convolve(e, k, mode="constant")[c]
    return row


def test_covariance_map_of_linear_blur_equals_flipped_psf():
    k = _asymmetric_psf()
    shape, c = (24, 24), (12, 12)
    blur = lambda v: convolve(v, k, mode="constant")  # noqa: E731
    expected = np.zeros(shape)
    expected[c[0] - 3:c[0] + 4, c[1] - 3:c[1] + 4] = k[::-1, ::-1]
    assert np.allclose(_row_of_blur(k, shape, c), expected)
    x = np.random.default_rng(0).random(shape)
    exact = perturbation_covariance(blur, x, (12, 13, 12, 13), n=1024, design="hadamard", seed=1)
    np.testing.assert_allclose(exact, expected, atol=1e-9)
    # independent draws: unbiased, per-pixel SD ≈ ‖row‖ / sqrt(n)
    approx = perturbation_covariance(blur, x, (12, 13, 12, 13), n=3000, design="rademacher", seed=2)
    sd = np.linalg.norm(expected) / np.sqrt(3000)
    assert np.abs(approx - expected).max() < 5 * sd
    assert abs((approx - expected).mean()) < 4 * sd / np.sqrt(approx.size)


def test_gradient_saliency_of_conv_module_equals_flipped_psf_and_covariance():
    k = _asymmetric_psf()
    conv = torch.nn.Conv2d(1, 1, 7, padding=3, bias=False).double()
    with torch.no_grad():
        conv.weight[:] = torch.tensor(k[::-1, ::-1].copy())  # torch conv is correlation
    x = np.random.default_rng(0).random((20, 20))
    region = np.zeros((20, 20), bool)
    region[9:11, 9:11] = True
    sal = gradient_saliency(conv, x, region)
    ref = np.mean([_row_of_blur(k, (20, 20), (i, j)) for i in (9, 10) for j in (9, 10)], axis=0)
    np.testing.assert_allclose(sal, ref, atol=1e-12)
    both = explain(conv, x, region, n=400)
    assert np.corrcoef(both["covariance"].ravel(), ref.ravel())[0, 1] > 0.9


def test_nonlinear_model_local_linearisation():
    # g(x) = x²: the region's sensitivity to its own pixel is 2 x there, 0 elsewhere
    x = np.full((6, 6), 3.0)
    cov = perturbation_covariance(lambda v: v**2, x, (2, 3, 2, 3), n=64, sigma=0.01, design="hadamard")
    assert cov[2, 2] == pytest.approx(6.0, rel=1e-6)
    assert np.abs(np.delete(cov.ravel(), 14)).max() < 1e-9


def test_bad_inputs():
    with pytest.raises(FluoreconError, match="empty"):
        region_mask(np.zeros((4, 4), bool), (4, 4))
    with pytest.raises(FluoreconError, match="shape"):
        region_mask(np.ones((3, 3), bool), (4, 4))
    with pytest.raises(FluoreconError, match="region"):
        region_mask("centre", (4, 4))
    with pytest.raises(FluoreconError, match="design"):
        perturbation_covariance(lambda v: v, np.ones((4, 4)), (0, 1, 0, 1), design="sobol")
