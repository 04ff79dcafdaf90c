"""Tests of the classical haze removal against the haze forward model."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.classical.dehaze import dehaze, haze_background, structure_scale
from fluorecon.errors import FluoreconError
from fluorecon.physics.scattering import HazeForward, simulate_haze

# Small tensors: one torch thread (two threads on a loaded 2-core machine are much slower).
pytestmark = pytest.mark.usefixtures("one_torch_thread")




def _contrast(img, truth):
    fg, bg = truth > np.percentile(truth, 90), truth <= np.percentile(truth, 50)
    a, b = img[fg].mean(), img[bg].mean()
    return (a - b) / (a + b)


def test_structure_scale_finds_blob_size():
    from scipy import ndimage

    y = np.zeros((96, 96))
    y[48, 48] = 1
    s = structure_scale(ndimage.gaussian_filter(y, 6))
    assert 4 <= s <= 12


def test_flat_background_is_removed_exactly():
    x = np.full((48, 48), 20.0)
    x[20:24, 20:24] += 100
    b = haze_background(x, 8)
    assert abs(np.median(b) - 20) < 1.0


def test_dehaze_restores_contrast_of_deep_planes():
    sim = simulate_haze((2, 96, 96), kind="nuclei", photons=100, seed=1,
                        forward=HazeForward(alpha=(0.5, 1.5), sigma=(8, 16), background=(0, 2)))
    out, info = dehaze(sim["recording"], "ZYX")
    for z in range(2):
        c0 = _contrast(sim["truth"][z], sim["truth"][z])
        assert abs(_contrast(out[z], sim["truth"][z]) / c0 - 1) < 0.1
    deep = _contrast(sim["truth"][1], sim["truth"][1])
    assert _contrast(sim["recording"][1], sim["truth"][1]) / deep < 0.97  # the haze did lower the contrast
    assert len(info["size"]) == 2


def test_bad_size():
    with pytest.raises(FluoreconError):
        dehaze(np.ones((8, 8)), size="big")
    with pytest.raises(FluoreconError):
        dehaze(np.ones((8, 8)), size=-1)
