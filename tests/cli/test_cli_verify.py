"""`fluorecon verify`: exit 0 whatever the verdict, JSON keys, exit 2 for bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from fluorecon.cli import app
from fluorecon.io import write_image
from fluorecon.physics.camera import Camera
from fluorecon.physics.forward import Forward
from fluorecon.physics.phantoms import mixed
from fluorecon.physics.psf import gaussian_psf

runner = CliRunner()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("verify")
    psf = gaussian_psf((15, 15), 1.6)
    fwd = Forward(psf=psf, camera=Camera(photons=50, offset=100, read_noise=1.5))
    truth = mixed((96, 96), seed=0)
    x, _ = fwd.simulate(truth, seed=1)
    fake = truth.copy()
    fake[40:43, 50:53] += 2.0
    write_image(d / "raw.tif", x)
    write_image(d / "truth.tif", (1000 * truth).astype(np.float32))
    write_image(d / "fake.tif", (1000 * fake).astype(np.float32))
    write_image(d / "psf.tif", psf)
    write_image(d / "psf3.tif", gaussian_psf((9, 15, 15), (2, 1.6, 1.6)))
    write_image(d / "small.tif", np.ones((64, 64), np.float32))
    write_image(d / "zeros.tif", np.zeros((96, 96), np.float32))
    nan = truth.copy()
    nan[5, 7] = np.nan
    write_image(d / "nan.tif", nan.astype(np.float32), allow_nonfinite=True)
    return d


def test_verify_json_and_exit_code(files):
    r = runner.invoke(app, ["verify", str(files / "raw.tif"), str(files / "fake.tif"), "--psf", str(files / "psf.tif"),
                            "--gain", "1", "--offset", "100", "--read-noise", "1.5", "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["flagged"] is True and d["regions"][0]["kind"] == "added"
    assert np.hypot(*(np.array(d["regions"][0]["centroid"]) - (41, 51))) < 3
    assert {"centroid", "kind", "p_value", "extent"} <= set(d["regions"][0])
    assert d["scale"] == pytest.approx(50 / 1000, rel=0.05)  # photons per unit over the arbitrary units
    assert "psf_scale" in d["forward_model"]


def test_verify_truth_passes_and_report(files, tmp_path):
    r = runner.invoke(app, ["verify", str(files / "raw.tif"), str(files / "truth.tif"), "--psf", str(files / "psf.tif"),
                            "--report", str(tmp_path / "v.html")])
    assert r.exit_code == 0, r.output
    assert "supported by the recording" in r.output
    assert (tmp_path / "v.html").stat().st_size > 1000


@pytest.mark.parametrize(("recon", "extra", "match"), [
    ("small.tif", [], "--axes"),
    ("zeros.tif", [], "all zeros"),
    ("nan.tif", [], "(5, 7)"),
    ("truth.tif", ["--psf", "psf3.tif"], "dimensions"),
    ("truth.tif", ["--gain", "0"], "gain"),
])
def test_verify_bad_input_exit_2(files, recon, extra, match):
    extra = [str(files / e) if e.endswith(".tif") else e for e in extra]
    r = runner.invoke(app, ["verify", str(files / "raw.tif"), str(files / recon), *extra])
    assert r.exit_code == 2, r.output
    assert match in r.output


def test_verify_fits_a_global_drift_unless_told_not_to(tmp_path):
    from scipy import ndimage

    psf = gaussian_psf((15, 15), 1.6)
    fwd = Forward(psf=psf, camera=Camera(photons=300, offset=100, read_noise=1.5, background=2))
    truth = ndimage.gaussian_filter(mixed((96, 96), seed=3), 1.0)
    x, _ = fwd.simulate(ndimage.shift(truth, (0.5, 0.0), order=3, mode="nearest"), seed=2)  # the stage drifted 0.5 px
    write_image(tmp_path / "raw.tif", x)
    write_image(tmp_path / "rec.tif", (1000 * truth).astype(np.float32))
    write_image(tmp_path / "psf.tif", psf)
    args = ["verify", str(tmp_path / "raw.tif"), str(tmp_path / "rec.tif"), "--psf", str(tmp_path / "psf.tif"),
            "--gain", "1", "--offset", "100", "--read-noise", "1.5", "--json"]
    fitted = runner.invoke(app, args)
    assert fitted.exit_code == 0, fitted.output
    d = json.loads(fitted.stdout)
    assert d["info"]["shift"] == pytest.approx([0.5, 0.0], abs=0.05)
    assert d["flagged"] is False
    rigid = runner.invoke(app, [*args, "--no-fit-shift"])
    assert rigid.exit_code == 0, rigid.output
    assert json.loads(rigid.stdout)["flagged"] is True  # the drift itself is then reported as added/missing edges
