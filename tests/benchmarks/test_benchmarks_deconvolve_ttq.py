"""benchmarks/deconvolve_ttq.py: provenance hashes of the simulated case, per-seed cases and their summary."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _bench import load_benchmark

from fluorecon.physics.phantoms import phantom
from fluorecon.physics.psf import gaussian_psf
from fluorecon.physics.sampling import fft_convolve
from fluorecon.utils import array_hash

ROOT = Path(__file__).resolve().parents[2]
SHAPE = (16, 32, 32)


def _module():
    return load_benchmark("deconvolve_ttq")


def test_two_noise_seeds_give_two_cases_hashed_data_and_a_paired_summary(tmp_path, capsys):
    out = tmp_path / "ttq.json"
    _module().main(["filaments", "300", "--shape", ",".join(map(str, SHAPE)), "--seeds", "0", "1", "--out", str(out)])
    res = json.loads(out.read_text())
    assert [c["noise_seed"] for c in res["cases"]] == [0, 1]
    prov = res["provenance"]
    assert prov["seeds"] == [0, 1] and prov["params"]["shape"] == "16,32,32" and "--seeds 0 1" in prov["command"]
    # the scene rebuilt here from the physics primitives: truth phantom seed 11, Poisson seed = the noise seed
    # on a field larger by the PSF radius (8), whose centre is recorded
    obj = phantom("filaments", tuple(n + 16 for n in SHAPE), seed=11).astype(np.float32)
    obj = obj / obj.max() * 0.9 + 0.05
    truth = obj[8:-8, 8:-8, 8:-8]
    blurred = np.asarray(fft_convolve(obj, gaussian_psf((17, 17, 17), (2.5, 1.6, 1.6)), padding="constant"),
                         np.float32)[8:-8, 8:-8, 8:-8] * 300.0
    assert prov["data"]["truth_filaments"]["sha256"] == array_hash(truth)
    for seed in (0, 1):
        raw = np.random.default_rng(seed).poisson(blurred).astype(np.float32)
        assert prov["data"][f"recording_filaments_300ph_seed{seed}"]["sha256"] == array_hash(raw)
    d = [c["auto_accel_nrmse"] - c["skimage_oracle_nrmse"] for c in res["cases"]]
    s = res["runs"][-1]["summary"]["nrmse_auto_minus_skimage_oracle_paired"]
    assert s["n"] == 2 and s["mean"] == pytest.approx(np.mean(d)) and s["ci95"][0] < s["mean"] < s["ci95"][1]


def test_seed_alias_and_default_seed(tmp_path, capsys):
    mod = _module()
    mod.main(["puncta", "300", "--shape", "8,24,24", "--seed", "3"])
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["cases"][0]["noise_seed"] == 3
    with pytest.raises(SystemExit):
        mod.main(["puncta", "300", "--seed", "3", "--seeds", "1"])
