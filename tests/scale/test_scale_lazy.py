"""Lazy input: TIFF memory-mapped or page-wise, OME-Zarr; refuses non-NGFF stores and missing chunks."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tifffile
import zarr

from fluorecon.errors import FluoreconError
from fluorecon.io import write_image
from fluorecon.scale import open_lazy


def test_tiff_memmap_and_compressed(tmp_path):
    x = np.random.default_rng(0).integers(0, 1000, (2, 6, 20, 24)).astype(np.uint16)
    write_image(tmp_path / "a.tif", x, axes="CZYX", voxel_size=(0.5, 0.1, 0.1))
    darr, img = open_lazy(tmp_path / "a.tif")
    assert img.axes == "CZYX" and img.metadata["memmap"] and img.voxel_size == pytest.approx((0.5, 0.1, 0.1))
    np.testing.assert_array_equal(darr.compute(), x)
    np.testing.assert_array_equal(img.reader[1, 2:4, 5:9, 3], x[1, 2:4, 5:9, 3])
    tifffile.imwrite(tmp_path / "c.tif", x[0], compression="zlib")
    darr, img = open_lazy(tmp_path / "c.tif")
    assert not img.metadata["memmap"] and img.axes == "ZYX"
    np.testing.assert_array_equal(darr[1:3].compute(), x[0, 1:3])


def test_reader_pickles_without_data(tmp_path):
    import pickle

    x = np.ones((4, 32, 32), np.float32)
    write_image(tmp_path / "z.ome.zarr", x, axes="ZYX")
    _, img = open_lazy(tmp_path / "z.ome.zarr")
    img.reader[0, 0, 0]
    blob = pickle.dumps(img.reader)
    assert len(blob) < 2000
    assert pickle.loads(blob)[1:3, :2, :2].shape == (2, 2, 2)


def test_not_ngff_and_plain_array_refused(tmp_path):
    zarr.open_group(str(tmp_path / "g.zarr"), mode="w").create_array("0", shape=(4, 4), dtype="f4")
    with pytest.raises(FluoreconError, match="without OME-NGFF"):
        open_lazy(tmp_path / "g.zarr")
    zarr.create_array(str(tmp_path / "a.zarr"), shape=(4, 4), dtype="f4")
    with pytest.raises(FluoreconError, match="plain zarr array"):
        open_lazy(tmp_path / "a.zarr")
    with pytest.raises(FluoreconError, match="not found"):
        open_lazy(tmp_path / "nope.ome.zarr")
    with pytest.raises(FluoreconError, match="TIFF or OME-Zarr"):
        np.save(tmp_path / "x.npy", np.ones((4, 4)))
        open_lazy(tmp_path / "x.npy")


def test_missing_chunks_refused(tmp_path):
    from fluorecon.scale import write_ome_zarr

    x = np.random.default_rng(1).random((4, 32, 32)).astype(np.float32) + 1
    p = write_ome_zarr(tmp_path / "m.ome.zarr", x, "ZYX", chunks=(4, 16, 16), levels=1)
    open_lazy(p)  # complete: fine
    chunk_dir = p / "0" / "c"
    victim = sorted(f for f in chunk_dir.rglob("*") if f.is_file())[0]
    victim.unlink()
    with pytest.raises(FluoreconError, match="1 of 4 chunks"):
        open_lazy(p)
    from fluorecon.scale import run_out_of_core

    with pytest.raises(FluoreconError, match="chunks .* are missing"):
        run_out_of_core("isotropic", p, tmp_path / "o.ome.zarr", {"method": "linear", "z_factor": 2}, quiet=True)
    assert not (tmp_path / "o.ome.zarr").exists()
    darr, _ = open_lazy(p, allow_missing_chunks=True)
    assert darr.shape == x.shape
    shutil.rmtree(p / "0")
    with pytest.raises(FluoreconError):
        open_lazy(p)
