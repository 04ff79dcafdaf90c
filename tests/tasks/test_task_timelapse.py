"""tasks.timelapse: the `denoise-movie` task (registry front ends are tested by test_registry.py)."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import tifffile
import zarr
from typer.testing import CliRunner

from fluorecon.cli import app
from fluorecon.errors import FluoreconError
from fluorecon.evaluate.temporal import flicker
from fluorecon.io import ImageData, read_image, write_image
from fluorecon.learn.bundle import Bundle
from fluorecon.learn.temporal import RecurrentBundle, predict_recurrent, predict_temporal
from fluorecon.physics.timelapse import simulate_timelapse
from fluorecon.scale.blockwise import time_chunk_runs
from fluorecon.scale.taskop import run_task_out_of_core
from fluorecon.tasks.registry import get
from fluorecon.tasks.timelapse import denoise_movie, denoise_movie_chunked, needed_frames, temporal_inference

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


def test_recurrent_method_through_the_cli_saves_a_model(sim, tmp_path):
    src = tmp_path / "movie.npy"
    write_image(src, sim["movie"])
    r = CliRunner().invoke(app, ["denoise-movie", str(src), "-o", str(tmp_path / "out.tif"), "--axes", "TYX",
                                 "--method", "convlstm", "--steps", "2", "--width", "4", "--patch-size", "16",
                                 "--save-model", str(tmp_path / "m")])
    assert r.exit_code == 0, r.output
    out = read_image(tmp_path / "out.tif").data
    b = RecurrentBundle.load(tmp_path / "m")
    assert b.provenance["temporal"]["scheme"] == "convlstm" and b.provenance["steps"] == 2
    np.testing.assert_allclose(out, predict_recurrent(b, sim["movie"], device="cpu"), rtol=1e-5, atol=1e-3)


def _zarr_movie(path, frames):
    src = zarr.open_array(str(path), mode="w", shape=frames.shape, chunks=(8, *frames.shape[1:]), dtype="f4")
    src[:] = frames
    return src


def test_chunked_zarr_run_equals_the_in_memory_run(sim, tmp_path):
    movie = simulate_timelapse((32, 32), n_frames=80, speed=0.1, photons=10.0, seed=4)["movie"]
    src = _zarr_movie(tmp_path / "in.zarr", movie)
    dst = zarr.open_array(str(tmp_path / "out.zarr"), mode="w", shape=movie.shape, chunks=(8, 32, 32), dtype="f4")
    # classical per frame: one calibration on the middle frame, as in memory
    denoise_movie_chunked(src, dst, "classical", classical_method="tv", train_frames=16, chunk=24)
    ref, _ = denoise_movie(movie, "TYX", "classical", classical_method="tv")
    np.testing.assert_allclose(dst[:], ref, atol=1e-4 * np.abs(ref).max())


def test_chunked_zarr_run_of_a_temporal_network_equals_one_pass(tmp_path):
    movie = simulate_timelapse((32, 32), n_frames=90, speed=0.1, photons=10.0, seed=6)["movie"]
    src = _zarr_movie(tmp_path / "in.zarr", movie)
    dst = zarr.open_array(str(tmp_path / "out.zarr"), mode="w", shape=movie.shape, chunks=(8, 32, 32), dtype="f4")
    _, info = denoise_movie_chunked(src, dst, "n2v-t", train_frames=16, chunk=56, steps=2, width=4, patch_size=16,
                                    device="cpu")
    assert info["margin"] == 10 and info["train_frames"] == 16
    whole = predict_temporal(info["bundle"], movie, window=90, device="cpu")
    np.testing.assert_allclose(dst[:], whole, atol=1e-4 * np.abs(whole).max())


def test_chunked_peak_memory_does_not_grow_with_the_movie(tmp_path):
    peaks = {}
    for t in (64, 512):
        movie = simulate_timelapse((64, 64), n_frames=t, speed=0.02, photons=10.0, seed=5)["movie"]
        src = _zarr_movie(tmp_path / f"in{t}.zarr", movie)
        dst = zarr.open_array(str(tmp_path / f"out{t}.zarr"), mode="w", shape=movie.shape, chunks=(8, 64, 64),
                              dtype="f4")
        del movie
        tracemalloc.start()
        denoise_movie_chunked(src, dst, "classical", classical_method="tv", train_frames=16, chunk=32)
        peaks[t] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert np.isfinite(dst[-8:]).all() and float(np.abs(dst[-1]).max()) > 0
    movie_bytes = 512 * 64 * 64 * 4
    # 8× the frames, about the same peak (one 32-frame chunk and its working copies), well under the 8 MiB movie
    assert peaks[512] < 1.25 * peaks[64] and peaks[512] < 0.5 * movie_bytes, peaks


# ------------------------------------------------------------------ out of core from the CLI (chunks in T)
def _resolved(path):
    return dict(zarr.open_group(str(path), mode="r").attrs)["fluorecon"]["scale_run"]["resolved"]


@pytest.fixture(scope="module")
def long_movie(tmp_path_factory):
    sim = simulate_timelapse((32, 32), n_frames=100, speed=0.1, photons=10.0, seed=8)
    path = tmp_path_factory.mktemp("movie") / "movie.tif"
    tifffile.imwrite(path, sim["movie"], metadata={"axes": "TYX"})
    return path, sim


@pytest.mark.parametrize("inference", ["plain", "fused"])
def test_cli_runs_a_long_movie_in_time_chunks_equal_to_the_whole(long_movie, tmp_path, inference):
    path, sim = long_movie
    out = tmp_path / "clean.ome.zarr"
    r = CliRunner().invoke(app, ["denoise-movie", str(path), "--axes", "TYX", "-o", str(out), "--method", "n2v-t",
                                 "--steps", "2", "--width", "4", "--patch-size", "16", "--train-frames", "16",
                                 "--chunk-frames", "48", "--inference", inference, "--device", "cpu"])
    assert r.exit_code == 0, r.output
    res = _resolved(out)
    assert res["margin"] == 10 and res["train_frames"] == 16 and res["inference"] == inference
    y = read_image(out).data
    assert y.shape == (100, 32, 32)
    # the whole movie at once, with the network the run trained (saved beside the output)
    b = Bundle.load(res["model"])
    whole, _ = temporal_inference(lambda f: predict_temporal(b, f, window=100, device="cpu"), sim["movie"],
                                  inference, fusion=res.get("fusion"))
    np.testing.assert_allclose(y, whole, atol=1e-4 * np.abs(whole).max())


def test_cli_time_chunks_of_the_recurrent_net_match_the_whole(long_movie, tmp_path):
    path, sim = long_movie
    out = tmp_path / "clean.ome.zarr"
    r = CliRunner().invoke(app, ["denoise-movie", str(path), "--axes", "TYX", "-o", str(out), "--method", "convlstm",
                                 "--steps", "20", "--width", "4", "--patch-size", "16", "--train-frames", "32",
                                 "--chunk-frames", "64", "--device", "cpu"])
    assert r.exit_code == 0, r.output
    res = _resolved(out)
    whole = predict_recurrent(RecurrentBundle.load(res["model"]), sim["movie"], chunk=100, device="cpu")
    y = read_image(out).data
    err = np.sqrt(np.mean((whole - sim["expected"]) ** 2))
    # the recurrent state is cut at run edges: negligible next to the restoration's own error
    assert np.sqrt(np.mean((y - whole) ** 2)) < 1e-3 * err


def test_out_of_core_peak_memory_is_flat_in_t(tmp_path):
    task = get("denoise-movie")
    params = task.params(method="classical", classical_method="tv", train_frames=16, chunk_frames=32)
    peaks = {}
    for t in (40, 64, 512):   # the first run pays one-time allocations
        movie = simulate_timelapse((64, 64), n_frames=t, speed=0.02, photons=10.0, seed=5)["movie"]
        tifffile.imwrite(tmp_path / f"m{t}.tif", movie, metadata={"axes": "TYX"})
        del movie
        tracemalloc.start()
        info = run_task_out_of_core(task, tmp_path / f"m{t}.tif", tmp_path / f"o{t}.ome.zarr", params, axes="TYX",
                                    quiet=True, levels=1)
        peaks[t] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        assert info["complete"] and info["runs"] == (1 if t <= 32 else len(time_chunk_runs(t, 32, 8)))
    movie_bytes = 512 * 64 * 64 * 4
    assert peaks[512] < 1.25 * peaks[64] and peaks[512] < 0.5 * movie_bytes, peaks
    # per frame (margin 0): the runs equal the in-memory per-frame result, calibrated on the same frames
    ref, _ = denoise_movie_chunked(read_image(tmp_path / "m512.tif").data, None, "classical", classical_method="tv",
                                   train_frames=16, chunk=32)
    np.testing.assert_allclose(read_image(tmp_path / "o512.ome.zarr").data, ref, atol=1e-4 * np.abs(ref).max())


def test_cli_out_of_core_refuses_a_movie_without_t(long_movie, tmp_path):
    path, _ = long_movie
    r = CliRunner().invoke(app, ["denoise-movie", str(path), "--axes", "ZYX", "-o", str(tmp_path / "o.ome.zarr"),
                                 "--method", "classical"])
    assert r.exit_code == 2 and "TYX" in r.output, r.output
    short = tmp_path / "short.tif"
    tifffile.imwrite(short, read_image(path).data[:6], metadata={"axes": "TYX"})
    r = CliRunner().invoke(app, ["denoise-movie", str(short), "--axes", "TYX", "-o", str(tmp_path / "s.ome.zarr"),
                                 "--method", "n2v-t", "--steps", "1"])
    assert r.exit_code == 2 and "8 that n2v-t" in r.output, r.output
