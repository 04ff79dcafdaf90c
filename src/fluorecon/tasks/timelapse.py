"""Temporally consistent restoration of time-lapses as a registered task (``fluorecon denoise-movie``).

Time is a dimension: ``n2v-t`` (spatiotemporal blind spot) and ``deepcad`` (interleaved-frame
Noise2Noise) train a (t, y, x) U-Net on the movie itself, ``convlstm`` a bidirectional ConvLSTM with
the same blind spot (:mod:`fluorecon.learn.temporal`);
``n2v-frames`` (the engine's single-image N2V, frame by frame) and ``classical`` (self-calibrated
classical denoiser per frame) are the frame-by-frame baselines. The result carries the flicker
measured against the raw movie's temporal low-pass (:func:`fluorecon.evaluate.temporal.flicker`).
:func:`denoise_movie_chunked` restores a movie longer than memory (a zarr array) in chunks of T with
blended overlaps, after training (or calibrating) once on a central run of frames.

Examples
--------
>>> from fluorecon.tasks.registry import get
>>> task = get("denoise-movie")
>>> ex = task.example()
>>> res = task(ex["inputs"]["movie"], **ex["params"])
>>> res.image.shape, res.params_used["method"]
((16, 32, 32), 'n2v-t')
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from fluorecon.classical.denoise import METHODS as CLASSICAL_METHODS
from fluorecon.classical.denoise import denoise_classical
from fluorecon.errors import FluoreconError
from fluorecon.evaluate.temporal import flicker
from fluorecon.io import ImageData
from fluorecon.learn.single_image import denoise_single_image, predict_blind_spot
from fluorecon.learn.temporal import (
    TEMPORAL_SCHEMES,
    RecurrentBundle,
    check_movie,
    denoise_temporal,
    min_frames,
    predict_recurrent,
    predict_temporal,
    restore_in_time_chunks,
    train_temporal,
)
from fluorecon.physics.timelapse import simulate_timelapse
from fluorecon.tasks.contract import (
    IdentityForward,
    InputSpec,
    OutputSpec,
    Result,
    Task,
    TaskParams,
    as_progress,
    param,
)
from fluorecon.tasks.registry import register

__all__ = ["METHODS", "DenoiseMovieParams", "DenoiseMovieTask", "denoise_movie", "denoise_movie_chunked", "needed_frames"]

METHODS = (*TEMPORAL_SCHEMES, "n2v-frames", "classical")


def denoise_movie(movie: Any, axes: str | None = "TYX", method: str = "n2v-t", *, window: int = 8,
                  steps: int | None = None, budget_s: float = 120.0, width: int = 16, patch_size: int = 32,
                  classical_method: str = "auto", seed: int = 0, device: str = "auto",
                  callback: Any = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Restore a ``TYX`` movie with a temporal method or a frame-by-frame baseline.

    Parameters
    ----------
    movie : array-like
        ``(T, Y, X)`` time-lapse (T first).
    axes : str
        ``"TYX"`` (required: a movie without ``T`` is refused).
    method : {"n2v-t", "deepcad", "convlstm", "n2v-frames", "classical"}
        Spatiotemporal blind spot, interleaved-frame Noise2Noise, bidirectional ConvLSTM (blind spot),
        frame-by-frame N2V, per-frame classical.
    window : int
        Temporal window (frames per training patch) of the temporal methods.
    steps : int, optional
        Training steps of learned methods (reproducible); default: train for ``budget_s`` seconds.
    budget_s : float
        Training wall-time budget of learned methods.
    width, patch_size : int
        U-Net width and YX training patch of the temporal methods.
    classical_method : str
        Classical denoiser (``auto`` = self-calibrated choice) for ``method="classical"``.
    seed, device, callback
        Learned methods: seed, compute device, ``callback(step, loss)`` per training step.

    Returns
    -------
    (numpy.ndarray, dict)
        Float32 movie in input units, and ``info`` (``method``, ``seconds``, ``flicker_raw_lowpass``,
        learned: ``steps``, ``bundle``).

    Examples
    --------
    >>> m = simulate_timelapse((32, 32), n_frames=16, seed=0)["movie"]
    >>> out, info = denoise_movie(m, "TYX", "classical", classical_method="tv")
    >>> out.shape, info["method"]
    ((16, 32, 32), 'classical')
    """
    if method not in METHODS:
        raise FluoreconError(f"unknown method {method!r}", hint=f"use one of {', '.join(METHODS)}")
    arr, axes = check_movie(movie, axes, window if method in TEMPORAL_SCHEMES else 1,
                            method if method in TEMPORAL_SCHEMES else "n2v-t")
    t0 = time.perf_counter()
    info: dict[str, Any] = {"method": method}
    if method in TEMPORAL_SCHEMES:
        out, tinfo = denoise_temporal(arr, axes, method, window=window, patch_size=patch_size, width=width,
                                      steps=steps, budget_s=None if steps else budget_s, seed=seed, device=device,
                                      callback=callback)
        info.update(tinfo)
    elif method == "n2v-frames":
        out, sinfo = denoise_single_image(arr, "TYX", scheme="n2v", budget_s=budget_s, steps=steps, seed=seed,
                                          device=device, progress=False, callback=callback)
        info.update(steps=sinfo["steps"], bundle=sinfo["bundle"], train_s=sinfo["train_s"],
                    predict_s=sinfo["predict_s"])
    else:
        out, cinfo = denoise_classical(arr, method=classical_method, axes="TYX")
        info.update(classical={"method": cinfo["method"], "params": cinfo["params"]})
    info["seconds"] = round(time.perf_counter() - t0, 3)
    info["flicker_raw_lowpass"] = flicker(out, raw=arr) if arr.shape[0] >= 2 else None
    return np.asarray(out, np.float32), info


