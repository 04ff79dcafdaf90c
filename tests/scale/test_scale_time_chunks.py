"""scale.blockwise, chunks in time: a temporal operation run in overlapping runs of frames == the whole movie."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import tifffile
import zarr
from scipy import ndimage

from fluorecon.errors import FluoreconError
from fluorecon.scale.blockwise import TimeChunkOp, run_time_chunks, time_chunk_runs


def _smooth_t(frames: np.ndarray, t0: int) -> np.ndarray:
    # a 5-frame moving average in time: temporal radius 2, exact reference from scipy
    return ndimage.uniform_filter1d(frames, 5, axis=0, mode="nearest")


def _movie(t: int, n: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((t, n, n)).astype(np.float32)


def _level0(path) -> np.ndarray:
    return zarr.open_group(str(path), mode="r")["0"][:]


def test_runs_tile_the_movie_and_finalise_one_output_chunk_each():
    runs = time_chunk_runs(100, 30, 8)
    assert runs[0] == (0, 30) and runs[-1][1] == 100
    assert all(b - a == 22 for (a, _), (b, _) in zip(runs, runs[1:], strict=False))  # step = chunk − overlap
    with pytest.raises(FluoreconError, match="too short"):
        time_chunk_runs(100, 10, 8)


def test_time_chunks_equal_the_whole_movie(tmp_path):
    m = _movie(100)
    info = run_time_chunks(TimeChunkOp("smooth-t", _smooth_t, margin=2, chunk=24, ramp=4), m, tmp_path / "o.ome.zarr",
                           axes="TYX", levels=1)
    assert info["complete"] and info["runs"] > 4
    ref = ndimage.uniform_filter1d(m, 5, axis=0, mode="nearest")
    np.testing.assert_allclose(_level0(tmp_path / "o.ome.zarr"), ref, atol=1e-6)


def test_too_small_margin_shows_at_the_cuts(tmp_path):
    # the check has teeth: with no margin the runs' edges (mode "nearest" at the cut) differ from the whole
    m = _movie(100)
    run_time_chunks(TimeChunkOp("smooth-t", _smooth_t, margin=0, chunk=24, ramp=2), m, tmp_path / "o.ome.zarr",
                    axes="TYX", levels=1)
    ref = ndimage.uniform_filter1d(m, 5, axis=0, mode="nearest")
    assert np.abs(_level0(tmp_path / "o.ome.zarr") - ref).max() > 1e-3


def test_operation_gets_the_first_frame_index():
    seen = []

    def record(frames, t0):
        seen.append((t0, len(frames)))
        return frames

    import tempfile
    from pathlib import Path

    run_time_chunks(TimeChunkOp("id", record, margin=1, chunk=12, ramp=2), _movie(40), Path(tempfile.mkdtemp()) / "o.zarr",
                    axes="TYX", levels=1)
    assert [t for t, _ in seen] == [a for a, _ in time_chunk_runs(40, 12, 4)]


def test_interrupted_run_resumes_to_the_same_result(tmp_path):
    m = _movie(90, seed=1)
    op = TimeChunkOp("smooth-t", _smooth_t, margin=2, chunk=20, ramp=4)
    out = tmp_path / "o.ome.zarr"
    with pytest.raises(FluoreconError, match="test hook"):
        run_time_chunks(op, m, out, axes="TYX", levels=1, _stop_after=3)
    info = run_time_chunks(op, m, out, axes="TYX", levels=1)
    assert info["resumed"] and info["runs_done"] < info["runs"]   # finished runs are not redone
    np.testing.assert_allclose(_level0(out), ndimage.uniform_filter1d(m, 5, axis=0, mode="nearest"), atol=1e-6)
    again = run_time_chunks(op, m, out, axes="TYX", levels=1)
    assert again["note"] == "already complete"


def test_bad_input_is_refused(tmp_path):
    op = TimeChunkOp("smooth-t", _smooth_t, margin=2, chunk=30)
    with pytest.raises(FluoreconError, match="TYX"):
        run_time_chunks(op, _movie(30), tmp_path / "o.ome.zarr", axes="ZYX")
    with pytest.raises(FluoreconError, match=".zarr"):
        run_time_chunks(op, _movie(30), tmp_path / "o.tif", axes="TYX")
    run_time_chunks(op, _movie(30), tmp_path / "o.ome.zarr", axes="TYX", levels=1)
    with pytest.raises(FluoreconError, match="already holds"):
        run_time_chunks(TimeChunkOp("other", _smooth_t, margin=1, chunk=30), _movie(30), tmp_path / "o.ome.zarr",
                        axes="TYX", levels=1)


def test_peak_memory_does_not_grow_with_the_number_of_frames(tmp_path):
    # TIFF input (memory-mapped, read run by run) → OME-Zarr output, as from the command line
    op = TimeChunkOp("smooth-t", _smooth_t, margin=2, chunk=32, ramp=4)
    peaks = {}
    for t in (40, 64, 512):
        tifffile.imwrite(tmp_path / f"in{t}.tif", np.concatenate([_movie(8, 64, seed=a) for a in range(t // 8)]),
                         metadata={"axes": "TYX"})
        tracemalloc.start()
        run_time_chunks(op, tmp_path / f"in{t}.tif", tmp_path / f"o{t}.ome.zarr", axes="TYX", levels=1)
        peaks[t] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    movie_bytes = 512 * 64 * 64 * 4
    # the first run pays one-time allocations (imports); then 8× the frames, about the same peak
    assert peaks[512] < 1.25 * peaks[64] and peaks[512] < 0.5 * movie_bytes, peaks
