"""Tests of the unmixing task: known spectra, blind NMF, phasor, errors."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.errors import FluoreconError
from fluorecon.physics.mixing import gaussian_spectra, simulate_mixture
from fluorecon.tasks.contract import Table
from fluorecon.tasks.registry import get

# Small tensors: one torch thread (two threads on a loaded 2-core machine are much slower).
pytestmark = pytest.mark.usefixtures("one_torch_thread")




def test_example_runs_and_forward_reproduces_the_recording():
    task = get("unmix")
    ex = task.example(0)
    res = task(ex["inputs"]["image"], inputs={"spectra": ex["inputs"]["spectra"]}, **ex["params"])
    x = ex["inputs"]["image"].data
    assert res.image.shape == (2, 32, 32) and res.axes["image"] == "CYX"
    pred = res.forward.expected(res.image)
    assert pred.shape == x.shape
    np.testing.assert_allclose(res.outputs["residual"], x - pred, atol=1e-3)
    # Poisson: residuals are at the noise level
    assert np.mean((x - pred) ** 2 / np.maximum(pred, 1)) < 1.5


def test_blind_nmf_reports_spectra():
    S = gaussian_spectra(3, 8, width_um=0.02, seed=0)
    sim = simulate_mixture(S, (32, 32), photons=100, seed=0)
    res = get("unmix")(sim["recording"], axes="CYX", method="nmf", rank=3)
    t = res.outputs["spectra"]
    assert isinstance(t, Table) and t.names == ["channel", "dye_1", "dye_2", "dye_3"]
    assert res.params_used["rank"] == 3


def test_phasor_output():
    S = gaussian_spectra(2, 8, seed=0)
    sim = simulate_mixture(S, (16, 16), photons=50, seed=0)
    res = get("unmix")(sim["recording"], axes="CYX", method="phasor", inputs={"spectra": S})
    assert res.image.shape == (3, 16, 16)


def test_bad_input():
    S = gaussian_spectra(2, 6, seed=0)
    x = simulate_mixture(S, (8, 8), photons=10, seed=0)["recording"]
    task = get("unmix")
    with pytest.raises(FluoreconError, match="bands but the image has"):
        task(x, axes="CYX", inputs={"spectra": gaussian_spectra(2, 5, seed=0)})
    with pytest.raises(FluoreconError, match="negative"):
        task(x, axes="CYX", inputs={"spectra": Table({"a": -S[:, 0], "b": S[:, 1]})})
    with pytest.raises(FluoreconError, match="larger than the number of channels"):
        task(x, axes="CYX", method="nmf", rank=7)
    with pytest.raises(FluoreconError, match="channel axis"):
        task(x[0], axes="YX")
    with pytest.raises(FluoreconError, match="needs the dyes' spectra"):
        task(x, axes="CYX", method="nnls")


def test_learned_method_runs_tiny():
    S = gaussian_spectra(2, 5, seed=0)
    sim = simulate_mixture(S, (24, 24), photons=20, seed=0)
    res = get("unmix")(sim["recording"], axes="CYX", method="learned", steps=2, inputs={"spectra": S})
    assert res.image.shape == (2, 24, 24) and (res.image >= 0).all() and res.warnings


def test_channel_floor_enters_the_forward_model():
    S = gaussian_spectra(2, 6, seed=0)
    sim = simulate_mixture(S, (24, 24), photons=50, seed=0)
    x = sim["recording"] + np.arange(6, dtype=np.float32)[:, None, None] * 3  # per-channel offsets
    res = get("unmix")(x, axes="CYX", channel_floor=True, inputs={"spectra": S})
    assert len(res.params_used["channel_floor"]) == 6
    pred = res.forward.expected(res.image)
    assert abs(float(np.mean(x - pred))) < 1.0
