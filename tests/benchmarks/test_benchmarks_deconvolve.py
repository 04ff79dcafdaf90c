"""benchmarks/deconvolve.py: provenance of the simulated volumes, per-seed learned rows, the failure galleries."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from _bench import load_benchmark
from scipy import ndimage

from fluorecon.physics.phantoms import phantom
from fluorecon.physics.psf import gaussian_psf
from fluorecon.physics.sampling import fft_convolve
from fluorecon.utils import array_hash

ROOT = Path(__file__).resolve().parents[2]


def _module():
    return load_benchmark("deconvolve")


def test_ttq_cases_are_hashed_and_their_worst_is_drawn(tmp_path, monkeypatch):
    mod = _module()
    monkeypatch.setattr(mod, "QUICK_TTQ_SHAPE", (12, 32, 32))
    monkeypatch.setattr(mod, "TTQ_CASES", mod.TTQ_CASES[:3])
    out = tmp_path / "d.json"
    mod.main(["--quick", "--only", "ttq", "--out", str(out)])
    r = json.loads(out.read_text())
    prov = r["provenance"]
    # the scene rebuilt from the physics primitives: phantom seed 11 on a field larger by the PSF radius (7), centre
    psf = gaussian_psf((15,) * 3, (2.5, 1.6, 1.6))
    obj = phantom("filaments", (26, 46, 46), seed=11).astype(np.float32)
    obj = obj / obj.max() * 0.9 + 0.05
    truth = obj[7:-7, 7:-7, 7:-7]
    blurred = np.asarray(fft_convolve(obj, psf, padding="constant"), np.float32)[7:-7, 7:-7, 7:-7]
    raw = np.random.default_rng(1).poisson(blurred * 300.0)
    assert prov["data"]["ttq_truth_filaments"]["sha256"] == array_hash(truth)
    assert prov["data"]["ttq_recording_filaments_300ph"]["sha256"] == array_hash(raw.astype(np.float32))
    assert prov["seeds"] == [0, 1, 2] and "deterministic" in prov
    for method, key in (("auto_accel", "auto_accel_nrmse"), ("skimage_oracle", "skimage_oracle_nrmse")):
        g = r["galleries"][method]
        assert Path(g["path"]).is_file() and Path(g["path"]).parent == tmp_path / "figures"
        worst = max(r["ttq"]["cases"], key=lambda c: c[key])
        assert g["cases"][0]["label"] == f"{worst['structure']} {worst['photons']:g} ph"
        assert g["cases"][0]["nrmse"] == pytest.approx(worst[key])
    assert r["provenance_by_section"]["ttq"] == prov


def test_recording_is_the_centre_of_a_larger_field_so_no_boundary_convention_matches_it():
    mod = _module()
    rng = np.random.default_rng(4)
    obj = rng.random((20, 30, 34)).astype(np.float32)
    psf = gaussian_psf((7, 9, 11), (1.5, 2.0, 2.5))
    truth, blurred = mod.centre_of_field(obj, psf)
    assert truth.shape == blurred.shape == (14, 22, 24)
    np.testing.assert_array_equal(truth, obj[3:-3, 4:-4, 5:-5])
    # independent reference: direct (non-FFT) convolution; the crop is the same whatever the boundary
    for mode in ("constant", "reflect", "wrap"):
        ref = ndimage.convolve(obj.astype(np.float64), psf.astype(np.float64), mode=mode)[3:-3, 4:-4, 5:-5]
        np.testing.assert_allclose(blurred, ref, rtol=1e-4, atol=1e-5)
    # while a same-size simulation with the reflect boundary (what our RL assumes) differs at the border
    same = np.asarray(fft_convolve(truth, psf), np.float64)
    assert np.abs(same - blurred)[0].max() > 1e-2


def test_learned_rows_per_seed_with_paired_difference(tmp_path, monkeypatch):
    mod = _module()
    monkeypatch.setattr(mod, "QUICK_QUALITY_SHAPE", (16, 40, 40))
    out = tmp_path / "d.json"
    mod.main(["--quick", "--only", "quality", "--learned-budget", "1", "--seeds", "0", "1", "--out", str(out)])
    q = json.loads(out.read_text())["quality"]
    assert [run["seed"] for run in q["learned_runs"]] == [0, 1]
    d = q["learned_minus_skimage_best_nrmse"]
    assert d["per_seed"] == pytest.approx([run["nrmse"] - q["skimage_best_nrmse"] for run in q["learned_runs"]])
    assert d["n"] == 2 and d["ci95"][0] <= d["mean"] <= d["ci95"][1]
    g = json.loads(out.read_text())["galleries"]["learned"]
    assert g["cases"][0]["nrmse"] == pytest.approx(max(run["nrmse"] for run in q["learned_runs"]))


def test_beads_section_agrees_with_the_published_psf(tmp_path, shared_data):
    """`--only beads`: the PSF measured from the 4 beads of the biapol crop against the published averaged PSF
    (an independent measurement of the same microscope): high correlation, FWHMs within 15 % per axis."""
    shared_data("biapol-confocal-deconv")
    mod = _module()
    mod.main(["--only", "beads", "--out", str(tmp_path / "d.json")])
    b = json.loads((tmp_path / "d.json").read_text())["beads"]
    assert b["beads_used"] == 4
    assert b["correlation"] > 0.9
    for ours, ref in zip(b["fwhm_px_ours"], b["fwhm_px_published_loaded"], strict=True):
        assert abs(ours - ref) / ref < 0.15
    assert "beads_Bead_Image1_crop.tif" in json.loads((tmp_path / "d.json").read_text())["provenance"]["data"]
