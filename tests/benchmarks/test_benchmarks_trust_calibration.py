"""benchmarks/trust_calibration.py: provenance (truths by hash), replicate seeds and the worst-image galleries."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from fluorecon.physics.phantoms import phantom
from fluorecon.utils import array_hash

ROOT = Path(__file__).resolve().parents[2]


def test_tiny_run_provenance_seeds_and_gallery(tmp_path):
    out = tmp_path / "tc.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "trust_calibration.py"), "--quick", "--steps", "3",
                    "--members", "2", "--skip-real", "--seeds", "0", "1", "--out", str(out), "--figures",
                    str(tmp_path)], check=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                   capture_output=True)
    res = json.loads(out.read_text())
    # replicate 1's filament test images: phantom seeds 100000 + 2000 + i (quick: 2 images of 64²)
    truths = np.stack([phantom("filaments", (64, 64), seed=102_000 + i).astype(np.float32) for i in range(2)])
    assert res["provenance"]["data"]["truths_test_seed1"]["sha256"] == array_hash(truths)
    assert res["provenance"]["seeds"] == [0, 1]
    assert sorted(res["per_seed"]) == ["0", "1"] and res["per_seed"]["1"]["seed"] == 1
    # per-seed values in the summary are the per-seed runs' (NaN AUCs, e.g. no hallucinated pixel, are null)
    aucs = [res["per_seed"][s]["hallucination"]["auc_consistency"] for s in ("0", "1")]
    assert res["summary"]["auc_consistency"]["values"] == aucs
    psnr = [res["per_seed"][s]["reproducibility"]["mean"] for s in ("0", "1")]
    assert np.isclose(res["summary"]["psnr_mean_over_members"]["mean"], np.mean(psnr))
    gal = res["galleries"]["head-puncta"]
    assert Path(gal["path"]).exists() and Path(gal["path"]).parent == tmp_path
    scores = [p for s in ("0", "1") for p in res["per_seed"][s]["head_psnr_per_image"]["puncta"]]
    assert np.isclose(gal["cases"][0]["score"], min(scores))
