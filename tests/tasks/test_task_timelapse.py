"""tasks.timelapse: the `denoise-movie` task (registry front ends are tested by test_registry.py)."""

from __future__ import annotations

import numpy as np
import pytest
from typer.testing import CliRunner

from fluorecon.cli import app
from fluorecon.errors import FluoreconError
from fluorecon.evaluate.temporal import flicker
from fluorecon.io import ImageData, read_image, write_image
from fluorecon.physics.timelapse import simulate_timelapse
from fluorecon.tasks.registry import get
from fluorecon.tasks.timelapse import denoise_movie, needed_frames

# Small tensors: one torch thread (two threads on a loaded 2-core machine are much slower).
pytestmark = pytest.mark.usefixtures("one_torch_thread")




@pytest.fixture(scope="module")
def sim():
    return simulate_timelapse((32, 32), n_frames=16, speed=0.1, deformation=0.3, photons=10.0, seed=3)


def test_task_is_registered_with_an_example():
    task = get("denoise-movie")
    assert task.accepts == ("TYX",) and task.saves_model
    ex = task.example()
    assert ex["inputs"]["movie"].axes == "TYX"


def test_classical_per_frame_beats_the_recording(sim):
    out, info = denoise_movie(sim["movie"], "TYX", "classical", classical_method="tv")
    ref = sim["expected"]
    assert np.mean((out - ref) ** 2) < np.mean((sim["movie"] - ref) ** 2)
    assert info["flicker_raw_lowpass"] == pytest.approx(flicker(out, raw=sim["movie"]))


def test_temporal_method_through_the_task(sim):
    res = get("denoise-movie")(ImageData(sim["movie"], "TYX", None, {}), method="deepcad", steps=3, width=4,
                               patch_size=16)
    assert res.image.shape == sim["movie"].shape
    assert res.params_used["steps"] == 3 and "bundle" in res.extras
    assert res.forward.expected(res.image) is res.image


def test_bad_input_says_what_is_needed(sim):
    task = get("denoise-movie")
    with pytest.raises(FluoreconError, match="time axis T") as e:
        task(ImageData(sim["movie"], "ZYX", None, {}), method="classical")
    assert "--axes TYX" in e.value.hint
    with pytest.raises(FluoreconError, match="12 frames is fewer than the 16"):
        denoise_movie(sim["movie"][:12], "TYX", "deepcad", window=8, steps=1)
    assert needed_frames("deepcad", 8) == 16 and needed_frames("n2v-frames", 8) == 1
    with pytest.raises(ValueError, match="method"):
        task.params(method="recurrent")


def test_cli_refuses_a_movie_without_t_and_runs_with_it(sim, tmp_path):
    src = tmp_path / "movie.npy"
    write_image(src, sim["movie"][:4])
    runner = CliRunner()
    bad = runner.invoke(app, ["denoise-movie", str(src), "-o", str(tmp_path / "bad.tif"), "--axes", "ZYX",
                              "--method", "classical"])
    assert bad.exit_code == 2 and "TYX" in bad.output
    ok = runner.invoke(app, ["denoise-movie", str(src), "-o", str(tmp_path / "out.tif"), "--axes", "TYX",
                             "--method", "classical", "--classical-method", "tv"])
    assert ok.exit_code == 0, ok.output
    assert read_image(tmp_path / "out.tif").data.shape == (4, 32, 32)


def test_real_lysosome_movie_heldout_frames(shared_data):
    root = shared_data("huanglab-lysosome-repeats")
    movie = read_image(root / "1.tif").data.astype(np.float32)[:16, :32, :32]
    out, info = denoise_movie(movie, "TYX", "classical", classical_method="tv")
    assert out.shape == movie.shape and np.isfinite(out).all()
    assert info["flicker_raw_lowpass"] < flicker(movie, raw=movie)
