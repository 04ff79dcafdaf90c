"""Trust tools on bundles trained by the engine: ensembles, recalibration, calibrated shift statistics."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.errors import FluoreconError


def _pairs(n, seed):
    rng = np.random.default_rng(seed)
    ys = [np.kron(rng.random((8, 8)), np.ones((4, 4))).astype(np.float32) * 100 for _ in range(n)]
    xs = [(y + rng.normal(0, 10, y.shape)).astype(np.float32) for y in ys]
    return xs, ys


def test_train_ensemble_recalibrate_and_assess():
    from fluorecon.learn.train import TrainConfig
    from fluorecon.trust.summary import assess
    from fluorecon.trust.uncertainty import (
        attach_trust_statistics,
        calibrate_bundle,
        predict_with_uncertainty,
        train_ensemble,
    )

    xs, ys = _pairs(5, 0)  # 5 images: train() holds one out for validation (and shift calibration)
    cfg = TrainConfig(scheme="care", steps=4, patch_size=16, batch_size=2, val_fraction=0.25, val_every=100,
                      model={"depth": 1, "width": 4, "head": "laplace"}, device="cpu", progress=False)
    b = train_ensemble(cfg, xs, n_members=2, targets=ys)
    assert len(b.members) == 2 and b.provenance["ensemble_seeds"] == [0, 1000]
    shift = b.training_stats["shift"]  # attached by train(), calibrated on its validation split
    assert shift["calibration"]["source"] == "images never used for training" and "image_thresholds" in shift
    m, sd, info = predict_with_uncertainty(b, xs[0], "YX")
    assert info["source"] == "ensemble + laplace head" and sd.shape == xs[0].shape and np.all(sd > 0)
    cx, cy = _pairs(2, 1)
    rep = calibrate_bundle(b, cx, cy)
    assert rep["dist"] == "laplace" and b.training_stats["calibration"]["dist"] == "laplace"
    assert rep["after"]["ece"] <= rep["before"]["ece"] + 1e-9
    _, sd2, info2 = predict_with_uncertainty(b, xs[0], "YX")
    np.testing.assert_allclose(sd2, sd * rep["factor"], rtol=1e-5)
    st = attach_trust_statistics(b, xs, patch_size=16, max_patches=32)
    assert "feature_mahalanobis" in st["thresholds"]
    s = assess(xs[0], "YX", bundle=b, prediction=m)
    assert "uncertainty" in s.maps and "thresholds" in s.scores["shift"]
    with pytest.raises(FluoreconError, match="2"):
        train_ensemble(cfg, xs, n_members=1, targets=ys)
