"""`fluorecon noise` on simulated files: fitted numbers, JSON, batch, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from fluorecon.cli import app
from fluorecon.io import write_image
from fluorecon.physics.camera import Camera

runner = CliRunner()


@pytest.fixture(scope="module")
def frames_file(tmp_path_factory):
    d = tmp_path_factory.mktemp("noise")
    ramp = np.tile(np.linspace(0.05, 1.0, 96), (96, 1))
    cam = Camera(photons=150, gain=2.0, offset=100, read_noise=2.0)
    frames = np.stack([cam.simulate(ramp, seed=s) for s in range(8)]).astype(np.uint16)
    f = d / "frames.tif"
    write_image(f, frames, axes="TYX")
    write_image(d / "single.tif", frames[0], axes="YX")
    return f


def test_noise_json_from_frames(frames_file):
    r = runner.invoke(app, ["noise", str(frames_file), "--json", "--offset", "100"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["method"] == "photon_transfer"
    assert d["gain"] == pytest.approx(2.0, rel=0.1)
    assert d["read_noise_adu"] == pytest.approx(4.0, rel=0.35)


def test_noise_table_single_and_batch(frames_file):
    r = runner.invoke(app, ["noise", str(frames_file.parent / "single.tif")])
    assert r.exit_code == 0, r.output
    assert "single_image" in r.stdout and "gain" in r.stdout
    r = runner.invoke(app, ["noise", str(frames_file.parent), "--json"])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert len(rows) == 2 and all(row["status"] == "ok" for row in rows)
    r = runner.invoke(app, ["noise", str(frames_file), "--single", "--json"])
    assert json.loads(r.stdout)["method"] == "single_image"
    r = runner.invoke(app, ["noise", str(frames_file), "--raw", "--json"])
    raw = json.loads(r.stdout)
    assert raw["method"] == "photon_transfer_raw" and raw["gain"] == pytest.approx(2.0, rel=0.1)


def test_noise_bad_input(frames_file, tmp_path):
    r = runner.invoke(app, ["noise", str(tmp_path / "missing.tif")])
    assert r.exit_code == 2
    assert "no input found" in r.output.lower() or "not found" in r.output.lower()
    r = runner.invoke(app, ["noise", str(frames_file), "--frames-axis", "7"])
    assert r.exit_code == 2 and "--frames-axis 7" in r.output
    bad = tmp_path / "nan.npy"
    arr = np.ones((4, 32, 32), np.float32)
    arr[0, 0, 0] = np.nan
    np.save(bad, arr)
    r = runner.invoke(app, ["noise", str(bad), "--axes", "TYX"])
    assert r.exit_code == 2 and "NaN" in r.output
    assert "Traceback" not in r.output
