"""benchmarks/smlm.py: provenance (movies by hash), per-seed summary and worst-case galleries on a quick run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from fluorecon.physics.smlm import Blinking, SMLMCamera, simulate_movie
from fluorecon.utils import array_hash

ROOT = Path(__file__).resolve().parents[2]


def test_quick_run_provenance_seeds_and_gallery(tmp_path):
    prefix = tmp_path / "smlm"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "smlm.py"), "--quick", "--seeds", "0", "1",
                    "--out", str(prefix), "--figures", str(tmp_path)], check=True, cwd=ROOT,
                   env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True)
    res = json.loads(prefix.with_suffix(".json").read_text())
    # the quick run's movie of seed 1, simulated independently (density 1, 20 frames of 32²)
    mov, _ = simulate_movie(20, (32, 32), 100.0, density=1.0, psf=130.0, camera=SMLMCamera.smlm2016(),
                            background=20.0, kinetics=Blinking(on_time=2.0, off_time=40.0, photons=2000.0), seed=1001)
    assert res["provenance"]["data"]["movie_density1_seed1"]["sha256"] == array_hash(mov)
    assert res["provenance"]["seeds"] == [0, 1]
    assert [r["seed"] for r in res["simulated"]] == [0, 1]
    ji = [r["mle"]["jaccard"] for r in res["simulated"]]
    assert res["summary"]["1"]["mle"]["jaccard"]["values"] == ji
    assert np.isclose(res["summary"]["1"]["mle"]["jaccard"]["mean"], np.mean(ji))
    gal = res["galleries"]["mle"]
    assert Path(gal["path"]).exists() and Path(gal["path"]).parent == tmp_path
    assert gal["cases"][0]["score"] == min(ji)
