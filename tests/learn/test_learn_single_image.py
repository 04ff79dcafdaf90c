"""Held-out pixels, checkpoint selection and the centre gain of single-image self-supervised denoising.

References are independent of the code under test: ground truth and noise variance come from the
forward model (phantom → PSF → camera), never from the denoisers.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fluorecon.classical.denoise import apply_method, holdout_loss, holdout_mask, holdout_replace
from fluorecon.errors import FluoreconError
from fluorecon.learn.bundle import Bundle
from fluorecon.learn.nets import UNet
from fluorecon.learn.normalize import PercentileNormalizer
from fluorecon.learn.single_image import center_gain, denoise_single_image
from fluorecon.learn.train import TrainConfig, train
from fluorecon.physics import phantoms

TINY = {"depth": 1, "width": 8}


def _gaussian_image(shape=(128, 128), sigma=0.1, seed=0):
    truth = phantoms.phantom("mixed", shape, seed=seed).astype(np.float64)
    x = truth + np.random.default_rng(seed + 1).normal(0, sigma, shape)
    return x.astype(np.float32), truth


def test_holdout_mask_and_replace_only_touch_the_grid():
    m = holdout_mask((2, 64, 64))
    assert m.sum() == 2 * 16 * 16 and (m[0] == m[1]).all()  # one pixel per 4×4 cell (small image), same per plane
    m8 = holdout_mask((256, 256))
    assert m8.sum() == 32 * 32
    a, b = holdout_mask((256, 256), 8, (4, 3)), holdout_mask((256, 256), 8, (0, 7))
    assert not (a & b).any()
    x = np.random.default_rng(0).normal(size=(64, 64)).astype(np.float32)
    xr = holdout_replace(x, m[0])
    assert np.array_equal(xr[~m[0]], x[~m[0]]) and not np.allclose(xr[m[0]], x[m[0]])
    c = np.full((32, 32), 7.0, np.float32)
    assert np.array_equal(holdout_replace(c, holdout_mask(c.shape)), c)
    # the replacement never reads a held-out pixel (J-invariance): changing them changes nothing
    x2 = x.copy()
    x2[m[0]] += 100
    np.testing.assert_array_equal(holdout_replace(x2, m[0])[m[0]], xr[m[0]])
    with pytest.raises(FluoreconError):
        holdout_mask((64,))
    with pytest.raises(FluoreconError):
        holdout_replace(x, m)


def test_holdout_loss_is_true_mse_plus_noise_variance():
    """Noise2Self identity on the forward model's truth: loss ≈ MSE(pred, truth) + σ² on held-out pixels."""
    sigma = 0.1
    x, truth = _gaussian_image(sigma=sigma, seed=3)
    m = holdout_mask(x.shape, 4)
    xr = holdout_replace(x, m)
    for w in (0.02, 0.08, 0.3):
        pred = apply_method(xr, "tv", {"weight": w})
        loss = holdout_loss(pred, x, m, scale=1.0)
        true = float(np.mean((pred[m] - truth[m]) ** 2))
        assert abs(loss - (true + sigma**2)) < 0.15 * (true + sigma**2), (w, loss, true)


def test_train_monitor_keeps_the_best_weights():
    """The weights returned are those at the monitor's lowest value, not the last ones."""
    x = np.random.default_rng(0).poisson(20, (48, 48)).astype(np.float32)
    values = iter([5.0, 1.0, 3.0, 4.0, 6.0, 7.0, 8.0, 9.0])
    states = []

    def monitor(net, normalizer):
        states.append({k: v.detach().clone() for k, v in net.state_dict().items()})
        return next(values)

    cfg = TrainConfig(scheme="n2v", steps=12, batch_size=2, patch_size=16, model=dict(TINY), progress=False,
                      device="cpu", val_fraction=0.0, lr=1e-2)
    b = train(cfg, x, axes="YX", monitor=monitor, monitor_points=3)
    mon = b.provenance["monitor"]
    assert [v for _, v in mon["curve"]] == [5.0, 1.0, 3.0, 4.0]  # 3 points + the end
    assert mon["best"] == 1.0 and mon["best_step"] == mon["curve"][1][0]
    for k, v in b.model.state_dict().items():
        torch.testing.assert_close(v, states[1][k].to(v.dtype))


def _identity_bundle(x, residual=True):
    net = UNet(depth=1, width=4, residual=residual).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.zero_()
    return Bundle(net, PercentileNormalizer(0, 100).fit(x), config={"axes": "YX"})


def test_center_gain_of_identity_and_of_a_blind_spot_filter():
    x = np.random.default_rng(1).random((40, 40)).astype(np.float32)
    assert abs(center_gain(_identity_bundle(x), x, "YX") - 1.0) < 1e-3

    class Ring(torch.nn.Module):  # mean of the 8 neighbours: never sees the centre pixel
        def forward(self, t):
            k = torch.ones(1, 1, 3, 3) / 8
            k[0, 0, 1, 1] = 0
            return torch.nn.functional.conv2d(t, k, padding=1)

    # one Rademacher probe: the 8 off-diagonal weights of 1/8 leave a noise of ≈ (1/8 / 1600)^½ ≈ 0.009
    assert abs(center_gain(Ring(), x, "YX")) < 0.03


def test_single_image_holdout_info_and_hidden_pixels():
    """The held-out pixels never reach the training: the bundle's test data equal the replaced image."""
    x = np.random.default_rng(0).poisson(20, (64, 64)).astype(np.float32)
    out, info = denoise_single_image(x, "YX", steps=4, progress=False, device="cpu", patch_size=32, batch_size=2,
                                     model={"depth": 1, "width": 4}, seed=0)
    ho = info["holdout"]
    assert ho["stride"] == 4 and ho["mask_b"].shape == x.shape and ho["values_b"].shape == (int(ho["mask_b"].sum()),)
    assert ho["loss_a"] > 0 and ho["loss_b"] > 0 and 1 <= info["selected_step"] <= 4
    assert np.isfinite(info["center_gain"])
    _, info2 = denoise_single_image(x, "YX", steps=2, progress=False, device="cpu", patch_size=32, batch_size=2,
                                    model={"depth": 1, "width": 4}, holdout=False)
    assert "holdout" not in info2 and info2["bundle"].provenance["monitor"] is None
