"""Fragility gains against analytic singular values of linear operators."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from fluorecon.errors import FluoreconError
from fluorecon.trust.fragility import compare_fragility, fragility

SHARPEN = np.array([[0, -0.5, 0], [-0.5, 3.0, -0.5], [0, -0.5, 0]])


def _circular_conv_module(k):
    conv = torch.nn.Conv2d(1, 1, 3, padding=1, padding_mode="circular", bias=False).double()
    with torch.no_grad():
        conv.weight[:] = torch.tensor(k[::-1, ::-1].copy())
    return conv


def test_identity_has_gain_one():
    r = fragility(lambda v: v, np.random.default_rng(0).random((16, 16)), 0.05, gradient=None)
    assert r["random_mean"] == pytest.approx(1.0) and r["power"] == pytest.approx(1.0)


def test_worst_case_gain_matches_largest_singular_value():
    n = 32
    otf = np.zeros((n, n))
    otf[:3, :3] = SHARPEN
    otf = np.roll(otf, (-1, -1), (0, 1))
    sigma_max = np.abs(np.fft.fft2(otf)).max()  # analytic operator norm of a circular convolution: 5.0
    x = np.random.default_rng(0).random((n, n))
    net = _circular_conv_module(SHARPEN)
    r = fragility(net, x, 0.01, steps=20, power_iters=20)
    assert sigma_max == pytest.approx(5.0)
    assert 0.95 * sigma_max < r["pgd"] <= sigma_max * (1 + 1e-6)
    assert 0.95 * sigma_max < r["power"] <= sigma_max * (1 + 1e-6)  # derivative-free probe agrees
    assert r["random_mean"] < 0.8 * r["pgd"]
    assert r["fgsm"] > r["random_mean"]


def test_compare_learned_and_classical_side_by_side():
    x = np.random.default_rng(1).random((24, 24))
    res = compare_fragility({"sharpen (torch)": _circular_conv_module(SHARPEN),
                             "gaussian (numpy)": lambda v: gaussian_filter(v, 1.5, mode="wrap")}, x, 0.01)
    assert "pgd" in res["sharpen (torch)"] and "pgd" not in res["gaussian (numpy)"]
    assert res["gaussian (numpy)"]["worst"] <= 1.0 + 1e-6 < res["sharpen (torch)"]["worst"]


def test_bad_inputs():
    with pytest.raises(FluoreconError, match="norm"):
        fragility(lambda v: v, np.ones((4, 4)), 0.1, norm="l1")
    with pytest.raises(FluoreconError, match="eps"):
        fragility(lambda v: v, np.ones((4, 4)), -1.0)
    with pytest.raises(FluoreconError, match="callable"):
        fragility(3, np.ones((4, 4)), 0.1)
