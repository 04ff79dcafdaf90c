"""The transform JSON schema and applying transforms to images.

A transform maps **fixed-image pixel coordinates to moving-image pixel coordinates** (the direction
used to resample): ``registered(x) = moving(A x + t [+ u(x)])`` lines ``moving`` up with ``fixed``.
Coordinates are in pixels, in the order of the spatial axes (``(y, x)`` or ``(z, y, x)``), origin at
the centre of the first pixel. JSON (``schema: "fluorecon.transform"``, ``version: 1``)::

    {
      "schema": "fluorecon.transform", "version": 1,
      "kind": "translation" | "rigid" | "affine" | "deformable",
      "axes": "YX", "ndim": 2, "units": "pixel", "voxel_size": [0.1, 0.1] | null,
      "matrix": [[a00, a01, t0], [a10, a11, t1], [0, 0, 1]],   # fixed → moving, homogeneous
      "shift": [dy, dx],            # displacement that moves `moving` onto `fixed` (= −t for translations);
                                    #  scipy.ndimage.shift(moving, shift) ≈ fixed
      "confidence": 0.93,           # in [0, 1]; see fluorecon.geometry.pairwise
      "low_confidence": false,
      "metrics": {...},             # peak significance, overlap correlation, residuals
      "field": {"shape": [2, Y, X], "stored_as": "field output"} | absent   # deformable only
    }

A deformable transform adds a displacement field ``u`` of shape ``(ndim, *fixed_shape)`` in pixels
(stored as a separate image, axes ``"CYX"``/``"CZYX"``, C = components) on top of the matrix.

Examples
--------
>>> t = translation_transform([2.0, -1.0], axes="YX")
>>> t["matrix"][0][2], t["matrix"][1][2]
(-2.0, 1.0)
>>> img = np.zeros((8, 8), np.float32); img[3, 3] = 1
>>> out = apply_transform(img, t)
>>> np.unravel_index(int(out.argmax()), out.shape)
(np.int64(5), np.int64(2))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from fluorecon.errors import FluoreconError

__all__ = [
    "KINDS",
    "SCHEMA",
    "apply_transform",
    "check_transform",
    "make_transform",
    "matrix_field",
    "translation_transform",
]

SCHEMA = "fluorecon.transform"
KINDS = ("translation", "rigid", "affine", "deformable")


def make_transform(matrix: np.ndarray, kind: str, axes: str, *, confidence: float = 1.0, low_confidence: bool = False,
                   voxel_size: Sequence[float] | None = None, metrics: dict[str, Any] | None = None,
                   field_shape: Sequence[int] | None = None) -> dict[str, Any]:
    """Build a transform dict (see the module docstring) from a homogeneous fixed → moving matrix.

    Examples
    --------
    >>> make_transform(np.eye(3), "affine", "YX")["kind"]
    'affine'
    """
    m = np.asarray(matrix, np.float64)
    nd = len(axes)
    if m.shape != (nd + 1, nd + 1):
        raise FluoreconError(f"transform matrix of shape {m.shape} does not fit axes {axes!r}",
                             hint=f"give a ({nd + 1}, {nd + 1}) homogeneous matrix")
    if kind not in KINDS:
        raise FluoreconError(f"unknown transform kind {kind!r}", hint=f"use one of {', '.join(KINDS)}")
    d: dict[str, Any] = {
        "schema": SCHEMA, "version": 1, "kind": kind, "axes": axes, "ndim": nd, "units": "pixel",
        "voxel_size": None if voxel_size is None else [float(v) for v in voxel_size],
        "matrix": [[float(v) for v in row] for row in m],
        "confidence": float(np.clip(confidence, 0, 1)), "low_confidence": bool(low_confidence),
        "metrics": dict(metrics or {}),
    }
    if np.allclose(m[:nd, :nd], np.eye(nd)):
        d["shift"] = [float(-v) for v in m[:nd, nd]]
    if field_shape is not None:
        d["field"] = {"shape": [int(s) for s in field_shape], "stored_as": "field output (axes C + spatial, pixels)"}
    return d


def translation_transform(shift: Sequence[float], axes: str | None = None, **kw: Any) -> dict[str, Any]:
    """A translation transform from the shift that moves ``moving`` onto ``fixed`` (scipy ``ndimage.shift`` sense).

    Examples
    --------
    >>> translation_transform([1.5, 0.0])["shift"]
    [1.5, 0.0]
    """
    s = np.asarray(shift, np.float64)
    nd = len(s)
    m = np.eye(nd + 1)
    m[:nd, nd] = -s
    return make_transform(m, "translation", axes or "ZYX"[-nd:], **kw)


def check_transform(t: Any, ndim: int | None = None) -> dict[str, Any]:
    """Validate a transform dict (e.g. read from JSON); returns it with a numpy ``matrix`` checked.

    Raises
    ------
    FluoreconError
        Not a fluorecon transform, wrong dimensions or a non-finite/singular matrix.

    Examples
    --------
    >>> check_transform(translation_transform([1, 2]), ndim=2)["kind"]
    'translation'
    """
    if not isinstance(t, dict) or t.get("schema") != SCHEMA:
        raise FluoreconError("not a fluorecon transform (missing schema 'fluorecon.transform')",
                             hint="use a JSON written by `fluorecon register`")
    if int(t.get("version", 0)) > 1:
        raise FluoreconError(f"transform schema version {t.get('version')} is newer than this fluorecon understands",
                             hint="upgrade fluorecon")
    m = np.asarray(t.get("matrix"), np.float64)
    nd = int(t.get("ndim", m.shape[0] - 1))
    if m.shape != (nd + 1, nd + 1) or not np.all(np.isfinite(m)) or abs(np.linalg.det(m[:nd, :nd])) < 1e-6:
        raise FluoreconError(f"transform matrix {m.tolist()} is not a valid {nd}-D homogeneous matrix")
    if ndim is not None and nd != ndim:
        raise FluoreconError(f"the transform is {nd}-D but the image has {ndim} spatial axes",
                             hint="register images with the same spatial axes")
    return t


def matrix_field(matrix: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Displacement field ``(ndim, *shape)`` of a fixed → moving matrix: ``A x + t − x``.

    Examples
    --------
    >>> m = np.eye(3); m[1, 2] = 2.0
    >>> float(matrix_field(m, (3, 3))[1].mean())
    2.0
    """
    shape = tuple(int(s) for s in shape)
    nd = len(shape)
    m = np.asarray(matrix, np.float64)
    x = np.indices(shape, dtype=np.float64).reshape(nd, -1)
    y = m[:nd, :nd] @ x + m[:nd, nd:nd + 1]
    return (y - x).reshape(nd, *shape).astype(np.float32)


