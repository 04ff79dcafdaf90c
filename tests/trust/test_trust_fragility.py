"""Fragility gains against analytic singular values of linear operators."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from fluorecon.errors import FluoreconError
from fluorecon.physics.psf import gaussian_psf
from fluorecon.trust.fragility import (
    _otf,
    _window,
    compare_attacks,
    compare_fragility,
    fragility,
    match_psnr,
    pgd_attack,
    torch_richardson_lucy,
    torch_wiener,
)

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


# ------------------------------------------------------------------------------------------------ PGD attacks
def _blur(sigma=1.5, n=16):
    """A linear model g(x) = A x (periodic Gaussian blur) and A as an explicit matrix (independent reference)."""
    h = _otf(gaussian_psf((9, 9), sigma), (n, n))

    def blur(t):
        return torch.fft.irfftn(torch.fft.rfftn(t) * h, s=t.shape)

    eye = torch.eye(n * n, dtype=torch.float64).reshape(n * n, n, n)
    A = torch.stack([blur(e) for e in eye]).reshape(n * n, n * n).T.numpy()  # column j = response to pixel j
    return blur, A


def test_attack_with_zero_budget_changes_nothing():
    blur, _ = _blur()
    x = np.random.default_rng(0).random((16, 16))
    for target in (None, "create"):
        r = pgd_attack(blur, x, 0.0, target=target, at=(8, 8), steps=50)
        assert np.all(r["delta"] == 0) and np.array_equal(r["output"], r["clean_output"])


def test_linf_and_l2_attacks_stay_within_budget():
    blur, _ = _blur()
    x = np.random.default_rng(1).random((16, 16))
    for target in (None, "create", "erase"):
        r = pgd_attack(blur, x, 0.05, norm="linf", target=target, at=(5, 9), steps=50, random_start=True)
        assert r["delta_linf"] <= 0.05 + 1e-12
        r = pgd_attack(blur, x, 0.05, norm="l2", target=target, at=(5, 9), steps=50)
        assert np.linalg.norm(r["delta"]) <= 0.05 * 16 + 1e-9  # per-pixel RMS ≤ ε


def test_pgd_on_a_linear_model_climbs_monotonically_to_the_analytic_optimum():
    """Targeted loss L(δ) = ⟨w, A(x + δ)⟩ is linear in δ: the L∞ optimum is ε·sign(Aᵀw) (L gains ε‖Aᵀw‖₁), the L2
    optimum ε√N·Aᵀw/‖Aᵀw‖ (L gains ε√N‖Aᵀw‖₂)."""
    blur, A = _blur()
    x = np.random.default_rng(2).random((16, 16))
    eps, at = 0.03, (6, 10)
    w = _window((16, 16), at, 1.5).ravel()
    atw = A.T @ w
    base = float(w @ (A @ x.ravel()))
    for norm, gain in (("linf", eps * np.abs(atw).sum()), ("l2", eps * 16 * np.linalg.norm(atw))):
        r = pgd_attack(blur, x, eps, norm=norm, target="create", at=at, steps=50)
        loss = np.array(r["loss"])
        assert len(loss) == 51 and np.all(np.diff(loss) >= -1e-12)
        assert loss[0] == pytest.approx(base, rel=1e-9)
        assert loss[-1] == pytest.approx(base + gain, rel=1e-6)
        e = pgd_attack(blur, x, eps, norm=norm, target="erase", at=at, steps=50)
        assert e["window_change"] == pytest.approx(-gain, rel=1e-6)


def test_classical_and_learned_attacks_compared():
    from fluorecon.learn.nets import UNet

    rng = np.random.default_rng(3)
    truth = np.zeros((32, 32))
    truth[10, 12] = truth[20, 22] = 1.0
    psf = gaussian_psf((9, 9), 1.5)
    blurred = torch.fft.irfftn(torch.fft.rfftn(torch.as_tensor(truth)) * _otf(psf, (32, 32)), s=(32, 32)).numpy()
    x = 0.05 + blurred + rng.normal(0, 0.005, (32, 32))
    bal, ps = match_psnr(lambda b: torch_wiener(psf, b), [1e-3, 1e-2, 1e-1], x, truth, 20.0)
    assert bal in (1e-3, 1e-2, 1e-1) and np.isfinite(ps)
    torch.manual_seed(0)
    net = UNet(dim=2, depth=1, width=4).eval().double()
    res = compare_attacks({"wiener": torch_wiener(psf, bal), "rl": torch_richardson_lucy(psf, 5), "unet": net}, x,
                          [0.0, 0.01], at=(16, 5), erase_at=(10, 12), steps=50)
    for name in ("wiener", "rl", "unet"):
        for key in ("linf/untargeted", "linf/create", "linf/erase", "l2/create"):
            zero, small = res[name][key]
            assert zero["delta_linf"] == 0
            assert (small["delta_linf"] if key.startswith("linf") else small["delta_rms"]) <= 0.01 + 1e-9
        assert res[name]["linf/create"][1]["window_change"] > 0 > res[name]["linf/erase"][1]["window_change"]
