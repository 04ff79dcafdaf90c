"""Simulated geometry: tilings, deformations, advected movies (known truths)."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.errors import FluoreconError
from fluorecon.physics import motion


def test_tiling_positions_and_overlap_agree():
    sim = motion.simulate_tiling(grid=(2, 2), tile_shape=(48, 48), overlap=0.25, jitter=0.0, photons=None, shading=0,
                                 seed=0)
    assert sim["tiles"].shape == (4, 48, 48)
    step = int(round(48 * 0.75))
    assert np.allclose(sim["positions"][1] - sim["positions"][0], [0, step])
    # the overlap of neighbours shows the same specimen
    assert np.allclose(sim["tiles"][0][:, step:], sim["tiles"][1][:, : 48 - step], atol=1e-3)


def test_tiling_3d_and_errors():
    sim = motion.simulate_tiling(grid=(1, 1, 2), tile_shape=(8, 24, 24), overlap=0.2, seed=1)
    assert sim["tiles"].shape == (2, 8, 24, 24)
    with pytest.raises(FluoreconError):
        motion.simulate_tiling(grid=(2,), tile_shape=(16, 16))


def test_procedural_specimen_is_window_consistent():
    a = motion.procedural_specimen((10, 20), (40, 40), seed=3)
    b = motion.procedural_specimen((30, 30), (20, 20), seed=3)
    assert np.allclose(a[20:40, 10:30], b, atol=1e-5)


def test_warp_and_inverse_field():
    u = motion.smooth_flow((32, 32), amplitude=1.0, smoothness=8, seed=0)
    g = motion.invert_field(u)
    # composing u with its inverse is the identity: g(y) + u(y + g(y)) = 0
    from scipy import ndimage

    coords = np.indices((32, 32), dtype=np.float32) + g
    back = np.stack([ndimage.map_coordinates(u[i], coords, order=1, mode="nearest") for i in range(2)])
    assert np.abs(g + back)[:, 4:-4, 4:-4].max() < 0.05


def test_advected_movie_follows_flow_convention():
    sim = motion.advected_movie((48, 48), n_frames=2, photons=None, bleaching=0.0, amplitude=1.0, seed=2)
    f = sim["flows"][0]
    # frame_t(x) ≈ frame_t1(x + f(x))
    pred = motion.warp(sim["truth"][1], f, order=3)
    assert np.abs(pred - sim["truth"][0])[6:-6, 6:-6].mean() < 0.02 * sim["truth"][0].mean() + 1e-3


def test_deformed_series_fields():
    s = motion.deformed_series(n_frames=2, shape=(32, 32), photons=None, seed=0)
    fr = motion.warp(s["template"], s["fields"][0], order=3)
    assert np.allclose(np.maximum(fr, 0) + 0.05, s["frames"][0], atol=1e-4)
    u = motion.random_deformation((32, 32), amplitude=2.0, seed=1)
    assert abs(float(np.sqrt((u**2).sum(0).mean())) - 2.0) < 1e-3
