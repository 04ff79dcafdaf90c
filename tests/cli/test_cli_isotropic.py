"""`fluorecon isotropic` on the command line: outputs, voxel sizes, bad input."""

from __future__ import annotations

import numpy as np
import tifffile
from typer.testing import CliRunner

from fluorecon.cli import app

runner = CliRunner()


def _stack(tmp_path, shape=(6, 24, 24)):
    p = tmp_path / "stack.tif"
    tifffile.imwrite(p, np.random.default_rng(0).random(shape).astype(np.float32))
    return p


def test_linear_baseline_writes_isotropic_stack_with_voxel_size(tmp_path):
    from fluorecon.io import read_image

    src = _stack(tmp_path)
    before = src.read_bytes()
    out = tmp_path / "iso.tif"
    r = runner.invoke(app, ["isotropic", str(src), "--voxel-size", "0.4,0.1,0.1", "--method", "linear", "-o", str(out)])
    assert r.exit_code == 0, r.output
    img = read_image(out)
    assert img.data.shape == (21, 24, 24)
    np.testing.assert_allclose(img.voxel_size, (0.1, 0.1, 0.1), rtol=1e-3)
    assert src.read_bytes() == before  # the input is never modified


def test_bad_inputs_exit_nonzero_without_output(tmp_path):
    src = _stack(tmp_path)
    flat = tmp_path / "flat.tif"
    tifffile.imwrite(flat, np.zeros((16, 16), np.float32))
    cases = [
        (["isotropic", str(src), "--z-factor", "0.5", "-o", str(tmp_path / "a.tif")], "≥ 1"),
        (["isotropic", str(src), "--z-factor", "4", "--voxel-size", "0.2,0.1,0.1", "-o", str(tmp_path / "b.tif")], "does not match"),
        (["isotropic", str(flat), "--z-factor", "2", "-o", str(tmp_path / "c.tif")], "3D"),
        (["isotropic", str(tmp_path / "missing.tif"), "--z-factor", "2", "-o", str(tmp_path / "d.tif")], "not found"),
    ]
    for args, msg in cases:
        r = runner.invoke(app, args)
        assert r.exit_code != 0, args
        assert msg in r.output, (msg, r.output)
        assert "Traceback" not in r.output
        assert not (tmp_path / args[-1]).exists()
