"""Time as a dimension: self-supervised spatiotemporal restoration of time-lapses (issue 21).

A frame-by-frame denoiser sees one frame at a time, so its errors are independent from frame to
frame and the restored movie flickers. Here the time axis ``T`` of a ``(T, Y, X)`` movie is the first
axis of a 3D (t, y, x) U-Net (anisotropic: pooling in YX only, any temporal window), trained with a
scheme that time makes possible:

- ``"deepcad"`` — DeepCAD-RT-style interleaved-frame Noise2Noise: the odd frames and the even frames
  are two noisy recordings of nearly the same scene (sampled half a frame apart), so the network learns
  to map the sub-movie of even frames onto the sub-movie of odd frames (and back). Needs slow content
  relative to the frame rate.
- ``"n2v-t"`` — spatiotemporal blind spot (SUPPORT-like): Noise2Void over (t, y, x), one pixel per 4³
  cell hidden and replaced by the median of its 5³ neighbourhood. Works for any motion: the network
  learns from a pixel's neighbours in space and in the adjacent frames.

Both wrap :func:`fluorecon.learn.train.train` (the engine's U-Net, normaliser, schedule and bundle):
the movie is passed as a ``ZYX`` stack whose Z is time. Prediction (:func:`predict_temporal`) runs
:func:`fluorecon.learn.predict.predict` over the whole movie with tiles along T (with overlap), so a
long movie is restored in bounded memory and without seams in time.

Examples
--------
>>> rng = np.random.default_rng(0)
>>> movie = rng.poisson(20, (16, 32, 32)).astype(np.float32)
>>> out, info = denoise_temporal(movie, "TYX", scheme="n2v-t", steps=2, window=8, patch_size=16,
...                              width=4, device="cpu")
>>> out.shape, info["scheme"]
((16, 32, 32), 'n2v-t')
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from fluorecon.errors import FluoreconError
from fluorecon.learn.bundle import Bundle
from fluorecon.learn.predict import predict
from fluorecon.learn.train import TrainConfig, train
from fluorecon.validation import as_image

__all__ = ["TEMPORAL_SCHEMES", "check_movie", "denoise_temporal", "min_frames", "predict_temporal", "train_temporal"]

TEMPORAL_SCHEMES = ("n2v-t", "deepcad")


def min_frames(scheme: str, window: int) -> int:
    """Frames a movie needs for ``scheme`` with a temporal window of ``window`` frames.

    ``deepcad`` splits the movie into odd and even frames, each at least ``window`` long.

    Examples
    --------
    >>> min_frames("deepcad", 8), min_frames("n2v-t", 8)
    (16, 8)
    """
    return 2 * int(window) if scheme == "deepcad" else int(window)


def check_movie(movie: Any, axes: str | None, window: int = 1, scheme: str = "n2v-t",
                name: str = "movie") -> tuple[np.ndarray, str]:
    """Validate a time-lapse for a temporal method: a ``TYX`` float32 array with enough frames.

    Parameters
    ----------
    movie : array-like or list of arrays
        The time-lapse. A list of frames is stacked (frames of different sizes are refused).
    axes : str
        Must contain ``T`` (``"TYX"``); ``None`` assumes ``TYX`` for a 3D array.
    window : int
        Temporal window (frames per training patch).
    scheme : str
        Temporal scheme (``deepcad`` needs twice the window).

    Returns
    -------
    (numpy.ndarray, str)
        Float32 movie and its axes (``"TYX"``).

    Examples
    --------
    >>> check_movie(np.zeros((8, 16, 16)), "TYX", window=8)[0].shape
    (8, 16, 16)
    >>> try:
    ...     check_movie(np.zeros((8, 16, 16)), "ZYX")
    ... except FluoreconError as e:
    ...     print(e.hint)
    give --axes TYX (the first axis is time)
    """
    if isinstance(movie, list | tuple):
        shapes = {tuple(np.shape(f)) for f in movie}
        if len(shapes) > 1:
            raise FluoreconError(f"{name}: frames of varying size {sorted(shapes)}",
                                 hint="crop or pad every frame to the same size before restoring the movie")
        movie = np.stack([np.asarray(f) for f in movie])
        axes = axes or "TYX"
    if axes is None and np.ndim(movie) == 3:
        axes = "TYX"
    axes = (axes or "").upper()
    if "T" not in axes:
        raise FluoreconError(f"{name}: a temporal method needs a time axis T, got axes {axes or '?'!r}",
                             hint="give --axes TYX (the first axis is time)")
    arr, axes = as_image(movie, axes, name=name)
    if axes != "TYX":
        raise FluoreconError(f"{name}: temporal methods restore TYX movies, got axes {axes!r}",
                             hint="restore each channel / plane as its own TYX movie")
    need = min_frames(scheme, window)
    if arr.shape[0] < need:
        raise FluoreconError(f"{name}: {arr.shape[0]} frames is fewer than the {need} that {scheme} with a temporal "
                             f"window of {window} needs", hint=f"give a movie of at least {need} frames, or a smaller "
                             f"window (--window {max(arr.shape[0] // (2 if scheme == 'deepcad' else 1), 1)})")
    return arr, axes


def _config(scheme: str, window: int, patch_size: int, width: int, depth: int, steps: int | None,
            budget_s: float | None, seed: int, device: str, progress: bool, **overrides: Any) -> TrainConfig:
    kw: dict[str, Any] = dict(scheme="n2n" if scheme == "deepcad" else "n2v", axes="ZYX", dim=3,
                              patch_size=[int(window), int(patch_size), int(patch_size)], batch_size=8,
                              model={"depth": depth, "width": width, "anisotropic": True,
                                     # Noise2Noise starts from the identity (a non-residual 3D net collapsed
                                     # to a constant in 100 steps); a blind-spot net must not (it would learn
                                     # to pass each pixel through): non-residual, the engine's default
                                     "residual": scheme == "deepcad"}, steps=steps,
                              budget_s=None if steps else budget_s, seed=seed, device=device, progress=progress,
                              val_fraction=0.0)
    kw.update(overrides)
    return TrainConfig(**kw)


def train_temporal(movie: Any, axes: str | None = "TYX", scheme: str = "n2v-t", *, window: int = 8,
                   patch_size: int = 32, width: int = 16, depth: int = 2, steps: int | None = 300,
                   budget_s: float | None = None, seed: int = 0, device: str = "auto", progress: bool = False,
                   callback: Callable[[int, float], None] | None = None, **overrides: Any) -> Bundle:
    """Train a spatiotemporal (t, y, x) U-Net on one movie, self-supervised.

    Parameters
    ----------
    movie : array-like
        ``(T, Y, X)`` noisy time-lapse.
    axes : str
        ``"TYX"``.
    scheme : {"n2v-t", "deepcad"}
        Spatiotemporal blind spot, or interleaved-frame Noise2Noise (module docstring).
    window : int
        Frames per training patch (the temporal extent the network learns from).
    patch_size : int
        YX size of training patches (≤ the frame size).
    width, depth : int
        U-Net width (channels of the first level) and depth.
    steps : int, optional
        Training steps; ``None`` trains for ``budget_s`` seconds.
    budget_s : float, optional
        Wall-time budget when ``steps`` is None.
    seed, device, progress, callback
        As for :func:`fluorecon.learn.train.train`.
    **overrides
        Any other :class:`~fluorecon.learn.train.TrainConfig` field (``lr``, ``batch_size``, ...).

    Returns
    -------
    Bundle
        ``provenance["temporal"]`` records the scheme and window; apply it with :func:`predict_temporal`.

    Examples
    --------
    >>> m = np.random.default_rng(0).poisson(9, (16, 16, 16)).astype(np.float32)
    >>> b = train_temporal(m, "TYX", "deepcad", window=8, patch_size=16, width=4, steps=1, device="cpu")
    >>> b.provenance["temporal"]["scheme"], b.model.config()["dim"]
    ('deepcad', 3)
    """
    if scheme not in TEMPORAL_SCHEMES:
        raise FluoreconError(f"unknown temporal scheme {scheme!r}", hint=f"use one of {', '.join(TEMPORAL_SCHEMES)}")
    arr, _ = check_movie(movie, axes, window, scheme)
    ps = int(min(patch_size, arr.shape[1], arr.shape[2]))
    ps = max(8, ps - ps % 4)
    if min(arr.shape[1:]) < ps:
        raise FluoreconError(f"frames {arr.shape[1:]} are too small for spatiotemporal training (needs ≥ 8×8)",
                             hint="use --method classical for tiny frames")
    cfg = _config(scheme, window, ps, width, depth, steps, budget_s, seed, device, progress, **overrides)
    if steps is None and budget_s is None:
        raise FluoreconError("training needs steps or a wall-time budget", hint="steps=300 or budget_s=120")
    if scheme == "deepcad":
        n = arr.shape[0] // 2
        even, odd = arr[0:2 * n:2], arr[1:2 * n:2]
        bundle = train(cfg, [even], [odd], axes="ZYX", callback=callback)
    else:
        bundle = train(cfg, [arr], axes="ZYX", callback=callback)
    bundle.provenance["temporal"] = {"scheme": scheme, "window": int(window), "axes": "TYX"}
    return bundle


def predict_temporal(bundle: Bundle, movie: Any, axes: str | None = "TYX", *, window: int | None = None,
                     device: str = "auto", batch_size: int = 4) -> np.ndarray:
    """Restore a whole movie with a spatiotemporal bundle, in tiles along time with overlap.

    Parameters
    ----------
    bundle : Bundle
        From :func:`train_temporal`.
    movie : array-like
        ``(T, Y, X)``.
    window : int, optional
        Frames per prediction tile (default: 8 × the training window, at most the movie); tiles overlap
        by twice the network's receptive radius, so the result does not depend on the tiling.
    device : str
        ``"cpu"``, ``"cuda"`` or ``"auto"``.

    Returns
    -------
    numpy.ndarray
        Float32 ``(T, Y, X)`` in the movie's units.

    Examples
    --------
    >>> m = np.random.default_rng(0).poisson(9, (16, 16, 16)).astype(np.float32)
    >>> b = train_temporal(m, "TYX", "n2v-t", window=8, patch_size=16, width=4, steps=1, device="cpu")
    >>> predict_temporal(b, m, device="cpu").shape
    (16, 16, 16)
    """
    arr, _ = check_movie(movie, axes, 1, "n2v-t")
    t = arr.shape[0]
    train_window = int((bundle.provenance.get("temporal") or {}).get("window", 8))
    wt = int(window or 8 * train_window)
    cfg = bundle.model.config()
    tile: Any = None
    overlap: Any = None
    if t > wt:
        r_xy = int(bundle.model.receptive_radius)
        # anisotropic net: no pooling in T, one frame of reach per 3×3×3 conv (2 per block, 2·depth+1 blocks)
        r_t = 2 * (2 * int(cfg.get("depth", 2)) + 1) if cfg.get("anisotropic") else r_xy
        overlap = (2 * r_t + 12, 2 * r_xy + 16, 2 * r_xy + 16)
        tile = (max(wt, 2 * overlap[0]), arr.shape[1], arr.shape[2])
    out = predict(bundle, arr, "ZYX", tile=tile, overlap=overlap, device=device, batch_size=batch_size)
    return np.asarray(out, np.float32)


def denoise_temporal(movie: Any, axes: str | None = "TYX", scheme: str = "n2v-t", *, window: int = 8,
                     patch_size: int = 32, width: int = 16, depth: int = 2, steps: int | None = 300,
                     budget_s: float | None = None, seed: int = 0, device: str = "auto", progress: bool = False,
                     callback: Callable[[int, float], None] | None = None, **overrides: Any) -> tuple[np.ndarray, dict]:
    """Train a spatiotemporal network on ``movie`` and restore it (what ``fluorecon denoise-movie`` runs).

    Parameters are those of :func:`train_temporal`.

    Returns
    -------
    (numpy.ndarray, dict)
        The restored movie (float32, input units) and ``info``: ``scheme``, ``window``, ``steps``,
        ``train_s``, ``predict_s``, ``frames_per_s`` (inference), ``bundle``.

    Examples
    --------
    >>> m = np.random.default_rng(0).poisson(9, (16, 16, 16)).astype(np.float32)
    >>> out, info = denoise_temporal(m, scheme="deepcad", steps=1, patch_size=16, width=4, device="cpu")
    >>> out.shape, info["steps"]
    ((16, 16, 16), 1)
    """
    t0 = time.perf_counter()
    bundle = train_temporal(movie, axes, scheme, window=window, patch_size=patch_size, width=width, depth=depth,
                            steps=steps, budget_s=budget_s, seed=seed, device=device, progress=progress,
                            callback=callback, **overrides)
    t1 = time.perf_counter()
    out = predict_temporal(bundle, movie, axes, device=device)
    t2 = time.perf_counter()
    info = {"scheme": scheme, "window": int(window), "steps": int(bundle.provenance["steps"]),
            "train_s": round(t1 - t0, 3), "predict_s": round(t2 - t1, 3),
            "frames_per_s": round(out.shape[0] / max(t2 - t1, 1e-9), 2), "bundle": bundle}
    return out, info
