"""benchmarks/sim_speed.py: provenance (data by hash) and one row per seed, on a tiny quick run."""

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


def test_quick_run_records_data_hashes_and_one_row_per_seed(tmp_path):
    out = tmp_path / "sim_speed.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "sim_speed.py"), "--size", "32", "--seeds", "0", "1",
                    "--pyfairsim", str(tmp_path / "absent"), "--out", str(out)], check=True, cwd=ROOT,
                   env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True)
    res = json.loads(out.read_text())
    prov = res["provenance"]
    # the truth of seed 1 built independently: the 2× fine grid of a 32² raw frame
    truth = np.asarray(phantoms.phantom("filaments", (64, 64), seed=1), np.float64)
    assert prov["data"]["truth_seed1"]["sha256"] == array_hash(truth)
    assert prov["seeds"] == [0, 1] and prov["params"]["size"] == 32
    assert "--seeds 0 1" in prov["command"] and prov["load_average_end"] is not None
    assert [r["seed"] for r in res["rows"]] == [0, 1]
    assert res["summary"]["ours_cpu_seconds"]["n"] == 2
