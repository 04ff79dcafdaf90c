"""The SIM task: real 3D-SIM data's pattern against its acquisition config, bad input, forward model."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.errors import FluoreconError
from fluorecon.io import read_image
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