class DenoiseMovieParams(TaskParams):
    """Parameters of :class:`DenoiseMovieTask`."""

    method: str = param("n2v-t", "n2v-t (spatiotemporal blind spot) | deepcad (odd→even frames Noise2Noise) | "
                        "convlstm (bidirectional ConvLSTM, spatiotemporal blind spot) | "
                        "n2v-frames (frame-by-frame N2V) | classical (per-frame classical denoiser).",
                        choices=METHODS)
    window: int = param(8, "Temporal window of n2v-t/deepcad: frames per training patch (deepcad needs twice as "
                        "many frames in the movie).", ge=2, le=256)
    budget_s: float = param(120.0, "Training wall-time budget of learned methods.", unit="s", cli="--budget",
                            gt=0, le=7 * 86400)
    steps: int | None = param(None, "Learned methods: train exactly this many steps (reproducible) instead of the "
                              "time budget.", ge=1, le=10_000_000)
    width: int = param(16, "Width of the spatiotemporal U-Net (channels of its first level).", ge=2, le=128,
                       advanced=True)
    patch_size: int = param(32, "YX size of the spatiotemporal training patches (pixels).", ge=8, le=256,
                            advanced=True)
    classical_method: str = param("auto", "Classical per-frame denoiser for --method classical.",
                                  choices=("auto", *CLASSICAL_METHODS), advanced=True)
    seed: int = param(0, "Random seed of learned methods.", ge=0)
    device: str = param("auto", "Compute device of learned methods: auto, cpu or cuda.", widget=False,
                        choices=("auto", "cpu", "cuda"))


