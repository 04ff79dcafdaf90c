"""Optical flow: baselines and the CNN on simulated fluorescence flows (tiny runs)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fluorecon.errors import FluoreconError
from fluorecon.geometry import flow as fl
from fluorecon.physics import motion


def test_tvl1_recovers_a_clean_flow():
    sim = motion.advected_movie((64, 64), n_frames=2, photons=None, bleaching=0.0, amplitude=1.0, seed=0)
    f, info = fl.estimate_flow(sim["movie"], "tvl1")
    assert f.shape == (1, 2, 64, 64)
    assert fl.endpoint_error(f, sim["flows"], border=6) < 0.5 * fl.endpoint_error(0 * f, sim["flows"], border=6)
    assert info["photometric_residual"][0] < 1.0


def test_single_frame_and_bad_method_are_refused():
    with pytest.raises(FluoreconError, match="at least 2 frames"):
        fl.estimate_flow(np.zeros((1, 16, 16)), "tvl1")
    with pytest.raises(FluoreconError, match="movie"):
        fl.estimate_flow(np.zeros((16, 16)), "tvl1")
    with pytest.raises(FluoreconError, match="unknown flow method"):
        fl.estimate_flow(np.zeros((2, 16, 16)), "farneback")


def test_simulated_batch_matches_convention():
    gen = torch.Generator().manual_seed(0)
    tex = fl._texture_pool(1, 96, 0)
    f0, f1, flow = fl.simulate_flow_batch(tex, 2, 32, 1.5, gen, photons=(1e6, 1e6), bleach=(1.0, 1.0))
    from fluorecon.geometry.nets import warp_tensor

    # frame_t(x) = frame_t1(x + f(x)) up to standardisation and edge effects
    pred = warp_tensor(f1, flow)
    assert float(((pred - f0)[..., 4:-4, 4:-4] ** 2).mean()) < 0.05


def test_cnn_trains_and_predicts_quickly():
    torch.manual_seed(0)
    net = fl.train_flow_simulated(steps=3, patch=32, batch=2, width=4, cache=False)
    sim = motion.advected_movie((32, 32), n_frames=3, seed=1)
    f, info = fl.estimate_flow(sim["movie"], "cnn", net=net, finetune_steps=2)
    assert f.shape == (2, 2, 32, 32) and np.all(np.isfinite(f))
    assert len(info["photometric_residual"]) == 2 and len(info["pair_confidence"]) == 2
    assert fl.cnn_flow(sim["movie"], net, init="ilk").shape == (2, 2, 32, 32)
    with pytest.raises(FluoreconError, match="initialisation"):
        fl.cnn_flow(sim["movie"], net, init="tvl1")


def test_unrelated_frames_warn():
    rng = np.random.default_rng(0)
    movie = rng.random((2, 32, 32)).astype(np.float32)
    _, info = fl.estimate_flow(movie, "tvl1")
    assert info["warnings"] and "common content" in info["warnings"][0]
