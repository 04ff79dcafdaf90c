"""napari reader: images with their voxel sizes (OME-Zarr, OME-TIFF, ImageJ TIFF) and model bundles.

File > Open of a TIFF keeps its physical scale: the voxel sizes of the OME or ImageJ metadata
become the layer's ``scale`` (µm), as for OME-Zarr (napari's built-in TIFF reader drops them).

A bundle folder opens as its test tensors (input and the model's output on it), with the bundle
loaded into the layers' metadata so the Train / predict and Trust widgets can use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fluorecon.io import read_image


def _is_bundle(p: Path) -> bool:
    return p.is_dir() and (p / "bundle.json").exists()


def get_reader(path: str | list[str]):
    """Return a reader function for ``path`` when it is ours, else None (napari tries other readers)."""
    if isinstance(path, list):
        path = path[0] if len(path) == 1 else None
        if path is None:
            return None
    p = Path(path)
    if p.name == "bundle.json":
        p = p.parent
    if _is_bundle(p):
        return _read_bundle
    if p.suffix.lower() == ".zarr" and p.exists():
        return _read_zarr
    if p.suffix.lower() in (".tif", ".tiff") and p.is_file():
        return _read_image
    return None


def _read_image(path: str | list[str]) -> list[tuple]:
    """Any image :func:`fluorecon.io.read_image` reads, with its voxel sizes as the layer scale."""
    p = Path(path[0] if isinstance(path, list) else path)
    img = read_image(p)
    name = p.name
    for ext in (".ome.zarr", ".zarr", ".ome.tiff", ".ome.tif", ".tiff", ".tif"):
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
            break
    kw: dict[str, Any] = {"name": name,
                          "metadata": {"fluorecon": dict(img.metadata), "axes": img.axes}}
    n_sp = img.ndim_spatial
    if "C" in img.axes:
        kw["channel_axis"] = img.axes.index("C")
    if img.voxel_size is not None:
        lead = img.data.ndim - n_sp - (1 if "C" in img.axes else 0)
        kw["scale"] = (1.0,) * lead + tuple(img.voxel_size)
    return [(img.data, kw, "image")]


_read_zarr = _read_image


def _read_bundle(path: str | list[str]) -> list[tuple]:
    from fluorecon.learn.bundle import Bundle

    p = Path(path[0] if isinstance(path, list) else path)
    if p.name == "bundle.json":
        p = p.parent
    bundle = Bundle.load(p)
    tt = getattr(bundle, "test_tensors", None) or {}
    cfg = getattr(bundle, "config", {}) or {}
    vs = cfg.get("voxel_size") if isinstance(cfg, dict) else None
    layers = []
    for key, label in (("input", "test input"), ("output", "test output")):
        a = tt.get(key) if isinstance(tt, dict) else getattr(tt, key, None)
        if a is None:
            continue
        kw: dict[str, Any] = {"name": f"{p.name} {label}", "metadata": {"fluorecon_bundle": bundle, "bundle_path": str(p)}}
        if vs is not None and len(vs) == getattr(a, "ndim", 0):
            kw["scale"] = tuple(vs)
        layers.append((a, kw, "image"))
    if not layers:
        from fluorecon.errors import FluoreconError

        raise FluoreconError(f"bundle {p} has no test tensors to show",
                             hint="use the Train / predict widget with this bundle on an open image")
    return layers
