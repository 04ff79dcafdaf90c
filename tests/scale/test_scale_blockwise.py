"""Blockwise == in-memory, away from the array border, on volumes whose blocks cut through structures."""

from __future__ import annotations

import functools
import importlib

import numpy as np
import pytest
import zarr
from scipy import ndimage

from fluorecon.errors import FluoreconError
from fluorecon.io import write_image
from fluorecon.scale import BlockOp, map_blocks_halo, run_blockwise, run_out_of_core


def _structures(shape, seed=0, n=40):
    """Bright blobs and lines at random positions: many of them straddle block boundaries."""
    rng = np.random.default_rng(seed)
    v = np.zeros(shape, np.float32)
    for _ in range(n):
        c = tuple(int(rng.integers(0, s)) for s in shape)
        v[c] = 50.0
    line = [slice(None)] + [s // 2 for s in shape[1:]]
    v[tuple(line)] = 20.0
    v = ndimage.gaussian_filter(v, 1.0) + 1.0
    return (v + rng.normal(0, 0.05, shape)).astype(np.float32).clip(0.01)


def _read(path, level="0"):
    return np.asarray(zarr.open_group(str(path), mode="r")[level][...])


def test_map_blocks_halo_equals_scipy_inside():
    import dask.array as da

    x = _structures((24, 40, 40))
    y = map_blocks_halo(lambda b: ndimage.gaussian_filter(b, 1.5), da.from_array(x, chunks=(12, 16, 16)), 8, axes="ZYX")
    ref = ndimage.gaussian_filter(x, 1.5)
    np.testing.assert_allclose(y.compute()[8:-8, 8:-8, 8:-8], ref[8:-8, 8:-8, 8:-8], atol=1e-5)
    # Too small a halo makes seams: the comparison must be able to fail.
    y0 = map_blocks_halo(lambda b: ndimage.gaussian_filter(b, 1.5), da.from_array(x, chunks=(12, 16, 16)), 0, axes="ZYX")
    assert np.abs(y0.compute() - ref)[8:-8, 8:-8, 8:-8].max() > 1e-2


def test_run_blockwise_generic_equals_in_memory(tmp_path):
    x = _structures((20, 50, 44), seed=1)
    op = BlockOp("gauss", functools.partial(ndimage.gaussian_filter, sigma=1.2), halo=(6, 6, 6))
    info = run_blockwise(op, x, tmp_path / "g.ome.zarr", axes="ZYX", chunks=(8, 16, 16), levels=1)
    assert info["n_chunks"] == 3 * 4 * 3 and info["chunks_written"] == info["n_chunks"]
    out = _read(tmp_path / "g.ome.zarr")
    ref = ndimage.gaussian_filter(x, 1.2)
    m = 6
    np.testing.assert_allclose(out[m:-m, m:-m, m:-m], ref[m:-m, m:-m, m:-m], atol=1e-4)


def test_deconvolve_out_of_core_equals_in_memory(tmp_path):
    from fluorecon.classical.deconvolve import richardson_lucy
    from fluorecon.physics.psf import gaussian_psf

    x = _structures((20, 48, 48), seed=2)
    psf = gaussian_psf((7, 7, 7), (1.5, 1.0, 1.0))
    write_image(tmp_path / "in.ome.zarr", x, axes="ZYX", voxel_size=(0.3, 0.1, 0.1))
    info = run_out_of_core("deconvolve", tmp_path / "in.ome.zarr", tmp_path / "out.ome.zarr",
                           {"psf": psf, "iterations": 8, "background": 0.5}, chunks=(10, 16, 16), quiet=True)
    r = info["resolved"]["channels"]["None"]
    assert r["iterations"] == 8 and r["background"] == 0.5
    # The init level is the exact global mean (one decision for the whole volume).
    assert r["init"] == pytest.approx(float(x.astype(np.float64).mean()) - 0.5, rel=1e-5)
    ref = richardson_lucy(x, psf, 8, background=0.5, init=r["init"])
    out = _read(tmp_path / "out.ome.zarr")
    b = 4
    err = np.abs(out - ref)[b:-b, b:-b, b:-b].max() / ref.max()
    assert err < 1e-3, err
    assert info["voxel_size"] == [0.3, 0.1, 0.1]


def test_deconvolve_stop_rule_decided_once(tmp_path):
    from fluorecon.physics.psf import gaussian_psf

    x = _structures((16, 40, 40), seed=3)
    write_image(tmp_path / "in.ome.zarr", x, axes="ZYX")
    info = run_out_of_core("deconvolve", tmp_path / "in.ome.zarr", tmp_path / "o.ome.zarr",
                           {"psf": gaussian_psf((5, 5, 5), 1.0), "iterations": "auto", "max_iterations": 15},
                           chunks=(8, 20, 20), quiet=True)
    r = info["resolved"]["channels"]["None"]
    assert 1 <= r["iterations"] <= 15 and "stopping rule" in r["decided_by"]


def test_time_channels_processed_per_index(tmp_path):
    x = np.stack([np.stack([_structures((6, 24, 24), seed=10 * t + c) * (c + 1) for c in range(2)]) for t in range(2)])
    op = BlockOp("gauss", functools.partial(ndimage.gaussian_filter, sigma=1.0), halo=(4, 4, 4))
    info = run_blockwise(op, x, tmp_path / "tc.ome.zarr", axes="TCZYX", chunks=(2, 2, 6, 12, 12), levels=1)
    assert info["chunks"] == [1, 1, 6, 12, 12] and info["n_chunks"] == 2 * 2 * 4
    out = _read(tmp_path / "tc.ome.zarr")
    for t in range(2):
        for c in range(2):
            ref = ndimage.gaussian_filter(x[t, c], 1.0)
            np.testing.assert_allclose(out[t, c, :, 4:-4, 4:-4], ref[:, 4:-4, 4:-4], atol=1e-4)


def test_isotropic_linear_out_of_core(tmp_path):
    from fluorecon.tasks.isotropic import interpolate_z

    x = _structures((9, 20, 20), seed=4)
    write_image(tmp_path / "a.ome.zarr", x, axes="ZYX", voxel_size=(0.4, 0.1, 0.1))
    info = run_out_of_core("isotropic", tmp_path / "a.ome.zarr", tmp_path / "i.ome.zarr",
                           {"method": "linear"}, chunks=(8, 20, 20), quiet=True)
    out = _read(tmp_path / "i.ome.zarr")
    ref = interpolate_z(x, 4)
    assert out.shape == ref.shape == (33, 20, 20)
    np.testing.assert_allclose(out, ref, atol=1e-5)
    assert info["voxel_size"] == pytest.approx([0.1, 0.1, 0.1])


def _tiny_bundle(path, dim=2):
    import torch

    from fluorecon.learn.bundle import Bundle
    from fluorecon.learn.nets import UNet
    from fluorecon.learn.normalize import PercentileNormalizer

    torch.manual_seed(0)
    net = UNet(dim=dim, depth=1, width=4)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.1)  # a non-trivial function of the input
    norm = PercentileNormalizer(lo=[1.0], hi=[20.0])
    Bundle(net, norm).save(path)
    return path


