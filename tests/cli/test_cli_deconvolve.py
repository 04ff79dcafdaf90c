"""`fluorecon deconvolve` end to end, including bad input (exit 2, one line, nothing written)."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from fluorecon.cli import app
from fluorecon.physics.psf import gaussian_psf
from fluorecon.physics.sampling import fft_convolve

runner = CliRunner()


@pytest.fixture()
def files(tmp_path):
    t = np.zeros((12, 40, 40), np.float32)
    t[6, 20, 20] = 100
    t[4, 10, 28] = 60
    psf = gaussian_psf((7, 9, 9), 1.5)
    img = fft_convolve(t, psf) + 1
    tifffile.imwrite(tmp_path / "img.tif", img.astype(np.float32))
    tifffile.imwrite(tmp_path / "psf.tif", psf)
    return tmp_path, t, img


def test_deconvolve_file_json(files):
    d, truth, img = files
    out = d / "out.tif"
    r = runner.invoke(app, ["deconvolve", str(d / "img.tif"), "--psf", str(d / "psf.tif"), "-o", str(out),
                            "--iterations", "15", "--json", "--quiet"])
    assert r.exit_code == 0, r.output
    res = tifffile.imread(out)
    assert res.shape == img.shape
    assert res[6, 20, 20] > 2 * (img[6, 20, 20] - 1)  # sharper peak (output: background removed, "auto")
    assert '"iterations": 15' in r.output


def test_deconvolve_folder_and_model(files):
    d, _, _ = files
    (d / "batch").mkdir()
    for k in range(2):
        tifffile.imwrite(d / "batch" / f"s{k}.tif", tifffile.imread(d / "img.tif"))
    r = runner.invoke(app, ["deconvolve", str(d / "batch"), "--psf-model", "gaussian", "--voxel-size", "0.3,0.1,0.1",
                            "-o", str(d / "outdir"), "--method", "rl-accel", "--iterations", "auto", "--quiet"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (d / "outdir").iterdir()) == ["s0_decon.tif", "s1_decon.tif"]


def _bad_psf(d, arr, name="bad.tif"):
    tifffile.imwrite(d / name, arr)
    return str(d / name)


@pytest.mark.parametrize("case", ["nan", "zeros", "negative", "too_many_dims", "iterations0", "iterations_text",
                                  "no_voxel", "two_sources", "no_source", "missing_psf"])
def test_bad_input(files, case):
    d, _, _ = files
    out = d / "never.tif"
    psf = str(d / "psf.tif")
    extra = []
    if case == "nan":
        psf = _bad_psf(d, np.full((5, 5, 5), np.nan, np.float32))
    elif case == "zeros":
        psf = _bad_psf(d, np.zeros((5, 5, 5), np.float32))
    elif case == "negative":
        psf = _bad_psf(d, -np.ones((5, 5, 5), np.float32))
    elif case == "too_many_dims":
        psf = _bad_psf(d, np.ones((2, 3, 5, 5, 5), np.float32))
    elif case == "iterations0":
        extra = ["--iterations", "0"]
    elif case == "iterations_text":
        extra = ["--iterations", "lots"]
    elif case == "missing_psf":
        psf = str(d / "nope.tif")
    args = ["deconvolve", str(d / "img.tif"), "-o", str(out), *extra]
    if case == "no_voxel":
        args += ["--psf-model", "widefield"]
    elif case == "two_sources":
        args += ["--psf", psf, "--psf-model", "widefield", "--voxel-size", "0.3,0.1,0.1"]
    elif case != "no_source":
        args += ["--psf", psf]
    r = runner.invoke(app, args)
    assert r.exit_code == 2, (case, r.output)
    assert "Traceback" not in r.output and "error:" in r.output
    assert not out.exists()
    assert not list(d.glob(".never*"))  # no temporary left over


def test_off_centre_psf_is_recentred(files):
    d, _, img = files
    psf = np.roll(gaussian_psf((9, 15, 15), 1.5), (2, 4, -4), axis=(0, 1, 2))
    r = runner.invoke(app, ["deconvolve", str(d / "img.tif"), "--psf", _bad_psf(d, psf, "off.tif"),
                            "-o", str(d / "o.tif"), "--iterations", "10", "--quiet"])
    assert r.exit_code == 0, r.output
    res = tifffile.imread(d / "o.tif")
    assert np.unravel_index(np.argmax(res), res.shape) == (6, 20, 20)  # not shifted
