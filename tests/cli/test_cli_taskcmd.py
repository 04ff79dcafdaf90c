"""The generated task commands (fluorecon.cli.taskcmd): per-task hooks and shared options end to end."""

from __future__ import annotations

import json

import numpy as np
import tifffile
from typer.testing import CliRunner

from fluorecon.cli import app
from fluorecon.io import read_image, write_image
from fluorecon.learn.bundle import Bundle
from fluorecon.tasks.registry import get

runner = CliRunner()


def test_learned_denoise_saves_its_model(tmp_path):
    x = get("denoise").example()["inputs"]["image"]
    write_image(tmp_path / "n.tif", x.data, axes="YX")
    r = runner.invoke(app, ["denoise", str(tmp_path / "n.tif"), "-o", str(tmp_path / "d.tif"), "--method", "n2v",
                            "--steps", "2", "--device", "cpu", "--save-model", str(tmp_path / "m"), "--json", "--quiet"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["model"] == str(tmp_path / "m")
    b = Bundle.load(tmp_path / "m")  # a valid bundle (hashes checked on load)
    assert b.model is not None and tifffile.imread(tmp_path / "d.tif").shape == x.data.shape


def test_isotropic_report_and_check(tmp_path):
    v = np.random.default_rng(0).random((6, 24, 24)).astype(np.float32) + 1
    write_image(tmp_path / "s.tif", v, axes="ZYX", voxel_size=(0.2, 0.1, 0.1))
    r = runner.invoke(app, ["isotropic", str(tmp_path / "s.tif"), "--method", "linear", "-o", str(tmp_path / "i.tif"),
                            "--report", "--check"])
    assert r.exit_code == 0, r.output
    assert "check:" in r.output
    html = (tmp_path / "i_report.html").read_text()
    assert "Forward model" in html and "axial" in html
    assert read_image(tmp_path / "i.tif").data.shape == (11, 24, 24)


def test_out_of_core_through_the_generated_command(tmp_path):
    x = get("denoise").example()["inputs"]["image"]
    write_image(tmp_path / "n.ome.zarr", x.data, axes="YX")
    out = tmp_path / "d.ome.zarr"
    r = runner.invoke(app, ["denoise", str(tmp_path / "n.ome.zarr"), "-o", str(out), "--method", "tv", "--json",
                            "--quiet"])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    assert info["complete"] and info["resolved"]["task"] == "denoise"
    ref = get("denoise")(x, method="tv").image
    assert np.abs(read_image(out).data - ref).max() <= 1e-3 * np.abs(ref).max()


def test_several_inputs_as_arguments_run_as_a_batch(tmp_path):
    x = get("denoise").example()["inputs"]["image"].data
    for k in range(2):
        write_image(tmp_path / f"a{k}.tif", x + k, axes="YX")
    r = runner.invoke(app, ["denoise", str(tmp_path / "a0.tif"), str(tmp_path / "a1.tif"), "-o", str(tmp_path / "o"),
                            "--method", "tv", "--quiet"])
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a0_denoised.tif", "a1_denoised.tif"]
