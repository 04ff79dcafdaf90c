"""benchmarks/geometry.py: provenance of the simulated tilings, per-seed stitching rows, the flow gallery, and
the tuning of the classical flow peers on training-distribution pairs (never on the test movies)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _bench import load_benchmark
from skimage.registration import optical_flow_ilk, optical_flow_tvl1

from fluorecon.datasets import shared_data
from fluorecon.geometry import flow as fl
from fluorecon.physics import motion
from fluorecon.utils import array_hash

ROOT = Path(__file__).resolve().parents[2]


def _module():
    return load_benchmark("geometry")


def test_quick_run_records_seeds_hashes_and_worst_movies(tmp_path):
    out = tmp_path / "g.json"
    _module().main(["--quick", "--skip-memory", "--flow-budget", "1", "--deform-budget", "1", "--seeds", "0", "1",
                    "--out", str(out)])
    r = json.loads(out.read_text())
    row = r["stitch"][0]
    assert row["seeds"] == [0, 1] and sorted(row["per_seed"]) == ["0", "1"]
    assert row["max_error_px"] == max(v["max_error_px"] for v in row["per_seed"].values())
    prov = r["provenance"]
    assert prov["seeds"] == [0, 1]
    for seed in (0, 1):  # the quick 2×2 tiling, rebuilt here
        sim = motion.simulate_tiling(seed=seed, grid=(2, 2), tile_shape=(128, 128), overlap=0.15, jitter=2.0,
                                     photons=100.0)
        assert prov["data"][f"stitch_case0_seed{seed}_tiles"]["sha256"] == array_hash(np.asarray(sim["tiles"], np.float32))
    flat = shared_data("basic-flatfield")
    if flat is not None:
        ref = hashlib.sha256((flat / "wsi_brain.npz").read_bytes()).hexdigest()
        assert prov["data"]["wsi_brain.npz"]["sha256"] == ref
    for method in ("tvl1", "tvl1_tuned", "ilk_tuned", "cnn"):
        g = r["galleries"][method]
        assert Path(g["path"]).is_file() and Path(g["path"]).parent == tmp_path / "figures"
        assert g["cases"][0]["epe_px"] == max(r["flow"]["per_movie"][method])
    fixed = prov["params"]["fixed_seeds"]
    assert fixed["flow_training"] == r["flow"]["train_seeds"] == [0]
    assert fixed["flow_movies"] == r["flow"]["movie_seeds"] == [100]
    assert fixed["flow_tuning"] == r["flow"]["tuning"]["seed"] == 1000
    assert "flow_tuning_seed1000_pairs" in prov["data"]
    md = out.with_suffix(".md").read_text()
    assert "| TV-L1 default | TV-L1 tuned |" in md and "met (tuned)" in md


@pytest.mark.parametrize("args", [["--flow-tune-seed", "100"], ["--flow-seeds", "0", "0"], ["--flow-seeds", "a"]])
def test_flow_seed_errors_exit_2(tmp_path, args):
    with pytest.raises(SystemExit) as e:
        _module().main(["--quick", "--flow-only", "--out", str(tmp_path / "g.json"), *args])
    assert e.value.code == 2


def _std(x: np.ndarray) -> np.ndarray:
    return (x - x.mean()) / x.std(ddof=1)


def _epe(flow: np.ndarray, truth: np.ndarray, border: int = 8) -> float:
    """Mean endpoint error over the interior, numpy only (flow, truth: (2, Y, X))."""
    e = np.sqrt(((np.asarray(flow, np.float64) - truth) ** 2).sum(0))
    return float(e[border:-border, border:-border].mean())


def test_flow_peers_tuned_on_training_pairs_never_on_test_movies(monkeypatch):
    mod = _module()
    calls: list[tuple[str, str, dict]] = []  # (method, hash of the movie, parameters) of every classical call
    movie_seeds: list[int] = []
    for name in ("flow_tvl1", "flow_ilk"):
        orig = getattr(fl, name)

        def rec(movie, _orig=orig, _name=name, **kw):
            calls.append((_name, array_hash(np.asarray(movie, np.float32)), kw))
            return _orig(movie, **kw)
        monkeypatch.setattr(fl, name, rec)
    orig_movie = motion.advected_movie

    def rec_movie(*a, **kw):
        movie_seeds.append(kw["seed"])
        return orig_movie(*a, **kw)
    monkeypatch.setattr(motion, "advected_movie", rec_movie)

    out = mod.bench_flow(True, 0.5, [0, 1], tune_seed=1000)
    tu = out["tuning"]
    assert movie_seeds == out["movie_seeds"] == [100] and tu["seed"] == 1000 not in movie_seeds
    assert out["train_seeds"] == [0, 1] and out["cnn_over_train_seeds_mean_ci95"]["n"] == 2

    # The tuning pairs, rebuilt here from the recorded seed: the CNN's training generator (3 px flows, 3–300 photons).
    gen = torch.Generator().manual_seed(tu["seed"])
    f0, f1, flows = fl.simulate_flow_batch(fl._texture_pool(6, 192, tu["seed"]), tu["pairs"], tu["patch"], 3.0, gen)
    pairs = torch.cat([f0, f1], 1).numpy()
    truth = flows.numpy()
    pair_hashes = {array_hash(p) for p in pairs}
    sim = orig_movie((96, 96), n_frames=3, photons=30.0, bleaching=0.1, seed=100)
    test_hash = array_hash(np.asarray(sim["movie"], np.float32))
    assert test_hash not in pair_hashes
    for method, grid in (("flow_tvl1", mod.TVL1_GRID_QUICK), ("flow_ilk", mod.ILK_GRID_QUICK)):
        key = method.removeprefix("flow_")
        tuning_calls = [c for c in calls if c[0] == method and c[1] != test_hash]
        test_calls = [c for c in calls if c[0] == method and c[1] == test_hash]
        # every grid point ran on every tuning pair, and on nothing else; the test movie saw only default + tuned
        assert {h for _, h, _ in tuning_calls} == pair_hashes
        assert len(tuning_calls) == int(np.prod([len(v) for v in grid.values()])) * len(pairs)
        assert [c[2] for c in test_calls] == [{}, tu[key]["tuned"]]
        # independent EPE on the tuning pairs: tuned no worse than scikit-image's default
        sk = optical_flow_tvl1 if key == "tvl1" else optical_flow_ilk
        e_def = np.mean([_epe(sk(_std(p[0]), _std(p[1])), t) for p, t in zip(pairs, truth, strict=True)])
        e_tun = np.mean([_epe(sk(_std(p[0]), _std(p[1]), **tu[key]["tuned"]), t) for p, t in zip(pairs, truth, strict=True)])
        assert e_tun <= e_def + 1e-9
        assert np.isclose(e_def, tu[key]["default_epe_px"], rtol=1e-3)
        assert np.isclose(e_tun, tu[key]["tuned_epe_px"], rtol=1e-3)
        # the tuned row on the test movie uses the tuned setting
        mv = np.asarray(sim["movie"], np.float32)
        row = np.mean([_epe(sk(_std(mv[t]), _std(mv[t + 1]), **tu[key]["tuned"]), sim["flows"][t]) for t in range(2)])
        assert np.isclose(row, out[f"{key}_tuned"], rtol=1e-3)
    # at this size TV-L1's default attachment (15) over-smooths 3–300-photon pairs: the search must move it
    assert tu["tvl1"]["tuned"] != tu["tvl1"]["default"]
