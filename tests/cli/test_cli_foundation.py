"""CLI foundation: --help, info, simulate, metrics — outputs, determinism and every bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio
from typer.testing import CliRunner

from fluorecon.cli import app
from fluorecon.io import read_image, write_image

runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def assert_bad_input(res, *words: str):
    """Exit code 2, one 'error:' line naming the problem, and no traceback."""
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    err = res.stderr
    assert "Traceback" not in err and "Traceback" not in res.stdout
    assert err.startswith("error:"), err
    for w in words:
        assert w.lower() in err.lower(), (w, err)


@pytest.fixture
def images(tmp_path):
    rng = np.random.default_rng(0)
    target = rng.random((48, 48)).astype(np.float32)
    pred = (target + 0.05 * rng.standard_normal(target.shape)).astype(np.float32)
    write_image(tmp_path / "target.tif", target, voxel_size=(0.1, 0.1))
    write_image(tmp_path / "pred.tif", pred)
    nan = target.copy()
    nan[3, 4] = np.nan
    np.save(tmp_path / "nan.npy", nan)
    np.save(tmp_path / "empty.npy", np.zeros((0, 4), np.float32))
    (tmp_path / "corrupt.tif").write_bytes(b"II*\x00garbage" * 20)
    raw = (tmp_path / "target.tif").read_bytes()
    (tmp_path / "truncated.tif").write_bytes(raw[: len(raw) // 2])
    return tmp_path, pred, target


# ------------------------------------------------------------------------------------------ help


def test_help_lists_the_foundation_commands_with_examples():
    res = run("--help")
    assert res.exit_code == 0
    for cmd in ("info", "simulate", "metrics"):
        assert cmd in res.stdout
        sub = run(cmd, "--help")
        assert sub.exit_code == 0 and "Examples" in sub.stdout, cmd


def test_console_script_help_and_bad_input_without_traceback(tmp_path):
    exe = Path(sys.executable).with_name("fluorecon")
    ok = subprocess.run([str(exe), "--help"], capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "simulate" in ok.stdout
    bad = subprocess.run([str(exe), "info", str(tmp_path / "missing.tif")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "not found" in bad.stderr


# ------------------------------------------------------------------------------------------ info


def test_info_json_reports_the_file(images):
    d, _, target = images
    res = run("info", d / "target.tif", "--json")
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["shape"] == [48, 48] and info["dtype"] == "float32" and info["axes"] == "YX"
    assert info["voxel_size_um"] == pytest.approx([0.1, 0.1])
    assert info["min"] == pytest.approx(float(target.min())) and info["max"] == pytest.approx(float(target.max()))
    assert info["mean"] == pytest.approx(float(target.mean()), rel=1e-6)
    nan = json.loads(run("info", d / "nan.npy", "--json").stdout)
    assert nan["nan_count"] == 1  # info reports NaNs instead of refusing the file
    text = run("info", d / "target.tif")
    assert text.exit_code == 0 and "48 × 48" in text.stdout and "0.1 × 0.1 µm" in text.stdout


def test_info_batch_keeps_going_and_fails_overall(images):
    d, _, _ = images
    res = run("info", str(d / "*.tif"), "--json")
    rows = json.loads(res.stdout)
    status = {Path(r["input"]).name: r["status"] for r in rows}
    assert status["target.tif"] == "ok" and status["corrupt.tif"] == "error" and status["truncated.tif"] == "error"
    assert res.exit_code == 1


@pytest.mark.parametrize("name,words", [
    ("missing.tif", ["not found"]),
    ("corrupt.tif", ["corrupt.tif"]),
    ("truncated.tif", ["truncated"]),
    ("empty.npy", ["empty"]),
])
def test_info_bad_files(images, name, words):
    d, _, _ = images
    assert_bad_input(run("info", d / name), *words)


def test_info_wrong_axes(images):
    d, _, _ = images
    assert_bad_input(run("info", d / "target.tif", "--axes", "ZYX"), "3 letters", "2 dimensions")


# --------------------------------------------------------------------------------------- metrics


def test_metrics_values_and_json_output(images):
    d, pred, target = images
    out = d / "m.json"
    res = run("metrics", d / "pred.tif", d / "target.tif", "--data-range", "1", "--json", "-o", out)
    assert res.exit_code == 0, res.output
    printed = json.loads(res.stdout)
    written = json.loads(out.read_text())
    assert printed == written
    assert written["psnr"] == pytest.approx(peak_signal_noise_ratio(target, pred, data_range=1.0), rel=1e-5)
    assert written["data_range"] == 1.0 and written["data_range_source"] == "--data-range"
    assert 0 < written["ssim"] < 1 and written["ri_psnr"] > 0 and written["nrmse"] > 0
    default = json.loads(run("metrics", d / "pred.tif", d / "target.tif", "--json").stdout)
    assert default["data_range"] == pytest.approx(float(target.max() - target.min()))
    assert "psnr" in run("metrics", d / "pred.tif", d / "target.tif").stdout


def test_metrics_batch_pairs_by_name_with_ci(tmp_path):
    rng = np.random.default_rng(1)
    (tmp_path / "p").mkdir()
    (tmp_path / "t").mkdir()
    for i in range(4):
        t = rng.random((32, 32)).astype(np.float32)
        write_image(tmp_path / "t" / f"im{i}.tif", t)
        write_image(tmp_path / "p" / f"im{i}.tif", t + 0.05 * rng.standard_normal(t.shape).astype(np.float32))
    res = run("metrics", tmp_path / "p", tmp_path / "t", "--data-range", "1", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert len(out["pairs"]) == 4
    s = out["summary"]["psnr"]
    assert s["low"] <= s["mean"] <= s["high"] and s["n"] == 4
    assert s["mean"] == pytest.approx(np.mean([r["psnr"] for r in out["pairs"]]))
    table = run("metrics", tmp_path / "p", tmp_path / "t", "--data-range", "1")
    assert "95% CI" in table.stdout


def test_metrics_pairs_batch_outputs_with_their_targets_by_stem(tmp_path):
    # What `fluorecon denoise raw/ -o den/` writes (NAME_denoised.tif) pairs with the ground truth NAME.tif;
    # im1 must not be paired with im10.
    rng = np.random.default_rng(2)
    (tmp_path / "p").mkdir()
    (tmp_path / "t").mkdir()
    noise = {}
    for name in ("im1", "im10", "im2"):
        t = rng.random((32, 32)).astype(np.float32)
        noise[name] = 0.01 if name == "im1" else 0.2
        write_image(tmp_path / "t" / f"{name}.tif", t)
        write_image(tmp_path / "p" / f"{name}_denoised.tif",
                    t + noise[name] * rng.standard_normal(t.shape).astype(np.float32))
    res = run("metrics", tmp_path / "p", tmp_path / "t", "--data-range", "1", "--json")
    assert res.exit_code == 0, res.output
    pairs = {Path(r["prediction"]).name if "prediction" in r else Path(r["pred"]).name: r
             for r in json.loads(res.stdout)["pairs"]}
    assert len(pairs) == 3
    psnr1 = pairs["im1_denoised.tif"]["psnr"]
    assert psnr1 == pytest.approx(-10 * np.log10(0.01**2), abs=1.0)   # paired with its own target


@pytest.mark.parametrize("pred,target,words", [
    ("missing.tif", "target.tif", ["not found"]),
    ("corrupt.tif", "target.tif", ["corrupt.tif"]),
    ("truncated.tif", "target.tif", ["truncated"]),
    ("empty.npy", "target.tif", ["empty"]),
    ("nan.npy", "target.tif", ["nan.npy", "NaN"]),
])
def test_metrics_bad_inputs_leave_no_output(images, pred, target, words):
    d, _, _ = images
    out = d / "metrics.json"
    assert_bad_input(run("metrics", d / pred, d / target, "-o", out), *words)
    assert not out.exists()


def test_metrics_shape_mismatch_and_axes(images):
    d, _, _ = images
    write_image(d / "small.tif", np.ones((10, 10), np.float32))
    assert_bad_input(run("metrics", d / "small.tif", d / "target.tif"), "shape")
    assert_bad_input(run("metrics", d / "pred.tif", d / "target.tif", "--axes", "TZYX"), "4 letters")
    assert_bad_input(run("metrics", d / "pred.tif", d / "target.tif", "--data-range", "-1"), "--data-range", "positive")


# -------------------------------------------------------------------------------------- simulate

SMALL = ["--shape", "48,48", "--psf-model", "gaussian"]


def _digests(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_simulate_same_seed_gives_identical_files(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for folder, seed in ((a, 1), (b, 1), (c, 2)):
        res = run("simulate", "--out", folder, "--seed", seed, *SMALL, "-q")
        assert res.exit_code == 0, (res.output, res.exception)
    assert sorted(p.name for p in a.iterdir()) == ["observed.tif", "parameters.json", "psf.tif", "truth.tif"]
    assert _digests(a) == _digests(b)
    assert (a / "observed.tif").read_bytes() != (c / "observed.tif").read_bytes()
    params = json.loads((a / "parameters.json").read_text())
    assert params["seed"] == 1 and params["camera"]["photons"] == 100.0 and params["shape"] == [48, 48]
    obs = read_image(a / "observed.tif")
    truth = read_image(a / "truth.tif")
    assert obs.data.dtype == np.uint16 and obs.voxel_size == pytest.approx((0.065, 0.065))
    assert truth.data.shape == obs.data.shape and 0 <= truth.data.min() and truth.data.max() <= 1.0 + 1e-6
    # The observation is offset + gain·photons: its mean follows the camera model.
    psf = read_image(a / "psf.tif").data
    assert psf.sum() == pytest.approx(1.0, rel=1e-4)
    assert obs.data.mean() == pytest.approx(100 + 100 * truth.data.mean(), rel=0.05)


def test_simulate_3d_and_refuses_to_overwrite(tmp_path):
    out = tmp_path / "s3"
    res = run("simulate", "-o", out, "--3d", "--shape", "8,32,32", "--psf-model", "gaussian", "--phantom", "puncta",
              "--voxel-size", "0.3,0.1,0.1", "--json")
    assert res.exit_code == 0, (res.output, res.exception)
    assert json.loads(res.stdout)["shape"] == [8, 32, 32]
    img = read_image(out / "observed.tif")
    assert img.axes == "ZYX" and img.voxel_size == pytest.approx((0.3, 0.1, 0.1))
    again = run("simulate", "-o", out, "--shape", "8,32,32")
    assert_bad_input(again, "already holds", "--overwrite")


@pytest.fixture
def psf_files(tmp_path):
    d = tmp_path / "psfs"
    d.mkdir()
    g = np.exp(-0.5 * (np.arange(-4, 5)[:, None] ** 2 + np.arange(-4, 5)[None] ** 2) / 2.0).astype(np.float32)
    write_image(d / "psf3d.tif", np.stack([g] * 5))
    write_image(d / "zero.tif", np.zeros((9, 9), np.float32))
    neg = g.copy()
    neg[0, 0] = -0.5
    write_image(d / "negative.tif", neg - 0.2)
    nan = g.copy()
    nan[4, 4] = np.nan
    np.save(d / "nan.npy", nan)
    (d / "corrupt.tif").write_bytes(b"MM\x00*" + b"\x00" * 50)
    return d


@pytest.mark.parametrize("extra,words", [
    (["--na", "1.6", "--refractive-index", "1.518"], ["NA 1.6", "refractive index"]),
    (["--photons", "-5"], ["photons"]),
    (["--read-noise", "-1"], ["read noise"]),
    (["--shape", "4,4"], ["--shape"]),
    (["--voxel-size", "0.1,-0.1"], ["voxel-size"]),
    (["--phantom", "unicorns"], ["unicorns"]),
    (["--psf", "PSFDIR/missing.tif"], ["not found"]),
    (["--psf", "PSFDIR/psf3d.tif"], ["3 dimensions", "only 2"]),
    (["--psf", "PSFDIR/zero.tif"], ["sums to"]),
    (["--psf", "PSFDIR/negative.tif"], ["negative"]),
    (["--psf", "PSFDIR/nan.npy"], ["NaN"]),
    (["--psf", "PSFDIR/corrupt.tif"], ["corrupt.tif"]),
])
def test_simulate_bad_input_leaves_no_output(tmp_path, psf_files, extra, words):
    out = tmp_path / "out"
    args = [a.replace("PSFDIR", str(psf_files)) for a in extra]
    base = ["--shape", "48,48"] if "--shape" not in args else []
    res = run("simulate", "--out", out, *base, *args)
    assert_bad_input(res, *words)
    assert not out.exists()


def test_psf_larger_than_image_is_cropped_with_warning(tmp_path, psf_files):
    big = np.zeros((9, 61, 61), np.float32)
    big[3:6, 29:32, 29:32] = 1.0
    write_image(psf_files / "big.tif", big)
    out = tmp_path / "crop"
    res = run("simulate", "--out", out, "--3d", "--shape", "4,32,32", "--psf", psf_files / "big.tif", "-q")
    assert res.exit_code == 0, (res.output, res.exception)
    assert read_image(out / "psf.tif").shape == (4, 32, 32)
    assert "warning:" in res.stderr and "cropped" in res.stderr
