"""benchmarks/geometry.py: provenance of the simulated tilings, per-seed stitching rows, the flow gallery."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
from _bench import load_benchmark

from fluorecon.datasets import shared_data
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
    for method in ("tvl1", "cnn"):
        g = r["galleries"][method]
        assert Path(g["path"]).is_file() and Path(g["path"]).parent == tmp_path / "figures"
        assert g["cases"][0]["epe_px"] == max(r["flow"]["per_movie"][method])