def apply_transform(image: np.ndarray, transform: dict[str, Any], field: np.ndarray | None = None,
                    output_shape: Sequence[int] | None = None, order: int = 1, cval: float = 0.0) -> np.ndarray:
    """Resample ``image`` (the moving image) into the fixed image's frame.

    Parameters
    ----------
    image : ndarray
        2D/3D image; leading non-spatial axes (T, C) are processed one by one when the transform has
        fewer dimensions.
    transform : dict
        A fluorecon transform (fixed → moving pixel coordinates).
    field : ndarray, optional
        Displacement field ``(ndim, *output_shape)`` of a deformable transform (added to the matrix).
    output_shape : tuple, optional
        Shape of the fixed frame (default: the image's spatial shape, or the field's).
    order : int
        Interpolation order (1 linear, 3 cubic).
    cval : float
        Value outside the moving image.

    Examples
    --------
    >>> img = np.arange(16, dtype=np.float32).reshape(4, 4)
    >>> apply_transform(img, translation_transform([0, -1]))[0, :3].tolist()
    [1.0, 2.0, 3.0]
    """
    t = check_transform(transform)
    nd = int(t["ndim"])
    image = np.asarray(image, np.float32)
    if image.ndim < nd:
        raise FluoreconError(f"a {nd}-D transform cannot apply to a {image.ndim}-D image")
    if image.ndim > nd:
        return np.stack([apply_transform(im, t, field, output_shape, order, cval) for im in image])
    if t["kind"] == "deformable" and field is None:
        raise FluoreconError("this deformable transform needs its displacement field", hint="pass the field image "
                             "written beside the transform (e.g. --field FIELD.tif)")
    m = np.asarray(t["matrix"], np.float64)
    if output_shape is None:
        output_shape = field.shape[1:] if field is not None else image.shape
    output_shape = tuple(int(s) for s in output_shape)
    if field is None:
        return ndimage.affine_transform(image, m[:nd, :nd], m[:nd, nd], output_shape=output_shape, order=order,
                                        mode="constant", cval=cval).astype(np.float32)
    field = np.asarray(field, np.float32)
    if field.shape != (nd, *output_shape):
        raise FluoreconError(f"displacement field of shape {field.shape} does not fit the output {output_shape}",
                             hint=f"expected {(nd, *output_shape)}")
    coords = np.indices(output_shape, dtype=np.float32) + matrix_field(m, output_shape) + field
    return ndimage.map_coordinates(image, coords, order=order, mode="constant", cval=cval).astype(np.float32)
