"""Calibration, one-factor recalibration, conformal coverage and ensemble spread."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from fluorecon.errors import FluoreconError
from fluorecon.trust.uncertainty import (
    DEFAULT_LEVELS,
    ConformalCalibrator,
    calibration_report,
    conformal_quantile,
    coverage,
    ensemble_stats,
    fit_scale_factor,
    interval_halfwidth,
    seed_spread,
)


def test_halfwidths_match_scipy():
    for lv in DEFAULT_LEVELS:
        assert np.isclose(interval_halfwidth(lv, "gaussian"), stats.norm.interval(lv)[1])
        assert np.isclose(interval_halfwidth(lv, "laplace"), stats.laplace.interval(lv)[1])


@pytest.mark.parametrize("dist", ["gaussian", "laplace"])
def test_overconfident_head_is_fixed_by_one_factor(dist):
    rng = np.random.default_rng(0)
    n = 40_000
    mean = rng.normal(size=2 * n)
    claimed = rng.uniform(0.5, 2.0, 2 * n)  # heteroscedastic, but 2.5x too small everywhere
    draw = rng.normal if dist == "gaussian" else rng.laplace
    truth = mean + draw(0, 1, 2 * n) * claimed * 2.5
    cal, test = slice(0, n), slice(n, None)
    before = calibration_report(truth[test], mean[test], claimed[test], dist=dist)
    c = fit_scale_factor(truth[cal], mean[cal], claimed[cal], dist=dist)
    after = calibration_report(truth[test], mean[test], claimed[test], dist=dist, factor=c)
    assert 2.3 < c < 2.7
    assert before["ece"] > 0.2
    assert after["ece"] < 0.01
    assert all(abs(cv - lv) < 0.05 for lv, cv in after["coverage"].items())
    c_nll = fit_scale_factor(truth[cal], mean[cal], claimed[cal], dist=dist, method="nll")
    assert abs(c_nll - 2.5) < 0.1


def test_conformal_coverage_at_least_nominal_on_exchangeable_data():
    # finite-sample guarantee: P(covered) >= 1 - alpha for ANY n, here n = 19 with heavy tails
    rng = np.random.default_rng(1)
    hits = {lv: [] for lv in (0.5, 0.8, 0.9)}
    for _ in range(3000):
        scores = np.abs(rng.standard_t(2, size=20))
        cal = ConformalCalibrator(levels=(0.5, 0.8, 0.9)).fit(scores[:19], np.zeros(19), None)
        for lv in hits:
            lo, hi = cal.interval(np.zeros(1), None, lv)
            hits[lv].append(lo[0] <= scores[19] <= hi[0])
    for lv, h in hits.items():
        cov = np.mean(h)
        se = np.sqrt(lv * (1 - lv) / len(h))
        assert cov >= lv - 2.5 * se
        assert cov <= lv + 1 / 20 + 2.5 * se  # and not much above: ≤ 1-α + 1/(n+1)
    assert conformal_quantile(np.arange(5.0), 0.01) == float("inf")


def test_ensemble_spread_grows_off_training_distribution():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    x_train = rng.uniform(-1, 1, (256, 1))
    y_train = np.sin(3 * x_train)
    preds_in, preds_out = [], []
    for seed in range(5):
        torch.manual_seed(seed)
        net = torch.nn.Sequential(torch.nn.Linear(1, 32), torch.nn.Tanh(), torch.nn.Linear(32, 32), torch.nn.Tanh(),
                                  torch.nn.Linear(32, 1))
        opt = torch.optim.Adam(net.parameters(), 1e-2)
        xt, yt = torch.tensor(x_train, dtype=torch.float32), torch.tensor(y_train, dtype=torch.float32)
        for _ in range(150):
            opt.zero_grad()
            loss = torch.mean((net(xt) - yt) ** 2)
            loss.backward()
            opt.step()
        with torch.no_grad():
            preds_in.append(net(torch.linspace(-0.9, 0.9, 50)[:, None]).numpy().ravel())
            preds_out.append(net(torch.linspace(3, 5, 50)[:, None]).numpy().ravel())
    _, s_in = ensemble_stats(preds_in)
    _, s_out = ensemble_stats(preds_out)
    assert s_out.mean() > 5 * s_in.mean()


def test_coverage_and_seed_spread_values():
    cov = coverage(np.array([0.0, 1.0, 3.0]), np.zeros(3), np.ones(3), levels=(0.5, 0.95))
    assert cov == {0.5: 1 / 3, 0.95: 2 / 3}
    assert seed_spread([1.0, 3.0])["std"] == pytest.approx(np.sqrt(2))


def test_bad_inputs():
    with pytest.raises(FluoreconError, match="levels"):
        coverage(np.zeros(3), np.zeros(3), np.ones(3), levels=(0.5, 1.2))
    with pytest.raises(FluoreconError, match="size"):
        coverage(np.zeros(3), np.zeros(4), np.ones(3))
    with pytest.raises(FluoreconError, match="negative"):
        coverage(np.zeros(3), np.zeros(3), -np.ones(3))
    with pytest.raises(FluoreconError, match="distribution"):
        interval_halfwidth(0.5, "cauchy")
    with pytest.raises(FluoreconError, match="2 members"):
        ensemble_stats([np.zeros(3)])
    with pytest.raises(FluoreconError, match="not fitted"):
        ConformalCalibrator().interval(np.zeros(2))
