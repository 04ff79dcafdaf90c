"""benchmarks/train_throughput.py: provenance of the speed rows (data by hash) and the per-seed summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _bench import load_benchmark

from fluorecon.utils import array_hash

ROOT = Path(__file__).resolve().parents[2]


def _module():
    return load_benchmark("train_throughput")


def test_quick_speed_rows_record_their_data_by_hash(tmp_path):
    out = tmp_path / "tt.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "train_throughput.py"), "--quick", "--seconds", "0.2",
                    "--threads", "1", "--out", str(out)], check=True, cwd=ROOT,
                   env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True)
    res = json.loads(out.read_text())
    data = res["provenance"]["data"]
    patches = np.random.default_rng(0).random((64, 1, 1, 64, 64), dtype=np.float32)
    assert data["train_patches_n2v"]["sha256"] == array_hash(patches)
    image = np.random.default_rng(0).random((256, 256), dtype=np.float32)
    assert data["predict_image_256"]["sha256"] == array_hash(image)
    assert "deterministic" in res["provenance"]["params"] and res["provenance"]["seeds"] == [0]
    assert any(r["what"].startswith("predict 256²") for r in res["rows"])


def test_seeds_give_one_entry_each_and_paired_means():
    mod = _module()
    seeds = mod.parse_seeds(["0", "1"])
    assert seeds == mod.parse_seeds(["0,1"]) == [0, 1]
    rows = []
    for s in seeds:
        for i, img in enumerate(("a", "b")):
            exact = 30.0 + i
            rows.append({"image": img, "seed": s, mod.EXACT: exact, "plain (1 pass)": exact + 0.5 + s,
                         "linear-corrected": exact - 0.1, "linear-corrected, 4 bins": exact})
    summ = mod.per_seed_summary(rows)
    assert sorted(summ["per_seed_mean_minus_exact_db"]) == ["0", "1"]
    plain = summ["over_seeds"]["plain (1 pass)"]
    assert plain["values"] == pytest.approx([0.5, 1.5]) and plain["mean"] == pytest.approx(1.0)
    # t-interval with 1 degree of freedom: mean ± 12.706 · 0.7071 / √2
    assert plain["ci95"] == pytest.approx([1.0 - 6.353, 1.0 + 6.353], abs=1e-3)
