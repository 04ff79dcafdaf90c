"""benchmarks/learned_sr.py: the interval helpers of its report, against scipy and analytic cases."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from _bench import load_benchmark
from scipy import stats

ROOT = Path(__file__).resolve().parents[2]


def _module():
    return load_benchmark("learned_sr")


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


def test_peer_report_pairs_care_with_our_run_of_the_same_k_and_seed():
    def field(ms):
        return {"ms_ssim": ms, "psnr": 30.0, "ms_ssim_structure": ms, "hf_ratio": 1.0, "invented": 0,
                "invented_t0.1": 0, "area_um2": 10.0, "flagged": False}

    def run(seed, rows, models):
        return {"seed": seed, "models": models,
                "sets": {s: {r: [field(v), field(v)] for r, v in rows.items()} for s in ("held-out", "shift")}}

    care = {"care": {"steps": 300, "process_cpu_s": 620.0}}
    runs = {"palm/K10/s0": run(0, {"U-Net l1": 0.9, "U-Net gan": 0.8, "K-frame blurred 1 px": 0.7}, {}),
            "palm/K10/s1": run(1, {"U-Net l1": 0.95, "U-Net gan": 0.8, "K-frame blurred 1 px": 0.7}, {}),
            "care/palm/K10/s0": run(0, {"CSBDeep CARE": 0.85}, care),
            "care/palm/K10/s1": run(1, {"CSBDeep CARE": 0.85}, care),
            "care/palm/K5/s0": run(0, {"CSBDeep CARE": 0.5}, care)}        # no run of ours to pair with
    text = "\n".join(_module().peer_report(runs))
    assert "palm/K5" not in text and "seeds [0, 1]" in text
    # CARE − L1 per seed: −0.05 and −0.10 → mean −0.075; CARE − blurred +0.15 on every field
    assert "MS-SSIM CARE − U-Net l1 -0.075" in text and "MS-SSIM CARE − K-frame blurred 1 px +0.150" in text
