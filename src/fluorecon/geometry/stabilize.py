"""Stabilization of a moving, deforming time-lapse against a template: rigid/affine, then learned deformable.

Every frame ``k`` is registered to the template: first :func:`fluorecon.geometry.pairwise.register_pair`
(translation → rigid/affine refinement), then (``model="deformable"``) one voxelmorph-style net is
trained on all affinely aligned frames (:func:`fluorecon.geometry.deformable.train_deformable`) and
predicts a residual field per frame. The total field per frame is

``U_k(x) = (M_k x − x) + A_k · d_k(x)``  so that  ``stabilized_k(x) = frame_k(x + U_k(x)) ≈ template(x)``

(``M_k`` the homogeneous fixed → moving matrix, ``A_k`` its linear part, ``d_k`` the deformable field).

Examples
--------
>>> from fluorecon.physics import motion
>>> s = motion.deformed_series(n_frames=2, shape=(48, 48), seed=0)
>>> out = stabilize(s["frames"], template=s["template"], model="translation")
>>> out["stabilized"].shape, out["fields"].shape
((2, 48, 48), (2, 2, 48, 48))
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy import ndimage

from fluorecon.errors import FluoreconError
from fluorecon.geometry.deformable import instance_optimize, predict_field, train_deformable
from fluorecon.geometry.pairwise import register_pair
from fluorecon.geometry.transforms import matrix_field

__all__ = ["MODELS", "make_template", "stabilize"]

MODELS = ("translation", "rigid", "affine", "deformable")


def make_template(movie: np.ndarray, template: Any = "median") -> np.ndarray:
    """The reference: an array, ``"first"``, ``"mean"`` or ``"median"`` of the frames, or a frame index.

    Examples
    --------
    >>> make_template(np.arange(8.0).reshape(2, 2, 2), "first").tolist()
    [[0.0, 1.0], [2.0, 3.0]]
    """
    movie = np.asarray(movie, np.float32)
    if isinstance(template, np.ndarray):
        t = np.asarray(template, np.float32)
        if t.shape != movie.shape[1:]:
            raise FluoreconError(f"template of shape {t.shape} does not match frames of shape {movie.shape[1:]}")
        return t
    if isinstance(template, int | np.integer):
        if not -len(movie) <= int(template) < len(movie):
            raise FluoreconError(f"template frame {template} is outside the movie's {len(movie)} frames")
        return movie[int(template)]
    if template == "first":
        return movie[0]
    if template == "mean":
        return movie.mean(axis=0)
    if template == "median":
        return np.median(movie, axis=0).astype(np.float32)
    raise FluoreconError(f"unknown template {template!r}", hint="an image, a frame index, first, mean or median")


def stabilize(movie: np.ndarray, template: Any = "median", model: str = "affine", *, steps: int = 300,
              smooth_weight: float = 1.0, instance_steps: int = 0, min_confidence: float = 0.1, seed: int = 0,
              budget_s: float | None = None, progress: Callable[[float, str], Any] | None = None) -> dict[str, Any]:
    """Register every frame of ``movie`` (T, *S) to a template.

    Parameters
    ----------
    movie : ndarray
        Time first, 2D or 3D frames.
    template : array, int or str
        See :func:`make_template`.
    model : {"translation", "rigid", "affine", "deformable"}
        ``deformable`` = affine, then the learned deformable net on the affinely aligned frames.
    steps, smooth_weight, instance_steps, seed, budget_s
        Deformable training (see :func:`fluorecon.geometry.deformable.train_deformable`).
    min_confidence : float
        Frames whose rigid/affine registration falls below are flagged and left unmoved.

    Returns
    -------
    dict
        ``stabilized`` (T, *S), ``fields`` (T, ndim, *S) px (``stabilized[k](x) = movie[k](x + fields[k](x))``),
        ``matrices`` (T, ndim+1, ndim+1), ``confidence`` (T,), ``template``, ``warnings``, ``info``.
    """
    movie = np.asarray(movie, np.float32)
    if movie.ndim not in (3, 4):
        raise FluoreconError(f"stabilization needs a time-lapse (T, Y, X) or (T, Z, Y, X), got shape {movie.shape}")
    if model not in MODELS:
        raise FluoreconError(f"unknown model {model!r}", hint=f"use one of {', '.join(MODELS)}")
    tpl = make_template(movie, template)
    nd = tpl.ndim
    shape = tpl.shape
    lin_model = "affine" if model == "deformable" else model
    mats, conf, warnings = [], [], []
    aligned = []
    for k, fr in enumerate(movie):
        r = register_pair(tpl, fr, lin_model, min_confidence=min_confidence)
        m = r.matrix
        if r.low_confidence:
            warnings.append(f"frame {k}: registration confidence {r.confidence:.2f} < {min_confidence}; left unmoved")
            m = np.eye(nd + 1)
        mats.append(m)
        conf.append(r.confidence)
        aligned.append(ndimage.affine_transform(fr, m[:nd, :nd], m[:nd, nd], order=1, mode="nearest"))
        if progress is not None:
            progress(0.3 * (k + 1) / len(movie), f"{lin_model} registration of frame {k + 1}/{len(movie)}")
    aligned_arr = np.stack(aligned).astype(np.float32)
    fields = np.stack([matrix_field(m, shape) for m in mats])
    info: dict[str, Any] = {"model": model, "template": template if isinstance(template, str | int) else "array"}
    if model == "deformable":
        def prog(f: float, msg: str) -> None:
            if progress is not None:
                progress(0.3 + 0.6 * f, msg)

        net = train_deformable(tpl, aligned_arr, steps=steps, smooth_weight=smooth_weight, seed=seed,
                               budget_s=budget_s, progress=prog)
        info["trained_steps"] = int(getattr(net, "trained_steps", steps))
        info["net"] = net.config()
        for k in range(len(movie)):
            d = predict_field(net, tpl, aligned_arr[k])
            if instance_steps:
                d = instance_optimize(tpl, aligned_arr[k], d, steps=instance_steps, smooth_weight=smooth_weight)
            a = mats[k][:nd, :nd]
            fields[k] = fields[k] + np.einsum("ij,j...->i...", a, d).astype(np.float32)
        info["deformable_net"] = net
    grid = np.indices(shape, dtype=np.float32)
    stab = np.stack([ndimage.map_coordinates(movie[k], grid + fields[k], order=1, mode="nearest")
                     for k in range(len(movie))]).astype(np.float32)
    if progress is not None:
        progress(1.0, "stabilized")
    return {"stabilized": stab, "fields": fields.astype(np.float32), "matrices": np.stack(mats),
            "confidence": np.array(conf), "template": tpl, "warnings": warnings, "info": info}
