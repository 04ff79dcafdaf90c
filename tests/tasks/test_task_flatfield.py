"""Tests of the flat-field task: contract, forward model, saved profiles, errors."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.errors import FluoreconError
from fluorecon.physics.illumination import simulate_tiles
from fluorecon.tasks.contract import Table
from fluorecon.tasks.flatfield import FlatfieldTask
from fluorecon.tasks.registry import get

# Small tensors: one torch thread (two threads on a loaded 2-core machine are much slower).
pytestmark = pytest.mark.usefixtures("one_torch_thread")




def test_registered_with_example_and_forward_model():
    task = get("flatfield")
    ex = task.example(0)
    res = task(ex["inputs"]["image"], **ex["params"])
    x = ex["inputs"]["image"].data
    assert res.image.shape == x.shape and res.outputs["flatfield"].shape == x.shape[1:]
    # the forward model maps the corrected stack back to the recording
    np.testing.assert_allclose(res.forward.expected(res.image), x, rtol=1e-4, atol=1e-2)
    assert res.to_dict()["forward"]["kind"] == "illumination"
    d = task.describe()
    assert {i["name"] for i in d["inputs"]} == {"image", "profile"}
    assert "baseline" in d["params"] and d["params"]["working_size"]["unit"] == "px"


def test_baseline_drift_and_profile_reuse():
    sim = simulate_tiles(12, (32, 32), baseline_level=30, seed=1)
    res = FlatfieldTask()(sim["stack"], axes="TYX", working_size=32, baseline="drift", max_reweight=2)
    assert isinstance(res.outputs["baseline"], Table) and len(res.outputs["baseline"]) == 12
    np.testing.assert_allclose(res.forward.expected(res.image), sim["stack"], rtol=1e-4, atol=1e-2)
    other = FlatfieldTask()(sim["stack"][:2], axes="TYX", inputs={"profile": res.outputs["profile"]})
    assert other.params_used["fitted"] is False
    np.testing.assert_allclose(other.outputs["flatfield"], res.outputs["flatfield"], rtol=1e-6)


def test_one_tile_is_refused():
    with pytest.raises(FluoreconError, match="stack of tiles"):
        FlatfieldTask()(np.ones((16, 16), np.float32), axes="YX")
    with pytest.raises(FluoreconError, match="stack of 1"):
        FlatfieldTask()(np.ones((1, 16, 16), np.float32), axes="TYX")