def test_predict_out_of_core_equals_in_memory_and_loads_once(tmp_path):
    from fluorecon.learn.bundle import Bundle
    from fluorecon.learn.predict import predict
    from fluorecon.scale.operations import bundle_loads

    bdir = _tiny_bundle(tmp_path / "b")
    x = _structures((3, 64, 64), seed=5)
    write_image(tmp_path / "x.ome.zarr", x, axes="ZYX")
    before = bundle_loads()
    info = run_out_of_core("predict", tmp_path / "x.ome.zarr", tmp_path / "p.ome.zarr", {"model": str(bdir)},
                           chunks=(1, 32, 32), n_workers=2, quiet=True)
    assert bundle_loads() - before == 1  # once per process, not once per chunk (12 chunks)
    assert info["n_chunks"] == 12
    ref = predict(Bundle.load(bdir), x, "ZYX", tile=None, device="cpu")
    out = _read(tmp_path / "p.ome.zarr")
    h = info["halo"][1]
    assert h > 0 and info["halo"][0] == 0
    err = np.abs(out - ref)[:, 8:-8, 8:-8].max() / np.abs(ref).max()
    assert err < 1e-3, err


def test_denoise_out_of_core_equals_in_memory(tmp_path):
    den = importlib.import_module("fluorecon.tasks.denoise")
    x = _structures((4, 48, 48), seed=6)
    write_image(tmp_path / "n.ome.zarr", x, axes="ZYX")
    info = run_out_of_core("denoise", tmp_path / "n.ome.zarr", tmp_path / "d.ome.zarr", {"method": "nlm"},
                           chunks=(4, 24, 24), quiet=True)
    kw = info["resolved"]["channels"]["None"]["kwargs"]
    ref = den.denoise(x, "ZYX", method=info["resolved"]["channels"]["None"]["method"], **kw)
    ref = ref[0] if isinstance(ref, tuple) else ref
    out = _read(tmp_path / "d.ome.zarr")
    b = 8
    err = np.abs(out - ref)[:, b:-b, b:-b].max() / np.abs(ref).max()
    assert err < 1e-3, err


