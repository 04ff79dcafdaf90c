"""benchmarks/denoise_real.py: provenance of the real files, seeds, per-seed summary, the failure gallery."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from _bench import load_benchmark

ROOT = Path(__file__).resolve().parents[2]


def _module():
    return load_benchmark("denoise_real")


def test_run_hashes_the_pair_records_seeds_and_draws_the_worst(tmp_path, shared_data):
    root = shared_data("fmd-confocal-pairs")
    out = tmp_path / "d.json"
    assert _module().main(["--methods", "noisy,tv", "--images", "BPAE_B", "--seeds", "0", "1", "--json", str(out),
                           "--fresh"]) == 0
    r = json.loads(out.read_text())
    prov = r["provenance"]
    for k in ("noisy", "gt"):
        ref = hashlib.sha256((root / k / "BPAE_B.tif").read_bytes()).hexdigest()
        assert prov["data"][f"BPAE_B_{k}"]["sha256"] == ref
    assert prov["seeds"] == [0, 1] and r["meta"]["runs"][-1]["provenance"] == prov
    g = r["galleries"]["tv"]
    assert Path(g["path"]).is_file() and Path(g["path"]).parent == tmp_path / "figures"
    rec = r["records"]["BPAE_B|tv"]
    assert g["cases"][0]["score"] == pytest.approx(rec["psnr"] - r["records"]["BPAE_B|noisy"]["psnr"])


def test_summary_reports_each_seed_and_seed_lists_parse():
    mod = _module()
    recs = {f"{img}|n2v|s{s}": {"image": img, "method": "n2v", "seed": s, "psnr": p, "ri_psnr": p, "ssim": 0.9,
                                "seconds": 1.0}
            for img, vals in (("BPAE_B", (30.0, 31.0)), ("fish", (20.0, 23.0))) for s, p in zip((0, 1), vals, strict=True)}
    fmd = mod.summarise({"records": recs})["n2v"]["fmd"]
    assert fmd["per_seed_psnr"] == {"0": {"mean": 25.0, "n_images": 2}, "1": {"mean": 27.0, "n_images": 2}}
    assert fmd["psnr"]["mean"] == pytest.approx(np.mean([30.5, 21.5]))
    assert mod._parse_seeds("0,1") == [0, 1] and mod._parse_seeds("3") == [0, 1, 2]
