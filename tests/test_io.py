"""fluorecon.io: round trips per format, metadata read back, determinism, atomicity, bad input."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fluorecon.errors import FluoreconError
from fluorecon.io import ImageData, canonical_axes, format_of, read_image, write_image

SUFFIXES = [".tif", ".ome.tif", ".npy", ".zarr", ".ome.zarr"]


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    if path.is_dir():
        for f in sorted(path.rglob("*")):
            if f.is_file():
                h.update(str(f.relative_to(path)).encode())
                h.update(f.read_bytes())
    else:
        h.update(path.read_bytes())
    # sidecar of .npy
    side = path.with_name(path.name + ".json")
    if side.exists():
        h.update(side.read_bytes())
    return h.hexdigest()


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.iterdir() if ".tmp-" in p.name]


@pytest.mark.parametrize("suffix", SUFFIXES)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float64, np.int16])
def test_round_trip_data_axes_voxel_metadata(tmp_path, suffix, dtype):
    rng = np.random.default_rng(1)
    data = (rng.random((2, 3, 6, 7)) * 200).astype(dtype)
    p = tmp_path / f"img{suffix}"
    write_image(p, data, axes="CZYX", voxel_size=(0.3, 0.1, 0.12), metadata={"who": "test", "n": 3})
    img = read_image(p)
    assert img.data.dtype == data.dtype
    np.testing.assert_array_equal(img.data, data)
    assert img.axes == "CZYX"
    np.testing.assert_allclose(img.voxel_size, (0.3, 0.1, 0.12), rtol=1e-6)
    assert img.metadata["user"] == {"who": "test", "n": 3}
    assert not _leftovers(tmp_path)


@pytest.mark.parametrize("suffix", [*SUFFIXES, ".png"])
def test_writes_are_deterministic(tmp_path, suffix):
    data = np.arange(12 * 16, dtype=np.uint16).reshape(12, 16)
    p = tmp_path / f"a{suffix}"
    write_image(p, data, voxel_size=(0.1, 0.1) if suffix != ".png" else None, metadata={"k": 1} if suffix != ".png" else None)
    first = _digest(p)
    write_image(p, data, voxel_size=(0.1, 0.1) if suffix != ".png" else None, metadata={"k": 1} if suffix != ".png" else None)
    assert _digest(p) == first


def test_tiff_has_no_timestamp_and_ome_uuid_is_content_derived(tmp_path):
    a = np.ones((4, 5), np.float32)
    write_image(tmp_path / "a.tif", a)
    write_image(tmp_path / "b.ome.tif", a)
    write_image(tmp_path / "c.ome.tif", a + 1)
    with tifffile.TiffFile(tmp_path / "a.tif") as t:
        assert "DateTime" not in t.pages.first.tags
    with tifffile.TiffFile(tmp_path / "b.ome.tif") as t:
        xb = t.ome_metadata
    with tifffile.TiffFile(tmp_path / "c.ome.tif") as t:
        xc = t.ome_metadata
    uuid_b = xb.split('UUID="')[1].split('"')[0]
    uuid_c = xc.split('UUID="')[1].split('"')[0]
    assert uuid_b != uuid_c  # derived from the content, so different data → different UUID


def test_imagej_tiff_is_read_by_tifffile_as_hyperstack(tmp_path):
    """The .tif we write is a real ImageJ hyperstack (ZCYX order, spacing, unit) — independent reader."""
    data = np.zeros((2, 3, 8, 9), np.uint16)  # canonical CZYX
    data[1, 2] = 7
    write_image(tmp_path / "h.tif", data, axes="CZYX", voxel_size=(0.5, 0.2, 0.2))
    with tifffile.TiffFile(tmp_path / "h.tif") as t:
        assert t.is_imagej
        assert t.series[0].axes == "ZCYX"
        assert t.imagej_metadata["spacing"] == pytest.approx(0.5)
        assert t.imagej_metadata["unit"] in ("um", "µm", "micron")
        xres = t.pages.first.tags["XResolution"].value
        assert xres[0] / xres[1] == pytest.approx(5.0, rel=1e-6)
        assert t.series[0].asarray()[2, 1].max() == 7  # Z=2, C=1


def test_ome_tiff_physical_sizes_readable_by_tifffile(tmp_path):
    write_image(tmp_path / "o.ome.tif", np.zeros((3, 8, 8), np.float32), axes="ZYX", voxel_size=(0.25, 0.11, 0.11))
    with tifffile.TiffFile(tmp_path / "o.ome.tif") as t:
        assert t.is_ome
        xml = t.ome_metadata
    assert 'PhysicalSizeZ="0.25"' in xml and 'PhysicalSizeX="0.11"' in xml


def test_ome_zarr_is_valid_ngff_single_scale(tmp_path):
    import zarr

    p = tmp_path / "v.ome.zarr"
    data = np.random.default_rng(0).random((2, 5, 16, 16)).astype(np.float32)
    write_image(p, data, axes="TZYX", voxel_size=(1.0, 0.2, 0.2))
    root = zarr.open_group(str(p), mode="r")
    ome = root.attrs.get("ome", root.attrs)
    ms = ome["multiscales"][0]
    assert [a["name"] for a in ms["axes"]] == ["t", "z", "y", "x"]
    assert len(ms["datasets"]) == 1
    scale = [t for t in ms["datasets"][0]["coordinateTransformations"] if t["type"] == "scale"][0]["scale"]
    assert scale[1:] == [1.0, 0.2, 0.2]
    np.testing.assert_array_equal(root[ms["datasets"][0]["path"]][...], data)
    img = read_image(p)
    assert img.axes == "TZYX" and img.voxel_size == (1.0, 0.2, 0.2)


def test_axes_reordered_to_canonical_and_override(tmp_path):
    data = np.random.default_rng(0).random((8, 9, 3)).astype(np.float32)  # YXC
    write_image(tmp_path / "c.npy", data, axes="YXC")
    img = read_image(tmp_path / "c.npy")
    assert img.axes == "CYX" and img.shape == (3, 8, 9)
    np.testing.assert_array_equal(img.data, np.moveaxis(data, -1, 0))
    np.save(tmp_path / "raw.npy", np.zeros((5, 6, 7), np.float32))
    assert read_image(tmp_path / "raw.npy").axes == "ZYX"
    assert read_image(tmp_path / "raw.npy", axes="TYX").axes == "TYX"
    d, ax = canonical_axes(np.zeros((4, 2, 5, 6)), "ZCYX")
    assert ax == "CZYX" and d.shape == (2, 4, 5, 6)


def test_png_16bit_and_rgb(tmp_path):
    import imageio.v3 as iio

    g = (np.arange(40 * 50) * 31).astype(np.uint16).reshape(40, 50)
    write_image(tmp_path / "g.png", g)
    assert iio.imread(tmp_path / "g.png").dtype == np.uint16  # independent reader
    back = read_image(tmp_path / "g.png")
    assert back.data.dtype == np.uint16 and back.axes == "YX"
    np.testing.assert_array_equal(back.data, g)
    rgb = np.random.default_rng(0).integers(0, 255, (10, 12, 3), dtype=np.uint8)
    iio.imwrite(tmp_path / "c.png", rgb)
    img = read_image(tmp_path / "c.png")
    assert img.axes == "CYX" and img.metadata["rgb"] is True
    np.testing.assert_array_equal(img.data, np.moveaxis(rgb, -1, 0))


def test_imagedata_as_input_and_2d_voxel_from_3_values(tmp_path):
    img = ImageData(np.ones((6, 7), np.float32), "YX", (0.2, 0.2), {"user": {"a": 1}})
    write_image(tmp_path / "i.tif", img)
    back = read_image(tmp_path / "i.tif")
    assert back.voxel_size == pytest.approx((0.2, 0.2)) and back.metadata["user"] == {"a": 1}


def test_voxel_size_unknown_stays_none(tmp_path):
    for suffix in SUFFIXES:
        write_image(tmp_path / f"n{suffix}", np.ones((4, 6, 6), np.float32))
        assert read_image(tmp_path / f"n{suffix}").voxel_size is None, suffix


# ------------------------------------------------------------------------------------- real data


def test_reads_imagej_metadata_of_real_confocal_stack(shared_data):
    p = shared_data("biapol-confocal-deconv") / "DeconvolutionSampleVerticalGrid1AU-crop.tif"
    img = read_image(p)
    assert img.axes == "ZYX" and img.shape == (21, 150, 150) and img.data.dtype == np.uint8
    z, y, x = img.voxel_size
    assert z == pytest.approx(0.125)
    assert 1 / y == pytest.approx(45.53, rel=1e-3) and x == pytest.approx(y)


def test_reads_frames_axis_and_pixel_size_of_lysosome_series(shared_data):
    img = read_image(shared_data("huanglab-lysosome-repeats") / "1.tif")
    assert img.axes == "TYX" and img.shape == (50, 128, 128)
    assert 1 / img.voxel_size[0] == pytest.approx(7.74, rel=1e-3)


def test_reads_16bit_png_as_uint16(shared_data):
    img = read_image(shared_data("ndhoward-bacteria-pair-16bit") / "noisy_avg1_16bit.png")
    assert img.data.dtype == np.uint16 and img.shape == (512, 512) and img.data.max() > 255


# ------------------------------------------------------------------------------------- bad input


def test_missing_file_unknown_suffix(tmp_path):
    with pytest.raises(FluoreconError, match="file not found"):
        read_image(tmp_path / "nope.tif")
    (tmp_path / "x.bmp").write_bytes(b"BM")
    with pytest.raises(FluoreconError, match="unknown image format"):
        read_image(tmp_path / "x.bmp")
    with pytest.raises(FluoreconError, match="unknown image format"):
        write_image(tmp_path / "y.gif", np.ones((4, 4)))
    assert format_of("a.OME.TIFF") == "ome-tiff"


def test_corrupt_tiff_names_the_file(tmp_path):
    p = tmp_path / "bad.tif"
    p.write_bytes(b"this is not a tiff at all" * 10)
    with pytest.raises(FluoreconError, match="bad.tif"):
        read_image(p)


@pytest.mark.parametrize("suffix,frac", [(".tif", 0.5), (".tif", 0.95), (".ome.tif", 0.6), (".ome.tif", 0.99)])
def test_truncated_tiff_is_an_error_not_zeros(tmp_path, suffix, frac):
    src = tmp_path / f"full{suffix}"
    write_image(src, np.random.default_rng(0).random((4, 64, 64)).astype(np.float32))
    raw = src.read_bytes()
    p = tmp_path / f"cut{suffix}"
    p.write_bytes(raw[: int(len(raw) * frac)])
    with pytest.raises(FluoreconError, match="cut"):
        read_image(p)


def test_empty_and_axes_mismatch(tmp_path):
    np.save(tmp_path / "e.npy", np.zeros((0, 5), np.float32))
    with pytest.raises(FluoreconError, match="empty"):
        read_image(tmp_path / "e.npy")
    with pytest.raises(FluoreconError, match="empty"):
        write_image(tmp_path / "e2.tif", np.zeros((0, 4)))
    np.save(tmp_path / "a.npy", np.zeros((3, 4, 5), np.float32))
    with pytest.raises(FluoreconError, match="3 dimensions"):
        read_image(tmp_path / "a.npy", axes="YX")
    with pytest.raises(FluoreconError, match="dimensions"):
        write_image(tmp_path / "w.tif", np.zeros((3, 4, 5)), axes="YX")
    with pytest.raises(FluoreconError, match="unknown letters"):
        write_image(tmp_path / "w.tif", np.zeros((4, 5)), axes="AB")
    with pytest.raises(FluoreconError, match="voxel size"):
        write_image(tmp_path / "w.tif", np.zeros((4, 5)), voxel_size=(0.1, -1.0))
    assert not (tmp_path / "w.tif").exists() and not (tmp_path / "e2.tif").exists()


def test_nan_is_read_but_not_written(tmp_path):
    a = np.ones((5, 5), np.float32)
    a[2, 2] = np.nan
    np.save(tmp_path / "n.npy", a)
    img = read_image(tmp_path / "n.npy")  # reading is fine; validation happens in as_image
    assert np.isnan(img.data).sum() == 1
    with pytest.raises(FluoreconError, match="NaN"):
        write_image(tmp_path / "n.tif", a)
    assert not (tmp_path / "n.tif").exists()
    write_image(tmp_path / "ok.tif", a, allow_nonfinite=True)
    assert np.isnan(read_image(tmp_path / "ok.tif").data).sum() == 1


def test_failed_write_leaves_nothing_and_keeps_old_file(tmp_path):
    p = tmp_path / "keep.png"
    write_image(p, np.ones((4, 4), np.uint8))
    before = p.read_bytes()
    with pytest.raises(FluoreconError, match="PNG"):
        write_image(p, np.ones((4, 4), np.float32))  # float cannot go to PNG
    assert p.read_bytes() == before
    assert sorted(x.name for x in tmp_path.iterdir()) == ["keep.png"]


def test_interrupted_zarr_write_leaves_no_directory(tmp_path, monkeypatch):
    import ome_zarr.writer

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(ome_zarr.writer, "write_image", boom)
    with pytest.raises(RuntimeError):
        write_image(tmp_path / "x.ome.zarr", np.ones((4, 4), np.float32))
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------- properties

_AXES = ["YX", "ZYX", "CYX", "TYX", "CZYX", "TZYX", "TCZYX"]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    axes=st.sampled_from(_AXES),
    dtype=st.sampled_from([np.uint8, np.uint16, np.int32, np.float32, np.float64]),
    suffix=st.sampled_from([".tif", ".ome.tif", ".npy", ".ome.zarr"]),
    sizes=st.lists(st.integers(1, 5), min_size=5, max_size=5),
    seed=st.integers(0, 2**16),
)
def test_property_round_trip(tmp_path, axes, dtype, suffix, sizes, seed):
    shape = tuple(s if a in "TCZ" else s + 1 for a, s in zip(axes, sizes, strict=False))
    rng = np.random.default_rng(seed)
    data = (rng.random(shape) * 100).astype(dtype)
    vs = tuple(float(v) for v in rng.uniform(0.05, 2.0, size=sum(a in "ZYX" for a in axes)))
    p = tmp_path / f"r{seed}{suffix}"
    write_image(p, data, axes=axes, voxel_size=vs)
    img = read_image(p)
    assert img.axes == axes  # singleton axes survive (ImageJ readers squeeze them; we record the layout)
    assert img.data.dtype == data.dtype
    np.testing.assert_array_equal(img.data, data)
    np.testing.assert_allclose(img.voxel_size, vs, rtol=1e-5)
    import shutil

    shutil.rmtree(p) if p.is_dir() else p.unlink()
