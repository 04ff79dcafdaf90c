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
from pathlib import Path
from typing import Any

import numpy as np

from fluorecon.classical.denoise import METHODS as CLASSICAL_METHODS
from fluorecon.classical.denoise import denoise_classical
from fluorecon.errors import FluoreconError
from fluorecon.evaluate.temporal import flicker, j_invariant
from fluorecon.io import ImageData
from fluorecon.learn.bundle import Bundle
from fluorecon.learn.predict import predict
from fluorecon.learn.single_image import denoise_single_image, predict_blind_spot
from fluorecon.learn.temporal import (
    TEMPORAL_SCHEMES,
    RecurrentBundle,
    apply_fusion,
    check_movie,
    denoise_temporal,
    fit_fusion,
    min_frames,
    noise_neighbour_correlation,
    predict_recurrent,
    predict_temporal,
    restore_in_time_chunks,
    train_temporal,
)
from fluorecon.physics.noise_model import estimate_poisson_gaussian
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
    to_json,
)
from fluorecon.tasks.registry import register

__all__ = ["INFERENCE", "METHODS", "DenoiseMovieParams", "DenoiseMovieTask", "denoise_movie", "denoise_movie_chunked",
           "movie_restorer", "needed_frames", "plan_movie", "temporal_inference"]

METHODS = (*TEMPORAL_SCHEMES, "n2v-frames", "classical")
#: how a trained temporal network is applied: one pass; J-invariant (16 masked passes); J-invariant
#: fused with the raw pixel by the per-pixel Gaussian posterior (:func:`fluorecon.learn.temporal.fit_fusion`)
INFERENCE = ("fused", "blind-spot", "plain")


def temporal_inference(restore: Any, movie: np.ndarray, inference: str = "fused", *, fusion: dict | None = None,
                       grid: int = 4, prior: np.ndarray | None = None) -> tuple[np.ndarray, dict | None]:
    """Apply a trained restoration ``restore(frames) -> frames`` to a movie with the chosen inference.

    ``"plain"``: one pass. ``"blind-spot"``: J-invariant (:func:`fluorecon.evaluate.temporal.j_invariant`,
    ``grid``² passes, each pixel predicted with its own value hidden, as in blind-spot training).
    ``"fused"``: the J-invariant prediction fused with the raw pixel (posterior mean,
    :func:`fluorecon.learn.temporal.fit_fusion`); ``fusion`` (fitted on this movie when None, with a
    Poisson–Gaussian model estimated from it) is returned so that other chunks reuse it. ``prior``: an
    already computed J-invariant prediction of ``movie`` (skips the ``grid``² passes). The masks shift
    by one pixel per frame over all ``grid``² offsets, so a chunk of frames is masked as inside the
    whole movie.

    Examples
    --------
    >>> m = simulate_timelapse((32, 32), n_frames=8, seed=0)["movie"]
    >>> out, fus = temporal_inference(lambda x: x, m, "fused")   # identity: the ring median fused with raw
    >>> out.shape, sorted(fus)[:2]
    ((8, 32, 32), ['edges', 'gain'])
    """
    if inference not in INFERENCE:
        raise FluoreconError(f"unknown inference {inference!r}", hint=f"use one of {', '.join(INFERENCE)}")
    x = np.asarray(movie, np.float32)
    if restore is None and (prior is None or inference == "plain"):
        raise FluoreconError("temporal_inference needs a restore function (or a J-invariant prior)")
    if inference == "plain":
        return np.asarray(restore(x), np.float32), None
    if prior is None:
        prior = j_invariant(restore, x, grid=grid)
    if inference == "blind-spot":
        return prior, None
    if fusion is None:
        fusion = fit_fusion(x, prior, estimate_poisson_gaussian(x), noise_correlation=noise_neighbour_correlation(x))
    return apply_fusion(x, prior, fusion), fusion


