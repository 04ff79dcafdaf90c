"""benchmarks/sim.py: provenance (truths by hash), per-seed summary and worst-case galleries on a tiny run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

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
