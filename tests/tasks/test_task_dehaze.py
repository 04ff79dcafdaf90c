"""Tests of the dehaze task."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.tasks.registry import get

# Small tensors: one torch thread (two threads on a loaded 2-core machine are much slower).
pytestmark = pytest.mark.usefixtures("one_torch_thread")




def test_example_runs_and_forward_adds_the_haze_back():
    task = get("dehaze")
    ex = task.example(0)
    res = task(ex["inputs"]["image"], **ex["params"])
    x = ex["inputs"]["image"].data
    np.testing.assert_allclose(res.forward.expected(res.image), x, rtol=1e-5, atol=1e-3)
    assert (res.outputs["haze"][1].mean() > res.outputs["haze"][0].mean())  # deeper plane, more haze
    assert res.params_used["size_used"] and len(res.params_used["alpha_used"]) == 2


def test_envelope_method_is_clipped_and_consistent():
    task = get("dehaze")
    ex = task.example(0)
    res = task(ex["inputs"]["image"], method="envelope")
    assert (res.image >= 0).all()
    np.testing.assert_allclose(res.forward.expected(res.image), ex["inputs"]["image"].data, rtol=1e-5, atol=1e-3)


def test_learned_runs_tiny():
    task = get("dehaze")
    ex = task.example(1)
    res = task(ex["inputs"]["image"], method="learned", steps=2)
    assert res.image.shape == ex["inputs"]["image"].data.shape and res.warnings
