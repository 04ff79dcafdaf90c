"""Interrupted runs resume and equal an uninterrupted run; completion is flagged only at the end."""

from __future__ import annotations

import functools
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import zarr
from scipy import ndimage

from fluorecon.errors import FluoreconError
from fluorecon.scale import BlockOp, run_blockwise
from fluorecon.scale.blockwise import peek_state
from fluorecon.scale.ome_zarr_out import PROGRESS_DIR


def _vol():
    rng = np.random.default_rng(0)
    return ndimage.gaussian_filter(rng.random((12, 40, 40)).astype(np.float32), 1.0)


OP = BlockOp("gauss", functools.partial(ndimage.gaussian_filter, sigma=1.0), halo=(4, 4, 4))


def _levels(p):
    g = zarr.open_group(str(p), mode="r")
    return [np.asarray(g[str(i)][...]) for i in range(len(list(g.array_keys())))]


def test_exception_after_n_chunks_then_resume(tmp_path):
    x = _vol()
    full = tmp_path / "full.ome.zarr"
    run_blockwise(OP, x, full, axes="ZYX", chunks=(6, 16, 16), levels=2)
    part = tmp_path / "part.ome.zarr"
    with pytest.raises(FluoreconError, match="stopped after 5"):
        run_blockwise(OP, x, part, axes="ZYX", chunks=(6, 16, 16), levels=2, _stop_after=5)
    st = peek_state(part)
    assert st is not None and st["complete"] is False
    assert len(list((part / PROGRESS_DIR / "0").iterdir())) == 5
    info = run_blockwise(OP, x, part, axes="ZYX", chunks=(6, 16, 16), levels=2)
    assert info["resumed"] and info["chunks_skipped"] == 5 and info["chunks_written"] == info["n_chunks"] - 5
    assert peek_state(part)["complete"] is True and not (part / PROGRESS_DIR).exists()
    for a, b in zip(_levels(full), _levels(part), strict=True):
        np.testing.assert_array_equal(a, b)
    # A third run finds the output complete and does nothing.
    again = run_blockwise(OP, x, part, axes="ZYX", chunks=(6, 16, 16), levels=2)
    assert again["chunks_written"] == 0 and again["note"] == "already complete"


_KILLED = textwrap.dedent("""
    import functools, os, sys
    import numpy as np
    from scipy import ndimage
    from fluorecon.scale import BlockOp, run_blockwise
    x = ndimage.gaussian_filter(np.random.default_rng(0).random((12, 40, 40)).astype(np.float32), 1.0)
    calls = {"n": 0}
    def fn(b):
        calls["n"] += 1
        if calls["n"] > 4:
            os._exit(9)   # hard kill: no cleanup, no exception handling
        return ndimage.gaussian_filter(b, 1.0)
    run_blockwise(BlockOp("gauss", fn, halo=(4, 4, 4)), x, sys.argv[1], axes="ZYX", chunks=(6, 16, 16), levels=2,
                  key=("gauss", 1.0), n_workers=1)
""")


def test_killed_process_then_resume(tmp_path):
    out = tmp_path / "k.ome.zarr"
    r = subprocess.run([sys.executable, "-c", _KILLED, str(out)], capture_output=True, timeout=120)
    assert r.returncode == 9, r.stderr.decode()[-2000:]
    st = peek_state(out)
    assert st is not None and st["complete"] is False
    done = len(list((out / PROGRESS_DIR / "0").iterdir()))
    assert 1 <= done <= 4
    x = _vol()
    op = BlockOp("gauss", functools.partial(ndimage.gaussian_filter, sigma=1.0), halo=(4, 4, 4))
    info = run_blockwise(op, x, out, axes="ZYX", chunks=(6, 16, 16), levels=2, key=("gauss", 1.0))
    assert info["resumed"] and info["chunks_skipped"] == done
    ref = tmp_path / "ref.ome.zarr"
    run_blockwise(op, x, ref, axes="ZYX", chunks=(6, 16, 16), levels=2, key=("gauss", 1.0))
    for a, b in zip(_levels(ref), _levels(out), strict=True):
        np.testing.assert_array_equal(a, b)


def test_existing_different_output_refused_unless_overwrite(tmp_path):
    x = _vol()
    out = tmp_path / "o.ome.zarr"
    run_blockwise(OP, x, out, axes="ZYX", chunks=(6, 16, 16), levels=1)
    other = BlockOp("gauss2", functools.partial(ndimage.gaussian_filter, sigma=2.0), halo=(8, 8, 8))
    with pytest.raises(FluoreconError, match="already holds a different result"):
        run_blockwise(other, x, out, axes="ZYX", chunks=(6, 16, 16), levels=1)
    assert peek_state(out)["operation"] == "gauss"  # untouched
    info = run_blockwise(other, x, out, axes="ZYX", chunks=(6, 16, 16), levels=1, overwrite=True)
    assert info["chunks_written"] == info["n_chunks"] and peek_state(out)["operation"] == "gauss2"
    # A folder fluorecon did not write is refused too.
    foreign = tmp_path / "foreign.ome.zarr"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    with pytest.raises(FluoreconError, match="did not write"):
        run_blockwise(OP, x, foreign, axes="ZYX", chunks=(6, 16, 16), levels=1)
    assert (foreign / "notes.txt").read_text() == "mine"