def denoise_movie(movie: Any, axes: str | None = "TYX", method: str = "n2v-t", *, window: int = 8,
                  steps: int | None = None, budget_s: float = 120.0, width: int = 16, patch_size: int = 32,
                  classical_method: str = "auto", seed: int = 0, device: str = "auto",
                  callback: Any = None, inference: str = "plain") -> tuple[np.ndarray, dict[str, Any]]:
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
    inference : {"plain", "blind-spot", "fused"}
        Temporal methods: how the trained network is applied (:func:`temporal_inference`);
        ``n2v-frames`` (whose engine inference is already blind-spot): ``"fused"`` fuses it with the
        raw pixel. Ignored by ``classical``.

    Returns
    -------
    (numpy.ndarray, dict)
        Float32 movie in input units, and ``info`` (``method``, ``seconds``, ``flicker_raw_lowpass``,
        learned: ``steps``, ``bundle``, ``inference``, ``fusion``).

    Examples
    --------
    >>> m = simulate_timelapse((32, 32), n_frames=16, seed=0)["movie"]
    >>> out, info = denoise_movie(m, "TYX", "classical", classical_method="tv")
    >>> out.shape, info["method"]
    ((16, 32, 32), 'classical')
    """
    if method not in METHODS:
        raise FluoreconError(f"unknown method {method!r}", hint=f"use one of {', '.join(METHODS)}")
    if inference not in INFERENCE:
        raise FluoreconError(f"unknown inference {inference!r}", hint=f"use one of {', '.join(INFERENCE)}")
    arr, axes = check_movie(movie, axes, window if method in TEMPORAL_SCHEMES else 1,
                            method if method in TEMPORAL_SCHEMES else "n2v-t")
    t0 = time.perf_counter()
    info: dict[str, Any] = {"method": method}
    if method in TEMPORAL_SCHEMES:
        out, tinfo = denoise_temporal(arr, axes, method, window=window, patch_size=patch_size, width=width,
                                      steps=steps, budget_s=None if steps else budget_s, seed=seed, device=device,
                                      callback=callback)
        info.update(tinfo)
        if inference != "plain":
            bundle = tinfo["bundle"]
            out, info["fusion"] = temporal_inference(lambda x: predict_temporal(bundle, x, device=device), arr,
                                                     inference)
        info["inference"] = inference
    elif method == "n2v-frames":
        out, sinfo = denoise_single_image(arr, "TYX", scheme="n2v", budget_s=budget_s, steps=steps, seed=seed,
                                          device=device, progress=False, callback=callback)
        info.update(steps=sinfo["steps"], bundle=sinfo["bundle"], train_s=sinfo["train_s"],
                    predict_s=sinfo["predict_s"], inference=sinfo.get("inference"))
        if inference == "fused" and sinfo.get("inference") == "blind_spot":
            out, info["fusion"] = temporal_inference(None, arr, "fused", prior=np.asarray(out, np.float32))
            info["inference"] = "fused"
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
    inference: str = param("plain", "How a trained network is applied: plain (one pass) | blind-spot (J-invariant, "
                           "16 masked passes) | fused (blind-spot fused with each raw pixel by its noise variance).",
                           choices=INFERENCE)
    train_frames: int = param(64, "Out of core (-o *.zarr): central frames the network is trained on (or the "
                              "classical denoiser calibrated on).", ge=2, le=100_000, advanced=True)
    chunk_frames: int = param(64, "Out of core (-o *.zarr): frames restored per run along T (runs overlap by "
                              "2·margin + 8 frames; memory holds one run).", ge=8, le=100_000, advanced=True)
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
                "fluorecon denoise-movie movie.tif --axes TYX -o base.tif --method classical",
                "fluorecon denoise-movie long.tif --axes TYX -o clean.ome.zarr --method n2v-t --train-frames 64")

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
                                  callback=on_step, inference=params.inference)
        report(1.0, "done")
        res = Result(outputs={"image": out}, params_used={k: v for k, v in info.items() if k != "bundle"},
                     forward=IdentityForward())
        if info.get("bundle") is not None:
            res.extras["bundle"] = info["bundle"]
        return res

    # --- out of core: runs of whole frames along T (a spatial block would see one frame) ---------------
    @classmethod
    def supports_out_of_core(cls) -> bool:
        return True

    def time_chunk_op(self, reader: Any, params: DenoiseMovieParams, workdir: Any = None) -> Any:
        """A :func:`fluorecon.scale.blockwise.run_time_chunks` builder: ``build(resolved)`` trains on
        ``train_frames`` central frames of ``reader`` (``TYX``) when ``resolved`` is None (the model
        saved under ``workdir``), or reloads the stored decisions when resuming."""
        from fluorecon.scale.blockwise import TimeChunkOp  # scale sits above tasks: imported when used

        def build(resolved: dict | None) -> TimeChunkOp:
            if resolved is None:
                t = int(reader.shape[0])
                n = min(int(params.train_frames), t)
                c0 = (t - n) // 2
                resolved, _ = plan_movie(np.asarray(reader[c0:c0 + n], np.float32), params.method,
                                         window=params.window, steps=params.steps, budget_s=params.budget_s,
                                         width=params.width, patch_size=params.patch_size,
                                         classical_method=params.classical_method, seed=params.seed,
                                         device=params.device, inference=params.inference, workdir=workdir)
                resolved = {"task": self.name, "params": params.to_json(), **resolved}
            mg = int(resolved["margin"])
            ramp = 8
            return TimeChunkOp(self.name, movie_restorer(resolved), margin=mg, resolved=resolved, ramp=ramp,
                               chunk=max(int(params.chunk_frames), 2 * (2 * mg + ramp)))

        return build

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


def plan_movie(sample: Any, method: str = "n2v-t", *, window: int = 8, steps: int | None = None,
               budget_s: float = 120.0, width: int = 16, patch_size: int = 32, classical_method: str = "auto",
               seed: int = 0, device: str = "auto", inference: str = "plain",
               workdir: str | Path | None = None) -> tuple[dict[str, Any], Any]:
    """The global decisions of a chunked restoration, taken once on ``sample`` (central frames of the movie).

    A network is trained on the sample (or the classical denoiser calibrated on it), the fusion of
    ``inference="fused"`` fitted on it, and the
    margin of frames discarded next to a cut chosen: the network's temporal receptive radius (10
    frames for the depth-2 U-Net, 12 for the ConvLSTM whose memory fades), 0 for per-frame methods.

    Returns
    -------
    (dict, Bundle or RecurrentBundle or None)
        ``resolved`` — JSON-able (``method``, ``inference``, ``margin``, ``fusion``, ``classical``,
        ``model``: the bundle folder under ``workdir`` when given) — and the trained bundle. Rebuild
        the restoration with :func:`movie_restorer`.

    Examples
    --------
    >>> m = simulate_timelapse((16, 16), n_frames=8, seed=0)["movie"]
    >>> resolved, _ = plan_movie(m, "classical", classical_method="tv")
    >>> resolved["margin"], resolved["classical"]["method"]
    (0, 'tv')
    """
    if method not in METHODS:
        raise FluoreconError(f"unknown method {method!r}", hint=f"use one of {', '.join(METHODS)}")
    if inference not in INFERENCE:
        raise FluoreconError(f"unknown inference {inference!r}", hint=f"use one of {', '.join(INFERENCE)}")
    arr, _ = check_movie(np.asarray(sample, np.float32), "TYX", window if method in TEMPORAL_SCHEMES else 1,
                         method if method in TEMPORAL_SCHEMES else "n2v-t", name="movie (training frames)")
    resolved: dict[str, Any] = {"method": method, "inference": "plain" if method == "classical" else inference,
                                "train_frames": int(arr.shape[0]), "device": device}
    bundle: Any = None
    if method in TEMPORAL_SCHEMES:
        bundle = train_temporal(arr, "TYX", method, window=window, patch_size=patch_size, width=width, steps=steps,
                                budget_s=None if steps else budget_s, seed=seed, device=device)
        resolved["margin"] = 12 if isinstance(bundle, RecurrentBundle) else \
            2 * (2 * int(bundle.model.config().get("depth", 2)) + 1)
        resolved["steps"] = int(bundle.provenance["steps"])
    elif method == "n2v-frames":
        _, sinfo = denoise_single_image(arr, "TYX", scheme="n2v", budget_s=budget_s, steps=steps, seed=seed,
                                        device=device, progress=False)
        bundle = sinfo["bundle"]
        resolved.update(margin=0, steps=int(sinfo["steps"]), blind_spot=sinfo.get("inference") == "blind_spot",
                        grid=max(int(bundle.config.get("train", {}).get("mask_grid", 4)), 3))
        if not resolved["blind_spot"] and inference == "fused":
            resolved["inference"] = "plain"  # a 3D engine net: no J-invariant prediction to fuse
    else:
        # calibrated on the sample's middle frame, as denoise_movie calibrates on the movie's
        _, cinfo = denoise_classical(arr, method=classical_method, axes="TYX")
        resolved.update(margin=0, classical={"method": cinfo["method"], "params": cinfo["params"],
                                             "normalization": cinfo["normalization"]})
    if workdir is not None and bundle is not None:
        resolved["model"] = str(bundle.save(Path(workdir)))
    if resolved["inference"] == "fused":
        restore = movie_restorer({**resolved, "inference": "blind-spot"}, bundle)
        resolved["fusion"] = fit_fusion(arr, restore(arr), estimate_poisson_gaussian(arr),
                                        noise_correlation=noise_neighbour_correlation(arr))
    return to_json(resolved), bundle


def movie_restorer(resolved: Mapping[str, Any], bundle: Any = None) -> Any:
    """``restore(frames, t0=0) -> frames`` from :func:`plan_movie`'s decisions (loading the bundle from
    ``resolved["model"]`` when ``bundle`` is not given): the same result for a frame whichever run of
    frames it comes in, given enough context.

    Examples
    --------
    >>> m = simulate_timelapse((16, 16), n_frames=8, seed=0)["movie"]
    >>> restore = movie_restorer(plan_movie(m, "classical", classical_method="tv")[0])
    >>> restore(m, 0).shape
    (8, 16, 16)
    """
    method, inference, device = resolved["method"], resolved.get("inference", "plain"), resolved.get("device", "cpu")
    if bundle is None and resolved.get("model"):
        bundle = (RecurrentBundle.load(resolved["model"]) if method == "convlstm"
                  else Bundle.load(resolved["model"]))
    if method == "classical":
        c = resolved["classical"]

        def classical(f: np.ndarray, t0: int = 0) -> np.ndarray:
            return denoise_classical(f, method=c["method"], params=c["params"], axes="TYX",
                                     normalization=c["normalization"])[0]

        return classical
    if bundle is None:
        raise FluoreconError(f"no trained model for {method}", hint="plan_movie(..., workdir=...) saves it")
    if method == "n2v-frames":
        grid = int(resolved.get("grid", 4))

        def frames(f: np.ndarray, t0: int = 0) -> np.ndarray:
            if not resolved.get("blind_spot"):
                return np.asarray(predict(bundle, f, "TYX", device=device), np.float32)
            prior = predict_blind_spot(bundle, f, "TYX", grid=grid, device=device)
            return apply_fusion(f, prior, resolved["fusion"]) if inference == "fused" else prior

        return frames

    def net(f: np.ndarray) -> np.ndarray:
        if isinstance(bundle, RecurrentBundle):
            return np.asarray(predict_recurrent(bundle, f, chunk=max(len(f), 1), device=device), np.float32)
        return predict_temporal(bundle, f, window=max(len(f), 1), device=device)

    def temporal(f: np.ndarray, t0: int = 0) -> np.ndarray:
        return temporal_inference(net, f, inference, fusion=resolved.get("fusion"))[0]

    return temporal


def denoise_movie_chunked(movie: Any, out: Any = None, method: str = "n2v-t", *, train_frames: int = 64,
                          chunk: int = 64, margin: int | None = None, ramp: int = 8, window: int = 8,
                          steps: int | None = None, budget_s: float = 120.0, width: int = 16, patch_size: int = 32,
                          classical_method: str = "auto", seed: int = 0, device: str = "auto",
                          inference: str = "plain") -> tuple[Any, dict[str, Any]]:
    """Restore a ``TYX`` movie of any length out of core: decide once, then restore chunk by chunk in T.

    The global decisions are taken once on ``train_frames`` central frames (:func:`plan_movie`: a
    network trained on them, or the classical denoiser's calibration, and the fusion of
    ``inference="fused"``), then :func:`fluorecon.learn.temporal.restore_in_time_chunks` reads
    ``chunk`` frames at a time from ``movie`` and writes them into ``out``, blending overlaps of
    ``2·margin + ramp`` frames. Memory: the training frames plus one chunk, whatever the movie's length.
    From the command line (``-o out.ome.zarr``) the same runs go through
    :func:`fluorecon.scale.blockwise.run_time_chunks`.

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
        Frames per chunk; frames discarded next to each cut (default: :func:`plan_movie`'s); cross-fade frames.
    window, steps, budget_s, width, patch_size, classical_method, seed, device, inference
        As for :func:`denoise_movie`.

    Returns
    -------
    (array-like, dict)
        ``out`` and ``info`` (``method``, ``train_frames``, ``chunk``, ``margin``, ``bundle``, ``resolved``).

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
    resolved, bundle = plan_movie(np.asarray(movie[c0:c0 + n], np.float32), method, window=window, steps=steps,
                                  budget_s=budget_s, width=width, patch_size=patch_size,
                                  classical_method=classical_method, seed=seed, device=device, inference=inference)
    restore = movie_restorer(resolved, bundle)
    mg = int(resolved["margin"]) if margin is None else int(margin)
    info: dict[str, Any] = {"method": method, "train_frames": n, "chunk": int(chunk), "margin": mg,
                            "resolved": resolved}
    if bundle is not None:
        info["bundle"] = bundle
    if method == "classical":
        info["classical"] = {k: resolved["classical"][k] for k in ("method", "params")}
    out = restore_in_time_chunks(restore, movie, out, chunk=max(int(chunk), 2 * (2 * mg + ramp)), margin=mg,
                                 ramp=ramp)
    return out, info
