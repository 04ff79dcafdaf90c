"""benchmarks/trust.py: provenance (trial truths by hash), replicate seeds and the missed-insertion gallery."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from fluorecon.physics.phantoms import mixed
from fluorecon.utils import array_hash

ROOT = Path(__file__).resolve().parents[2]


def test_tiny_run_provenance_seeds_and_gallery(tmp_path):
    out = tmp_path / "trust.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "trust.py"), "--only", "null,insert", "--trials", "3",
                    "--size", "64", "--snrs", "8", "--no-variants", "--no-sizes", "--seeds", "0", "1",
                    "--out", str(out), "--figures", str(tmp_path)], check=True, cwd=ROOT,
                   env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True)
    res = json.loads(out.read_text())
    # replicate 1's null scenes: trial seeds 100000 + 1000 + i, the first draw of each seeds the phantom
    truths = [mixed((64, 64), seed=int(np.random.default_rng(101_000 + i).integers(1 << 30))).astype(np.float64)
              for i in range(3)]
    assert res["provenance"]["data"]["null_truths_seed1"]["sha256"] == array_hash(np.stack(truths))
    assert res["provenance"]["seeds"] == [0, 1]
    assert sorted(res["per_seed"]) == ["0", "1"] and res["per_seed"]["0"]["insert"] == res["insert"]
    rates = [res["per_seed"][s]["insert"]["added@8"]["verify"]["rate"] for s in ("0", "1")]
    assert res["summary"]["insert/added@8/verify"]["values"] == rates
    gal = res["galleries"]["verify-added"]
    assert Path(gal["path"]).exists() and Path(gal["path"]).parent == tmp_path
    p_all = [p for s in ("0", "1") for p in res["per_seed"][s]["insert"]["added@8"]["p_hit_per_trial"]]
    assert gal["cases"][0]["score"] == -max(p_all)          # the worst case: the largest p-value near the punctum
