"""Temporally consistent restoration of time-lapses as a registered task (``fluorecon denoise-movie``).

Time is a dimension: ``n2v-t`` (spatiotemporal blind spot) and ``deepcad`` (interleaved-frame
Noise2Noise) train a (t, y, x) U-Net on the movie itself (:mod:`fluorecon.learn.temporal`);
``n2v-frames`` (the engine's single-image N2V, frame by frame) and ``classical`` (self-calibrated
classical denoiser per frame) are the frame-by-frame baselines. The result carries the flicker
measured against the raw movie's temporal low-pass (:func:`fluorecon.evaluate.temporal.flicker`).

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
from fluorecon.learn.single_image import denoise_single_image
from fluorecon.learn.temporal import TEMPORAL_SCHEMES, check_movie, denoise_temporal, min_frames
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

__all__ = ["METHODS", "DenoiseMovieParams", "DenoiseMovieTask", "denoise_movie", "needed_frames"]

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
    method : {"n2v-t", "deepcad", "n2v-frames", "classical"}
        Spatiotemporal blind spot, interleaved-frame Noise2Noise, frame-by-frame N2V, per-frame classical.
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