@register
class DenoiseMovieTask(Task):
    """Time-lapse restoration with time as a dimension (issue 21)."""

    name = "denoise-movie"
    title = "Denoise movie"
    summary = "Temporally consistent denoising of a time-lapse: a (t, y, x) network trained on the movie itself."
    Params = DenoiseMovieParams
    inputs = (InputSpec("movie", "Noisy time-lapse with a T axis (TYX; give --axes TYX)."),)
    outputs = (OutputSpec("image", "Restored movie, float32, in the input's intensity units."),)
    trust = ("verify",)
    accepts = ("TYX",)
    doc = "timelapse"
    output_tag = "_denoised"
    saves_model = True
    examples = ("fluorecon denoise-movie movie.tif --axes TYX -o clean.tif --method n2v-t --budget 300",
                "fluorecon denoise-movie movie.tif --axes TYX -o clean.tif --method deepcad --steps 2000",
                "fluorecon denoise-movie movie.tif --axes TYX -o clean.tif --method convlstm --budget 300",
                "fluorecon denoise-movie movie.tif --axes TYX -o base.tif --method classical")

    def run(self, inputs: Mapping[str, ImageData], params: DenoiseMovieParams, progress: Any = None) -> Result:
        img = inputs["movie"]
        report = as_progress(progress)
        if "T" not in img.axes:
            raise FluoreconError(f"denoise-movie needs a movie with a time axis T, got axes {img.axes!r}",
                                 hint="give --axes TYX (the first axis is time)")
        report(0.0, f"denoising movie ({params.method})")
        t_start = time.perf_counter()

        def on_step(step: int, loss: float) -> None:
            frac = step / params.steps if params.steps else (time.perf_counter() - t_start) / params.budget_s
            report(0.95 * frac, f"training step {step} (loss {loss:.4g})")

        out, info = denoise_movie(img.data, img.axes, params.method, window=params.window, steps=params.steps,
                                  budget_s=params.budget_s, width=params.width, patch_size=params.patch_size,
                                  classical_method=params.classical_method, seed=params.seed, device=params.device,
                                  callback=on_step)
        report(1.0, "done")
        res = Result(outputs={"image": out}, params_used={k: v for k, v in info.items() if k != "bundle"},
                     forward=IdentityForward())
        if info.get("bundle") is not None:
            res.extras["bundle"] = info["bundle"]
        return res

    @classmethod
    def example(cls, seed: int = 0) -> dict[str, Any]:
        """16 frames of 32² of a simulated drifting, bleaching specimen; a 2-step spatiotemporal network."""
        m = simulate_timelapse((32, 32), n_frames=16, seed=seed)["movie"]
        return {"inputs": {"movie": ImageData(m, "TYX", (0.1, 0.1), {})},
                "params": {"method": "n2v-t", "steps": 2, "width": 4, "patch_size": 16, "window": 8}}


def needed_frames(method: str, window: int) -> int:
    """Frames a movie needs for ``method`` (1 for the frame-by-frame ones).

    Examples
    --------
    >>> needed_frames("deepcad", 8), needed_frames("classical", 8)
    (16, 1)
    """
    return min_frames(method, window) if method in TEMPORAL_SCHEMES else 1


