"""Read and write microscopy images with their axes and voxel sizes.

Formats (chosen from the file suffix):

=====================  ==========================================================================
suffix                 read / write
=====================  ==========================================================================
``.tif``, ``.tiff``    ImageJ hyperstack (uint8/uint16/float32; axes, µm pixel size from the
                       resolution tags, Z step from ``spacing``); other dtypes are written as a
                       tifffile "shaped" TIFF with a JSON description. Any TIFF is read,
                       OME-TIFF included (the OME metadata wins when present).
``.ome.tif(f)``        OME-TIFF (``PhysicalSizeX/Y/Z`` in µm, dimension order from the axes).
``.npy``               NumPy array (``allow_pickle=False``); axes, voxel size and metadata in an
                       optional sidecar ``<name>.npy.json``.
``.png``, ``.jpg``     imageio; 16-bit PNG stays uint16, RGB becomes ``CYX`` (noted in
                       ``metadata['rgb']``). JPEG is read-only (lossy).
``.zarr``              single-scale OME-NGFF image (ome-zarr / zarr); scale 0 is read, with its
``.ome.zarr``          axes and ``scale`` coordinate transformation. A plain zarr array is read too.
=====================  ==========================================================================

Axes are returned in the canonical order ``T C Z Y X`` (the spatial axes trail, as the rest of
fluorecon expects); the order found in the file is kept in ``metadata['file_axes']``. Writes go
through :func:`fluorecon._atomic.atomic_path` and are byte-for-byte deterministic: no timestamps,
and the OME UUID is derived from the content.
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import json
import logging
import uuid
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fluorecon._atomic import atomic_path
from fluorecon.errors import FluoreconError, FluoreconWarning

__all__ = [
    "AXES_ORDER",
    "IMAGE_FILE_SUFFIXES",
    "READ_SUFFIXES",
    "WRITE_SUFFIXES",
    "ImageData",
    "allow_incomplete",
    "check_store_complete",
    "canonical_axes",
    "format_of",
    "guess_axes",
    "read_image",
    "write_image",
]

AXES_ORDER = "TCZYX"
SPATIAL = "ZYX"
READ_SUFFIXES = (".tif", ".tiff", ".ome.tif", ".ome.tiff", ".npy", ".png", ".jpg", ".jpeg", ".zarr", ".ome.zarr")
#: The last suffix of a readable image file (what a folder listing keeps).
IMAGE_FILE_SUFFIXES = (".tif", ".tiff", ".npy", ".png", ".jpg", ".jpeg", ".zarr")
WRITE_SUFFIXES = (".tif", ".tiff", ".ome.tif", ".ome.tiff", ".npy", ".png", ".zarr", ".ome.zarr")
_IMAGEJ_DTYPES = (np.uint8, np.uint16, np.float32)

# Length units → µm.
_UNIT_TO_UM = {
    "µm": 1.0, "um": 1.0, "micron": 1.0, "microns": 1.0, "micrometer": 1.0, "micrometre": 1.0,
    "\u03bcm": 1.0, "nm": 1e-3, "nanometer": 1e-3, "nanometre": 1e-3, "mm": 1e3, "millimeter": 1e3,
    "millimetre": 1e3, "cm": 1e4, "centimeter": 1e4, "m": 1e6, "meter": 1e6, "metre": 1e6,
    "å": 1e-4, "angstrom": 1e-4, "pm": 1e-6, "picometer": 1e-6, "inch": 25400.0, "in": 25400.0,
}


@dataclass
class ImageData:
    """An image array with its axes, voxel size and metadata.

    Attributes
    ----------
    data : numpy.ndarray
        The pixel data, in the file's dtype.
    axes : str
        One letter per dimension from ``T C Z Y X``, in that order (e.g. ``"ZYX"``, ``"TYX"``).
    voxel_size : tuple of float or None
        Size of a voxel in µm along the spatial axes (``(z, y, x)`` or ``(y, x)``), or None when the
        file does not say (or says only part of it: see ``metadata['voxel_size_partial']``).
    metadata : dict
        Everything else: ``format``, ``path``, ``file_axes``, ``rgb``, user metadata, ...

    Examples
    --------
    >>> img = ImageData(np.zeros((4, 5), np.float32), "YX", (0.1, 0.1))
    >>> img.spatial_axes, img.ndim_spatial
    ('YX', 2)
    """

    data: np.ndarray
    axes: str
    voxel_size: tuple[float, ...] | None = None
    metadata: dict = field(default_factory=dict)

    @property
    def spatial_axes(self) -> str:
        """The spatial axes (``"ZYX"`` or ``"YX"``)."""
        return "".join(a for a in self.axes if a in SPATIAL)

    @property
    def ndim_spatial(self) -> int:
        return len(self.spatial_axes)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.data.shape)


# ----------------------------------------------------------------------------------------- axes


def format_of(path: str | Path) -> str:
    """Return the format key (``"tiff"``, ``"ome-tiff"``, ``"npy"``, ``"png"``, ``"jpeg"``, ``"zarr"``).

    Raises
    ------
    FluoreconError
        For an unknown suffix.

    Examples
    --------
    >>> format_of("cells.ome.tif"), format_of("x.npy"), format_of("vol.ome.zarr")
    ('ome-tiff', 'npy', 'zarr')
    """
    name = str(path).rstrip("/").lower()
    if name.endswith((".ome.tif", ".ome.tiff")):
        return "ome-tiff"
    if name.endswith((".tif", ".tiff")):
        return "tiff"
    if name.endswith(".npy"):
        return "npy"
    if name.endswith(".png"):
        return "png"
    if name.endswith((".jpg", ".jpeg")):
        return "jpeg"
    if name.endswith(".zarr"):
        return "zarr"
    raise FluoreconError(
        f"unknown image format for {str(path)!r} (suffix {Path(name).suffix or 'missing'!r})",
        hint="use one of " + ", ".join(READ_SUFFIXES),
    )


def guess_axes(ndim: int) -> str:
    """Guess axes from the number of dimensions: 2 → ``YX``, 3 → ``ZYX``, 4 → ``CZYX``, 5 → ``TCZYX``.

    Examples
    --------
    >>> guess_axes(3)
    'ZYX'
    """
    guesses = {2: "YX", 3: "ZYX", 4: "CZYX", 5: "TCZYX"}
    if ndim not in guesses:
        raise FluoreconError(f"cannot guess the axes of a {ndim}-D array",
                             hint="images have 2 to 5 dimensions; pass axes such as 'YX' or 'TZYX'")
    return guesses[ndim]


def _check_axes(axes: str, ndim: int, name: str) -> str:
    axes = axes.upper()
    bad = [a for a in axes if a not in AXES_ORDER]
    if bad:
        raise FluoreconError(f"{name}: axes {axes!r} contain unknown letters {''.join(bad)!r}",
                             hint="use letters from T C Z Y X, e.g. 'YX', 'ZYX', 'CYX', 'TZYX'")
    if len(set(axes)) != len(axes):
        raise FluoreconError(f"{name}: axes {axes!r} repeat a letter", hint="each of T C Z Y X at most once")
    if len(axes) != ndim:
        raise FluoreconError(
            f"{name}: axes {axes!r} have {len(axes)} letters but the image has {ndim} dimensions",
            hint=f"give {ndim} axes letters (e.g. {guess_axes(ndim) if 2 <= ndim <= 5 else 'YX'!r})",
        )
    if "Y" not in axes or "X" not in axes:
        raise FluoreconError(f"{name}: axes {axes!r} must contain Y and X", hint="e.g. 'YX' or 'ZYX'")
    return axes


def canonical_axes(data: np.ndarray, axes: str) -> tuple[np.ndarray, str]:
    """Transpose ``data`` so that its axes follow the order ``T C Z Y X``.

    Examples
    --------
    >>> d, ax = canonical_axes(np.zeros((5, 6, 3)), "YXC")
    >>> d.shape, ax
    ((3, 5, 6), 'CYX')
    """
    axes = _check_axes(axes, data.ndim, "array")
    target = "".join(a for a in AXES_ORDER if a in axes)
    if target == axes:
        return data, axes
    return np.transpose(data, [axes.index(a) for a in target]), target


def _map_file_axes(file_axes: str, ndim: int) -> tuple[str, dict]:
    """Map tifffile axis codes (``TZCYXS`` + ``Q I E H ...``) onto ``T C Z Y X``."""
    notes: dict = {}
    file_axes = file_axes.upper()
    out = list(file_axes)
    used = {a for a in file_axes if a in AXES_ORDER}
    for i, a in enumerate(out):
        if a in AXES_ORDER:
            continue
        if a in "SEHL" and "C" not in used:  # samples (RGB), spectral, lifetime → channels
            out[i] = "C"
            used.add("C")
            if a == "S":
                notes["rgb"] = True
    # Remaining unknown codes (Q, I, ...) are guessed from the right: Z, then T, then C.
    for i in range(len(out) - 1, -1, -1):
        if out[i] in AXES_ORDER:
            continue
        for cand in "ZTC":
            if cand not in used:
                out[i] = cand
                used.add(cand)
                notes["axes_guessed"] = True
                break
        else:
            raise FluoreconError(f"cannot map file axes {file_axes!r} onto T C Z Y X",
                                 hint="pass axes explicitly (--axes)")
    axes = "".join(out)
    if len(axes) != ndim:
        axes = guess_axes(ndim)
        notes["axes_guessed"] = True
    return axes, notes


def _to_um(value: float, unit: str | None) -> float | None:
    if value is None or not np.isfinite(value) or value <= 0:
        return None
    if unit is None or unit == "":
        return float(value)
    u = unit.strip().lower()
    try:
        u = u.encode("latin-1").decode("unicode_escape") if "\\u" in u else u
    except UnicodeError:
        pass
    u = u.replace("\u00b5", "µ").replace("\u03bc", "µ")
    if u in ("pixel", "pixels", "px", "none"):
        return None
    factor = _UNIT_TO_UM.get(u)
    return None if factor is None else float(value) * factor


def _voxel_from_letters(axes: str, sizes: dict[str, float | None], meta: dict) -> tuple[float, ...] | None:
    """Build the spatial voxel-size tuple; None (with a note) if any spatial size is unknown."""
    spatial = [a for a in axes if a in SPATIAL]
    vals = [sizes.get(a) for a in spatial]
    if all(v is not None for v in vals):
        return tuple(float(v) for v in vals)
    if any(v is not None for v in vals):
        meta["voxel_size_partial"] = {a: v for a, v in zip(spatial, vals, strict=True)}
    return None


# ------------------------------------------------------------------------------------ reading


_ALLOW_INCOMPLETE: contextvars.ContextVar[bool] = contextvars.ContextVar("fluorecon_allow_incomplete", default=False)


@contextlib.contextmanager
def allow_incomplete(flag: bool = True) -> Iterator[None]:
    """Inside this block, interrupted fluorecon stores (``complete: false``) are read with a warning.

    The CLI's ``--allow-incomplete`` uses it. Outside, reading one raises :class:`FluoreconError`.

    Examples
    --------
    >>> with allow_incomplete():
    ...     pass
    """
    token = _ALLOW_INCOMPLETE.set(bool(flag))
    try:
        yield
    finally:
        _ALLOW_INCOMPLETE.reset(token)


def check_store_complete(path: str | Path, attrs: dict, allow: bool | None = None) -> None:
    """Refuse a fluorecon OME-Zarr store whose run was interrupted (``scale_run.complete`` false).

    Parameters
    ----------
    path : path-like
        The store (for messages).
    attrs : dict
        Its root group attributes.
    allow : bool, optional
        Read it anyway with a loud :class:`FluoreconWarning` (default: :func:`allow_incomplete`).

    Examples
    --------
    >>> check_store_complete("x.ome.zarr", {"fluorecon": {"scale_run": {"complete": True}}})
    >>> check_store_complete("x.ome.zarr", {"fluorecon": {"scale_run": {"complete": False}}})
    Traceback (most recent call last):
    ...
    fluorecon.errors.FluoreconError: x.ome.zarr is an interrupted fluorecon run ...
    """
    fl = attrs.get("fluorecon") if isinstance(attrs, dict) else None
    state = fl.get("scale_run") if isinstance(fl, dict) else None
    if not isinstance(state, dict) or state.get("complete", True):
        return
    if allow is None:
        allow = _ALLOW_INCOMPLETE.get()
    if not allow:
        raise FluoreconError(f"{path} is an interrupted fluorecon run (complete: false): some chunks were never "
                             "written and would read as zeros",
                             hint="re-run the command that wrote it to finish it, or pass --allow-incomplete to "
                                  "read it anyway")
    warnings.warn(f"READING AN INCOMPLETE STORE: {path} is an interrupted run (complete: false); unwritten chunks "
                  "read as zeros and any result from it is unreliable", FluoreconWarning, stacklevel=2)


def read_image(path: str | Path, axes: str | None = None) -> ImageData:
    """Read an image file with its axes and voxel size (µm).

    Parameters
    ----------
    path : str or Path
        A TIFF / OME-TIFF / ImageJ hyperstack, ``.npy``, ``.png``/``.jpg`` or OME-Zarr.
    axes : str, optional
        Override the axes found in the file (e.g. ``"TYX"``). Must have one letter per dimension.

    Returns
    -------
    ImageData
        ``data`` in the file's dtype, axes in ``T C Z Y X`` order. NaN/Inf are *not* rejected here
        (``fluorecon.validation.as_image`` does that, naming the file).

    Raises
    ------
    FluoreconError
        Missing file, unknown suffix, unreadable (corrupt or truncated) file, empty array, axes that
        do not match the number of dimensions, an interrupted fluorecon store (see
        :func:`allow_incomplete`).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "a.tif"
    >>> write_image(p, np.ones((3, 4, 5), np.float32), axes="ZYX", voxel_size=(0.3, 0.1, 0.1))
    >>> img = read_image(p)
    >>> img.axes, img.shape, tuple(round(v, 6) for v in img.voxel_size)
    ('ZYX', (3, 4, 5), (0.3, 0.1, 0.1))
    """
    p = Path(path)
    fmt = format_of(p)
    if not p.exists():
        raise FluoreconError(f"file not found: {p}", hint="check the path (and the working directory)")
    if fmt != "zarr" and p.is_dir():
        raise FluoreconError(f"{p} is a folder, not an image file", hint="give an image file")
    readers = {"tiff": _read_tiff, "ome-tiff": _read_tiff, "npy": _read_npy, "png": _read_imageio,
               "jpeg": _read_imageio, "zarr": _read_zarr}
    try:
        data, file_axes, sizes, meta = readers[fmt](p)
    except FluoreconError:
        raise
    except MemoryError:
        raise FluoreconError(f"{p}: not enough memory to read the image",
                             hint="use the out-of-core tools (fluorecon.scale) for large data") from None
    except Exception as e:  # corrupt / truncated files raise all sorts of library errors
        raise FluoreconError(
            f"cannot read {p}: {type(e).__name__}: {e}",
            hint="the file looks corrupt or truncated; re-export it or check that it is a complete " + fmt.upper(),
        ) from None
    data = np.asarray(data)
    if data.size == 0:
        raise FluoreconError(f"{p} contains an empty array (shape {data.shape})", hint="check the file; it holds no pixels")
    if data.dtype.kind not in "biuf":
        raise FluoreconError(f"{p}: unsupported pixel type {data.dtype}", hint="convert to integer or float pixels")
    meta.update(format=fmt, path=str(p))
    if axes is not None:
        axes = _check_axes(axes, data.ndim, str(p))
        meta["file_axes"] = axes
        meta.pop("axes_guessed", None)
    else:
        if file_axes is None:
            if data.ndim < 2 or data.ndim > 5:
                raise FluoreconError(f"{p}: a {data.ndim}-D array is not an image",
                                     hint="images have 2 to 5 dimensions (axes from T C Z Y X)")
            file_axes = guess_axes(data.ndim)
            meta["axes_guessed"] = True
        else:
            file_axes, notes = _map_file_axes(file_axes, data.ndim)
            meta.update(notes)
        meta["file_axes"] = file_axes
        axes = _check_axes(file_axes, data.ndim, str(p))
    data, axes = canonical_axes(data, axes)
    voxel = _voxel_from_letters(axes, sizes, meta)
    return ImageData(data=data, axes=axes, voxel_size=voxel, metadata=meta)


class _Collect(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(record.getMessage())


_CORRUPT_WORDS = ("invalid page offset", "invalid value offset", "tifffileerror", "corrupt", "truncat", "incomplete", "failed to read", "invalid tiff")


def _read_tiff(p: Path):
    # tifffile logs (rather than raises) when a file is truncated and returns what it could read;
    # a silently shortened stack is worse than an error, so those log records become errors.
    log = logging.getLogger("tifffile")
    handler = _Collect()
    log.addHandler(handler)
    old_propagate = log.propagate
    log.propagate = False
    try:
        out = _read_tiff_inner(p)
    finally:
        log.removeHandler(handler)
        log.propagate = old_propagate
    bad = [m for m in handler.messages if any(w in m.lower() for w in _CORRUPT_WORDS)]
    if bad:
        raise FluoreconError(f"{p} is corrupt or truncated ({bad[0].split('>')[-1].strip()})",
                             hint="re-export or re-copy the file")
    return out


def _read_tiff_inner(p: Path):
    import tifffile

    with tifffile.TiffFile(p) as tif:
        if not tif.series:
            raise FluoreconError(f"{p} holds no image series", hint="check the file")
        series = tif.series[0]
        data = series.asarray()
        file_axes = series.axes
        sizes: dict[str, float | None] = {}
        meta: dict[str, Any] = {}
        layout = None
        page = tif.pages.first
        if tif.is_ome and tif.ome_metadata:
            ome_sizes, ome_user, layout = _ome_tiff_info(tif.ome_metadata)
            sizes.update(ome_sizes)
            if ome_user is not None:
                meta["user"] = ome_user
        ij = tif.imagej_metadata if tif.is_imagej else None
        if ij:
            unit = ij.get("unit")
            xy = _tiff_resolution_um(page, unit if unit is not None else "pixel")
            for k, v in xy.items():
                sizes.setdefault(k, v)
            if "spacing" in ij:
                sizes.setdefault("Z", _to_um(float(ij["spacing"]), unit))
            info = ij.get("Info")
            if isinstance(info, str) and info.startswith("{"):
                try:
                    extra = json.loads(info)
                except ValueError:
                    extra = None
                if isinstance(extra, dict) and "fluorecon" in extra:
                    if extra["fluorecon"] is not None:
                        meta["user"] = extra["fluorecon"]
                    layout = extra.get("fluorecon_layout")
        elif tif.is_shaped and tif.shaped_metadata:
            sm = tif.shaped_metadata[0]
            vs = sm.get("voxel_size_um")
            if isinstance(vs, dict):
                sizes.update({k: (float(v) if v else None) for k, v in vs.items()})
            if sm.get("fluorecon") is not None:
                meta["user"] = sm["fluorecon"]
            layout = sm.get("fluorecon_layout")
        if not sizes:
            sizes.update(_tiff_resolution_um(page, None))
        if isinstance(layout, dict) and "shape" in layout and int(np.prod(layout["shape"])) == data.size:
            data = data.reshape(layout["shape"])  # restore singleton axes that readers squeeze
            file_axes = str(layout["axes"])
        # tifffile reads a truncated file as zeros with a logged warning; catch that explicitly.
        # Bit-packed samples (1-bit masks, 12-bit data) take fewer bytes than their NumPy dtype.
        first = series.pages[0] if len(series.pages) else None
        bps = int(getattr(first, "bitspersample", 0) or 0)
        bits = min(bps, 8 * np.dtype(series.dtype).itemsize) if bps > 0 else 8 * np.dtype(series.dtype).itemsize
        expected = (int(np.prod(series.shape)) * bits + 7) // 8
        stored = sum(int(sum(pg.databytecounts)) for pg in series.pages if pg is not None and hasattr(pg, "databytecounts"))
        if stored and not any(pg.compression != 1 for pg in series.pages if hasattr(pg, "compression")):
            if stored < expected:
                raise FluoreconError(f"{p} is truncated ({stored} of {expected} pixel bytes)",
                                     hint="re-export or re-copy the file")
        fsize = p.stat().st_size
        for pg in series.pages:
            if pg is None or not hasattr(pg, "dataoffsets"):
                continue
            for off, cnt in zip(pg.dataoffsets, pg.databytecounts, strict=False):
                if off + cnt > fsize:
                    raise FluoreconError(f"{p} is truncated (pixel data run past the end of the file)",
                                         hint="re-export or re-copy the file")
    return data, file_axes, sizes, meta


def _tiff_resolution_um(page, unit: str | None) -> dict[str, float | None]:
    """X/Y pixel size in µm from the TIFF resolution tags (ImageJ stores px per ``unit``)."""
    tags = page.tags
    if "XResolution" not in tags or "YResolution" not in tags:
        return {}
    out: dict[str, float | None] = {}
    resunit = int(tags["ResolutionUnit"].value) if "ResolutionUnit" in tags else 2
    for letter, tag in (("X", "XResolution"), ("Y", "YResolution")):
        num, den = tags[tag].value
        if not num or not den:
            continue
        per_unit = num / den  # pixels per unit
        if per_unit <= 0:
            continue
        size = 1.0 / per_unit
        if unit is not None:  # ImageJ: unit from the description
            out[letter] = _to_um(size, unit)
        elif resunit == 3:  # centimetre
            out[letter] = size * 1e4
        elif resunit == 2 and size * 25400.0 <= 50.0:
            # Inch units are mostly screen dpi (72, 96, 300: >80 µm 'pixels'); only plausible
            # microscope sampling is taken as a pixel size.
            out[letter] = size * 25400.0
    return {k: v for k, v in out.items() if v is not None}


def _ome_tiff_info(xml: str) -> tuple[dict[str, float | None], Any, Any]:
    """Physical sizes (µm) of the first OME ``Pixels`` element, and fluorecon metadata if present."""
    root = ET.fromstring(xml)
    user = None
    layout = None
    for el in root.iter():
        if el.tag.endswith("Description") and el.text and el.text.startswith("{"):
            try:
                d = json.loads(el.text)
            except ValueError:
                d = None
            if isinstance(d, dict) and "fluorecon" in d:
                user = d["fluorecon"]
                layout = d.get("fluorecon_layout")
            break
    for el in root.iter():
        if el.tag.endswith("Pixels"):
            out: dict[str, float | None] = {}
            for letter in "XYZ":
                v = el.attrib.get(f"PhysicalSize{letter}")
                if v is not None:
                    out[letter] = _to_um(float(v), el.attrib.get(f"PhysicalSize{letter}Unit", "µm"))
            return {k: v for k, v in out.items() if v is not None}, user, layout
    return {}, user, layout


def _sidecar(p: Path) -> Path:
    return p.with_name(p.name + ".json")


def _read_npy(p: Path):
    data = np.load(p, allow_pickle=False)
    sizes: dict[str, float | None] = {}
    meta: dict[str, Any] = {}
    file_axes = None
    side = _sidecar(p)
    if side.exists():
        try:
            info = json.loads(side.read_text())
        except ValueError as e:
            raise FluoreconError(f"sidecar {side} is not valid JSON: {e}", hint="fix or delete the sidecar") from None
        file_axes = info.get("axes")
        vs = info.get("voxel_size")
        if file_axes and vs:
            spatial = [a for a in file_axes.upper() if a in SPATIAL]
            if len(vs) == len(spatial):
                sizes = {a: float(v) for a, v in zip(spatial, vs, strict=True)}
        if "metadata" in info:
            meta["user"] = info["metadata"]
    return data, file_axes, sizes, meta


def _read_imageio(p: Path):
    import imageio.v3 as iio

    data = iio.imread(p)
    meta: dict[str, Any] = {}
    file_axes = None
    if data.ndim == 3 and data.shape[-1] in (3, 4):
        file_axes = "YXS"
        meta["rgb"] = True
        meta["note"] = f"{data.shape[-1]}-channel colour image read as CYX; convert to grey if needed"
    elif data.ndim == 2:
        file_axes = "YX"
    return data, file_axes, {}, meta


def _read_zarr(p: Path):
    import zarr

    node = zarr.open(str(p), mode="r")
    meta: dict[str, Any] = {}
    if isinstance(node, zarr.Array):
        return node[...], None, {}, meta
    attrs = dict(node.attrs)
    check_store_complete(p, attrs)
    ome = attrs.get("ome", attrs)  # NGFF 0.5 nests under "ome"; 0.4 is top level
    ms = ome.get("multiscales")
    if not ms:
        raise FluoreconError(f"{p} is a zarr group without OME-NGFF 'multiscales' metadata",
                             hint="point at an OME-Zarr image (or a zarr array)")
    m0 = ms[0]
    ds0 = m0["datasets"][0]
    data = node[ds0["path"]][...]
    ax = m0.get("axes")
    file_axes = None
    units: list[str | None] = []
    if ax:
        names = [(a["name"] if isinstance(a, dict) else a) for a in ax]
        units = [(a.get("unit") if isinstance(a, dict) else None) for a in ax]
        file_axes = "".join(n.upper()[0] if n.upper() in ("T", "C", "Z", "Y", "X") else "Q" for n in names)
    scale = None
    for tr in ds0.get("coordinateTransformations", []) + m0.get("coordinateTransformations", []):
        if tr.get("type") == "scale":
            s = np.asarray(tr["scale"], float)
            scale = s if scale is None else scale * s
    sizes: dict[str, float | None] = {}
    if scale is not None and file_axes:
        for a, s, u in zip(file_axes, scale, units or [None] * len(file_axes), strict=False):
            if a in SPATIAL:
                sizes[a] = _to_um(float(s), u) if u else None
    if "fluorecon" in attrs:
        meta["user"] = attrs["fluorecon"]
    meta["ngff_version"] = ome.get("version", m0.get("version"))
    return data, file_axes, sizes, meta


# ------------------------------------------------------------------------------------ writing


def write_image(path: str | Path, data, axes: str | None = None, voxel_size=None, metadata: dict | None = None,
                compression: str | None = None, *, allow_nonfinite: bool = False) -> None:
    """Write an image atomically, with axes and voxel size, in the format given by the suffix.

    Parameters
    ----------
    path : str or Path
        Destination: ``.tif`` (ImageJ hyperstack when the dtype allows), ``.ome.tif``, ``.npy`` (+
        ``.npy.json`` sidecar), ``.png`` (uint8/uint16 2D or RGB), ``.zarr`` / ``.ome.zarr``.
    data : array-like or ImageData
        Pixels (numpy or torch). An :class:`ImageData` supplies axes/voxel size/metadata defaults.
    axes : str, optional
        Letters from ``T C Z Y X`` (any order; written in the canonical order). Default: guessed
        from ``ndim``.
    voxel_size : sequence of float, optional
        µm along the spatial axes, ``(z, y, x)`` or ``(y, x)``.
    metadata : dict, optional
        JSON-serialisable extra metadata, stored in the file and read back in
        ``ImageData.metadata['user']``.
    compression : str, optional
        ``"zlib"``/``"zstd"``/``"lzw"`` for TIFF; the codec for zarr (default zstd via blosc).
    allow_nonfinite : bool
        Allow NaN/Inf pixels (refused by default: a reconstruction with NaNs is a bug upstream).

    Raises
    ------
    FluoreconError
        Unknown suffix, empty array, axes not matching ``ndim``, bad voxel size, NaN/Inf, a dtype the
        format cannot hold.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> write_image(d / "v.ome.zarr", np.zeros((2, 8, 8), np.float32), axes="ZYX", voxel_size=(0.5, 0.1, 0.1))
    >>> read_image(d / "v.ome.zarr").voxel_size
    (0.5, 0.1, 0.1)
    """
    p = Path(path)
    fmt = format_of(p)
    if fmt == "jpeg":
        raise FluoreconError(f"{p}: writing JPEG is not supported (lossy)", hint="write .tif, .ome.tif, .png or .npy")
    if isinstance(data, ImageData):
        axes = axes or data.axes
        voxel_size = voxel_size if voxel_size is not None else data.voxel_size
        metadata = metadata if metadata is not None else data.metadata.get("user")
        data = data.data
    if hasattr(data, "detach"):  # torch tensor
        data = data.detach().cpu().numpy()
    arr = np.asarray(data)
    if arr.size == 0:
        raise FluoreconError(f"refusing to write an empty array (shape {arr.shape}) to {p}", hint="check the computation")
    if arr.dtype.kind not in "biuf":
        raise FluoreconError(f"cannot write pixel type {arr.dtype} to {p}", hint="convert to integer or float pixels")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8)
    if arr.dtype.kind == "f" and not allow_nonfinite and not np.isfinite(arr).all():
        n = int((~np.isfinite(arr)).sum())
        raise FluoreconError(f"refusing to write {n} NaN/Inf pixel(s) to {p}",
                             hint="fix the computation that produced them (API only: allow_nonfinite=True keeps them)")
    axes = _check_axes(axes or guess_axes(arr.ndim), arr.ndim, str(p))
    arr, axes = canonical_axes(arr, axes)
    arr = np.ascontiguousarray(arr)
    spatial = "".join(a for a in axes if a in SPATIAL)
    vs = None
    if voxel_size is not None:
        vs = tuple(float(v) for v in voxel_size)
        if len(vs) == len(spatial) + 1 and len(spatial) == 2:
            vs = vs[1:]  # a (z, y, x) size given for a 2D image: keep y, x
        if len(vs) != len(spatial) or any(not np.isfinite(v) or v <= 0 for v in vs):
            raise FluoreconError(f"{p}: voxel size {voxel_size} does not fit the spatial axes {spatial!r}",
                                 hint=f"give {len(spatial)} positive sizes in µm, order {spatial}")
    if metadata is not None:
        try:
            json.dumps(metadata)
        except (TypeError, ValueError) as e:
            raise FluoreconError(f"metadata for {p} is not JSON-serialisable: {e}", hint="pass plain dicts/lists/numbers/strings") from None
    writers = {"tiff": _write_tiff, "ome-tiff": _write_ome_tiff, "npy": _write_npy, "png": _write_png,
               "zarr": _write_zarr}
    writers[fmt](p, arr, axes, vs, metadata, compression)


def _content_uuid(arr: np.ndarray, *extra) -> str:
    h = hashlib.sha256(arr.tobytes())
    h.update(json.dumps([str(arr.dtype), arr.shape, *extra], sort_keys=True, default=str).encode())
    return str(uuid.UUID(bytes=h.digest()[:16], version=5))


def _tiff_compression(compression: str | None):
    if compression is None or compression == "none":
        return None
    c = compression.lower()
    if c not in ("zlib", "deflate", "zstd", "lzw", "lzma", "packbits"):
        raise FluoreconError(f"unknown TIFF compression {compression!r}", hint="use zlib, zstd, lzw or none")
    return "zlib" if c == "deflate" else c


def _write_tiff(p: Path, arr, axes, vs, metadata, compression):
    import tifffile

    comp = _tiff_compression(compression)
    spatial = [a for a in axes if a in SPATIAL]
    sizes = dict(zip(spatial, vs, strict=True)) if vs else {}
    resolution = (1.0 / sizes["X"], 1.0 / sizes["Y"]) if sizes else None
    if arr.dtype.type in _IMAGEJ_DTYPES:
        # ImageJ order is TZCYX: our canonical TCZYX needs C and Z swapped.
        ij_axes = "".join(a for a in "TZCYX" if a in axes)
        out = np.transpose(arr, [axes.index(a) for a in ij_axes])
        ij_meta: dict[str, Any] = {"axes": ij_axes}
        if sizes:
            ij_meta["unit"] = "um"
            if "Z" in sizes:
                ij_meta["spacing"] = sizes["Z"]
        # The layout is recorded because ImageJ readers squeeze singleton axes.
        ij_meta["Info"] = json.dumps({"fluorecon": metadata, "fluorecon_layout": {"axes": ij_axes, "shape": list(out.shape)}},
                                     sort_keys=True)
        with atomic_path(p) as tmp:
            tifffile.imwrite(tmp, out, imagej=True, metadata=ij_meta, resolution=resolution, photometric="minisblack",
                             compression=comp, datetime=False, software="fluorecon")
    else:
        sm: dict[str, Any] = {"axes": axes, "fluorecon_layout": {"axes": axes, "shape": list(arr.shape)}}
        if sizes:
            sm["voxel_size_um"] = sizes
        if metadata is not None:
            sm["fluorecon"] = metadata
        with atomic_path(p) as tmp:
            # Resolution tags in px/cm so that other readers see the pixel size too.
            res_cm = (1e4 / sizes["X"], 1e4 / sizes["Y"]) if sizes else None
            tifffile.imwrite(tmp, arr, metadata=sm, resolution=res_cm, photometric="minisblack",
                             resolutionunit=3 if res_cm else None,
                             compression=comp, datetime=False, software="fluorecon")


def _write_ome_tiff(p: Path, arr, axes, vs, metadata, compression):
    import tifffile

    comp = _tiff_compression(compression)
    md: dict[str, Any] = {"axes": axes, "UUID": _content_uuid(arr, axes, vs, metadata), "Creator": "fluorecon"}
    if vs:
        for a, v in zip([a for a in axes if a in SPATIAL], vs, strict=True):
            md[f"PhysicalSize{a}"] = v
            md[f"PhysicalSize{a}Unit"] = "µm"
    md["Description"] = json.dumps({"fluorecon": metadata, "fluorecon_layout": {"axes": axes, "shape": list(arr.shape)}},
                                   sort_keys=True)
    with atomic_path(p) as tmp:
        tifffile.imwrite(tmp, arr, ome=True, metadata=md, compression=comp, datetime=False, software="fluorecon",
                         photometric="minisblack")


def _write_npy(p: Path, arr, axes, vs, metadata, compression):
    info: dict[str, Any] = {"axes": axes}
    if vs:
        info["voxel_size"] = list(vs)
    if metadata is not None:
        info["metadata"] = metadata
    with atomic_path(p) as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, arr, allow_pickle=False)
        with atomic_path(_sidecar(p)) as stmp:
            stmp.write_text(json.dumps(info, indent=2, sort_keys=True) + "\n")


def _write_png(p: Path, arr, axes, vs, metadata, compression):
    import imageio.v3 as iio

    if arr.dtype not in (np.uint8, np.uint16):
        raise FluoreconError(f"PNG stores 8- or 16-bit integers; got {arr.dtype} for {p}",
                             hint="write .tif/.npy for float data, or convert (e.g. scale to uint16) first")
    if axes == "YX":
        out = arr
    elif axes == "CYX" and arr.shape[0] in (3, 4):
        out = np.moveaxis(arr, 0, -1)
    else:
        raise FluoreconError(f"PNG holds a 2D (YX) or RGB(A) (CYX, 3-4 channels) image; got axes {axes!r} shape {arr.shape} for {p}",
                             hint="write .tif, .ome.tif, .npy or .zarr for stacks")
    with atomic_path(p) as tmp:
        iio.imwrite(tmp, np.ascontiguousarray(out), extension=".png")


_NGFF_NAMES = {"T": ("t", "time"), "C": ("c", "channel"), "Z": ("z", "space"), "Y": ("y", "space"), "X": ("x", "space")}


def _write_zarr(p: Path, arr, axes, vs, metadata, compression):
    import zarr
    from ome_zarr.writer import write_image as ome_write

    spatial = [a for a in axes if a in SPATIAL]
    sizes = dict(zip(spatial, vs, strict=True)) if vs else {}
    names = [_NGFF_NAMES[a][0] for a in axes]
    scale = {_NGFF_NAMES[a][0]: float(sizes.get(a, 1.0)) for a in axes}
    units = {_NGFF_NAMES[a][0]: "micrometer" for a in spatial} if sizes else None  # no unit = unknown size
    # Chunks: whole planes (capped) so that a 2D viewer reads one chunk per plane.
    chunks = tuple(1 if a in "TCZ" else min(n, 1024) for a, n in zip(axes, arr.shape, strict=True))
    storage: dict[str, Any] = {"chunks": chunks}
    if compression:
        from zarr.codecs import BloscCodec

        storage["compressors"] = [BloscCodec(cname=compression, clevel=5, shuffle="shuffle")]
    with atomic_path(p, is_dir=True) as tmp:
        root = zarr.open_group(str(tmp), mode="w")
        ome_write(arr, root, scale_factors=[], axes=names, scale=scale, axes_units=units,
                  storage_options=storage)
        root.attrs["fluorecon_writer"] = "fluorecon"  # recognisably ours (safe to replace with --overwrite)
        if metadata is not None:
            root.attrs["fluorecon"] = metadata

