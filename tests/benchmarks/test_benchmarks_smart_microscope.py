"""benchmarks/smart_microscope.py: provenance (specimens by hash), per-seed agents and worst-specimen galleries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from fluorecon.env.microscope import SmartMicroscopeEnv
from fluorecon.utils import array_hash

ROOT = Path(__file__).resolve().parents[2]


def test_quick_run_provenance_seeds_and_gallery(tmp_path):
    out = tmp_path / "sm.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "smart_microscope.py"), "--parts", "strategies", "ppo",
                    "--quick", "--seeds", "0", "1", "--out", str(out), "--figures", str(tmp_path)], check=True,
                   cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True)
    res = json.loads(out.read_text())
    env = SmartMicroscopeEnv()
    truths = []
    for s in range(50_000, 50_004):              # the quick run's 4 held-out specimens
        env.reset(seed=s)
        truths.append(np.asarray(env.truth, np.float64))
    strat = res["strategies"]
    assert strat["provenance"]["data"]["eval_specimens"]["sha256"] == array_hash(np.stack(truths))
    ppo = res["ppo"]
    assert sorted(ppo["agents"]) == ["0", "1"] and ppo["provenance"]["seeds"] == [0, 1]
    assert ppo["over_seeds"]["ppo_minus_best_fixed"]["n"] == 2
    gal = strat["galleries"]["adaptive"]
    assert Path(gal["path"]).exists() and Path(gal["path"]).parent == tmp_path
    assert gal["cases"][0]["score"] == min(strat["adaptive_episodes"])
    assert gal["cases"][0]["return_rerun"] == gal["cases"][0]["score"]     # the episode shown is the one scored
