"""learn.temporal: spatiotemporal self-supervised restoration of TYX movies (issue 21)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fluorecon.errors import FluoreconError
from fluorecon.evaluate.temporal import j_invariant
from fluorecon.learn.temporal import (
    RecurrentBundle,
    RecurrentNet,
    apply_fusion,
    check_movie,
    chunk_weights,
    denoise_temporal,
    fit_fusion,
    min_frames,
    predict_recurrent,
    predict_temporal,
    restore_in_time_chunks,
    train_recurrent,
    train_temporal,
)
from fluorecon.physics.noise_model import NoiseModel, estimate_poisson_gaussian
from fluorecon.physics.timelapse import simulate_timelapse

# Small tensors: one torch thread (two threads on a loaded 2-core machine are much slower).
pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(window=8, patch_size=16, width=8, steps=60, device="cpu", batch_size=4)




@pytest.fixture(scope="module")
def movie():
    # a slowly drifting, noisy scene: the truth (noiseless recording) is the independent reference
    return simulate_timelapse((32, 32), n_frames=16, speed=0.1, deformation=0.3, photons=20.0, seed=0)


# MSE to the truth relative to the recording's after 60 steps (measured 0.65, 0.91 and 0.58; 100 steps: 0.41, 0.50)
@pytest.mark.parametrize(("scheme", "ratio"), [("n2v-t", 0.85), ("deepcad", 0.97), ("convlstm", 0.8)])
def test_restoration_is_closer_to_the_truth_than_the_recording(movie, scheme, ratio):
    out, info = denoise_temporal(movie["movie"], "TYX", scheme, **TINY)
    ref = movie["expected"]
    assert out.shape == ref.shape and out.dtype == np.float32
    assert info["steps"] == 60
    assert info["bundle"].model.config() == ({"kind": "recurrent", "width": 8} if scheme == "convlstm" else
                                             {**info["bundle"].model.config(), "dim": 3})
    assert np.mean((out - ref) ** 2) < ratio * np.mean((movie["movie"] - ref) ** 2)


def test_prediction_in_time_tiles_equals_one_pass(movie):
    b = train_temporal(movie["movie"], "TYX", "n2v-t", **{**TINY, "steps": 2})
    whole = predict_temporal(b, movie["movie"], window=16)
    tiled = predict_temporal(b, movie["movie"], window=8)  # tiles along T with overlap
    assert np.abs(whole - tiled).max() <= 1e-3 * np.abs(whole).max()


def test_bad_movies_are_refused_with_a_hint():
    with pytest.raises(FluoreconError, match="time axis T") as e:
        check_movie(np.zeros((16, 16, 16)), "ZYX")
    assert "--axes TYX" in e.value.hint
    with pytest.raises(FluoreconError, match="fewer than the 16") as e:
        check_movie(np.zeros((10, 16, 16)), "TYX", window=8, scheme="deepcad")
    assert "at least 16 frames" in e.value.hint
    with pytest.raises(FluoreconError, match="varying size"):
        check_movie([np.zeros((16, 16)), np.zeros((16, 17))], "TYX")
    with pytest.raises(FluoreconError, match="unknown temporal scheme"):
        train_temporal(np.zeros((16, 16, 16)), "TYX", "recurrent")
    assert min_frames("deepcad", 4) == 8 and min_frames("n2v-t", 4) == 4


# ------------------------------------------------------------------------------------- recurrent variant
def test_recurrent_net_treats_t_as_a_sequence_in_both_directions():
    torch.manual_seed(0)
    net = RecurrentNet(width=4).eval()
    x = torch.rand(2, 7, 8, 10)
    with torch.no_grad():
        y = net(x)
        x2 = x.clone()
        x2[0, 3] += 1.0  # change one frame of the first movie
        y2 = net(x2)
        alone = net(x[:, 3:4])
    assert y.shape == x.shape
    diff = (y2 - y).abs().amax(dim=(2, 3))
    # the change reaches earlier frames (backward state) and later ones (forward state), not the other movie
    assert diff[0, 0] > 0 and diff[0, 6] > 0 and diff[1].max() == 0
    # T is not a batch axis: frame 3 restored inside the sequence differs from frame 3 restored alone
    assert (y[:, 3:4] - alone).abs().max() > 1e-4


def test_recurrent_training_is_seeded(movie):
    kw = dict(window=8, patch_size=16, width=4, steps=3, device="cpu", batch_size=2)
    a, b = train_recurrent(movie["movie"], **kw, seed=5), train_recurrent(movie["movie"], **kw, seed=5)
    c = train_recurrent(movie["movie"], **kw, seed=6)
    sa, sb, sc = (m.model.state_dict() for m in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


@pytest.fixture(scope="module")
def recurrent(movie):
    return train_recurrent(movie["movie"], **{**TINY, "steps": 60})


def test_recurrent_bundle_round_trip_and_tamper(recurrent, movie, tmp_path):
    path = recurrent.save(tmp_path / "m")
    loaded = RecurrentBundle.load(path)
    np.testing.assert_array_equal(predict_recurrent(loaded, movie["movie"], device="cpu"),
                                  predict_recurrent(recurrent, movie["movie"], device="cpu"))
    w = path / "weights.safetensors"
    w.write_bytes(w.read_bytes()[:-4] + b"\0\0\0\1")
    with pytest.raises(FluoreconError, match="does not match the hash"):
        RecurrentBundle.load(path)


def test_chunk_weights_sum_to_one_and_skip_the_margins():
    w = chunk_weights(20, 6)
    assert w[:6].tolist() == [1.0] * 6 and w[-6:].tolist() == [0.0] * 6
    assert np.all(np.diff(w) <= 0) and np.allclose(w + w[::-1], 1.0)
    with pytest.raises(FluoreconError, match="no ramp"):
        chunk_weights(10, 5)


def test_chunks_in_time_equal_the_whole_movie_u_net(movie):
    # the depth-2 anisotropic U-Net reaches 10 frames in T: with margin 10 the chunks are exact
    long = simulate_timelapse((32, 32), n_frames=100, speed=0.1, deformation=0.3, photons=20.0, seed=1)["movie"]
    b = train_temporal(movie["movie"], "TYX", "n2v-t", **{**TINY, "steps": 2})
    whole = predict_temporal(b, long, window=100)
    chunked = restore_in_time_chunks(lambda f: predict_temporal(b, f, window=len(f)), long, chunk=48,
                                     margin=10, ramp=4)  # chunks 0-48, 24-72, 48-96, 72-100
    assert np.abs(chunked - whole).max() <= 1e-4 * np.abs(whole).max()


def test_chunks_in_time_match_the_whole_movie_convlstm(recurrent):
    # The bidirectional state reaches the whole movie, so chunks are not exact; forget gates make the
    # influence of far frames fade. Tolerance: the chunking error must be negligible next to the
    # restoration's own error to the truth: < 0.1 % of its RMS (measured 2e-5 with margins of 12
    # frames, 1e-2 with none — the margin is what makes it negligible).
    sim = simulate_timelapse((32, 32), n_frames=128, speed=0.1, deformation=0.3, photons=20.0, seed=2)
    whole = predict_recurrent(recurrent, sim["movie"], chunk=128, device="cpu")
    chunked = predict_recurrent(recurrent, sim["movie"], chunk=64, margin=12, ramp=8, device="cpu")
    rms_chunk = np.sqrt(np.mean((chunked - whole) ** 2))
    rms_err = np.sqrt(np.mean((whole - sim["expected"]) ** 2))
    assert 0 < rms_chunk < 1e-3 * rms_err


# --------------------------------------------------------------------------- posterior fusion
def test_fusion_measures_the_prediction_error_and_reaches_the_posterior_mse():
    # two independent Gaussian estimates of a two-level truth: v_n = gain · truth, v_f = 0.5 · truth
    rng = np.random.default_rng(0)
    truth = np.where(rng.random((8, 64, 64)) < 0.5, 100.0, 400.0)
    noise = NoiseModel(gain=1.0, offset=0.0, read_noise_adu=0.0)
    raw = truth + rng.normal(0, np.sqrt(truth))
    prior = truth + rng.normal(0, np.sqrt(0.5 * truth))
    fus = fit_fusion(raw, prior, noise, bins=2)
    # the per-bin error variance is found without the truth, within 10 % (bins cut at the prior's median)
    np.testing.assert_allclose(fus["prior_var"], [50.0, 200.0], rtol=0.1)
    out = apply_fusion(raw, prior, fus)
    for level in (100.0, 400.0):
        m = truth == level
        posterior = (0.5 * level * level) / (0.5 * level + level)     # v_f·v_n / (v_f + v_n)
        mse = float(np.mean((out[m] - truth[m]) ** 2))
        assert mse < 1.15 * posterior and mse < 0.75 * min(0.5 * level, level), (level, mse, posterior)


def test_fused_ring_median_beats_the_recording_and_the_median_on_a_simulated_movie(movie):
    # J-invariant 5×5 ring median (no network) fused with the raw pixel, scored against the simulated truth
    x, truth = movie["movie"], movie["expected"]
    prior = j_invariant(lambda m: m, x)
    fus = fit_fusion(x, prior, estimate_poisson_gaussian(x))
    out = apply_fusion(x, prior, fus)

    def mse(a):
        return float(np.mean((a - truth) ** 2))

    assert mse(out) < 0.9 * mse(x) and mse(out) < mse(prior), (mse(out), mse(x), mse(prior))


def test_fusion_refuses_mismatched_shapes():
    with pytest.raises(FluoreconError, match="shape"):
        fit_fusion(np.zeros((2, 8, 8)), np.zeros((2, 8, 9)), NoiseModel(gain=1.0, offset=0.0, read_noise_adu=1.0))
