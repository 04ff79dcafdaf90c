"""learn.temporal: spatiotemporal self-supervised restoration of TYX movies (issue 21)."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.errors import FluoreconError
from fluorecon.learn.temporal import (
    check_movie,
    denoise_temporal,
    min_frames,
    predict_temporal,
    train_temporal,
)
from fluorecon.physics.timelapse import simulate_timelapse

# Small tensors: one torch thread (two threads on a loaded 2-core machine are much slower).
pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = dict(window=8, patch_size=16, width=8, steps=60, device="cpu", batch_size=4)




@pytest.fixture(scope="module")
def movie():
    # a slowly drifting, noisy scene: the truth (noiseless recording) is the independent reference
    return simulate_timelapse((32, 32), n_frames=16, speed=0.1, deformation=0.3, photons=20.0, seed=0)


# MSE to the truth relative to the recording's after 60 steps (measured 0.65 and 0.91; 100 steps: 0.41, 0.50)
@pytest.mark.parametrize(("scheme", "ratio"), [("n2v-t", 0.85), ("deepcad", 0.97)])
def test_restoration_is_closer_to_the_truth_than_the_recording(movie, scheme, ratio):
    out, info = denoise_temporal(movie["movie"], "TYX", scheme, **TINY)
    ref = movie["expected"]
    assert out.shape == ref.shape and out.dtype == np.float32
    assert info["steps"] == 60 and info["bundle"].model.config()["dim"] == 3
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
