"""Tests of the inpaint task: contract, forward model, given/estimated masks, CLI, saved weights, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from fluorecon.cli import app
from fluorecon.errors import FluoreconError
from fluorecon.io import read_image, write_image
from fluorecon.physics.occlusion import simulate_shadows
from fluorecon.tasks.inpaint import InpaintTask
from fluorecon.tasks.registry import get

pytestmark = pytest.mark.usefixtures("one_torch_thread")
runner = CliRunner()


def test_registered_example_and_forward_model_reimages_the_recording():
    task = get("inpaint")
    ex = task.example(0)
    res = task(ex["inputs"]["image"], **ex["params"])
    x = ex["inputs"]["image"].data
    assert res.image.shape == x.shape and res.outputs["mask"].shape == x.shape
    assert res.params_used["mask_source"] == "estimated" and res.to_dict()["forward"]["kind"] == "occlusion"
    # classical: where the pixel was divided (M ≥ min_transmission) f(result) is the recording exactly
    m = res.outputs["mask"]
    ok = m >= 0.25
    np.testing.assert_allclose(res.forward.expected(res.image)[ok], x[ok], rtol=1e-4, atol=1e-2)


def test_given_mask_both_conventions_and_stack():
    sim = simulate_shadows((2, 64, 64), seed=1)
    res = InpaintTask()(sim["recording"], axes="ZYX", inputs={"mask": sim["mask"]}, offset=100.0)
    assert res.params_used["mask_source"] == "given"
    np.testing.assert_array_equal(res.outputs["mask"], sim["mask"])
    # the forward model of the result with the true mask reproduces the noiseless recording from the truth
    np.testing.assert_allclose(res.forward.expected(sim["truth"]), sim["expected"], rtol=1e-5, atol=1e-2)
    occl = (sim["mask"][0] < 0.5).astype(np.uint8) * 255  # scikit-image convention: non-zero = occluded
    r2 = InpaintTask()(sim["recording"][0], axes="YX", inputs={"mask": occl}, mask_kind="occluded",
                       method="biharmonic", offset=100.0)
    np.testing.assert_array_equal(r2.outputs["mask"], (occl == 0).astype(np.float32))


def test_no_shadow_returns_the_image_with_a_warning():
    x = np.random.default_rng(0).poisson(200.0, (48, 48)).astype(np.float32) + 100
    res = InpaintTask()(x, axes="YX", inputs={"mask": np.ones((48, 48))})
    np.testing.assert_array_equal(res.image, x)
    assert any("no shadow" in w for w in res.warnings)


def test_cli_with_mask_file_learned_save_and_reuse_weights(tmp_path):
    sim = simulate_shadows((64, 64), seed=2)
    write_image(tmp_path / "in.tif", sim["recording"], axes="YX")
    write_image(tmp_path / "mask.tif", sim["mask"], axes="YX")
    out = tmp_path / "out.tif"
    r = runner.invoke(app, ["inpaint", str(tmp_path / "in.tif"), "-o", str(out), "--mask", str(tmp_path / "mask.tif"),
                            "--method", "learned", "--steps", "2", "--width", "4", "--gain", "1", "--offset", "100",
                            "--save-model", str(tmp_path / "model"), "--json"])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "model" / "weights.safetensors").is_file()
    first = read_image(out).data
    out2 = tmp_path / "out2.tif"
    r = runner.invoke(app, ["inpaint", str(tmp_path / "in.tif"), "-o", str(out2), "--mask", str(tmp_path / "mask.tif"),
                            "--method", "learned", "--weights", str(tmp_path / "model"), "--offset", "100", "--json"])
    assert r.exit_code == 0, r.output
    np.testing.assert_allclose(read_image(out2).data, first, rtol=1e-6)
    assert json.loads(r.stdout[r.stdout.index("{"):])


def test_bad_input_clear_errors_and_cli_exit_2(tmp_path):
    sim = simulate_shadows((32, 32), seed=3)
    with pytest.raises(FluoreconError, match="does not match"):
        InpaintTask()(sim["recording"], axes="YX", inputs={"mask": np.ones((16, 16))})
    with pytest.raises(FluoreconError, match="too small"):
        InpaintTask()(np.ones((4, 4), np.float32), axes="YX")
    with pytest.raises(FluoreconError, match="channels"):
        InpaintTask()(np.ones((2, 16, 16), np.float32), axes="CYX")
    write_image(tmp_path / "in.tif", sim["recording"], axes="YX")
    write_image(tmp_path / "mask.tif", sim["mask"] * 255, axes="YX")
    r = runner.invoke(app, ["inpaint", str(tmp_path / "in.tif"), "-o", str(tmp_path / "o.tif"),
                            "--mask", str(tmp_path / "mask.tif")])
    assert r.exit_code == 2 and "mask-kind" in r.output
    r = runner.invoke(app, ["inpaint", str(tmp_path / "in.tif"), "-o", str(tmp_path / "o.tif"), "--method", "magic"])
    assert r.exit_code == 2
