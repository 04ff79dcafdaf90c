"""benchmarks/time.py: provenance, per-seed tables and galleries (quick sim); held-out J-invariant score (real)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from _bench import load_benchmark

from fluorecon.physics.timelapse import simulate_timelapse
from fluorecon.utils import array_hash

ROOT = Path(__file__).resolve().parents[2]


def test_quick_sim_provenance_seeds_and_gallery(tmp_path):
    out = tmp_path / "time.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "time.py"), "sim", "--quick", "--seeds", "0", "1",
                    "--out", str(out), "--figures", str(tmp_path)], check=True, cwd=ROOT,
                   env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True)
    run = json.loads(out.read_text())[-1]
    movie = simulate_timelapse((32, 32), 8, seed=1)["movie"]
    assert run["provenance"]["data"]["movie_seed1"]["sha256"] == array_hash(movie)
    assert run["provenance"]["seeds"] == [0, 1]
    assert sorted(run["per_seed"]) == ["0", "1"] and run["per_seed"]["0"] == run["rows"]
    assert run["summary"]["n2v-t - classical"]["psnr"]["n"] == 2
    frames = [p for s in ("0", "1") for p in run["per_seed"][s]["classical"]["psnr_per_frame"]]
    gal = run["galleries"]["classical"]
    assert Path(gal["path"]).exists() and Path(gal["path"]).parent == tmp_path
    assert gal["cases"][0]["score"] == min(frames)


def test_seeds_accept_the_older_comma_form():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("time_bench", ROOT / "benchmarks" / "time.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.parse_seeds(["0,1,2"]) == mod.parse_seeds(["0", "1", "2"]) == [0, 1, 2]


# --------------------------------------------------------------------------- real: held-out J-invariant score

READ = 3.0                                           # camera read noise (ADU)
SCENE = np.broadcast_to(np.linspace(50.0, 450.0, 24), (24, 24))   # static scene: a ramp in x (photons = ADU)
VAR = float(SCENE.mean()) + READ**2                  # mean noise variance (Poisson + read)


def _movie(seed: int, frames: int = 13) -> np.ndarray:
    """A static Poisson–Gaussian movie of ``SCENE``: frames differ by their noise only."""
    rng = np.random.default_rng(seed)
    return (rng.poisson(SCENE, (frames, 24, 24)) + rng.normal(0.0, READ, (frames, 24, 24))).astype(np.float32)


def _memoriser(train: np.ndarray):
    """A "network" that memorised its training frames: every input frame → the nearest training frame, noise and all.

    On a training frame it returns that frame itself (its noise included), so a J-invariant score taken on the
    training frames is ~0; on a frame it never saw its error is that of an independent noisy frame, ~2σ².
    """
    def restore(x: np.ndarray) -> np.ndarray:
        d = ((np.asarray(x, np.float64)[:, None] - train[None]) ** 2).mean(axis=(2, 3))
        return train[np.argmin(d, axis=1)]
    return restore


def _real_run(tmp_path: Path, monkeypatch, movie: np.ndarray) -> tuple[dict, list[np.ndarray]]:
    """``bench_real`` on ``movie`` (a TIFF), the training replaced by a memoriser (classical: the true scene)."""
    mod = load_benchmark("time")
    tifffile.imwrite(tmp_path / "m.tif", movie)
    monkeypatch.setattr(mod, "shared_data", lambda name: tmp_path)
    trained: list[np.ndarray] = []

    def fake_run(frames, method, args, seed=None, window=None):
        trained.append(np.array(frames))
        if method == "classical":
            # an oracle restoration (the noiseless scene): its Noise2Self score is the noise variance
            return np.array(frames), {"method": method}, lambda x: np.broadcast_to(SCENE, np.shape(x))
        return np.array(frames), {"method": method, "seed": seed}, _memoriser(np.array(frames, np.float64))

    monkeypatch.setattr(mod, "_run", fake_run)
    args = argparse.Namespace(file="m.tif", tune=False, budget=1.0, steps=1, seeds=(0,), flow_sigma=1.0,
                              flow_attachment=2.0, methods=("classical", "n2v-frames"), window=8, inference=())
    res: dict = {"run": "t", "argv": {"out": str(tmp_path / "t.json")}}
    mod.bench_real(args, res, {}, {})
    return json.loads((tmp_path / "t.json").read_text())[-1], trained


def test_real_jinv_score_is_taken_on_frames_no_method_was_trained_on(tmp_path, monkeypatch):
    movie = _movie(0)
    run, trained = _real_run(tmp_path, monkeypatch, movie)
    train, scored = run["jinv"]["train_frames"], run["jinv"]["scored_frames"]
    assert not set(train) & set(scored) and scored
    # what every method was trained / calibrated on is exactly the recorded training frames …
    assert len(trained) == 2 and all(np.array_equal(t, movie[train]) for t in trained)
    # … and none of the scored frames is among them (by content, not just by index)
    assert not any(np.array_equal(movie[s], t) for s in scored for t in trained[0])
    row = run["rows"]["n2v-frames/w8/seed0"]
    # the memoriser looks perfect on its training frames (the old, leaky score) …
    assert row["jinv_mse"] < 0.05 * VAR
    # … and scores like one independent noisy frame against another (2σ²) on the held-out ones
    assert 1.6 * VAR < row["jinv_mse_heldout"] < 2.4 * VAR
    assert len(row["jinv_per_frame_heldout"]) == len(scored)
    # the oracle's score is the noise variance (Batson & Royer 2019), on the same held-out frames
    assert run["rows"]["classical"]["jinv_mse_heldout"] == pytest.approx(VAR, rel=0.1)


def test_real_frame_level_cis_are_labelled_within_one_movie(tmp_path, monkeypatch):
    run, _ = _real_run(tmp_path, monkeypatch, _movie(1))
    assert run["paired_frames_scope"] == "within one movie (frames correlated)"
    rows, pair = run["rows"], run["paired_frames"]["n2v-frames/w8/seed0 - classical"]
    for metric, field in (("in_place", "per_frame"), ("jinv_heldout", "jinv_per_frame_heldout")):
        d = np.subtract(rows["n2v-frames/w8/seed0"][field], rows["classical"][field])
        assert pair[metric]["scope"] == "within one movie (frames correlated)"
        assert pair[metric]["n_frames"] == d.size and pair[metric]["frames_better"] == int((d < 0).sum())
        assert np.isclose(pair[metric]["mean"], d.mean()) and pair[metric]["ci95"][0] <= d.mean() <= pair[metric]["ci95"][1]


def test_real_rejects_a_movie_too_short_to_split(tmp_path, monkeypatch):
    with pytest.raises(SystemExit) as e:
        _real_run(tmp_path, monkeypatch, np.zeros((2, 8, 8), np.float32))
    assert e.value.code == 2
