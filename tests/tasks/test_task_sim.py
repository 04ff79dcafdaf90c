"""The SIM task: real 3D-SIM data's pattern against its acquisition config, bad input, forward model."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from fluorecon.cli import app
from fluorecon.errors import FluoreconError
from fluorecon.io import read_image, write_image
from fluorecon.tasks.registry import get
from fluorecon.tasks.sim import frames_to_apz


def test_real_3d_sim_pattern_matches_the_config(shared_data):
    folder = shared_data("cudasirecon-3dsim-raw")
    img = read_image(folder / "raw.tif")
    cfg = dict(line.split("=", 1) for line in (folder / "config-tiff").read_text().split() if "=" in line)
    raw = img.data.astype(np.float32) * 1e4          # the file is pre-scaled to ~1e-3
    res = get("sim")(raw, axes="ZYX", voxel_size=(0.125, 0.08, 0.08), angles=3, phases=5, order="azp",
                     na=float(cfg["na"]), wavelength=0.528)
    est = res.params_used["estimate"]
    ls = float(cfg["ls"])
    assert np.allclose(est["line_spacing_um"], ls, rtol=0.01)
    want = sorted(float(a) for a in cfg["k0angles"].split(","))
    got = sorted(np.angle(np.exp(1j * np.array(est["angle_rad"]))))    # pattern direction, not its sign
    got_alt = sorted(np.angle(np.exp(1j * (np.array(est["angle_rad"]) + np.pi))))
    assert min(np.abs(np.subtract(got, want)).max(), np.abs(np.subtract(got_alt, want)).max()) < 0.01
    assert res.image.shape == (9, 128, 128)
    assert res.voxel_size["image"] == (0.125, 0.04, 0.04)
    assert res.forward.expected(res.image).shape == raw.shape


def test_example_run_and_its_forward_model_predicts_the_frames():
    task = get("sim")
    ex = task.example()
    img = ex["inputs"]["image"]
    res = task(img, **ex["params"])
    pred = res.forward.expected(res.image) - 100.0
    data = img.data - 100.0
    assert pred.shape == data.shape
    # Re-imaged through f (one global scale, as verify fits it), the reconstruction explains the
    # pattern-to-pattern changes of the frames, which their mean cannot.
    scale = np.sum(pred * data) / np.sum(pred * pred)
    resid = np.mean((scale * pred - data) ** 2)
    base = np.mean((data - data.mean(axis=0, keepdims=True)) ** 2)
    assert resid < 0.75 * base and 0.8 < scale < 1.25


def test_frame_order_reshapes_as_documented():
    f = np.arange(2 * 3 * 4)[:, None, None] * np.ones((1, 2, 2))
    # angle → phase → z (z fastest): plane 0 holds frames 0, 4, 8 (angle 0) and 12, 16, 20 (angle 1).
    assert frames_to_apz(f, 2, 3, "apz")[0, :, 0, 0].tolist() == [0, 4, 8, 12, 16, 20]


def test_bad_input_is_refused():
    task = get("sim")
    ex = task.example()
    img = ex["inputs"]["image"]
    with pytest.raises(FluoreconError, match="not a multiple"):
        task(img.data[:8], axes="TYX", voxel_size=(0.08, 0.08), **ex["params"])
    with pytest.raises(FluoreconError, match="pixel size"):
        task(img.data, axes="TYX", **ex["params"])
    with pytest.raises(FluoreconError, match="undersample"):
        task(img.data, axes="TYX", voxel_size=(0.3, 0.3), **ex["params"])
    with pytest.raises(ValueError, match="phases"):
        task.params(phases=3, n_orders=2)


def test_wrong_frame_order_is_detected_and_the_right_one_named():
    task = get("sim")
    ex = task.example()
    img = ex["inputs"]["image"]
    # The same frames written phase-major (all angles at phase 0, then phase 1, ...).
    phase_major = img.data.reshape(3, 3, *img.data.shape[-2:]).transpose(1, 0, 2, 3).reshape(img.data.shape)
    with pytest.raises(FluoreconError, match="not in the order") as err:
        task(phase_major, axes="TYX", voxel_size=(0.08, 0.08), **ex["params"])
    assert "--order pa" in err.value.hint
    res = task(phase_major, axes="TYX", voxel_size=(0.08, 0.08), order="pa", **ex["params"])
    assert res.params_used["order_consistency"]["pa"] > 0.95


def test_missing_optics_are_refused():
    task = get("sim")
    ex = task.example()
    params = {k: v for k, v in ex["params"].items() if k not in ("na", "wavelength")}
    with pytest.raises(FluoreconError, match="--na and --wavelength"):
        task(ex["inputs"]["image"], **params)


def test_cli_bad_input_exits_2_with_the_reason(tmp_path):
    ex = get("sim").example()
    raw = tmp_path / "raw.tif"
    write_image(raw, ex["inputs"]["image"].data, axes="TYX", voxel_size=(0.08, 0.08))
    runner = CliRunner()
    r = runner.invoke(app, ["sim", str(raw), "-o", str(tmp_path / "o.tif")])
    assert r.exit_code == 2 and "--na" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["sim", str(raw), "-o", str(tmp_path / "o.tif"), "--na", "1.2", "--wavelength", "0.52",
                            "--phases", "5"])
    assert r.exit_code == 2 and "angles × phases" in r.output
    assert not (tmp_path / "o.tif").exists()


def test_learned_physics_method_runs_and_starts_from_the_classical_result():
    task = get("sim")
    ex = task.example()
    img = ex["inputs"]["image"]
    classical = task(img, **ex["params"])
    # One training step from a zero last layer: the output is (nearly) the classical reconstruction.
    res = task(img, **{**ex["params"], "method": "learned-physics", "steps": 1, "taper": 0})
    ref = task(img, **{**ex["params"], "taper": 0})
    assert res.image.shape == classical.image.shape
    assert np.corrcoef(res.image.ravel(), ref.image.ravel())[0, 1] > 0.95
    assert any("only 1 steps" in w for w in res.warnings)
