"""Learned super-resolution as tasks: sparse → dense PALM (``anna-palm``) and ``cross-modality``.

Both tasks train a U-Net generator on pairs simulated with the physics layer for the user's optics
(:mod:`fluorecon.physics.palm_pairs`) — with L1, L1 + MS-SSIM, or L1 + MS-SSIM + a conditional
PatchGAN (:mod:`fluorecon.learn.gan`) — or reuse a model saved with ``--save-model``, and apply it to
the input. Each returns a forward model so that ``--check`` / ``fluorecon verify`` can test the
prediction against what was recorded:

- ``anna-palm``: the input is a PALM rendering from few frames (localisation counts per pixel) and,
  optionally, a widefield image of the same field (a second network channel, as in ANNA-PALM). The
  output is the expected dense image **in the input's units** (counts per pixel of the same K
  frames; multiply by N/K for an N-frame image), smoothed like the training target (the N-frame
  rendering with a Gaussian of one render pixel, :func:`palm_target`). Forward model: the identity with Poisson counts
  (the sparse rendering is a thinned sample of the density). With a widefield image, the
  prediction is also binned to the widefield grid and blurred (:func:`fluorecon.physics.palm_pairs.widefield_forward`)
  and checked against it — ANNA-PALM's low-resolution consistency check — giving the output
  ``consistency`` (|z| of the disagreement, in noise SDs, on the PALM grid) and
  ``params_used["widefield_check"]``.
- ``cross-modality``: the input is a low-NA widefield (``--mode na``) or confocal (``--mode sted``)
  image; the output is the high-NA (or STED-like) image on the same grid, in ADU above the offset.
  Forward model: the Gaussian of width √(σ_low² − σ_high²) (:func:`~fluorecon.physics.palm_pairs.consistency_forward`),
  so ``--check`` compares the prediction, blurred back, with the recording. The generator is
  residual (input + correction: input and output share grid and intensity scale).

Examples
--------
>>> ex = CrossModalityTask.example()
>>> res = CrossModalityTask()(ex["inputs"]["image"], **ex["params"])
>>> res.image.shape, res.forward.expected(res.image).shape
((32, 32), (32, 32))
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import model_validator
from scipy import ndimage

from fluorecon.errors import FluoreconError
from fluorecon.io import ImageData
from fluorecon.learn.bundle import Bundle
from fluorecon.learn.gan import PRESETS, GANConfig, array_sampler, predict_gan, train_gan
from fluorecon.physics.palm_pairs import (
    MODES,
    bin_to_camera,
    consistency_forward,
    cross_modality_pair,
    modality_sigmas,
    palm_pair,
    widefield_forward,
)
from fluorecon.physics.smlm import Blinking
from fluorecon.tasks.contract import InputSpec, OutputSpec, Result, Task, TaskParams, as_progress, param
from fluorecon.tasks.deconvolve import deconvolve
from fluorecon.tasks.registry import register
from fluorecon.trust.verify import verify

__all__ = ["AnnaPalmParams", "AnnaPalmTask", "CountsForward", "CrossModalityParams", "CrossModalityTask",
           "invented_structures", "palm_inputs", "palm_target", "rl_channel"]

_LOSSES = tuple(PRESETS)


class CountsForward:
    """Forward model of a PALM rendering from a density: the identity with Poisson counts.

    Examples
    --------
    >>> f = CountsForward()
    >>> f.expected(np.ones(2)).tolist(), f.variance(np.array([4.0])).tolist()
    ([1.0, 1.0], [4.0])
    """

    def expected(self, y: Any) -> Any:
        return y

    def variance(self, expected: Any) -> Any:
        return np.maximum(np.asarray(expected, np.float64), 1e-3)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "palm-counts", "noise": "poisson"}


class _TrainParams(TaskParams):
    loss: str = param("l1+ms-ssim", "Training loss: l1, l1+ms-ssim, or gan (L1 + MS-SSIM + conditional PatchGAN; "
                      "GANs may invent structure: check the result, see docs/learned_sr.md).", choices=_LOSSES)
    steps: int = param(400, "Training steps on simulated pairs (ignored with --model).", ge=1, le=1_000_000)
    seed: int = param(0, "Seed of the simulations and the training.", ge=0)
    patch: int = param(64, "Training patch side.", unit="px", ge=16, le=512)
    batch_size: int = param(8, "Training batch size.", ge=1, le=256, advanced=True)
    width: int = param(16, "Generator U-Net width.", ge=2, le=128, advanced=True)
    depth: int = param(2, "Generator U-Net depth.", ge=1, le=5, advanced=True)
    fields: int = param(16, "Simulated training fields.", ge=1, le=10_000, advanced=True)

    @model_validator(mode="after")
    def _patch(self) -> _TrainParams:
        if self.patch % (2 ** self.depth):
            raise ValueError(f"patch {self.patch} must be a multiple of 2**depth = {2 ** self.depth}")
        return self


class AnnaPalmParams(_TrainParams):
    """Parameters of :class:`AnnaPalmTask`."""

    frames: int = param(50, "K: frames the sparse input was rendered from.", ge=1)
    movie_frames: int = param(500, "N: frames of the dense target the model learns to predict.", ge=1)
    camera_pixel: float | None = param(None, "Camera pixel size (default: the widefield image's, else 0.1 µm).",
                                       unit="µm", gt=0)
    psf_sigma: float = param(0.13, "Gaussian PSF σ of the microscope.", unit="µm", gt=0)
    structure: str = param("filaments", "Structure of the simulated training fields.",
                           choices=("filaments", "clusters", "uniform"))
    labels_per_um2: float = param(100.0, "Fluorophores per µm² in the training simulations.", unit="1/µm²", gt=0)

    @model_validator(mode="after")
    def _frames(self) -> AnnaPalmParams:
        if self.frames > self.movie_frames:
            raise ValueError(f"K = {self.frames} frames is more than the movie length {self.movie_frames}: "
                             "choose --frames ≤ --movie-frames")
        return self


def palm_inputs(sparse: np.ndarray, widefield: np.ndarray | None, factor: int, scale: float) -> np.ndarray:
    """The network input ``(C, Y, X)``: the sparse rendering over its mean·scale, and the widefield
    image (background removed, upsampled ``factor``× by pixel repetition) over its mean·scale.

    Examples
    --------
    >>> palm_inputs(np.ones((8, 8)), np.ones((2, 2)) * 5, 4, 10.0).shape
    (2, 8, 8)
    """
    s = np.asarray(sparse, np.float32)
    chans = [s / np.float32(max(float(s.mean()), 1e-6) * scale)]
    if widefield is not None:
        w = np.asarray(widefield, np.float32)
        w = np.clip(w - np.float32(np.percentile(w, 5)), 0, None)
        w = np.kron(w, np.ones((factor, factor), np.float32))
        chans.append(w / np.float32(max(float(w.mean()), 1e-6) * scale))
    return np.stack(chans).astype(np.float32)


def rl_channel(low: np.ndarray, sigma_low: float, sigma_high: float, iterations: int = 20) -> np.ndarray:
    """Richardson–Lucy of a low-resolution image with the residual Gaussian √(σ_low² − σ_high²).

    The classical answer to the cross-modality problem (it deconvolves exactly the blur that separates
    the two modalities); the physics-informed generator takes it as a second input and learns a
    correction to it (:attr:`fluorecon.learn.gan.GANConfig.base_channel`).

    Examples
    --------
    >>> low, _, _ = cross_modality_pair((32, 32), pixel_size=0.05, offset=0.0, seed=0)
    >>> r = rl_channel(low, 2.73, 1.56)
    >>> r.shape, r.dtype, bool(r.min() >= 0)
    ((32, 32), dtype('float32'), True)
    """
    psf = consistency_forward(sigma_low, sigma_high).psf
    return np.asarray(deconvolve(np.asarray(low, np.float32), "YX", psf=psf, method="rl", iterations=iterations)[0],
                      np.float32)


def palm_target(dense: np.ndarray) -> np.ndarray:
    """The training target: the N-frame rendering with a Gaussian of 1 render pixel (a smooth density).

    Examples
    --------
    >>> round(float(palm_target(np.pad(np.ones((1, 1)), 4)).sum()), 4)
    1.0
    """
    return ndimage.gaussian_filter(np.asarray(dense, np.float32), 1.0, mode="constant")


def invented_structures(prediction: np.ndarray, truth: np.ndarray, *, smooth: float = 1.0, threshold: float = 0.3,
                        truth_blur: float = 1.0, truth_threshold: float = 0.05, tolerance: float = 2.0,
                        reach: float = 2.0, min_area: int = 4) -> tuple[np.ndarray, int]:
    """Structures of a prediction that the ground truth does not hold (a hallucination counter for simulations).

    The prediction, smoothed by ``smooth`` px, is thresholded at ``threshold`` × its 99.5th percentile (its
    visible structure; gain and offset do not matter). The truth's support is the truth blurred by
    ``truth_blur`` px above ``truth_threshold`` × its 99.5th percentile. A connected part of the visible
    prediction lying more than ``tolerance`` px from that support is an invented structure when it covers at
    least ``min_area`` px and reaches at least ``reach`` px beyond the tolerance: slivers along a blurred
    edge (a wider, not a new, structure) reach no further than the blur and are not counted; an
    isolated blob, a spur or a bridge across a gap in the truth is. Missing structure is not counted
    (that is an error of another kind).

    Parameters
    ----------
    prediction, truth : (Y, X) arrays of one shape
        The image to test and the ground-truth structure (any units each).
    smooth, threshold : float
        Smoothing (px) and relative threshold of the prediction's visible structure.
    truth_blur, truth_threshold : float
        Blur (px) and relative threshold of the truth's support.
    tolerance, reach : float
        Position tolerance (px) and how far (px) beyond it a structure must extend.
    min_area : int
        Smallest counted structure (px).

    Returns
    -------
    (labels, n) : (Y, X) int32 array, int
        Invented structures labelled 1..n (0 elsewhere) and their number.

    Examples
    --------
    >>> truth = np.zeros((48, 48)); truth[24, 4:44] = 1
    >>> pred = ndimage.gaussian_filter(truth, 1.5)
    >>> invented_structures(pred, truth)[1]
    0
    >>> pred[8:12, 20:24] = pred.max()                       # a blob where the truth has nothing
    >>> invented_structures(pred, truth)[1]
    1
    """
    p = np.asarray(prediction, np.float64)
    t = np.asarray(truth, np.float64)
    if p.ndim != 2 or p.shape != t.shape:
        raise FluoreconError(f"prediction {p.shape} and truth {t.shape} must be two YX images of one shape",
                             hint="compare images on the same grid")
    ps = ndimage.gaussian_filter(p, smooth) if smooth > 0 else p
    ps = ps - float(np.percentile(ps, 5))   # a constant offset is not structure
    visible = ps > threshold * max(float(np.percentile(ps, 99.5)), 1e-12)
    ts = ndimage.gaussian_filter(t, truth_blur) if truth_blur > 0 else t
    support = ts > truth_threshold * max(float(np.percentile(ts, 99.5)), 1e-12)
    dist = ndimage.distance_transform_edt(~support) if support.any() else np.full(p.shape, np.inf)
    lab, n = ndimage.label(visible & (dist > tolerance))
    out = np.zeros(p.shape, np.int32)
    k = 0
    for i, sl in enumerate(ndimage.find_objects(lab), start=1):
        comp = lab[sl] == i
        if comp.sum() >= min_area and float(dist[sl][comp].max()) >= tolerance + reach:
            k += 1
            out[sl][comp] = k
    return out, k


def _vs_um(img: ImageData, name: str) -> float:
    if img.voxel_size is None:
        raise FluoreconError(f"the {name} needs its pixel size", hint="give --voxel-size Y X in µm (or a file with it)")
    vs = img.voxel_size[-2:]
    if abs(vs[0] - vs[1]) > 1e-3 * vs[1]:
        raise FluoreconError(f"the {name} has non-square pixels {tuple(vs)}", hint="resample to square pixels")
    return float(vs[-1])


def _check_yx(img: ImageData, name: str) -> np.ndarray:
    if img.data.ndim != 2:
        raise FluoreconError(f"the {name} must be one YX image, got axes {img.axes} {img.data.shape}",
                             hint="give a single 2D image (split channels/time points first)")
    return np.asarray(img.data, np.float32)


def _load_model(path: Any, scheme: str) -> Bundle:
    b = Bundle.load(Path(path))
    if b.config.get("scheme") != scheme:
        raise FluoreconError(f"{path} holds a {b.config.get('scheme')!r} model, not {scheme!r}",
                             hint=f"give a model saved by `fluorecon {scheme} ... --save-model`")
    return b


def _gan_config(p: _TrainParams, residual: bool = False, base_channel: int | None = None,
                w_frc: float = 0.0) -> GANConfig:
    return GANConfig.preset(p.loss, steps=p.steps, batch_size=p.batch_size, patch=p.patch, width=p.width,
                            depth=p.depth, seed=p.seed, d_width=max(4, p.width), ms_ssim_scales=3, residual=residual,
                            base_channel=base_channel, w_frc=w_frc)


def _train(cfg: GANConfig, xs: list[np.ndarray], ys: list[np.ndarray], report: Any, scheme: str,
           extra: dict[str, Any]) -> tuple[Bundle, dict[str, Any]]:
    def on_step(step: int, losses: dict[str, float]) -> None:
        report(step / cfg.steps, f"training step {step}/{cfg.steps} (L1 {losses['l1']:.3g})")

    return train_gan(cfg, array_sampler(xs, ys, cfg.patch), callback=on_step, scheme=scheme, extra_config=extra)


# ----------------------------------------------------------------------------------------------- ANNA-PALM
@register
class AnnaPalmTask(Task):
    """Sparse → dense PALM (ANNA-PALM) with an optional widefield second input."""

    name = "anna-palm"
    title = "ANNA-PALM (sparse → dense PALM)"
    summary = "Predict the PALM image of many frames from a rendering of few frames (+ optional widefield)."
    Params = AnnaPalmParams
    inputs = (InputSpec("image", "PALM rendering (localisation counts per pixel) from K frames, YX."),
              InputSpec("widefield", "Widefield image of the same field (camera grid).", required=False),
              InputSpec("model", "A model saved with --save-model (skips training).", kind="path", required=False))
    outputs = (OutputSpec("image", "Predicted dense PALM image, in the input's counts per pixel."),
               OutputSpec("consistency", "|z| of the disagreement with the widefield image (with --widefield)."))
    accepts = ("YX",)
    doc = "learned_sr"
    output_tag = "_annapalm"
    saves_model = True
    examples = ("fluorecon anna-palm sparse.tif --voxel-size 0.025 0.025 --widefield wf.tif --frames 50 "
                "--movie-frames 500 -o dense.tif --save-model palm_model --check",)

    def run(self, inputs: Mapping[str, Any], params: AnnaPalmParams, progress: Any = None) -> Result:
        report = as_progress(progress)
        img = inputs["image"]
        sparse = _check_yx(img, "PALM rendering")
        if float(sparse.min()) < 0:
            raise FluoreconError("the PALM rendering has negative values", hint="give localisation counts per pixel")
        rpx = _vs_um(img, "PALM rendering")
        wf_img = inputs.get("widefield")
        wf = None
        cpx = params.camera_pixel or 0.1
        if wf_img is not None:
            wf = _check_yx(wf_img, "widefield image")
            if wf_img.voxel_size is not None:
                cpx = _vs_um(wf_img, "widefield image")
                if params.camera_pixel is not None and abs(cpx - params.camera_pixel) > 1e-3 * cpx:
                    raise FluoreconError(f"--camera-pixel {params.camera_pixel} µm differs from the widefield "
                                         f"image's pixel {cpx} µm", hint="drop --camera-pixel")
            else:
                ratio = np.asarray(sparse.shape) / np.asarray(wf.shape)
                cpx = rpx * float(ratio[0])
            fov_p, fov_w = np.asarray(sparse.shape) * rpx, np.asarray(wf.shape) * cpx
            if np.any(np.abs(fov_p - fov_w) > 0.5 * cpx):
                raise FluoreconError(f"the widefield image covers {fov_w.round(3).tolist()} µm but the PALM rendering "
                                     f"{fov_p.round(3).tolist()} µm: they are not the same field",
                                     hint="crop both to the same field of view and give their pixel sizes")
        factor = cpx / rpx
        if abs(factor - round(factor)) > 1e-3 * factor or round(factor) < 1:
            raise FluoreconError(f"camera pixel {cpx} µm is not a whole multiple of the render pixel {rpx} µm",
                                 hint="render the localisations at a pixel that divides the camera pixel")
        factor = int(round(factor))
        if wf is not None and tuple(np.asarray(wf.shape) * factor) != sparse.shape:
            raise FluoreconError(f"widefield {wf.shape} × {factor} does not give the PALM grid {sparse.shape}",
                                 hint="crop the rendering to whole camera pixels")
        warnings: list[str] = []
        used: dict[str, Any] = {"factor": factor, "render_pixel_um": rpx, "camera_pixel_um": cpx}
        n_in = 1 + (wf is not None)
        model_path = inputs.get("model")
        if model_path is not None:
            report(0.0, "loading the model")
            bundle = _load_model(model_path, "anna-palm")
            scale = float(bundle.config["palm"]["scale"])
            used["model"] = str(model_path)
        else:
            report(0.0, "simulating training fields")
            sim = report.span(0.0, 0.2)
            cam_side = max(int(math.ceil(params.patch * 1.5 / factor)), int(math.ceil(params.patch / factor)))
            rng = np.random.default_rng(params.seed)
            pairs = []
            for k in range(params.fields):
                pairs.append(palm_pair((cam_side, cam_side), n_frames=params.movie_frames, k_frames=params.frames,
                                       camera_pixel=cpx * 1000, render_pixel=rpx * 1000,
                                       structure_kind=params.structure, labels_per_um2=params.labels_per_um2,
                                       psf_sigma=params.psf_sigma * 1000, kinetics=Blinking(), seed=rng))
                sim((k + 1) / params.fields, f"simulated field {k + 1}/{params.fields}")
            dense = [palm_target(p.dense) for p in pairs]
            scale = float(np.median([np.percentile(d, 99.5) / max(float(d.mean()), 1e-6) for d in dense]))
            xs = [palm_inputs(p.sparse, p.widefield if wf is not None else None, factor, scale) for p in pairs]
            ys = [d / np.float32(max(float(d.mean()), 1e-6) * scale) for d in dense]
            bundle, tinfo = _train(_gan_config(params), xs, ys, report.span(0.2, 0.9), "anna-palm",
                                   {"palm": {"scale": scale, "factor": factor, "render_pixel_um": rpx,
                                             "camera_pixel_um": cpx, "frames": params.frames,
                                             "movie_frames": params.movie_frames, "widefield": wf is not None},
                                    "loss": params.loss})
            used["training"] = {"steps": tinfo["steps"], "seconds": round(tinfo["seconds"], 2),
                                "final_losses": tinfo["losses"][-1], "loss": params.loss}
            if params.steps < 200:
                warnings.append(f"the network trained for only {params.steps} steps: expect a poor result")
        cin = int(bundle.model.config()["in_channels"])
        if cin != n_in:
            raise FluoreconError(f"the model takes {cin} input(s) but {n_in} were given",
                                 hint="give --widefield if and only if the model was trained with one")
        report(0.9, "predicting")
        x = palm_inputs(sparse, wf, factor, scale)
        pred = np.clip(predict_gan(bundle.model, x), 0, None) * np.float32(max(float(sparse.mean()), 1e-6) * scale)
        outputs: dict[str, Any] = {"image": pred.astype(np.float32)}
        if wf is not None:
            report(0.95, "checking against the widefield image")
            fwd = widefield_forward(params.psf_sigma / cpx)
            try:
                v = verify(wf, bin_to_camera(pred, factor) + np.float32(1e-6 * (float(pred.max()) + 1)), fwd)
                z = np.nan_to_num(np.abs(v.maps["z"]), nan=0.0).astype(np.float32)
                outputs["consistency"] = np.kron(z, np.ones((factor, factor), np.float32))
                used["widefield_check"] = {"flagged": bool(v.flagged), "added": v.n_added, "missing": v.n_missing,
                                           "scale": float(v.scale)}
                if v.flagged:
                    warnings.append(f"the prediction disagrees with the widefield image in {len(v.regions)} "
                                    "region(s): see the consistency output")
            except FluoreconError as e:  # too small or flat to check: say so, do not fail the prediction
                warnings.append(f"widefield consistency not checked: {e}")
        report(1.0, "done")
        return Result(outputs=outputs, params_used=used, forward=CountsForward(), warnings=warnings,
                      extras={"bundle": bundle})

    @classmethod
    def example(cls, seed: int = 0) -> dict[str, Any]:
        """A 32² rendering (25 nm pixels) of 10 of 100 frames and its 8² widefield image; 2 training steps."""
        p = palm_pair((8, 8), n_frames=100, k_frames=10, seed=seed, labels_per_um2=400)
        return {"inputs": {"image": ImageData(p.sparse, "YX", (0.025, 0.025), {}),
                           "widefield": ImageData(p.widefield, "YX", (0.1, 0.1), {})},
                "params": {"steps": 2, "patch": 32, "width": 4, "depth": 1, "batch_size": 2, "fields": 2,
                           "frames": 10, "movie_frames": 100}}


# -------------------------------------------------------------------------------------------- cross-modality
def _xmod_inputs(low: np.ndarray, s_lo: float, s_hi: float, physics: bool) -> np.ndarray:
    """Generator input: the low-resolution image (and its RL deconvolution) over its 99.8th percentile."""
    s = max(float(np.percentile(low, 99.8)), 1e-6)
    chans = [low / s] + ([rl_channel(low, s_lo, s_hi) / s] if physics else [])
    return np.stack(chans).astype(np.float32)


class CrossModalityParams(_TrainParams):
    """Parameters of :class:`CrossModalityTask`."""

    mode: str = param("na", "na: low-NA → high-NA widefield; sted: confocal → STED-like.", choices=MODES)
    na_low: float = param(0.8, "NA of the low-resolution widefield input (mode na).", gt=0, le=1.7)
    na_high: float = param(1.4, "NA of the high-resolution target (mode na) / of the confocal (mode sted).",
                           gt=0, le=1.7)
    wavelength: float = param(0.52, "Emission wavelength.", unit="µm", gt=0.2, le=2.0)
    sted_factor: float = param(3.0, "STED resolution gain over the confocal (mode sted).", gt=1, le=20)
    offset: float = param(0.0, "Camera offset (baseline) subtracted first.", unit="ADU")
    photons: float = param(100.0, "Photons per pixel at the brightest structures in the training simulations.",
                           gt=0)
    phantom: str = param("mixed", "Structures of the training simulations.",
                         choices=("filaments", "puncta", "membranes", "nuclei", "mixed"))
    physics: bool = param(False, "Physics-informed generator: it also sees the Richardson–Lucy deconvolution of the "
                          "input (residual PSF, 20 iterations) and learns a correction to it; untrained it returns RL.")
    frc_weight: float = param(0.1, "With --physics: weight of the ring-FRC loss term (fine detail correlated with "
                              "the target at every frequency; 0 = off).", ge=0, le=10, advanced=True)

    @model_validator(mode="after")
    def _nas(self) -> CrossModalityParams:
        if self.mode == "na" and self.na_low >= self.na_high:
            raise ValueError(f"--na-low {self.na_low} must be below --na-high {self.na_high}")
        return self


@register
class CrossModalityTask(Task):
    """Cross-modality resolution enhancement (low → high NA, confocal → STED-like) trained on simulations."""

    name = "cross-modality"
    title = "Cross-modality super-resolution"
    summary = "Turn a low-NA widefield (or confocal) image into a high-NA (or STED-like) one with a trained network."
    Params = CrossModalityParams
    inputs = (InputSpec("image", "Low-resolution image (YX)."),
              InputSpec("model", "A model saved with --save-model (skips training).", kind="path", required=False))
    outputs = (OutputSpec("image", "High-resolution prediction, ADU above the offset."),)
    accepts = ("YX",)
    doc = "learned_sr"
    output_tag = "_xmod"
    saves_model = True
    examples = ("fluorecon cross-modality lowna.tif --voxel-size 0.05 0.05 --na-low 0.8 --na-high 1.4 "
                "--wavelength 0.52 --offset 100 -o highna.tif --check",)

    def run(self, inputs: Mapping[str, Any], params: CrossModalityParams, progress: Any = None) -> Result:
        report = as_progress(progress)
        img = inputs["image"]
        x = _check_yx(img, "low-resolution image") - np.float32(params.offset)
        px = _vs_um(img, "low-resolution image")
        s_lo, s_hi = modality_sigmas(params.mode, pixel_size=px, na_low=params.na_low, na_high=params.na_high,
                                     wavelength=params.wavelength, sted_factor=params.sted_factor)
        if s_hi < 0.6:
            raise FluoreconError(f"the pixel size {px} µm undersamples the high-resolution PSF (σ = {s_hi:.2f} px)",
                                 hint="use finer pixels (upsample the image first)")
        used: dict[str, Any] = {"sigma_low_px": s_lo, "sigma_high_px": s_hi}
        warnings: list[str] = []
        model_path = inputs.get("model")
        if model_path is not None:
            bundle = _load_model(model_path, "cross-modality")
            saved = bundle.config.get("optics", {})
            if saved and (abs(saved["sigma_low_px"] - s_lo) > 0.05 * s_lo or abs(saved["sigma_high_px"] - s_hi)
                          > 0.05 * s_hi):
                raise FluoreconError("the model was trained for other optics or another pixel size "
                                     f"(σ {saved['sigma_low_px']:.2f} → {saved['sigma_high_px']:.2f} px, here "
                                     f"{s_lo:.2f} → {s_hi:.2f})", hint="train a model for these optics")
            used["model"] = str(model_path)
        else:
            report(0.0, "simulating training pairs")
            rng = np.random.default_rng(params.seed)
            side = int(params.patch * 1.5)
            xs, ys = [], []
            for _ in range(params.fields):
                lo, hi, _ = cross_modality_pair((side, side), mode=params.mode, pixel_size=px, na_low=params.na_low,
                                                na_high=params.na_high, wavelength=params.wavelength,
                                                sted_factor=params.sted_factor, photons=params.photons,
                                                kind=params.phantom, offset=0.0, seed=rng)
                xs.append(_xmod_inputs(lo, s_lo, s_hi, params.physics))
                ys.append((hi / max(float(np.percentile(lo, 99.8)), 1e-6)).astype(np.float32))
            cfg = _gan_config(params, residual=not params.physics, base_channel=1 if params.physics else None,
                              w_frc=params.frc_weight if params.physics else 0.0)
            bundle, tinfo = _train(cfg, xs, ys, report.span(0.1, 0.9), "cross-modality",
                                   {"optics": {"mode": params.mode, "sigma_low_px": s_lo, "sigma_high_px": s_hi,
                                               "pixel_um": px}, "loss": params.loss})
            used["training"] = {"steps": tinfo["steps"], "seconds": round(tinfo["seconds"], 2),
                                "final_losses": tinfo["losses"][-1], "loss": params.loss}
            if params.steps < 200:
                warnings.append(f"the network trained for only {params.steps} steps: expect a poor result")
        report(0.9, "predicting")
        base = bundle.config.get("gan", {}).get("base_channel")
        used["physics"] = base is not None
        s = max(float(np.percentile(x, 99.8)), 1e-6)
        pred = np.clip(predict_gan(bundle.model, _xmod_inputs(x, s_lo, s_hi, base is not None), base), 0, None)
        pred = pred * np.float32(s)
        report(1.0, "done")
        return Result(outputs={"image": pred.astype(np.float32)}, params_used=used,
                      forward=consistency_forward(s_lo, s_hi), warnings=warnings, extras={"bundle": bundle})

    @classmethod
    def example(cls, seed: int = 0) -> dict[str, Any]:
        """A 32² low-NA image (50 nm pixels, NA 0.8 → 1.4); 2 training steps."""
        low, _, _ = cross_modality_pair((32, 32), pixel_size=0.05, seed=seed, offset=100.0)
        return {"inputs": {"image": ImageData(low, "YX", (0.05, 0.05), {})},
                "params": {"steps": 2, "patch": 32, "width": 4, "depth": 1, "batch_size": 2, "fields": 2,
                           "offset": 100.0}}
