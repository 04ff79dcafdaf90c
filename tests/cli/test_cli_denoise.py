"""`fluorecon denoise`: output in input units, batches, bad input → non-zero exit with nothing written."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from fluorecon.cli import app
from fluorecon.physics.camera import Camera
from fluorecon.physics.phantoms import phantom

runner = CliRunner()
CAM = Camera(photons=30.0, gain=2.0, offset=100.0, read_noise=2.0)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("denoise_cli")
    y = phantom("membranes", (64, 64), seed=0)
    truth = np.asarray(CAM.expected(y), np.float64)
    x = CAM.simulate(y, seed=1).astype(np.uint16)
    tifffile.imwrite(d / "noisy.tif", x)
    return d, x, truth


def test_denoise_writes_float32_in_input_units(data, tmp_path):
    d, x, truth = data
    out = tmp_path / "out.tif"
    r = runner.invoke(app, ["denoise", str(d / "noisy.tif"), "-o", str(out), "--method", "tv", "--json", "--quiet"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    used = info["params_used"]
    assert used["method"] == "tv" and info["status"] == "ok" and "weight" in used["method_params"]
    assert info["outputs"]["image"]["path"] == str(out) and info["outputs"]["image"]["shape"] == [64, 64]
    y = tifffile.imread(out)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert abs(y.mean() - truth.mean()) < 0.02 * truth.mean()
    assert np.mean((y - truth) ** 2) < 0.5 * np.mean((x - truth) ** 2)
    assert tifffile.imread(d / "noisy.tif").dtype == np.uint16  # input untouched


def test_vst_with_given_noise_model(data, tmp_path):
    d, x, truth = data
    out = tmp_path / "vst.tif"
    r = runner.invoke(app, ["denoise", str(d / "noisy.tif"), "-o", str(out), "--method", "wavelet", "--vst",
                            "--gain", "2", "--offset", "100", "--read-noise", "4", "--json", "--quiet"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["params_used"]["vst"]["gain"] == 2.0
    y = tifffile.imread(out)
    assert np.mean((y - truth) ** 2) < 0.5 * np.mean((x - truth) ** 2)


def test_batch_folder_with_one_bad_file(data, tmp_path):
    d, x, _ = data
    src = tmp_path / "in"
    src.mkdir()
    tifffile.imwrite(src / "a.tif", x)
    tifffile.imwrite(src / "b.tif", x[::-1].copy())
    np.save(src / "c_bad.npy", np.full((32, 32), np.nan, np.float32))
    outdir = tmp_path / "out"
    r = runner.invoke(app, ["denoise", str(src), "-o", str(outdir), "--method", "tv", "--quiet"])
    assert r.exit_code == 1
    assert (outdir / "a_denoised.tif").exists() and (outdir / "b_denoised.tif").exists()
    assert not (outdir / "c_bad_denoised.tif").exists()
    assert "c_bad" in r.output and "non-finite" in r.output


@pytest.mark.parametrize("args,needle", [
    (["MISSING", "--method", "tv"], "not found"),
    (["NOISY", "--method", "median"], "unknown method"),
    (["NOISY", "--method", "n2v", "--budget", "0"], "budget"),
    (["NOISY", "--method", "tv", "--gain", "2"], "--gain"),
    (["NOISY", "--method", "tv", "--axes", "ZYX"], "axes"),
    (["NOISY", "--method", "tv", "--vst", "--gain", "-1", "--offset", "0", "--read-noise", "1"], "gain"),
])
def test_bad_inputs_exit_nonzero_and_write_nothing(data, tmp_path, args, needle):
    d, _, _ = data
    out = tmp_path / "out.tif"
    args = [str(d / "noisy.tif") if a == "NOISY" else str(tmp_path / "missing.tif") if a == "MISSING" else a for a in args]
    r = runner.invoke(app, ["denoise", args[0], "-o", str(out), *args[1:]])
    assert r.exit_code == 2, r.output
    assert needle in r.output
    assert not out.exists()
    assert "Traceback" not in r.output


def test_refuses_to_overwrite_input(data):
    d, _, _ = data
    r = runner.invoke(app, ["denoise", str(d / "noisy.tif"), "-o", str(d / "noisy.tif"), "--method", "tv"])
    assert r.exit_code == 2 and "input" in r.output
    assert tifffile.imread(d / "noisy.tif").dtype == np.uint16
