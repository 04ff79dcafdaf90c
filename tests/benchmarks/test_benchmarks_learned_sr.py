"""benchmarks/learned_sr.py: the interval helpers of its report, against scipy and analytic cases."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

ROOT = Path(__file__).resolve().parents[2]


def _module():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("learned_sr_bench", ROOT / "benchmarks" / "learned_sr.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize(("k", "n"), [(0, 12), (3, 12), (7, 40), (40, 40)])
def test_wilson_interval_equals_scipy(k, n):
    p, lo, hi = _module().wilson(k, n)
    ref = stats.binomtest(k, n).proportion_ci(method="wilson")
    assert p == pytest.approx(k / n) and lo == pytest.approx(ref.low, abs=1e-9)
    assert hi == pytest.approx(ref.high, abs=1e-9)


def test_two_way_bootstrap_resamples_seeds_and_fields():
    boot2 = _module().boot2
    assert boot2(np.full((3, 4), 2.5)) == (2.5, 2.5, 2.5)             # no spread, no interval
    rng = np.random.default_rng(0)
    fields = rng.normal(0, 1, 8)
    m = fields[None] + np.array([[-1.0], [0.0], [1.0]])                # seeds shift every field alike
    mean, lo, hi = boot2(m)
    assert mean == pytest.approx(m.mean()) and lo < mean < hi
    # seed-to-seed spread widens the interval over that of the fields alone
    assert hi - lo > boot2(fields[None])[2] - boot2(fields[None])[1]
