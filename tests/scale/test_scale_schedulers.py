"""Schedulers: processes and a LocalCluster run the same computation; a dead address fails fast."""

from __future__ import annotations

import functools
import time

import numpy as np
import pytest
import zarr
from scipy import ndimage

from fluorecon.errors import FluoreconError
from fluorecon.io import write_image
from fluorecon.scale import BlockOp, run_blockwise, run_out_of_core
from fluorecon.scale.blockwise import peek_state

OP = BlockOp("gauss", functools.partial(ndimage.gaussian_filter, sigma=1.0), halo=(4, 4))


def _x():
    return np.random.default_rng(0).random((48, 48)).astype(np.float32) + 1


def test_distributed_local_cluster_matches_threads(tmp_path):
    from fluorecon.physics.psf import gaussian_psf

    x = np.random.default_rng(0).random((6, 40, 40)).astype(np.float32) + 1
    write_image(tmp_path / "in.ome.zarr", x, axes="ZYX")
    params = {"psf": gaussian_psf((5, 5, 5), 1.0), "iterations": 3}
    a = run_out_of_core("deconvolve", tmp_path / "in.ome.zarr", tmp_path / "a.ome.zarr", params, chunks=(6, 20, 20),
                        quiet=True)
    b = run_out_of_core("deconvolve", tmp_path / "in.ome.zarr", tmp_path / "b.ome.zarr", params, chunks=(6, 20, 20),
                        scheduler="distributed", n_workers=1, threads_per_worker=1, memory_limit="1GB", quiet=True)
    assert a["complete"] and b["complete"] and b["scheduler"] == "distributed"
    ga, gb = zarr.open_group(str(tmp_path / "a.ome.zarr")), zarr.open_group(str(tmp_path / "b.ome.zarr"))
    np.testing.assert_allclose(np.asarray(ga["0"][...]), np.asarray(gb["0"][...]), rtol=1e-6, atol=1e-6)


def test_processes_scheduler(tmp_path):
    write_image(tmp_path / "in.ome.zarr", _x(), axes="YX")
    from fluorecon.scale.lazy import open_lazy

    _, img = open_lazy(tmp_path / "in.ome.zarr")
    info = run_blockwise(OP, img, tmp_path / "p.ome.zarr", chunks=(24, 24), levels=1, scheduler="processes", n_workers=2)
    out = np.asarray(zarr.open_group(str(tmp_path / "p.ome.zarr"))["0"][...])
    np.testing.assert_allclose(out[4:-4, 4:-4], ndimage.gaussian_filter(_x(), 1.0)[4:-4, 4:-4], atol=1e-5)
    assert info["n_chunks"] == 4


def test_dead_address_fails_fast_and_leaves_no_complete_output(tmp_path):
    out = tmp_path / "d.ome.zarr"
    t0 = time.perf_counter()
    with pytest.raises(FluoreconError, match="no dask scheduler answered"):
        run_blockwise(OP, _x(), out, axes="YX", chunks=(24, 24), levels=1, scheduler="tcp://127.0.0.1:9", timeout=2)
    assert time.perf_counter() - t0 < 30
    assert peek_state(out) is None and not out.exists()  # nothing written before the scheduler answered


def test_unknown_scheduler(tmp_path):
    with pytest.raises(FluoreconError, match="unknown scheduler"):
        run_blockwise(OP, _x(), tmp_path / "u.ome.zarr", axes="YX", chunks=(24, 24), levels=1, scheduler="gpu-farm")
    with pytest.raises(FluoreconError, match="memory limit"):
        run_blockwise(OP, _x(), tmp_path / "v.ome.zarr", axes="YX", levels=1, scheduler="distributed",
                      memory_limit="lots")
    with pytest.raises(FluoreconError, match="leaves no room"):
        run_blockwise(OP, _x(), tmp_path / "w.ome.zarr", axes="YX", levels=1, memory_limit="200MB")
    assert not (tmp_path / "w.ome.zarr").exists()



def test_local_cluster_workers_are_prepared_before_the_first_block():
    """The one-time imports happen at cluster start (counted as start-up), not in the first block of each worker."""
    from fluorecon.scale.schedulers import get_compute

    with get_compute("distributed", n_workers=1, threads_per_worker=1, memory_limit="1GB") as compute:
        ready = compute.client.run(lambda: __import__("sys").modules.get("fluorecon.tasks.deconvolve") is not None)
        threads = compute.client.run(lambda: __import__("torch").get_num_threads())
    assert list(ready.values()) == [True]
    assert all(t >= 1 for t in threads.values())


def test_local_cluster_torch_threads_follow_threads_per_worker():
    """An explicit threads_per_worker is the worker's core count: its FFTs must not spread over more cores."""
    from fluorecon.scale.schedulers import get_compute, torch_threads_per_worker

    with get_compute("distributed", n_workers=1, threads_per_worker=1) as compute:
        threads = compute.client.run(lambda: __import__("torch").get_num_threads())
    assert list(threads.values()) == [1]
    assert torch_threads_per_worker(1, None, cores=4) == 4 and torch_threads_per_worker(2, None, cores=4) == 2
    assert torch_threads_per_worker(1, 2, cores=4) == 1


def test_local_cluster_workers_are_warmed_on_a_small_block_before_the_blocks(tmp_path):
    """Every worker runs the block function once on a small block (start-up), then the real blocks."""
    import os

    log = tmp_path / "calls"
    log.mkdir()

    def record(block, folder):
        (folder / f"{os.getpid()}-{time.perf_counter_ns()}-{'x'.join(map(str, block.shape))}").touch()
        return ndimage.gaussian_filter(block, 1.0)

    op = BlockOp("gauss", functools.partial(record, folder=log), halo=(4, 4))
    x = np.random.default_rng(0).random((96, 96)).astype(np.float32)
    run_blockwise(op, x, tmp_path / "w.ome.zarr", axes="YX", chunks=(48, 48), levels=1, scheduler="distributed",
                  n_workers=2, threads_per_worker=1)
    calls: dict[str, list] = {}
    for f in log.iterdir():
        pid, t, shape = f.name.split("-")
        calls.setdefault(pid, []).append((int(t), tuple(int(v) for v in shape.split("x"))))
    assert len(calls) == 2  # both workers were warmed, whichever ran the blocks
    blocks = [s for c in calls.values() for _, s in c if s != (24, 24)]
    assert len(blocks) == 4 and all(s == (52, 52) for s in blocks)  # 48 + one 4-px halo side (edge blocks)
    for c in calls.values():
        assert sorted(c)[0][1] == (24, 24)  # the warm-up block (2·halo + 16) came first in each worker
    out = np.asarray(zarr.open_group(str(tmp_path / "w.ome.zarr"))["0"][...])
    np.testing.assert_allclose(out[4:-4, 4:-4], ndimage.gaussian_filter(x, 1.0)[4:-4, 4:-4], atol=1e-5)
