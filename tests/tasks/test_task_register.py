"""register / transform tasks: contract, forward model, low-confidence flag, bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest

from fluorecon.errors import FluoreconError, FluoreconWarning
from fluorecon.io import ImageData
from fluorecon.physics import motion
from fluorecon.tasks.register import RegisterTask, TransformTask
from fluorecon.tasks.registry import get


def test_registered_and_example_runs():
    task = get("register")
    ex = task.example()
    res = task(inputs=ex["inputs"], **ex["params"])
    t = res.outputs["transform"]
    assert t["schema"] == "fluorecon.transform" and np.allclose(t["shift"], [-2, 3], atol=0.1)
    json.dumps(t)
    # forward model: the fixed image ≈ transform(moving), and moving ≈ transform⁻¹(fixed)
    fixed = ex["inputs"]["fixed"].data
    moving = ex["inputs"]["moving"].data
    pred = res.forward.expected(moving)
    assert np.abs(pred - fixed)[4:-4, 4:-4].max() < 1e-4
    back = res.forward.expected(res.image)
    assert back.shape == moving.shape and np.abs(back - moving)[4:-4, 4:-4].max() < 1e-4
    assert res.to_dict()["forward"]["kind"] == "registration"


def test_low_confidence_is_flagged_with_warning():
    a = motion.procedural_specimen((0, 0), (48, 48), seed=0)
    b = motion.procedural_specimen((9000, 9000), (48, 48), seed=5)
    with pytest.warns(FluoreconWarning, match="low registration confidence"):
        res = RegisterTask()(inputs={"moving": ImageData(b, "YX", None, {}), "fixed": ImageData(a, "YX", None, {})})
    assert res.outputs["transform"]["low_confidence"] and res.warnings


def test_affine_and_transform_task_roundtrip():
    f = motion.procedural_specimen((0, 0), (48, 48), seed=2)
    mov = np.roll(f, (1, 2), axis=(0, 1))
    res = RegisterTask()(inputs={"moving": ImageData(mov, "YX", None, {}), "fixed": ImageData(f, "YX", None, {})},
                         model="rigid")
    t = res.outputs["transform"]
    assert t["kind"] == "rigid"
    out = TransformTask()(mov, axes="YX", inputs={"transform": t})
    assert np.abs(out.image - f)[6:-6, 6:-6].mean() < 0.02


def test_deformable_register_outputs_field():
    s = motion.deformed_series(n_frames=1, shape=(48, 48), affine=False, amplitude=1.0, seed=0)
    res = RegisterTask()(inputs={"moving": ImageData(s["frames"][0], "YX", None, {}),
                                 "fixed": ImageData(s["template"], "YX", None, {})}, model="deformable", steps=2,
                         instance_steps=2)
    assert res.outputs["field"].shape == (2, 48, 48) and res.axes["field"] == "CYX"
    assert res.outputs["transform"]["kind"] == "deformable"
    out = TransformTask()(s["frames"][0], axes="YX", inputs={"transform": res.outputs["transform"],
                                                             "field": res.outputs["field"]})
    assert np.allclose(out.image, res.outputs["registered"], atol=1e-5)


def test_bad_input():
    a = np.zeros((16, 16), np.float32)
    with pytest.raises(FluoreconError, match="spatial axes"):
        RegisterTask()(inputs={"moving": ImageData(np.zeros((4, 16, 16), np.float32), "ZYX", None, {}),
                               "fixed": ImageData(a, "YX", None, {})})
    with pytest.raises(FluoreconError, match="pixel size"):
        RegisterTask()(inputs={"moving": ImageData(a, "YX", (0.1, 0.1), {}), "fixed": ImageData(a, "YX", (0.2, 0.2), {})})
    with pytest.raises(FluoreconError, match="one 2D or 3D image"):
        RegisterTask()(inputs={"moving": ImageData(np.zeros((2, 16, 16), np.float32), "TYX", None, {}),
                               "fixed": ImageData(a, "YX", None, {})})
    with pytest.raises(FluoreconError, match="not a fluorecon transform"):
        TransformTask()(a, axes="YX", inputs={"transform": {"matrix": [[1, 0], [0, 1]]}})
    with pytest.raises(ValueError, match="model"):
        RegisterTask().params(model="bspline")
