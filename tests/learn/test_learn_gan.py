"""Adversarial training (learn/gan.py): SSIM against scikit-image, the conditional discriminator,
seeded and resumable two-network training, the bundle, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage
from skimage.metrics import structural_similarity

from fluorecon.errors import FluoreconError
from fluorecon.learn.bundle import Bundle
from fluorecon.learn.gan import (
    GANConfig,
    PatchDiscriminator,
    array_sampler,
    frc_loss,
    ms_ssim,
    predict_gan,
    ssim_torch,
    train_gan,
)


@pytest.mark.parametrize("data_range", [1.0, 255.0])
def test_ssim_equals_scikit_image_at_one_scale(data_range):
    rng = np.random.default_rng(0)
    a = rng.random((37, 45)) * data_range
    b = np.clip(a + rng.normal(0, 0.2 * data_range, a.shape), 0, data_range)
    ref = structural_similarity(a, b, data_range=data_range)
    ours = ssim_torch(torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None], data_range)
    assert float(ours[0]) == pytest.approx(ref, abs=1e-6)
    one = ms_ssim(torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None], data_range, scales=1)
    assert float(one[0]) == pytest.approx(ref, abs=1e-6)


def test_ms_ssim_is_one_for_equal_images_and_falls_with_noise():
    g = torch.Generator().manual_seed(0)
    a = torch.rand(1, 1, 64, 64, generator=g)
    noise = torch.randn(1, 1, 64, 64, generator=g)
    vals = [float(ms_ssim(a, (a + s * noise).clamp(0, 1))[0]) for s in (0.0, 0.05, 0.2, 0.5)]
    assert vals[0] == pytest.approx(1.0, abs=1e-6)
    assert vals == sorted(vals, reverse=True)


def test_discriminator_sees_the_condition():
    torch.manual_seed(0)
    d = PatchDiscriminator(2, 1, width=4, n_layers=2)
    x = torch.rand(1, 2, 32, 32, requires_grad=True)
    y = torch.rand(1, 1, 32, 32)
    d(x, y).sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0     # the logits depend on the input image
    with pytest.raises(FluoreconError, match="channels"):
        d(torch.rand(1, 1, 32, 32), y)


def _data(seed: int = 0):
    rng = np.random.default_rng(seed)
    xs = [rng.random((1, 40, 40)).astype(np.float32) for _ in range(3)]
    ys = [0.5 * x[0] + 0.1 for x in xs]
    return xs, ys


def test_training_is_seeded_and_resume_equals_an_uninterrupted_run(tmp_path):
    xs, ys = _data()
    cfg = GANConfig.preset("gan", steps=2, batch_size=2, patch=32, width=4, depth=1, d_width=4, seed=3,
                           checkpoint_every=1, deterministic=True)
    a, _ = train_gan(cfg, array_sampler(xs, ys, 32))
    b, _ = train_gan(cfg, array_sampler(xs, ys, 32))
    for (k, va), vb in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        assert torch.equal(va, vb), k

    class Stop(Exception):
        pass

    def stop_at_1(step, losses):
        assert {"l1", "ms_ssim", "g_adv", "d", "total"} <= set(losses)
        if step == 1:
            raise Stop

    ck = tmp_path / "ck"
    with pytest.raises(Stop):
        train_gan(cfg, array_sampler(xs, ys, 32), checkpoint=ck, callback=stop_at_1)
    assert (ck / "state.safetensors").exists() and (ck / "checkpoint.json").exists()
    c, info = train_gan(cfg, array_sampler(xs, ys, 32), checkpoint=ck, resume=True)
    assert info["resumed_from"] == 1 and len(info["losses"]) == 2
    for (k, va), vc in zip(a.model.state_dict().items(), c.model.state_dict().values(), strict=True):
        assert torch.allclose(va, vc, atol=1e-6), k
    with pytest.raises(FluoreconError, match="another configuration"):
        train_gan(cfg.model_copy(update={"steps": 3}), array_sampler(xs, ys, 32), checkpoint=ck, resume=True)


def test_l1_training_reduces_the_error_and_the_bundle_holds_the_generator(tmp_path):
    xs, ys = _data(1)
    cfg = GANConfig.preset("l1", steps=20, batch_size=4, patch=32, width=8, depth=1, lr=3e-3)
    bundle, info = train_gan(cfg, array_sampler(xs, ys, 32))
    first, last = info["losses"][0]["l1"], np.mean([h["l1"] for h in info["losses"][-3:]])
    assert last < 0.5 * first
    pred = predict_gan(bundle.model, xs[0])
    assert np.abs(pred - ys[0]).mean() < np.abs(xs[0][0] - ys[0]).mean()
    d = bundle.save(tmp_path / "m")
    loaded = Bundle.load(d)
    assert loaded.config["scheme"] == "gan" and loaded.config["gan"]["w_adv"] == 0.0
    assert np.allclose(predict_gan(loaded.model, xs[0]), pred, atol=1e-6)
    assert not any("disc" in p.name for p in d.iterdir())          # the generator only


def test_bad_input_is_refused():
    with pytest.raises(FluoreconError, match="do not pair"):
        array_sampler([np.zeros((1, 40, 40))], [np.zeros((40, 41))], 32)
    with pytest.raises(FluoreconError, match="smaller than the patch"):
        array_sampler([np.zeros((1, 20, 20))], [np.zeros((20, 20))], 32)
    xs, ys = _data()
    b, _ = train_gan(GANConfig(steps=1, batch_size=1, patch=32, width=4, depth=1), array_sampler(xs, ys, 32))
    with pytest.raises(FluoreconError, match="input channel"):
        predict_gan(b.model, np.zeros((2, 32, 32), np.float32))
    with pytest.raises(FluoreconError, match="multiple"):
        train_gan(GANConfig(steps=1, batch_size=1, patch=30, width=4, depth=2), array_sampler(xs, ys, 30))


def test_physics_informed_generator_starts_at_its_base_channel_and_learns_a_correction():
    rng = np.random.default_rng(2)
    raw = [rng.random((40, 40)).astype(np.float32) for _ in range(3)]
    base = [ndimage.gaussian_filter(r, 1.0) for r in raw]          # a "classical estimate": close but off
    ys = [0.5 * b + 0.3 for b in base]
    xs = [np.stack([r, b]) for r, b in zip(raw, base, strict=True)]
    untrained, _ = train_gan(GANConfig(steps=1, batch_size=2, patch=32, width=4, depth=1, lr=1e-12, base_channel=1),
                             array_sampler(xs, ys, 32))
    # a zero-initialised last layer: the output is the base channel itself (not the raw channel)
    assert np.allclose(predict_gan(untrained.model, xs[0], base_channel=1), base[0], atol=1e-6)
    cfg = GANConfig.preset("l1", steps=30, batch_size=4, patch=32, width=8, depth=1, lr=3e-3, base_channel=1)
    bundle, _ = train_gan(cfg, array_sampler(xs, ys, 32))
    pred = predict_gan(bundle.model, xs[0], base_channel=bundle.config["gan"]["base_channel"])
    assert np.abs(pred - ys[0]).mean() < 0.7 * np.abs(base[0] - ys[0]).mean()
    with pytest.raises(FluoreconError, match="base_channel 2"):
        train_gan(GANConfig(steps=1, batch_size=1, patch=32, width=4, depth=1, base_channel=2),
                  array_sampler(xs, ys, 32))
    with pytest.raises(FluoreconError, match="base_channel 3"):
        predict_gan(bundle.model, xs[0], base_channel=3)


def _lowpass(t: torch.Tensor) -> torch.Tensor:
    return torch.from_numpy(ndimage.gaussian_filter(t.numpy(), (0, 0, 2.0, 2.0), mode="wrap"))


def test_frc_loss_ignores_ring_wise_gains_and_sees_uncorrelated_detail():
    g = torch.Generator().manual_seed(1)
    y = torch.rand(2, 1, 64, 64, generator=g)
    assert float(frc_loss(y, 2.0 * y + 0.3).max()) == pytest.approx(0.0, abs=1e-6)
    # an isotropic blur is (nearly) a gain per ring: the correlation survives, as in an FRC
    blurred = torch.from_numpy(ndimage.gaussian_filter(y.numpy(), (0, 0, 1.0, 1.0), mode="wrap"))
    assert float(frc_loss(blurred, y).max()) < 0.1
    # independent noise: the rings are uncorrelated, ring FRCs scatter around 0 (SD ~ 1/sqrt(ring size))
    other = torch.rand(2, 1, 64, 64, generator=g)
    assert float(frc_loss(other, y).min()) == pytest.approx(1.0, abs=0.1)
    # the same image with noise added at the high frequencies only: in between
    noisy = y + 0.5 * (other - _lowpass(other))
    assert 0.05 < float(frc_loss(noisy, y).mean()) < 0.9
    p = y.clone().requires_grad_(True)
    frc_loss(p + 0.1 * other, y).sum().backward()
    assert p.grad is not None and float(p.grad.abs().sum()) > 0
    with pytest.raises(FluoreconError, match="one shape"):
        frc_loss(y, y[..., :32])
