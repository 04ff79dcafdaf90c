"""benchmarks/sim.py: provenance (truths by hash), per-seed summary and worst-case galleries on a tiny run;
the learned − classical intervals over independent units (truth seeds crossed with training seeds)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _bench import load_benchmark
from scipy import stats

from fluorecon.physics import phantoms
from fluorecon.utils import array_hash

ROOT = Path(__file__).resolve().parents[2]


def test_quick_run_provenance_seeds_and_gallery(tmp_path):
    out = tmp_path / "sim.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "sim.py"), "--quick", "--seeds", "0", "1",
                    "--photons", "100", "--mods", "0.8", "--pyfairsim", "", "--skip-real", "--out", str(out),
                    "--figures", str(tmp_path)], check=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                   capture_output=True)
    res = json.loads(out.read_text())
    truth = np.asarray(phantoms.phantom("filaments", (256, 256), seed=1), np.float64)
    assert res["provenance"]["data"]["truth_seed1_filaments"]["sha256"] == array_hash(truth)
    assert res["provenance"]["seeds"] == [0, 1]
    per = res["summary"]["per_seed"]
    assert sorted(per["per_seed"]) == ["0", "1"] and per["mean_ci"]["ours"]["psnr"]["ci95"] is not None
    # a paired difference is the mean of the per-seed differences
    d = [per["per_seed"][s]["ours"]["psnr"] - per["per_seed"][s]["widefield"]["psnr"] for s in ("0", "1")]
    assert np.isclose(per["paired"]["ours_minus_widefield"]["psnr"]["mean"], np.mean(d))
    scores = [r["ours"]["psnr"] for r in res["simulations"] if "ours" in r]
    gal = res["galleries"]["ours"]
    assert Path(gal["path"]).exists() and Path(gal["path"]).parent == tmp_path
    assert gal["cases"][0]["score"] == min(scores) and len(gal["cases"]) == 3


@pytest.fixture(scope="module")
def sim():
    return load_benchmark("sim")      # loaded once: importing it (torch, fluorecon) dominates these tests


def test_crossed_ci_matches_scipy_t(sim):
    """Hand-built 3 truths × 3 networks table; references from scipy.stats.t with the scale written out."""
    d = np.array([[0.4, 0.8, 1.0], [0.5, 0.7, 1.1], [0.6, 0.9, 1.5]])
    r = sim.crossed_ci(d)
    rows, cols = [0.7333333333, 0.7666666667, 1.0], [0.5, 0.8, 1.2]       # row / column means by hand
    assert np.isclose(r["mean"], 0.8333333333) and r["n_truths"] == 3 and r["n_networks"] == 3
    want_t = stats.t.interval(0.95, 2, loc=np.mean(rows), scale=stats.sem(rows))
    np.testing.assert_allclose(r["truths"]["ci95"], want_t, rtol=1e-8)
    want_n = stats.t.interval(0.95, 2, loc=np.mean(cols), scale=stats.sem(cols))
    np.testing.assert_allclose(r["networks"]["ci95"], want_n, rtol=1e-8)
    a, b = stats.sem(rows) ** 2, stats.sem(cols) ** 2
    df = (a + b) ** 2 / (a**2 / 2 + b**2 / 2)                          # Welch–Satterthwaite
    want_x = stats.t.interval(0.95, df, loc=np.mean(rows), scale=np.sqrt(a + b))
    np.testing.assert_allclose(r["crossed"]["ci95"], want_x, rtol=1e-8)
    assert np.isclose(r["crossed"]["df"], df)
    # the crossed interval contains both one-factor intervals' spread: wider than the truths-only one
    assert r["crossed"]["ci95"][1] - r["crossed"]["ci95"][0] > want_t[1] - want_t[0]
    assert r["positive_truths"] == 3 and r["positive_cells"] == 9


def test_crossed_ci_one_network_is_the_truth_interval_and_bad_input(sim):
    d = np.array([[1.0], [2.0], [4.0]])
    r = sim.crossed_ci(d)
    want = stats.t.interval(0.95, 2, loc=7 / 3, scale=stats.sem([1.0, 2.0, 4.0]))
    np.testing.assert_allclose(r["crossed"]["ci95"], want, rtol=1e-8)
    assert r["networks"]["ci95"] is None and sim.crossed_ci(np.array([[3.0]]))["crossed"] is None
    with pytest.raises(ValueError, match="table"):
        sim.crossed_ci(np.array([1.0, 2.0]))


def test_unit_diffs_average_a_truths_scenes_and_keep_networks(sim):
    """Two truth seeds × two modulations × three networks: the unit is the truth seed, not the scene."""
    def row(seed, m, ours, nets):
        return {"seed": seed, "modulation": m, "ours": {"psnr": ours},
                "learned_physics_per_seed": [{"psnr": v} for v in nets]}
    rows = [row(0, 0.5, 20.0, [21.0, 22.0, 23.0]), row(0, 0.8, 22.0, [22.0, 22.0, 22.0]),
            row(1, 0.5, 20.0, [20.0, 20.5, 21.0]), row(1, 0.8, 21.0, [21.0, 21.5, 22.0])]
    seeds, d = sim.unit_diffs(rows, "learned_physics", "psnr")
    assert seeds == [0, 1]
    np.testing.assert_allclose(d, [[0.5, 1.0, 1.5], [0.0, 0.5, 1.0]])


def test_summarise_recomputes_unit_level_differences_from_a_stored_run(tmp_path):
    """`--summarise JSON` prints learned − classical over independent units, without running anything."""
    run = {"simulations": []}
    # 2 truths × 2 modulations (scenes of one truth are averaged) × 2 networks, 20 photons, known differences
    for seed, base in ((0, 1.0), (1, 3.0)):
        for m in (0.5, 0.8):
            ours = {"psnr": 20.0, "ssim": 0.5, "frc_cutoff_ratio": 1.5}
            nets = [{"psnr": 20.0 + base, "ssim": 0.5}, {"psnr": 20.0 + base + 2.0, "ssim": 0.5}]
            run["simulations"].append({
                "seed": seed, "kind": "filaments", "photons": 20.0, "modulation": m, "distorted": False,
                "ours": ours, "ours_true_pattern": ours, "widefield": ours,
                "learned_physics": {"psnr": 20.0 + base + 1.0, "ssim": 0.5, "frc_cutoff_ratio": 1.5},
                "learned_physics_per_seed": nets, "phase_errors_centre_rad": [0.01, 0.02], "k_error_px": 0.01,
                "ours_estimate_cpu_s": 0.05, "ours_reconstruct_cpu_s": 0.05, "ours_estimate_s": 0.05,
                "ours_reconstruct_s": 0.05})
    path = tmp_path / "run.json"
    path.write_text(json.dumps(run))
    res = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "sim.py"), "--summarise", str(path)],
                         capture_output=True, text=True, cwd=ROOT, check=True)
    line = next(x for x in res.stdout.splitlines() if "learned_physics_minus_ours_psnr_at_20" in x)
    # cells: truth 0 → (1, 3), truth 1 → (3, 5): mean 3; row means 2, 4 and column means 2, 4, each s² = 2:
    # se = √(2/2 + 2/2) = √2, Welch–Satterthwaite df = 2² / (1²/1 + 1²/1) = 2
    half = stats.t.ppf(0.975, 2) * np.sqrt(2.0)
    assert f"+3.000 [{3 - half:+.3f}, {3 + half:+.3f}]" in line and "cells > 0: 4/4" in line
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "sim.py"), "--summarise", str(tmp_path / "no.json")],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "no such file" in bad.stderr
