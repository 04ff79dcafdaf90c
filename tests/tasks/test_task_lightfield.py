"""The light-field task: example run + forward model, bad input (exit 2), the real worm light field."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from fluorecon.cli import app
from fluorecon.errors import FluoreconError
from fluorecon.io import read_image, write_image
from fluorecon.tasks.lightfield import LightFieldParams, depths_from_params
from fluorecon.tasks.registry import get

runner = CliRunner()


def test_example_run_and_its_forward_model_explains_the_light_field():
    task = get("lightfield")
    ex = task.example()
    img = ex["inputs"]["image"]
    res = task(img, **ex["params"])
    assert res.image.shape == (3, 30, 30) and res.axes["image"] == "ZYX"
    assert res.voxel_size["image"] == pytest.approx((2.0, 0.25 / 0.25 * 1.0, 1.0))
    pred = res.forward.expected(res.image)
    resid = np.mean((pred - img.data) ** 2)
    assert resid < 0.2 * np.var(img.data)
    assert res.params_used["iterations"] == 10 and res.forward.to_dict()["kind"] == "lightfield"
    assert np.all(res.forward.variance(pred) > 0)


def test_depths_and_param_validation():
    assert depths_from_params(LightFieldParams(z_min=-3, z_max=0, z_step=1.5)) == [-3.0, -1.5, 0.0]
    with pytest.raises(ValueError, match="below z_min"):
        LightFieldParams(z_min=2, z_max=0)
    with pytest.raises(ValueError, match="odd"):
        LightFieldParams(nnum=14)


def test_bad_input_is_refused_with_exit_2(tmp_path):
    task = get("lightfield")
    ex = task.example()
    data = ex["inputs"]["image"].data
    with pytest.raises(FluoreconError, match="not a multiple of Nnum"):
        task(data[:28], axes="YX", **ex["params"])
    with pytest.raises(FluoreconError, match="outside what its PSF"):
        task(data, axes="YX", **{**ex["params"], "z_min": -200.0, "z_step": 100.0})
    path = tmp_path / "lf.tif"
    write_image(path, data[:, :27], axes="YX")
    args = [f"--{k.replace('_', '-')}={v}" for k, v in ex["params"].items()]
    r = runner.invoke(app, ["lightfield", str(path), "-o", str(tmp_path / "v.tif"), *args])
    assert r.exit_code == 2 and "multiple of Nnum" in r.output


def test_real_worm_light_field_crop_reconstructs_and_reprojects(shared_data):
    folder = shared_data("lightfield-worm")
    lf = read_image(folder / "20131219WORM2_small_full_neg_X1_N15_cropped_uncompressed.tif").data.astype(np.float32)
    assert lf.shape == (675, 450)
    crop = lf[345:435, 180:270]                       # 6×6 lenslets on the worm's brightest part
    kw = dict(nnum=15, pitch=150.0, f_ml=3000.0, magnification=40.0, na=0.95, wavelength=0.52, medium_index=1.0,
              z_min=-2.0, z_max=0.0, z_step=2.0, osr=1, stop="none")
    task = get("lightfield")
    res = task(crop, axes="YX", iterations=4, **kw)
    assert res.image.shape == (2, 90, 90) and res.voxel_size["image"] == pytest.approx((2.0, 0.25, 0.25))
    assert np.all(np.isfinite(res.image)) and res.image.min() >= 0

    def misfit(r):
        return np.sum((r.forward.expected(r.image) - crop) ** 2) / np.sum((crop - crop.mean()) ** 2)

    # re-projected, the volume explains the light field better than a flat field, and more with iterations
    first = task(crop, axes="YX", iterations=1, **kw)
    assert misfit(res) < misfit(first) < 1.0
