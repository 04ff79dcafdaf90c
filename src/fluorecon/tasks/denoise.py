"""Denoising, the review's first application (CARE, Fig. 1a): one entry point, classical or learned.

- Classical methods (``auto``, ``nlm``, ``tv``, ``wavelet``, ``bm3d``) run immediately, each tuned on
  the image itself by J-invariant self-calibration (:mod:`fluorecon.classical.denoise`).
- Self-supervised learned schemes (``n2v``, ``n2v2``, ``structn2v``, ``nb2nb`` — whatever
  :mod:`fluorecon.learn.single_image` offers) train a U-Net on the noisy image alone for ``budget_s``
  seconds and then predict it. Every learned result is **guarded** (``guard=True``): the network, the
  calibrated classical result and the noisy input are scored on the same held-out pixels, which the
  network never saw (Noise2Self); if the network does not beat both, the result falls back to the
  better of them and ``info["warnings"]``/``info["fallback"]`` say so.
- ``best`` runs the calibrated classical ``auto`` *and* the self-supervised network (``budget_s``) and
  returns whichever of classical, network and their average scores lowest on the held-out pixels
  (``info["choice"]``). ``auto`` stays classical-only (seconds, no training).

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
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import field_validator, model_validator

from fluorecon.classical.denoise import METHODS as CLASSICAL_METHODS
from fluorecon.classical.denoise import denoise_classical, holdout_mask, holdout_replace
from fluorecon.classical.vst import PoissonGaussian
from fluorecon.errors import FluoreconError, FluoreconWarning
from fluorecon.io import ImageData
from fluorecon.learn.bundle import Bundle
from fluorecon.learn.predict import predict
from fluorecon.learn.single_image import SINGLE_IMAGE_SCHEMES, denoise_single_image
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

__all__ = ["CLASSICAL", "COMBINED", "DenoiseParams", "DenoiseTask", "denoise", "learned_methods"]

CLASSICAL = ("auto", *CLASSICAL_METHODS)
#: Methods that run classical and learned candidates and keep the best by the held-out-pixel loss.
COMBINED = ("best",)


def learned_methods() -> tuple[str, ...]:
    """Names of the single-image learned schemes the engine offers (empty when it is unavailable).

    Examples
    --------
    >>> isinstance(learned_methods(), tuple)
    True
    """
    return tuple(s for s in SINGLE_IMAGE_SCHEMES if s != "auto")


def denoise(image: Any, axes: str | None = None, method: str = "auto", budget_s: float = 120.0, seed: int = 0,
            device: str = "auto", vst: bool = False, progress: bool = True, *, noise_model: Any = None,
            params: dict[str, Any] | None = None, normalization: Any = None, inverse: str = "exact",
            candidates: Any = None, guard: bool = True, **learn_options: Any) -> tuple[np.ndarray, dict]:
    """Denoise an image with a calibrated classical method or a self-supervised network.

    Parameters
    ----------
    image : numpy.ndarray or fluorecon.io.ImageData
        Noisy image: ``YX``, ``ZYX``, or a stack with ``T``/``C`` axes.
    axes : str, optional
        Its axes (default from an ``ImageData``, else ``YX``/``ZYX`` by dimensionality).
    method : str
        ``"auto"`` (best calibrated classical method by the self-supervised loss; fast, no
        training), ``"nlm"``, ``"tv"``, ``"wavelet"``, ``"bm3d"``, a learned single-image scheme
        (``"n2v"``, ``"n2v2"``, ``"structn2v"``, ``"nb2nb"``, ...; unknown names are passed to the
        engine, which says which ones exist), or ``"best"``: classical ``auto``, ``n2v`` trained for
        ``budget_s`` and their average, the one with the lowest held-out-pixel loss returned.
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
    guard : bool
        Learned methods: score the network, the calibrated classical result and the input on held-out
        pixels the network never saw, and fall back (with a warning) when the network is not better
        than both. ``False`` returns the network's output unchecked (and trains without held-out
        pixels). ``"best"`` always scores.
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
        ``train_s``, ``center_gain``, ...) and ``bundle`` (the trained model, not JSON), and with the
        guard: ``requested`` (the method asked for), ``choice`` (``"learned"``, ``"classical"``,
        ``"ensemble"`` or ``"input"``: what was returned), ``fallback`` (None or what replaced the
        network), ``heldout`` (losses of each candidate on the held-out pixels, in units of the
        image's 0.1–99.9 % range squared, the classical method compared, the number of pixels) and
        ``warnings`` (list of str; each also issued as a :class:`~fluorecon.errors.FluoreconWarning`).

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
        name = "n2v" if method in COMBINED else method
        opts = dict(learn_options)
        if not (guard or method in COMBINED):
            opts.setdefault("holdout", False)
        out, info = _learned(arr, ax, name, budget_s, seed, device, vst, progress, noise_model, inverse, opts)
        if guard or method in COMBINED:
            out, info = _guard(arr, ax, out, info, method, vst, noise_model, inverse)
        info.pop("holdout_values", None)
    info["seconds"] = time.perf_counter() - t0
    info["axes"] = ax
    return np.asarray(out, dtype=np.float32), info


def _learned(arr, ax, method, budget_s, seed, device, vst, progress, noise_model, inverse, options):
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
    ho = info.get("holdout")
    if ho is not None:  # keep JSON in info; the arrays go to a private key that denoise() removes
        vals = ho.pop("values_b")
        if nm is not None:
            vals = inverse_generalized_anscombe(vals, nm, method=inverse)
        info["holdout_values"] = (ho.pop("mask_b"), np.asarray(vals, np.float64))
    info.update(method=einfo.get("scheme", method), kind="learned",
                vst=None if nm is None else dict(nm.to_dict(), inverse=inverse),
                params={"budget_s": budget_s, "seed": seed, "vst": bool(vst),
                        **{k: v for k, v in options.items() if k != "callback"}})
    return out, info


def _noise_variance(arr: np.ndarray, mean: np.ndarray) -> float:
    """Mean noise variance (input units²) at pixels whose clean values are about ``mean``."""
    try:
        from fluorecon.physics.noise_model import estimate_poisson_gaussian

        v = float(np.mean(estimate_poisson_gaussian(arr).variance(np.asarray(mean, np.float64))))
        if np.isfinite(v) and v > 0:
            return v
    except (FluoreconError, ValueError, np.linalg.LinAlgError):
        pass
    from skimage.restoration import estimate_sigma

    return float(estimate_sigma(np.asarray(arr, np.float64), average_sigmas=True)) ** 2


def difference_correlation(image: np.ndarray, crop: int = 256) -> float:
    """Correlation of consecutive pixel differences along Y and X (central crop, averaged).

    Pixel-independent noise gives −0.5 when noise dominates the differences; noise correlated
    between neighbours (smoothed, interpolated, demosaiced or compressed data) or an almost
    noise-free image gives values well above (≈ 0.1 for noise smoothed with σ = 0.7 px). Blind-spot
    training and the held-out-pixel check assume pixel-independent noise.

    Examples
    --------
    >>> x = np.random.default_rng(0).normal(size=(128, 128))
    >>> round(difference_correlation(x), 1)
    -0.5
    """
    a = np.asarray(image, np.float64)
    a = a.reshape(-1, *a.shape[-2:])[a.reshape(-1, *a.shape[-2:]).shape[0] // 2]
    ny, nx = a.shape
    a = a[max((ny - crop) // 2, 0):max((ny - crop) // 2, 0) + crop, max((nx - crop) // 2, 0):max((nx - crop) // 2, 0) + crop]
    vals = []
    for d in (np.diff(a, axis=0), np.diff(a, axis=1).T):
        d1, d2 = d[:-1], d[1:]
        den = np.sqrt(np.sum(d1 * d1) * np.sum(d2 * d2))
        if den > 0:
            vals.append(float(np.sum(d1 * d2) / den))
    return float(np.mean(vals)) if vals else 0.0


def _guard(arr, ax, out, info, method, vst, noise_model, inverse):
    """Score network, classical and input on the held-out pixels; return the winner (see denoise)."""
    if "holdout_values" not in info:
        raise FluoreconError("the learned engine returned no held-out predictions", hint="call with guard=False")
    mask_b, learned_b = info["holdout_values"]
    stride = info["holdout"]["stride"]
    mask_a = holdout_mask(arr.shape, stride, (stride // 2, stride // 2 - 1))
    x_rep = holdout_replace(arr, mask_a | mask_b)
    # the calibrated classical result, and its predictions at the held-out pixels from the same input
    # the network saw there (both grids replaced), with the same parameters
    c_out, cinfo = denoise(arr, ax, method="auto", vst=vst, noise_model=noise_model, inverse=inverse)
    if cinfo["params"]:
        c_rep, _ = denoise(x_rep, ax, method=cinfo["method"], **cinfo["params"])
    else:  # per-channel calibration or a noise-free image: calibrate the replaced image the same way
        c_rep, _ = denoise(x_rep, ax, method="auto", vst=vst, noise_model=noise_model, inverse=inverse)
    xb = arr[mask_b].astype(np.float64)
    cb = c_rep[mask_b].astype(np.float64)
    lo, hi = np.percentile(arr, [0.1, 99.9])
    sc2 = float(hi - lo) ** 2 if hi > lo else 1.0
    losses = {"learned": float(np.mean((learned_b - xb) ** 2) / sc2),
              "classical": float(np.mean((cb - xb) ** 2) / sc2),
              "ensemble": float(np.mean((0.5 * (learned_b + cb) - xb) ** 2) / sc2),
              # the input's true MSE is the noise variance σ²; on this scale (MSE + σ²) it scores 2σ²
              "input": 2.0 * _noise_variance(arr, cb) / sc2}
    learned_name = info.get("method", "n2v")
    outputs = {"learned": out, "classical": c_out, "ensemble": 0.5 * (np.asarray(out, np.float32) + c_out),
               "input": arr}
    pool = ("learned", "classical", "ensemble", "input") if method in COMBINED else ("learned", "classical", "input")
    choice = min(pool, key=lambda k: losses[k])
    msgs: list[str] = list(info.get("warnings", []))
    gain = info.get("center_gain")
    if gain is not None and gain >= 0.9 and info.get("inference") != "blind_spot":
        msgs.append(f"the network passes pixel noise through (centre gain {gain:.2f} ≥ 0.9)")
    rho = difference_correlation(arr)
    if rho > -0.1:
        msgs.append(f"neighbouring pixels' noise looks correlated (difference correlation {rho:.2f}; −0.5 for "
                    "independent noise), or the image is nearly noise-free: blind-spot training and the held-out "
                    "check assume pixel-independent noise, so the learned result may keep structured noise; "
                    "compare with method='auto'")
    fallback = None
    if method not in COMBINED and choice != "learned":
        fallback = choice
        worse = [k for k in ("classical", "input") if losses["learned"] >= losses[k]]
        msgs.append(f"{learned_name} was not better than the {' and the '.join(worse)} on held-out pixels "
                    f"(loss {losses['learned']:.4g} vs " + ", ".join(f"{k} {losses[k]:.4g}" for k in worse)
                    + f"); returning the {choice} result instead"
                    + (f" ({cinfo['method']})" if choice == "classical" else ""))
    elif method in COMBINED and choice == "input":
        msgs.append("no denoiser beat the noisy input on held-out pixels: returning the input unchanged")
    for m in msgs[len(info.get("warnings", [])):]:
        warnings.warn(m, FluoreconWarning, stacklevel=4)
    names = {"learned": learned_name, "classical": cinfo["method"], "ensemble": f"{learned_name}+{cinfo['method']}",
             "input": "none"}
    kinds = {"learned": "learned", "classical": "classical", "ensemble": "ensemble", "input": "none"}
    new = dict(info)
    new.update(method=names[choice], kind=kinds[choice], requested=method, choice=choice, fallback=fallback,
               warnings=msgs, classical={"method": cinfo["method"], "params": cinfo["params"]},
               heldout={"losses": losses, "pixels": int(mask_b.sum()), "stride": stride, "difference_correlation": rho,
                        "units": "(image 0.1–99.9 % range)²", "classical_method": cinfo["method"]})
    return np.asarray(outputs[choice], np.float32), new


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
                        "n2v | n2v2 | structn2v | nb2nb (self-supervised network trained on the input; checked against "
                        "the classical result on held-out pixels, falls back if worse) | best (classical, network "
                        "and their average: the best on held-out pixels).")
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
    deterministic: bool = param(False, "Learned methods: bit-identical training on CPU (slower); use with --steps.")
    device: str = param("auto", "Compute device of learned methods: auto, cpu or cuda.", widget=False,
                        choices=("auto", "cpu", "cuda"))

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        return check_choice(v, CLASSICAL + learned_methods() + COMBINED, "method")

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
            if params.deterministic:
                extra["deterministic"] = True
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
                "trained_on": list(sample.data.shape), "scheme": params.method,
                "in_memory_choice": info.get("method")}

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
