"""assess(): the contract used by predict --check, the report and napari."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from fluorecon.errors import FluoreconError
from fluorecon.trust.summary import TrustSummary, assess


def _scene(seed=0, photons=30.0):
    rng = np.random.default_rng(seed)
    y = gaussian_filter((rng.random((64, 64)) > 0.96).astype(float), 1.5) * 6
    return y, rng.poisson(photons * y + 2.0).astype(float)


class Fw:
    camera = "poisson"

    def __init__(self, photons=30.0):
        self.photons = photons

    def expected(self, y):
        return self.photons * np.asarray(y, float) + 2.0

    def variance(self, m):
        return np.asarray(m, float)


def test_truth_passes_and_hallucination_is_flagged():
    y, x = _scene()
    ok = assess(x, "YX", prediction=y, forward=Fw(), uncertainty=False, shift=False)
    assert isinstance(ok, TrustSummary) and ok.warnings == []
    assert abs(ok.scores["consistency"]["excess"]) < 0.1
    bad = y.copy()
    bad[10:20, 10:20] += 0.5
    s = assess(x, "YX", prediction=bad, forward=Fw(), uncertainty=False, shift=False)
    assert s.maps["consistency"][12:18, 12:18].mean() > 20
    assert any("more signal than the recording supports" in w for w in s.warnings)
    d = json.loads(json.dumps(s.to_dict()))
    assert d["ok"] is False and "consistency" in d["maps"]


def test_over_smoothing_denoiser_fails_whiteness():
    rng = np.random.default_rng(3)
    y = gaussian_filter(rng.random((96, 96)), 2) * 200
    x = y + rng.normal(0, 2.0, y.shape)
    s = assess(x, "YX", prediction=gaussian_filter(x, 3), uncertainty=False, shift=False)
    assert s.scores["consistency"]["per_image"]["whiteness"]["white"] is False
    assert s.warnings


def test_with_bundle_uncertainty_and_shift():
    from fluorecon.learn.nets import UNet
    from fluorecon.learn.normalize import PercentileNormalizer
    from fluorecon.trust.shift import training_statistics

    torch.manual_seed(0)
    net = UNet(dim=2, depth=1, width=8, head="laplace").eval()
    imgs = [_scene(s)[1] for s in range(8)]
    norm = PercentileNormalizer().fit(np.stack(imgs))
    stats = training_statistics(net, imgs, norm, patch_size=32, max_patches=64)
    stats["calibration"] = {"factor": 2.0}
    bundle = SimpleNamespace(model=net, members=[], normalizer=norm, training_stats=stats, forward=None)
    y, x = _scene(50)
    from fluorecon.learn.predict import predict

    pred = predict(bundle, x, "YX", device="cpu")
    s = assess(x, "YX", bundle=bundle, prediction=pred)
    assert {"uncertainty", "consistency"} <= set(s.maps)
    assert s.maps["uncertainty"].shape == x.shape and np.all(s.maps["uncertainty"] > 0)
    _, raw_sd = predict(bundle, x, "YX", return_scale=True, device="cpu")
    np.testing.assert_allclose(s.maps["uncertainty"], 2.0 * raw_sd, rtol=1e-5)
    assert s.scores["shift"]["worst_ratio"] < 1.5
    shifted = assess(10 * x + 500 * gaussian_filter(np.random.default_rng(0).random(x.shape), 8), "YX",
                     bundle=bundle, prediction=pred, consistency=False, uncertainty=False)
    assert shifted.scores["shift"]["worst_ratio"] > 2 and any("training data" in w for w in shifted.warnings)


def test_stack_axes_and_bad_inputs():
    y, x = _scene()
    s = assess(np.stack([x, x]), "CYX", prediction=np.stack([y, y]), forward=Fw(), uncertainty=False, shift=False)
    assert s.maps["consistency"].shape == (2, 64, 64)
    with pytest.raises(FluoreconError, match="axes"):
        assess(x, "ZYX", prediction=y)
    with pytest.raises(FluoreconError, match="NaN"):
        assess(x * np.nan, "YX", prediction=y)


def test_given_uncertainty_map_gets_the_bundle_factor():
    y, x = _scene()
    bundle = SimpleNamespace(model=None, members=[], normalizer=None, forward=None,
                             training_stats={"calibration": {"factor": 1.5}})
    s = assess(x, "YX", bundle=bundle, prediction=y, uncertainty_map=np.full(x.shape, 2.0), consistency=False,
               shift=False)
    np.testing.assert_allclose(s.maps["uncertainty"], 3.0)
    assert s.scores["uncertainty"]["factor"] == 1.5