def test_bad_operation_and_params(tmp_path):
    x = _structures((4, 16, 16))
    write_image(tmp_path / "x.ome.zarr", x, axes="ZYX")
    with pytest.raises(FluoreconError, match="unknown out-of-core operation"):
        run_out_of_core("sharpen", tmp_path / "x.ome.zarr", tmp_path / "o.ome.zarr", {})
    with pytest.raises(FluoreconError, match="needs a PSF"):
        run_out_of_core("deconvolve", tmp_path / "x.ome.zarr", tmp_path / "o.ome.zarr", {})
    with pytest.raises(FluoreconError, match="unknown deconvolve parameter"):
        run_out_of_core("deconvolve", tmp_path / "x.ome.zarr", tmp_path / "o.ome.zarr", {"psf": np.ones((3, 3)), "iters": 3})
    with pytest.raises(FluoreconError, match="not a fluorecon bundle"):
        run_out_of_core("predict", tmp_path / "x.ome.zarr", tmp_path / "o.ome.zarr", {"model": str(tmp_path)})
    with pytest.raises(FluoreconError, match="ending in .zarr"):
        run_blockwise(BlockOp("id", np.asarray, (0, 0, 0)), x, tmp_path / "o.tif", axes="ZYX")
    assert not (tmp_path / "o.ome.zarr").exists()


def test_learned_denoise_trains_once_then_predicts_blockwise(tmp_path):
    from fluorecon.learn.bundle import Bundle
    from fluorecon.learn.predict import predict

    x = _structures((2, 48, 48), seed=7) * 10
    write_image(tmp_path / "n.ome.zarr", x, axes="ZYX")
    out = tmp_path / "l.ome.zarr"
    info = run_out_of_core("denoise", tmp_path / "n.ome.zarr", out,
                           {"method": "n2v", "budget_s": 20, "steps": 3, "seed": 0, "device": "cpu"},
                           chunks=(1, 24, 24), quiet=True)
    model = tmp_path / "l.ome.zarr.model"
    assert (model / "bundle.json").exists() and info["resolved"]["channels"]["None"]["scheme"] == "n2v"
    ref = predict(Bundle.load(model), x, "ZYX", tile=None, device="cpu")
    got = _read(out)
    err = np.abs(got - ref)[:, 8:-8, 8:-8].max() / np.abs(ref).max()
    assert err < 1e-3, err
