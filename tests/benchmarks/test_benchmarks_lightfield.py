"""benchmarks/lightfield.py: provenance (truths by hash), per-seed rows and worst-case galleries, quick sim."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from fluorecon.utils import array_hash

ROOT = Path(__file__).resolve().parents[2]


def _beads(shape, seed):
    """The benchmark's bead volume, rebuilt from its definition: 12 unit voxels, 6 px from the lateral edges."""
    vol = np.zeros(shape, np.float32)
    rng = np.random.default_rng(seed)
    for _ in range(12):
        vol[rng.integers(shape[0]), rng.integers(6, shape[1] - 6), rng.integers(6, shape[2] - 6)] = 1.0
    return vol


def test_quick_sim_provenance_seeds_and_gallery(tmp_path):
    out = tmp_path / "lf.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "lightfield.py"), "sim", "--quick", "--seeds", "0",
                    "1", "--out", str(out), "--figures", str(tmp_path)], check=True, cwd=ROOT,
                   env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True)
    sim = json.loads(out.read_text())["sim"]
    prov = sim["provenance"]
    entry = prov["data"]["truth_beads_seed1"]
    assert entry["sha256"] == array_hash(_beads(tuple(entry["shape"]), seed=2))   # volumes: seed s + 1
    assert prov["seeds"] == [0, 1] and "--seeds 0 1" in prov["command"]
    assert sorted({r["seed"] for r in sim["rows"]}) == [0, 1]
    beads = sim["summary"]["beads@2000"]
    assert beads["seeds"] == [0, 1] and beads["learned_minus_rl_psnr"]["ci95"] is not None
    scores = [r["rl_psnr"] for r in sim["rows"]]
    gal = sim["galleries"]["rl"]
    assert Path(gal["path"]).exists() and Path(gal["path"]).parent == tmp_path
    assert gal["cases"][0]["score"] == min(scores)
