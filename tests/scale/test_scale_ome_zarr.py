"""OME-Zarr output: opens with ome-zarr/zarr, carries axes and scales; the pyramid is a local mean."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from fluorecon.errors import FluoreconError
from fluorecon.scale import downsample_mean, open_lazy, write_ome_zarr


def test_pyramid_is_local_mean_against_reshape_mean(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.random((4, 64, 96)).astype(np.float32)
    p = write_ome_zarr(tmp_path / "p.ome.zarr", x, "ZYX", (0.5, 0.2, 0.2), chunks=(4, 32, 32), levels=3)
    g = zarr.open_group(str(p), mode="r")
    l1 = np.asarray(g["1"][...])
    l2 = np.asarray(g["2"][...])
    ref1 = x.reshape(4, 32, 2, 48, 2).mean(axis=(2, 4))
    ref2 = x.reshape(4, 16, 4, 24, 4).mean(axis=(2, 4))
    np.testing.assert_allclose(l1, ref1, rtol=1e-6)
    np.testing.assert_allclose(l2, ref2, rtol=1e-5)
    np.testing.assert_array_equal(np.asarray(g["0"][...]), x)
    ms = dict(g.attrs)["ome"]["multiscales"][0]
    assert ms["type"] == "local_mean" and "local mean" in ms["metadata"]["description"]


def test_downsample_mean_edges():
    x = np.arange(15, dtype=np.float32).reshape(3, 5)
    d = downsample_mean(x, (2, 2))
    assert d.shape == (2, 3)
    assert d[1, 2] == pytest.approx(14.0)            # a single voxel left at the corner
    assert d[0, 2] == pytest.approx((4 + 9) / 2)     # half a block at the right edge
    assert d[0, 0] == pytest.approx(np.mean([0, 1, 5, 6]))


def test_output_opens_with_ome_zarr_axes_and_scales(tmp_path):
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    x = np.ones((2, 3, 8, 64, 64), np.float32)
    p = write_ome_zarr(tmp_path / "t.ome.zarr", x, "TCZYX", (0.4, 0.1, 0.1), chunks=(1, 1, 8, 32, 32), levels=2,
                       compression="zstd")
    nodes = list(Reader(parse_url(str(p)))())
    meta = nodes[0].metadata
    assert [a["name"] for a in meta["axes"]] == ["t", "c", "z", "y", "x"]
    assert [a.get("unit") for a in meta["axes"]][2:] == ["micrometer"] * 3
    cts = meta["coordinateTransformations"]
    assert cts[0][0]["scale"] == pytest.approx([1, 1, 0.4, 0.1, 0.1])
    assert cts[1][0]["scale"] == pytest.approx([1, 1, 0.4, 0.2, 0.2])
    assert cts[1][1]["translation"] == pytest.approx([0, 0, 0, 0.05, 0.05])
    assert nodes[0].data[1].shape == (2, 3, 8, 32, 32)
    # And our own lazy reader gets the axes and voxel size back.
    darr, img = open_lazy(p)
    assert img.axes == "TCZYX" and img.voxel_size == pytest.approx((0.4, 0.1, 0.1)) and darr.shape == x.shape
    st = dict(zarr.open_group(str(p), mode="r").attrs)["fluorecon"]["scale_run"]
    assert st["complete"] is True and "local mean" in st["downsampling"]


def test_compression_options(tmp_path):
    x = np.zeros((16, 16), np.float32)
    for c in ("blosc", "blosc-lz4", "zstd", "none"):
        write_ome_zarr(tmp_path / f"{c}.ome.zarr", x, "YX", levels=1, compression=c)
    with pytest.raises(FluoreconError, match="unknown compression"):
        write_ome_zarr(tmp_path / "bad.ome.zarr", x, "YX", levels=1, compression="gzip9")
