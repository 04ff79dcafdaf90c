"""CLI level: `fluorecon <verb> ... -o out.ome.zarr [--scheduler ...]` goes through the scale bridge."""

from __future__ import annotations

import numpy as np
import zarr
from typer.testing import CliRunner

from fluorecon.io import write_image


def _app():
    from fluorecon.cli import app

    return app


def _has_command(name: str, flag: str) -> bool:
    r = CliRunner().invoke(_app(), [name, "--help"])
    return r.exit_code == 0 and flag in r.output


def _vol(seed=0):
    rng = np.random.default_rng(seed)
    return (rng.poisson(20, (4, 40, 40)) + 5).astype(np.float32)


def test_cli_denoise_to_ome_zarr_equals_replay(tmp_path):
    assert _has_command("denoise", "--scheduler")
    from fluorecon.tasks.denoise import denoise

    x = _vol()
    write_image(tmp_path / "in.ome.zarr", x, axes="ZYX", voxel_size=(0.3, 0.1, 0.1))
    out = tmp_path / "out.ome.zarr"
    r = CliRunner().invoke(_app(), ["denoise", str(tmp_path / "in.ome.zarr"), "-o", str(out), "--method", "wavelet",
                                    "--scheduler", "threads", "--json", "--quiet"])
    assert r.exit_code == 0, r.output
    assert "scale_run" not in r.output and str(out) in r.output  # the JSON summary names the output
    g = zarr.open_group(str(out), mode="r")
    assert dict(g.attrs)["fluorecon"]["scale_run"]["complete"] is True
    st = dict(g.attrs)["fluorecon"]["scale_run"]["resolved"]["channels"]["None"]
    ref, _ = denoise(x, "ZYX", method=st["method"], **st["kwargs"])
    got = np.asarray(g["0"][...])
    assert np.abs(got - ref)[:, 12:-12, 12:-12].max() / ref.max() < 1e-3
    # Same command again on a complete output: nothing to do; a different one: refused without --overwrite.
    r2 = CliRunner().invoke(_app(), ["denoise", str(tmp_path / "in.ome.zarr"), "-o", str(out), "--method", "tv",
                                     "--scheduler", "threads", "--quiet"])
    assert r2.exit_code != 0 and "already holds" in r2.output
    r3 = CliRunner().invoke(_app(), ["denoise", str(tmp_path / "in.ome.zarr"), "-o", str(out), "--method", "tv",
                                     "--scheduler", "threads", "--quiet", "--overwrite"])
    assert r3.exit_code == 0, r3.output


def test_cli_deconvolve_to_ome_zarr(tmp_path):
    assert _has_command("deconvolve", "--scheduler")
    from fluorecon.classical.deconvolve import richardson_lucy
    from fluorecon.physics.psf import gaussian_psf

    x = _vol(1)
    write_image(tmp_path / "in.ome.zarr", x, axes="ZYX", voxel_size=(0.3, 0.1, 0.1))
    write_image(tmp_path / "psf.tif", gaussian_psf((5, 7, 7), (1.0, 1.2, 1.2)), axes="ZYX")
    out = tmp_path / "d.ome.zarr"
    r = CliRunner().invoke(_app(), ["deconvolve", str(tmp_path / "in.ome.zarr"), "-o", str(out), "--psf",
                                    str(tmp_path / "psf.tif"), "--psf-voxel-size", "same", "--iterations", "3",
                                    "--scheduler", "threads", "--quiet"])
    assert r.exit_code == 0, r.output
    g = zarr.open_group(str(out), mode="r")
    st = dict(g.attrs)["fluorecon"]["scale_run"]
    assert st["complete"] is True and g["0"].shape == x.shape
    r0 = st["resolved"]["channels"]["None"]
    from fluorecon.physics.psf import load_psf

    ref = richardson_lucy(x, load_psf(tmp_path / "psf.tif"), 3, background=r0["background"], init=r0["init"])
    got = np.asarray(g["0"][...])
    assert np.abs(got - ref)[:, 8:-8, 8:-8].max() / ref.max() < 1e-3


def test_cli_dead_scheduler_address_is_a_clean_error(tmp_path):
    assert _has_command("denoise", "--scheduler")
    write_image(tmp_path / "in.ome.zarr", _vol(), axes="ZYX")
    r = CliRunner().invoke(_app(), ["denoise", str(tmp_path / "in.ome.zarr"), "-o", str(tmp_path / "o.ome.zarr"),
                                    "--method", "wavelet", "--scheduler", "tcp://127.0.0.1:9", "--quiet"])
    assert r.exit_code != 0
    assert "no dask scheduler answered" in r.output and "Traceback" not in r.output
