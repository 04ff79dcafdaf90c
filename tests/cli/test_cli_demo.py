"""`fluorecon demo`: the main job end to end (quick mode), its simulated default, and bad input."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from typer.testing import CliRunner

from fluorecon.cli import app

runner = CliRunner()


def test_default_acquisition_matches_its_noise_model():
    from fluorecon.physics.simulate import default_acquisition

    acq = default_acquisition(quick=True, seed=3)
    x, ref, fw = acq["observed"], acq["reference"], acq["forward"]
    assert x.shape == (128, 128) and acq["axes"] == "YX"
    assert {"filaments", "puncta", "nuclei"} <= set(acq["params"]["weights"])
    # Poisson–Gaussian camera: residuals have zero mean and the variance the camera model predicts
    # (independent check: sample statistics against Camera.variance of the noiseless image).
    r = x - ref
    var_model = float(np.mean(np.asarray(fw.variance(ref))))
    assert abs(float(r.mean())) < 0.1 * np.sqrt(var_model)
    assert float(r.var()) == pytest.approx(var_model, rel=0.1)
    # the reference is the truth blurred by the PSF (scipy's FFT convolution, an independent
    # implementation) and put through the camera's gain/offset/background: compare away from the edges
    from scipy.signal import fftconvolve

    cam = fw.camera
    conv = fftconvolve(acq["truth"], acq["psf"], mode="same")
    expected = cam.offset + cam.gain * (cam.photons * conv + cam.background)
    inner = (slice(20, -20), slice(20, -20))
    assert np.allclose(ref[inner], expected[inner], rtol=1e-3, atol=1e-2 * cam.gain)
    # deterministic for a seed
    assert np.array_equal(default_acquisition(quick=True, seed=3)["observed"], x)


def test_demo_quick_end_to_end(tmp_path):
    out = tmp_path / "demo"
    r = runner.invoke(app, ["demo", "--quick", "--budget", "4", "-o", str(out)])
    assert r.exit_code == 0, r.output
    last = r.stdout.strip().splitlines()[-1]
    assert last.endswith("report.html") and (out / "report.html").exists()
    for f in ("observed.tif", "truth.tif", "psf.tif", "summary.json", "simulation.json"):
        assert (out / f).exists(), f
    summary = json.loads((out / "summary.json").read_text())
    assert not [k for k, v in summary["steps"].items() if v["status"] == "failed"], summary["steps"]
    assert summary["results"], "no restoration ran"
    html = (out / "report.html").read_text()
    assert len(re.findall(r'src="data:image/png;base64,', html)) >= 4
    assert "fluorecon demo -o" in html  # the command that re-runs it
    assert "All results against the simulation" in html
    # The deterministic restorations beat the raw acquisition against the simulation's ground truth
    # (independent metric implementation: scikit-image after a least-squares scale/offset fit).
    # The self-supervised result depends on how many steps its time budget allowed on a busy machine,
    # so here it is only checked for shape and finiteness.
    from skimage.metrics import peak_signal_noise_ratio

    from fluorecon.io import read_image

    def fitted_psnr(img, ref):
        a, b = np.linalg.lstsq(np.stack([img.ravel(), np.ones(img.size)], 1), ref.ravel(), rcond=None)[0]
        return peak_signal_noise_ratio(ref, a * img + b, data_range=float(ref.max() - ref.min()))

    obs = read_image(out / "observed.tif").data.astype(np.float64)
    truth = read_image(out / "truth.tif").data.astype(np.float64)
    from fluorecon.physics.simulate import default_acquisition

    ref = default_acquisition(quick=True, seed=0)["reference"].astype(np.float64)
    m = summary["metrics"]
    assert "classical denoised" in m and "deconvolved (RL)" in m, m
    den = read_image(out / "classical_denoised.tif").data.astype(np.float64)
    assert fitted_psnr(den, ref) > fitted_psnr(obs, ref) + 3.0
    dec = read_image(out / "deconvolved.tif").data.astype(np.float64)
    assert fitted_psnr(dec, truth) > fitted_psnr(obs, truth) + 1.0
    ss = read_image(out / "self_supervised_denoised.tif").data
    assert ss.shape == obs.shape and np.isfinite(ss).all()


def test_demo_missing_input_fails_clearly(tmp_path):
    r = runner.invoke(app, ["demo", "--input", str(tmp_path / "nope.tif"), "-o", str(tmp_path / "o")])
    assert r.exit_code == 2
    assert ("not found" in r.output or "no input found" in r.output) and "Traceback" not in r.output
    assert not (tmp_path / "o" / "report.html").exists()


def test_demo_rejects_4d_input(tmp_path):
    from fluorecon.io import write_image

    write_image(tmp_path / "t.tif", np.zeros((2, 2, 16, 16), np.float32), axes="TZYX")
    r = runner.invoke(app, ["demo", "--input", str(tmp_path / "t.tif"), "-o", str(tmp_path / "o"), "--quick"])
    assert r.exit_code == 2
    assert "2D or 3D image" in r.output


def test_demo_bad_psf_path(tmp_path):
    r = runner.invoke(app, ["demo", "--psf", str(tmp_path / "psf.tif"), "-o", str(tmp_path / "o")])
    assert r.exit_code == 2 and "PSF file not found" in r.output
