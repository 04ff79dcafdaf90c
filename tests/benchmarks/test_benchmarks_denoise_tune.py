"""benchmarks/denoise_tune.py: provenance of the tuning files, per-seed summary, the failure gallery."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from _bench import load_benchmark

ROOT = Path(__file__).resolve().parents[2]


def _module():
    return load_benchmark("denoise_tune")


def test_quick_run_hashes_the_files_and_reports_per_seed(tmp_path, shared_data):
    root = shared_data("fmd-dev-pairs")
    out = tmp_path / "t.json"
    assert _module().main(["--quick", "--images", "Confocal_FISH_1", "--steps", "2", "--seeds", "0", "1",
                           "--threads", "1", "--json", str(out)]) == 0
    r = json.loads(out.read_text())
    prov = r["provenance"]
    for k, sub in (("noisy", "noisy"), ("gt", "gt")):
        ref = hashlib.sha256((root / sub / "Confocal_FISH_1.png").read_bytes()).hexdigest()
        assert prov["data"][f"Confocal_FISH_1_{k}"]["sha256"] == ref
    assert prov["seeds"] == [0, 1] and sorted(rec["seed"] for rec in r["records"]) == [0, 1]
    (setting,) = r["summary"].values()
    per = setting["blind_spot"]["per_seed"]
    assert len(per) == 2
    assert setting["blind_spot"]["mean"] == pytest.approx(np.mean([rec["blind_spot"] for rec in r["records"]]))
    g = r["galleries"]["blind_spot"]
    assert Path(g["path"]).is_file() and Path(g["path"]).parent == tmp_path / "figures"
    gains = [rec["blind_spot"] - rec["noisy"] for rec in r["records"]]
    assert g["cases"][0]["score"] == pytest.approx(min(gains))
