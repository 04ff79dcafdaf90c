"""flow and stabilize tasks: contract, units, forward models, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.errors import FluoreconError
from fluorecon.io import ImageData
from fluorecon.physics import motion
from fluorecon.tasks.registry import get


def test_flow_example_units_and_forward():
    task = get("flow")
    ex = task.example()
    res = task(inputs=ex["inputs"], **ex["params"])
    assert res.axes["flow"] == "TCYX" and res.params_used["units"] == "px/frame"
    movie = ex["inputs"]["movie"].data
    pred = res.forward.expected(res.image)
    assert pred.shape == movie.shape
    sim = motion.advected_movie((32, 32), n_frames=2, seed=0)
    um = task(sim["movie"], axes="TYX", voxel_size=(0.5, 0.5), method="tvl1")
    assert um.params_used["units"] == "µm/frame"
    px = task(sim["movie"], axes="TYX", method="tvl1")
    assert np.allclose(um.image, 0.5 * px.image, atol=1e-5)


def test_flow_single_frame_is_refused():
    with pytest.raises(FluoreconError, match="T axis"):
        get("flow")(np.zeros((16, 16), np.float32), axes="YX", method="tvl1")
    with pytest.raises(FluoreconError, match="at least 2 frames"):
        get("flow")(np.zeros((1, 16, 16), np.float32), axes="TYX", method="tvl1")


def test_stabilize_example_and_template_input():
    task = get("stabilize")
    ex = task.example()
    res = task(inputs=ex["inputs"], **ex["params"])
    assert res.axes["fields"] == "TCYX" and len(res.outputs["transforms"]["frames"]) == 2
    pred = res.forward.expected(res.image)
    assert pred.shape == ex["inputs"]["movie"].data.shape
    s = motion.deformed_series(n_frames=2, shape=(32, 32), seed=1)
    res2 = task(inputs={"movie": ImageData(s["frames"], "TYX", None, {}),
                        "template": ImageData(s["template"], "YX", None, {})}, model="translation")
    assert res2.image.shape == (2, 32, 32)
    with pytest.raises(FluoreconError, match="T axis"):
        task(np.zeros((16, 16), np.float32), axes="YX")
