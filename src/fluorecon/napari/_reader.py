"""napari reader for fluorecon outputs: OME-Zarr images (with voxel sizes) and model bundles.

A bundle folder opens as its test tensors (input and the model's output on it), with the bundle
loaded into the layers' metadata so the Train / predict and Trust widgets can use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


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
    return None


def _read_zarr(path: str | list[str]) -> list[tuple]:
    from fluorecon.io import read_image

    p = Path(path[0] if isinstance(path, list) else path)
    img = read_image(p)
    kw: dict[str, Any] = {"name": p.name.replace(".ome.zarr", "").replace(".zarr", ""),
                          "metadata": {"fluorecon": dict(img.metadata), "axes": img.axes}}
    n_sp = img.ndim_spatial
    if "C" in img.axes:
        kw["channel_axis"] = img.axes.index("C")
    if img.voxel_size is not None:
        lead = img.data.ndim - n_sp - (1 if "C" in img.axes else 0)
        kw["scale"] = (1.0,) * lead + tuple(img.voxel_size)
    return [(img.data, kw, "image")]


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
