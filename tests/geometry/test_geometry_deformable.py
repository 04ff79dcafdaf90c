"""Learned deformable registration and stabilization (tiny runs; the benchmark measures accuracy)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fluorecon.errors import FluoreconError
from fluorecon.geometry.deformable import instance_optimize, register_deformable
from fluorecon.geometry.nets import DisplacementNet, smoothness, warp_tensor
from fluorecon.geometry.stabilize import make_template, stabilize
from fluorecon.physics import motion


def test_warp_tensor_matches_physics_warp():
    img = motion.procedural_specimen((0, 0), (24, 24), seed=0)
    u = motion.smooth_flow((24, 24), 1.0, 6, seed=1)
    a = motion.warp(img, u, order=1)
    b = warp_tensor(torch.from_numpy(img)[None, None], torch.from_numpy(u)[None])[0, 0].numpy()
    assert np.allclose(a[2:-2, 2:-2], b[2:-2, 2:-2], atol=1e-4)


def test_net_shapes_2d_3d():
    net = DisplacementNet(dim=3, width=4, depth=1, levels=2, finest=1)
    u = net(torch.zeros(1, 1, 16, 20, 20), torch.zeros(1, 1, 16, 20, 20))
    assert tuple(u.shape) == (1, 3, 16, 20, 20)
    assert float(smoothness(torch.zeros(1, 2, 4, 4))) == 0.0


def test_instance_optimisation_reduces_misalignment():
    s = motion.deformed_series(n_frames=1, shape=(48, 48), affine=False, amplitude=2.0, photons=None, seed=0)
    truth = motion.invert_field(s["fields"][0])
    u = instance_optimize(s["template"], s["frames"][0], steps=60, smooth_weight=0.5)
    err0 = np.sqrt((truth**2).sum(0))[6:-6, 6:-6].mean()
    err = np.sqrt(((u - truth) ** 2).sum(0))[6:-6, 6:-6].mean()
    assert err < 0.8 * err0


def test_register_deformable_runs_and_checks_shapes():
    s = motion.deformed_series(n_frames=1, shape=(32, 32), affine=False, seed=1)
    u, info = register_deformable(s["template"], s["frames"][0], steps=2, width=4, depth=1)
    assert u.shape == (2, 32, 32) and "loss_after" in info
    with pytest.raises(FluoreconError, match="one shape"):
        register_deformable(np.zeros((8, 8)), np.zeros((8, 9)))


def test_stabilize_translation_and_template_errors():
    s = motion.deformed_series(n_frames=3, shape=(48, 48), amplitude=0.01, seed=2)
    out = stabilize(s["frames"], template=s["template"], model="rigid")
    assert out["stabilized"].shape == (3, 48, 48) and np.all(out["confidence"] > 0.3)
    # rigid removes most of the simulated rigid part of the motion
    before = np.abs(s["frames"] - s["template"]).mean()
    after = np.abs(out["stabilized"] - s["template"])[:, 8:-8, 8:-8].mean()
    assert after < before
    with pytest.raises(FluoreconError):
        make_template(s["frames"], "best")
    with pytest.raises(FluoreconError):
        stabilize(s["frames"][0], model="rigid")
    with pytest.raises(FluoreconError):
        stabilize(s["frames"], model="warp")


def test_stabilize_deformable_tiny():
    s = motion.deformed_series(n_frames=2, shape=(32, 32), seed=3)
    out = stabilize(s["frames"], template=s["template"], model="deformable", steps=2)
    assert out["fields"].shape == (2, 2, 32, 32) and out["info"]["trained_steps"] == 2
