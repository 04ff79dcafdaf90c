"""Denoising, the review's first application (CARE, Fig. 1a): one entry point, classical or learned.

- Classical methods (``auto``, ``nlm``, ``tv``, ``wavelet``, ``bm3d``) run immediately, each tuned on
  the image itself by J-invariant self-calibration (:mod:`fluorecon.classical.denoise`).
- Self-supervised learned schemes (``n2v``, ``n2v2``, ``structn2v``, ``nb2nb`` — whatever
  :mod:`fluorecon.learn.single_image` offers) train a U-Net on the noisy image alone for ``budget_s``
  seconds and then predict it.

The output is always float32 in the **input's intensity units** (no normalisation left over), so it
can be compared with a ground truth recorded on the same camera.

Examples
--------
>>> import numpy as np
>>> x = np.random.default_rng(0).poisson(10, (64, 64)).astype(np.float32)
>>> y, info = denoise(x, "YX", method="tv")
>>> y.dtype, info["kind"]
(dtype('float32'), 'classical')
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import field_validator, model_validator

from fluorecon.classical.denoise import METHODS as CLASSICAL_METHODS
from fluorecon.classical.vst import PoissonGaussian
from fluorecon.errors import FluoreconError
from fluorecon.io import ImageData
from fluorecon.learn.bundle import Bundle
from fluorecon.learn.predict import predict
from fluorecon.physics import phantoms
from fluorecon.physics.camera import Camera
from fluorecon.tasks.contract import (
    IdentityForward,
    InputSpec,
    OutputSpec,
    Result,
    Task,
    TaskParams,
    as_progress,
    check_choice,
    param,
    to_json,
)
from fluorecon.tasks.registry import register

__all__ = ["CLASSICAL", "DenoiseParams", "DenoiseTask", "denoise", "learned_methods"]

CLASSICAL = ("auto", *CLASSICAL_METHODS)


def learned_methods() -> tuple[str, ...]:
    """Names of the single-image learned schemes the engine offers (empty when it is unavailable).

    Examples
    --------
    >>> isinstance(learned_methods(), tuple)
    True
    """
    try:
        from fluorecon.learn.single_image import SINGLE_IMAGE_SCHEMES
    except ImportError:
        return ()
    return tuple(s for s in SINGLE_IMAGE_SCHEMES if s != "auto")


def denoise(image: Any, axes: str | None = None, method: str = "auto", budget_s: float = 120.0, seed: int = 0,
            device: str = "auto", vst: bool = False, progress: bool = True, *, noise_model: Any = None,
            params: dict[str, Any] | None = None, normalization: Any = None, inverse: str = "exact",
            candidates: Any = None, **learn_options: Any) -> tuple[np.ndarray, dict]:
    """Denoise an image with a calibrated classical method or a self-supervised network.

    Parameters
    ----------
    image : numpy.ndarray or fluorecon.io.ImageData
        Noisy image: ``YX``, ``ZYX``, or a stack with ``T``/``C`` axes.
    axes : str, optional
        Its axes (default from an ``ImageData``, else ``YX``/``ZYX`` by dimensionality).
    method : str
        ``"auto"`` (best calibrated classical method by the self-supervised loss), ``"nlm"``,
        ``"tv"``, ``"wavelet"``, ``"bm3d"``, or a learned single-image scheme (``"n2v"``, ``"n2v2"``,
        ``"structn2v"``, ``"nb2nb"``, ...; unknown names are passed to the engine, which says which
        ones exist).
    budget_s : float
        Training wall-time budget of learned schemes, seconds.
    seed : int
        Seed of the learned schemes (classical calibration is deterministic).
    device : {"auto", "cpu", "cuda"}
        Device of learned schemes.
    vst : bool
        Generalised Anscombe transform before, exact unbiased inverse after (Poisson–Gaussian data),
        for classical and learned methods alike.
    progress : bool
        Progress bar while training.
    noise_model : NoiseModel or dict, optional
        Camera noise model for the VST (default: estimated from the image).
    params, normalization, inverse, candidates
        Classical only: explicit parameters (skip calibration), fixed normalisation ``(low, scale)``,
        VST inverse, and the methods ``"auto"`` compares (see
        :func:`fluorecon.classical.denoise.denoise_classical`).
    **learn_options
        Passed to :func:`fluorecon.learn.single_image.denoise_single_image` (``steps``, ``tta``, any
        training-config field).

    Returns
    -------
    (numpy.ndarray, dict)
        Denoised float32 image in the input's units, and info: ``method`` (the one that ran),
        ``kind`` (``"classical"``/``"learned"``), ``seconds``, and ``params`` — keyword arguments of
        this function that reproduce the run with no estimation (used by out-of-core processing to
        apply one calibration to every block); for classical methods also ``losses``,
        ``calibration``, ``method_params``; for learned ones the engine's info (``steps``,
        ``train_s``, ...) and ``bundle`` (the trained model, not JSON).

    Raises
    ------
    FluoreconError
        Invalid image/axes, unknown method, budget ≤ 0, learned engine unavailable.

    Examples
    --------
    >>> x = np.random.default_rng(0).poisson(10, (64, 64)).astype(np.float32)
    >>> y, info = denoise(x, "YX", method="wavelet")
    >>> y2, _ = denoise(x, "YX", method=info["method"], **info["params"])   # replay, no estimation
    >>> bool(np.allclose(y, y2))
    True
    """
    from fluorecon.validation import as_image

    t0 = time.perf_counter()
    if hasattr(image, "data") and hasattr(image, "axes"):  # ImageData
        axes = axes or image.axes
        image = image.data
    if not isinstance(method, str) or not method:
        raise FluoreconError(f"method must be a non-empty string, got {method!r}",
                             hint=f"use one of {', '.join(CLASSICAL + learned_methods())}")
    method = method.lower()
    arr, ax = as_image(image, axes)

    if method in CLASSICAL:
        from fluorecon.classical.denoise import denoise_classical

        if learn_options:
            raise FluoreconError(f"options {sorted(learn_options)} apply to learned methods only, not {method!r}",
                                 hint="drop them, or choose a learned method such as n2v")
        kw: dict[str, Any] = {"inverse": inverse}
        if candidates is not None:
            kw["candidates"] = tuple(candidates)
        out, cinfo = denoise_classical(arr, method=method, vst=vst, noise_model=noise_model, axes=ax, params=params,
                                       normalization=normalization, **kw)
        info = dict(cinfo)
        info["method_params"] = cinfo["params"]
        used = cinfo["method"]
        replay: dict[str, Any] = {"params": cinfo["params"], "normalization": cinfo.get("normalization"),
                                  "vst": bool(vst), "inverse": inverse}
        if vst and cinfo.get("vst"):
            replay["noise_model"] = {k: cinfo["vst"][k] for k in ("gain", "offset", "read_noise")}
        if "per_channel" in cinfo:  # one calibration per channel cannot be replayed as one set: re-calibrate
            replay = {k: v for k, v in replay.items() if k not in ("params", "normalization")}
        if used == "none":  # nothing to do (noise-free input): replaying "none" must be a no-op too
            replay = {}
        info.update(method=used, kind="classical", params=replay)
    else:
        if params is not None or normalization is not None or candidates is not None:
            raise FluoreconError(f"params/normalization/candidates apply to classical methods, not {method!r}",
                                 hint=f"use them with one of {', '.join(CLASSICAL)}")
        out, info = _learned(arr, ax, method, budget_s, seed, device, vst, progress, noise_model, inverse,
                             learn_options)
    info["seconds"] = time.perf_counter() - t0
    info["axes"] = ax
    return np.asarray(out, dtype=np.float32), info


def _learned(arr, ax, method, budget_s, seed, device, vst, progress, noise_model, inverse, options):
    try:
        from fluorecon.learn.single_image import denoise_single_image
    except ImportError as e:
        raise FluoreconError(f"learned method {method!r} needs fluorecon.learn.single_image, which is not available ({e})",
                             hint=f"use a classical method: {', '.join(CLASSICAL)}") from None
    if budget_s is None or not np.isfinite(budget_s) or budget_s <= 0:
        if options.get("steps") is None:
            raise FluoreconError(f"training budget must be a positive number of seconds, got {budget_s}",
                                 hint="e.g. budget_s=120 (CLI: --budget 120)")
    x = arr
    nm = None
    if vst:
        from fluorecon.classical.vst import as_poisson_gaussian, generalized_anscombe

        if noise_model is None:
            from fluorecon.physics.noise_model import estimate_poisson_gaussian

            noise_model = estimate_poisson_gaussian(arr)
        nm = as_poisson_gaussian(noise_model)
        x = generalized_anscombe(arr, nm).astype(np.float32)
    out, einfo = denoise_single_image(x, ax, scheme=method, budget_s=budget_s, seed=seed, device=device,
                                      progress=progress, **options)
    if nm is not None:
        from fluorecon.classical.vst import inverse_generalized_anscombe

        out = inverse_generalized_anscombe(out, nm, method=inverse)
    info = dict(einfo)
    info.update(method=einfo.get("scheme", method), kind="learned",
                vst=None if nm is None else dict(nm.to_dict(), inverse=inverse),
                params={"budget_s": budget_s, "seed": seed, "vst": bool(vst), **options})
    return out, info


# ------------------------------------------------------------------------------------ task contract
_BUNDLE_CACHE: dict[tuple[str, float], Any] = {}


def _cached_bundle(path: str) -> Any:
    """Load a model bundle once per process (blocks of an out-of-core run share it)."""
    p = Path(path).resolve()
    key = (str(p), (p / "bundle.json").stat().st_mtime)
    if key not in _BUNDLE_CACHE:
        _BUNDLE_CACHE[key] = Bundle.load(p)
    return _BUNDLE_CACHE[key]


class DenoiseParams(TaskParams):
    """Parameters of :class:`DenoiseTask` (CLI options, napari fields and provenance derive from them)."""

    method: str = param("auto", "auto | nlm | tv | wavelet | bm3d (classical, self-calibrated on the image) | "
                        "n2v | n2v2 | structn2v | nb2nb (self-supervised network trained on the input).")
    budget_s: float = param(120.0, "Training wall-time budget of learned methods.", unit="s", cli="--budget",
                            gt=0, le=7 * 86400)
    steps: int | None = param(None, "Learned methods: train exactly this many steps (reproducible) instead of "
                              "the time budget.", ge=1, le=10_000_000)
    vst: bool = param(False, "Generalised Anscombe transform before and exact unbiased inverse after "
                      "(Poisson–Gaussian camera data); noise model estimated unless gain/offset/read noise are given.")
    gain: float | None = param(None, "Camera gain for --vst.", unit="ADU/e-", gt=0)
    offset: float | None = param(None, "Camera offset (baseline) for --vst.", unit="ADU")
    read_noise: float | None = param(None, "Camera read noise for --vst.", unit="e-", ge=0)
    seed: int = param(0, "Random seed of learned methods.", ge=0)
    device: str = param("auto", "Compute device of learned methods: auto, cpu or cuda.", widget=False,
                        choices=("auto", "cpu", "cuda"))

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        return check_choice(v, CLASSICAL + learned_methods(), "method")

    @field_validator("device")
    @classmethod
    def _device(cls, v: str) -> str:
        return check_choice(v, ("auto", "cpu", "cuda"), "device")

    @model_validator(mode="after")
    def _camera(self) -> DenoiseParams:
        given = [v is not None for v in (self.gain, self.offset, self.read_noise)]
        if any(given) and not all(given):
            raise ValueError("gain, offset and read_noise (--gain, --offset, --read-noise) go together: give all "
                             "three, or none to estimate them")
        if any(given) and not self.vst:
            raise ValueError("gain/offset/read_noise (--gain/--offset/--read-noise) only apply with vst (--vst)")
        return self

    def noise_model(self) -> PoissonGaussian | None:
        """The camera noise model in ADU (read noise converted from electrons), or None."""
        if self.gain is None:
            return None
        return PoissonGaussian(gain=self.gain, offset=float(self.offset or 0.0),
                               read_noise=float(self.read_noise or 0.0) * self.gain)


@register
class DenoiseTask(Task):
    """Denoising as a registered task: classical (self-calibrated) or self-supervised learned."""

    name = "denoise"
    title = "Denoise"
    summary = "Remove camera noise with a self-calibrated classical method or a self-supervised network."
    Params = DenoiseParams
    inputs = (InputSpec("image", "Noisy image (YX, ZYX, or a stack with T/C axes)."),)
    outputs = (OutputSpec("image", "Denoised image, float32, in the input's intensity units."),)
    trust = ("verify",)
    accepts = ("YX", "ZYX", "CYX", "TYX", "CZYX", "TZYX")
    doc = "denoise"
    output_tag = "_denoised"
    saves_model = True
    examples = ("fluorecon denoise noisy.tif -o clean.tif",
                "fluorecon denoise noisy.tif -o clean.tif --method bm3d --vst",
                "fluorecon denoise noisy.tif -o clean.tif --method n2v --budget 120")

    def run(self, inputs: Mapping[str, ImageData], params: DenoiseParams, progress: Any = None) -> Result:
        img = inputs["image"]
        report = as_progress(progress)
        nm = params.noise_model()
        learned = params.method not in CLASSICAL
        extra: dict[str, Any] = {}
        if learned:
            extra["steps"] = params.steps
            t_start = time.perf_counter()

            def on_step(step: int, loss: float) -> None:
                frac = step / params.steps if params.steps else (time.perf_counter() - t_start) / params.budget_s
                report(0.95 * frac, f"training step {step} (loss {loss:.4g})")

            extra["callback"] = on_step
        report(0.0, f"denoising ({params.method})")
        y, info = denoise(img.data, img.axes, method=params.method, budget_s=params.budget_s, seed=params.seed,
                          device=params.device, vst=params.vst, progress=False, noise_model=nm, **extra)
        report(1.0, "done")
        used = {k: v for k, v in info.items() if k not in ("bundle", "calibration")}
        vst_model = info.get("vst")
        noise = None
        if nm is not None:
            noise = nm
        elif vst_model:
            noise = PoissonGaussian(**{k: vst_model[k] for k in ("gain", "offset", "read_noise")})
        res = Result(outputs={"image": y}, params_used=used, forward=IdentityForward(noise),
                     warnings=list(info.get("warnings", [])))
        if info.get("bundle") is not None:
            res.extras["bundle"] = info["bundle"]
        return res

    @classmethod
    def example(cls, seed: int = 0) -> dict[str, Any]:
        """A 48×48 noisy camera image of a phantom and a fast classical method."""
        y = phantoms.phantom("membranes", (48, 48), seed=seed)
        x = Camera(photons=30.0, gain=2.0, offset=100.0, read_noise=2.0).simulate(y, seed=seed + 1)
        return {"inputs": {"image": ImageData(x, "YX", (0.1, 0.1), {})}, "params": {"method": "tv"}}

    def plan(self, sample: ImageData, params: DenoiseParams, workdir: Any = None) -> dict[str, Any]:
        nm = params.noise_model()
        if params.method in CLASSICAL:
            _, info = denoise(sample.data, sample.axes, method=params.method, vst=params.vst, noise_model=nm)
            return {"method": info["method"], "kwargs": to_json(info["params"]), "axes": sample.axes}
        if params.vst:
            raise FluoreconError(f"out-of-core {params.method} with --vst is not supported",
                                 hint="drop --vst, or use a classical method (which replays the VST blockwise)")
        if workdir is None:
            raise FluoreconError(f"out-of-core {params.method} needs a folder for the trained model")
        _, info = denoise(sample.data, sample.axes, method=params.method, budget_s=params.budget_s, seed=params.seed,
                          device=params.device, progress=False, steps=params.steps)
        model_dir = Path(workdir)  # the adapter's `<output>.model` folder holds the bundle itself
        info["bundle"].save(model_dir)
        radius = int(getattr(info["bundle"].model, "receptive_radius", 16))
        return {"method": "predict", "model": str(model_dir), "axes": sample.axes, "halo": radius,
                "trained_on": list(sample.data.shape), "scheme": info.get("method")}

    def block_halo(self, resolved: Mapping[str, Any]) -> int:
        if resolved["method"] == "predict":
            return int(resolved["halo"])
        return _DENOISE_HALO.get(str(resolved["method"]), 24)

    def apply_block(self, block: np.ndarray, resolved: Mapping[str, Any]) -> np.ndarray:
        axes = resolved["axes"]
        if resolved["method"] == "predict":
            return np.asarray(predict(_cached_bundle(resolved["model"]), block, axes, tile=None, device="cpu"),
                              np.float32)
        out, _ = denoise(block, axes, method=resolved["method"], **resolved["kwargs"])
        return out


# Margin (pixels) each classical denoiser needs around a block so that blocks agree with a whole-image run.
_DENOISE_HALO = {"nlm": 16, "bm3d": 24, "wavelet": 32, "tv": 24, "none": 0}
