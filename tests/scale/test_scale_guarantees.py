"""Issue 11 scale guarantees: content-checked resume, store locks, interrupted stores are not read as complete."""

from __future__ import annotations

import functools
import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from scipy import ndimage
from typer.testing import CliRunner

from fluorecon.cli import app
from fluorecon.errors import FluoreconError, FluoreconWarning
from fluorecon.io import allow_incomplete, read_image
from fluorecon.scale import BlockOp, run_blockwise
from fluorecon.scale.blockwise import peek_state
from fluorecon.scale.ome_zarr_out import store_lock

OP = BlockOp("gauss", functools.partial(ndimage.gaussian_filter, sigma=1.0), halo=(2, 2))
KW = {"chunks": (16, 16), "levels": 1}


def _img(path, seed):
    tifffile.imwrite(path, np.random.default_rng(seed).random((32, 32)).astype(np.float32))


def _interrupted(tmp_path):
    src = tmp_path / "in.tif"
    _img(src, 0)
    out = tmp_path / "out.ome.zarr"
    with pytest.raises(FluoreconError, match="stopped after"):
        run_blockwise(OP, src, out, _stop_after=1, **KW)
    return src, out


def test_resume_refuses_a_changed_input_at_the_same_path(tmp_path):  # item 4
    src, out = _interrupted(tmp_path)
    stat = src.stat()
    _img(src, 1)  # same path, same size, other content; mtime restored: only a content hash tells
    os.utime(src, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(FluoreconError, match="has changed"):
        run_blockwise(OP, src, out, **KW)
    assert peek_state(out)["complete"] is False


def test_resume_with_the_same_input_still_works(tmp_path):  # item 4 (no false refusal)
    src, out = _interrupted(tmp_path)
    info = run_blockwise(OP, src, out, **KW)
    assert info["resumed"] and info["chunks_skipped"] == 1


def test_live_lock_refused_stale_lock_taken_over(tmp_path):  # item 5
    out = tmp_path / "o.ome.zarr"
    lock = tmp_path / ".o.ome.zarr.fluorecon-lock"
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        lock.write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname()}))
        with pytest.raises(FluoreconError, match=f"another run \\(pid {holder.pid}"):
            run_blockwise(OP, np.zeros((32, 32), np.float32), out, axes="YX", **KW)
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
    with store_lock(out):  # the holder is dead now: its lock is stale
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert not lock.exists()
    info = run_blockwise(OP, np.zeros((32, 32), np.float32), out, axes="YX", **KW)
    assert info["complete"] and not lock.exists()


def test_incomplete_store_is_refused_unless_allowed(tmp_path):  # item 6
    _, out = _interrupted(tmp_path)
    with pytest.raises(FluoreconError, match="interrupted.*--allow-incomplete"):
        read_image(out)
    with allow_incomplete(), pytest.warns(FluoreconWarning, match="INCOMPLETE"):
        assert read_image(out).data.shape == (32, 32)
    r = CliRunner().invoke(app, ["info", str(out)])
    assert r.exit_code == 2 and "interrupted" in r.stderr
    r = CliRunner().invoke(app, ["info", str(out), "--allow-incomplete"])
    assert r.exit_code == 0 and "INCOMPLETE" in r.stderr