def denoise_movie_chunked(movie: Any, out: Any = None, method: str = "n2v-t", *, train_frames: int = 64,
                          chunk: int = 64, margin: int | None = None, ramp: int = 8, window: int = 8,
                          steps: int | None = None, budget_s: float = 120.0, width: int = 16, patch_size: int = 32,
                          classical_method: str = "auto", seed: int = 0,
                          device: str = "auto") -> tuple[Any, dict[str, Any]]:
    """Restore a ``TYX`` movie of any length out of core: decide once, then restore chunk by chunk in T.

    The global decision is taken once on ``train_frames`` central frames (a network trained on them,
    or the classical denoiser's calibration), then :func:`fluorecon.learn.temporal.restore_in_time_chunks`
    reads ``chunk`` frames at a time from ``movie`` and writes them into ``out``, blending overlaps of
    ``2·margin + ramp`` frames. Memory: the training frames plus one chunk, whatever the movie's length.

    Parameters
    ----------
    movie : array-like
        ``(T, Y, X)``, sliceable along T (a zarr array, a memory map, a numpy array).
    out : array-like, optional
        ``(T, Y, X)`` destination taking slice assignment (e.g. a zarr array); default a numpy array.
    method : str
        As for :func:`denoise_movie`.
    train_frames : int
        Central frames the network is trained on (or the classical denoiser is calibrated on).
    chunk, margin, ramp : int
        Frames per chunk; frames discarded next to each cut (default: the network's temporal radius —
        10 for the depth-2 U-Net, 12 for the ConvLSTM — 0 for per-frame methods); cross-fade frames.
    window, steps, budget_s, width, patch_size, classical_method, seed, device
        As for :func:`denoise_movie`.

    Returns
    -------
    (array-like, dict)
        ``out`` and ``info`` (``method``, ``train_frames``, ``chunk``, ``margin``, ``bundle`` or ``classical``).

    Examples
    --------
    >>> m = simulate_timelapse((16, 16), n_frames=40, seed=0)["movie"]
    >>> y, info = denoise_movie_chunked(m, method="classical", classical_method="tv", train_frames=8, chunk=16)
    >>> ref, _ = denoise_movie(m, "TYX", "classical", classical_method="tv")  # in memory, same middle frame
    >>> y.shape, bool(np.allclose(y, ref, atol=1e-5))
    ((40, 16, 16), True)
    """
    if method not in METHODS:
        raise FluoreconError(f"unknown method {method!r}", hint=f"use one of {', '.join(METHODS)}")
    shape = tuple(int(v) for v in movie.shape)
    if len(shape) != 3:
        raise FluoreconError(f"movie: chunks in time need a (T, Y, X) movie, got shape {shape}",
                             hint="give a TYX movie (one channel / plane at a time)")
    n = min(int(train_frames), shape[0])
    c0 = (shape[0] - n) // 2
    sample, _ = check_movie(np.asarray(movie[c0:c0 + n], np.float32), "TYX",
                            window if method in TEMPORAL_SCHEMES else 1,
                            method if method in TEMPORAL_SCHEMES else "n2v-t", name="movie (training frames)")
    info: dict[str, Any] = {"method": method, "train_frames": n, "chunk": int(chunk)}
    restore: Any
    if method in TEMPORAL_SCHEMES:
        bundle = train_temporal(sample, "TYX", method, window=window, patch_size=patch_size, width=width,
                                steps=steps, budget_s=None if steps else budget_s, seed=seed, device=device)
        info["bundle"] = bundle
        if isinstance(bundle, RecurrentBundle):
            # chunks of the whole movie: predict_recurrent is itself chunked, here one chunk at a time
            def restore(f: np.ndarray) -> np.ndarray:
                return np.asarray(predict_recurrent(bundle, f, chunk=max(len(f), 1), device=device))

            default_margin = 12
        else:
            def restore(f: np.ndarray) -> np.ndarray:
                return predict_temporal(bundle, f, window=max(len(f), 1), device=device)

            default_margin = 2 * (2 * int(bundle.model.config().get("depth", 2)) + 1)
    elif method == "n2v-frames":
        _, sinfo = denoise_single_image(sample, "TYX", scheme="n2v", budget_s=budget_s, steps=steps, seed=seed,
                                        device=device, progress=False)
        bundle = sinfo["bundle"]
        info["bundle"] = bundle
        blind = sinfo.get("inference") == "blind_spot"
        grid = max(int(bundle.config.get("train", {}).get("mask_grid", 4)), 3)

        def restore(f: np.ndarray) -> np.ndarray:
            if blind:
                return predict_blind_spot(bundle, f, "TYX", grid=grid, device=device)
            from fluorecon.learn.predict import predict

            return np.asarray(predict(bundle, f, "TYX", device=device), np.float32)

        default_margin = 0
    else:
        # calibrated on the sample's middle frame, as denoise_movie calibrates on the movie's
        _, cinfo = denoise_classical(sample, method=classical_method, axes="TYX")
        info["classical"] = {"method": cinfo["method"], "params": cinfo["params"]}

        def restore(f: np.ndarray) -> np.ndarray:
            return denoise_classical(f, method=cinfo["method"], params=cinfo["params"], axes="TYX",
                                     normalization=cinfo["normalization"])[0]

        default_margin = 0
    mg = default_margin if margin is None else int(margin)
    info["margin"] = mg
    out = restore_in_time_chunks(restore, movie, out, chunk=max(int(chunk), 2 * (2 * mg + ramp)), margin=mg,
                                 ramp=ramp)
    return out, info
