"""benchmarks/time.py: provenance (movies by hash), per-seed tables and worst-frame galleries on a quick sim."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

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
