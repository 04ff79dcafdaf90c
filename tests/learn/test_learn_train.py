"""Tests for fluorecon.learn.train / schemes / single_image: learning, determinism, resume, fine-tuning."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fluorecon.errors import FluoreconError
from fluorecon.learn.predict import predict
from fluorecon.learn.train import TrainConfig, train
from fluorecon.physics import phantoms
from fluorecon.physics.camera import Camera
from fluorecon.physics.forward import Forward

TINY = {"depth": 1, "width": 8}


def _psnr(a, b):
    rng = float(b.max() - b.min())
    return 10 * np.log10(rng**2 / np.mean((a.astype(np.float64) - b) ** 2))


def _data(kind="mixed", photons=8.0, shape=(64, 64), seed=0):
    y = phantoms.phantom(kind, shape, seed=seed)
    f = Forward(camera=Camera(photons=photons, read_noise=1.0))
    x1, _ = f.simulate(y, seed=seed + 100)
    x2, _ = f.simulate(y, seed=seed + 200)
    clean = np.asarray(f.expected(y), np.float32)  # noiseless recording in ADU: the independent reference
    return np.asarray(x1, np.float32), np.asarray(x2, np.float32), clean, f


def _cfg(scheme, steps=60, **kw):
    base = dict(scheme=scheme, steps=steps, batch_size=8, patch_size=32, lr=3e-3, model=dict(TINY), seed=0,
                deterministic=True, progress=False, device="cpu", val_fraction=0.0)
    base.update(kw)
    return TrainConfig(**base)


@pytest.mark.parametrize("scheme", ["care", "n2n", "n2v", "n2v2", "structn2v", "nb2nb"])
def test_each_scheme_learns(scheme):
    x1, x2, clean, f = _data(seed=1)
    targets = {"care": clean, "n2n": x2}.get(scheme)
    b = train(_cfg(scheme, steps=80), x1, targets, axes="YX", forward=f)
    curve = np.array(b.provenance["loss_curve"])
    first, last = curve[:3, 1].mean(), curve[-3:, 1].mean()
    assert last < first, f"{scheme}: loss did not fall ({first} -> {last})"
    out = predict(b, x1, "YX", device="cpu")
    gain = _psnr(out, clean) - _psnr(x1, clean)
    assert gain > 2.0, f"{scheme}: PSNR gain only {gain:.2f} dB"
    assert b.forward is not None and b.provenance["steps"] == 80 and b.training_stats["histogram"]["counts"]


def test_deterministic_and_resume_is_bit_identical(tmp_path):
    x1, _, _, _ = _data(seed=2, shape=(48, 48))
    full = train(_cfg("n2v", steps=12, patch_size=16), x1, axes="YX")

    class Stop(Exception):
        pass

    def interrupt(step, loss):
        if step == 7:
            raise Stop

    ck = tmp_path / "ck"
    with pytest.raises(Stop):
        train(_cfg("n2v", steps=12, patch_size=16, checkpoint_dir=str(ck), checkpoint_every=5), x1, axes="YX",
              callback=interrupt)
    assert (ck / "checkpoint.safetensors").exists() and not list(ck.glob("*.pt"))
    resumed = train(_cfg("n2v", steps=12, patch_size=16, checkpoint_dir=str(ck), checkpoint_every=5, resume=True),
                    x1, axes="YX")
    assert resumed.provenance["steps"] == 12
    for (k, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    again = train(_cfg("n2v", steps=12, patch_size=16), x1, axes="YX")
    for a, b in zip(full.model.state_dict().values(), again.model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_finetuning_improves_on_shifted_domain():
    # Pretrain CARE on filaments at high SNR; the target domain is nuclei at low SNR.
    src = [_data("filaments", 30.0, (64, 64), seed=s) for s in (3, 4)]
    pre = train(_cfg("care", steps=60), [d[0] for d in src], [d[2] for d in src], axes="YX")
    tgt_train = _data("nuclei", 4.0, (64, 64), seed=5)
    tgt_test = _data("nuclei", 4.0, (64, 64), seed=6)
    tuned = train(_cfg("care", steps=40, lr=1e-3), tgt_train[0], tgt_train[2], axes="YX", init_from=pre)
    before = _psnr(predict(pre, tgt_test[0], "YX", device="cpu"), tgt_test[2])
    after = _psnr(predict(tuned, tgt_test[0], "YX", device="cpu"), tgt_test[2])
    assert after > before + 0.5, (before, after)
    assert tuned.provenance["init_from"] == "care"


def test_early_stopping_and_validation_curve():
    x1, _, clean, _ = _data(seed=7, shape=(64, 128))
    b = train(_cfg("care", steps=300, val_fraction=0.25, val_every=5, patience=1), x1, clean, axes="YX")
    curve = b.provenance["validation_curve"]
    assert len(curve) >= 2 and curve[0][0] == 5
    # patience=1: training stops at the first validation check that does not improve
    assert b.provenance["stop_reason"] == "early_stopping" and b.provenance["steps"] < 300
    assert curve[-1][1] >= min(v for _, v in curve[:-1])


def test_bad_inputs(tmp_path):
    x = np.zeros((32, 32), np.float32)
    with pytest.raises(FluoreconError, match="differ in shape"):
        train(_cfg("care"), x, np.zeros((32, 31), np.float32), axes="YX")
    with pytest.raises(FluoreconError, match="needs targets"):
        train(_cfg("care"), x, axes="YX")
    with pytest.raises(FluoreconError, match="smaller than the patch"):
        train(_cfg("n2v", patch_size=64), x, axes="YX")
    with pytest.raises(FluoreconError):
        train(_cfg("n2v"), np.zeros((3, 32, 32), np.float32), axes="YX")  # axes mismatch
    with pytest.raises(FluoreconError, match="steps"):
        train(_cfg("n2v", steps=None), x, axes="YX")
    with pytest.raises(FluoreconError, match="checkpoint"):
        train(_cfg("n2v", resume=True, checkpoint_dir=str(tmp_path / "none")), x, axes="YX")
    with pytest.raises(FluoreconError, match="inputs but"):
        train(_cfg("n2n"), [x, x], [x], axes="YX")
    with pytest.raises(ValueError):
        TrainConfig(scheme="magic")


def test_single_image_entry_point():
    from fluorecon.learn.single_image import denoise_single_image

    x1, _, clean, _ = _data(seed=1, shape=(64, 64))
    out, info = denoise_single_image(x1, "YX", scheme="auto", steps=80, progress=False, device="cpu", lr=3e-3,
                                     patch_size=32, batch_size=8, model=dict(TINY), tta=True, seed=0)
    assert out.shape == x1.shape and out.dtype == np.float32
    assert abs(float(out.mean()) - float(clean.mean())) < 0.1 * float(clean.std()) + 1  # input units
    assert _psnr(out, clean) > _psnr(x1, clean) + 2
    assert info["scheme"] == "n2v" and info["steps"] == 80
    with pytest.raises(FluoreconError):
        denoise_single_image(x1, "YX", scheme="bogus")
    with pytest.raises(FluoreconError):
        denoise_single_image(np.zeros((8, 8), np.float32), "YX", budget_s=1)
    with pytest.raises(FluoreconError):
        denoise_single_image(x1, "ZYX", budget_s=1)
