"""The VST's noise model is in ADU; a Camera's read noise is in electrons: the conversion is explicit."""

from __future__ import annotations

import numpy as np

from fluorecon.classical.vst import as_poisson_gaussian, generalized_anscombe
from fluorecon.physics.camera import Camera


def test_camera_read_noise_is_converted_to_adu_and_stabilises_variance():
    cam = Camera(photons=5.0, gain=3.0, offset=100.0, read_noise=4.0)
    pg = as_poisson_gaussian(cam)
    assert pg.read_noise == 12.0 and pg.gain == 3.0 and pg.offset == 100.0
    # Independent check: the transform of camera data has unit variance at every level only if the
    # read noise was converted (4 e- would be taken as 4 ADU otherwise: variance ≠ 1 at low counts).
    rng = np.random.default_rng(0)
    for level in (0.2, 1.0, 4.0):
        x = cam.simulate(np.full((200, 200), level, np.float32), seed=rng)
        v = float(np.var(generalized_anscombe(x, pg)))
        assert abs(v - 1.0) < 0.08, (level, v)
    wrong = as_poisson_gaussian({"gain": 3.0, "offset": 100.0, "read_noise": 4.0})
    x = cam.simulate(np.full((200, 200), 0.2, np.float32), seed=1)
    assert float(np.var(generalized_anscombe(x, wrong))) > 1.5


def test_em_camera_uses_excess_noise_gain():
    cam = Camera(photons=20.0, gain=1.0, offset=100.0, read_noise=2.0, em_gain=50.0)
    pg = as_poisson_gaussian(cam)
    assert pg.gain == cam.total_gain * 2.0
