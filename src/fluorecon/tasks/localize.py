"""Single-molecule localization (``localize``) and rendering (``render``) as registered tasks.

``localize`` turns an SMLM movie (``TYX``, ADU) into a localization table (ThunderSTORM columns,
nm, origin at the image's top-left corner, pixel centres at half-integers × pixel size) with:

- ``mle``: DoG detection + batched Poisson maximum-likelihood fit with Cramér–Rao bounds;
- ``decode``: DECODE-style network with 3-frame context, trained on the fly (``--budget``) on
  simulations matched to the camera/PSF/density — or loaded with ``--model DIR``;
- ``deepstorm``: Deep-STORM-style super-resolved density network, maxima → localizations.

Post-processing options: drift correction (RCC), merging across consecutive frames, filtering by
photons/uncertainty. The **main output is the table**; the rendering is a second output. The forward
model (:class:`fluorecon.physics.smlm.LocalizationForward`) re-renders the movie from the table, so
``verify`` can find frames/regions with missed or invented emitters.

``render`` turns a table into an image (histogram or Gaussian) and reports the FRC resolution from
two halves of the localizations split by time blocks.

Examples
--------
>>> from fluorecon.tasks.registry import get
>>> ex = get("localize").example(0)
>>> res = get("localize")(ex["inputs"]["movie"], **ex["params"])
>>> res.main, {"x [nm]", "y [nm]", "uncertainty [nm]"} <= set(res.image.names)
('localizations', True)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import field_validator, model_validator

from fluorecon.classical.localize import drift_correct, filter_localizations, localize, merge, render
from fluorecon.errors import FluoreconError
from fluorecon.evaluate.smlm import frc_localizations
from fluorecon.io import ImageData
from fluorecon.learn.smlm_nets import LocalizerModel, SimConfig, train_localizer
from fluorecon.physics.smlm import (
    AstigmaticPSF,
    Blinking,
    GaussianPSF,
    LocalizationForward,
    SMLMCamera,
    simulate_movie,
)
from fluorecon.tasks.contract import (
    InputSpec,
    OutputSpec,
    Result,
    Table,
    Task,
    TaskParams,
    as_progress,
    check_choice,
    param,
)
from fluorecon.tasks.registry import register

__all__ = ["LocalizeParams", "LocalizeTask", "RenderParams", "RenderTask", "psf_sigma_from_image"]

METHODS = ("mle", "decode", "deepstorm")


class LocalizeParams(TaskParams):
    """Parameters of :class:`LocalizeTask`."""

    method: str = param("mle", "mle (detection + Poisson MLE with Cramér–Rao bounds) | decode (DECODE-style network, "
                        "3-frame context) | deepstorm (Deep-STORM-style density network).", choices=METHODS)
    pixel_size: float | None = param(None, "Camera pixel size (default: from the file's metadata).", unit="nm",
                                     gt=0, le=100_000)
    baseline: float = param(100.0, "Camera baseline (offset).", unit="ADU", ge=0)
    gain: float = param(1.0, "Camera conversion gain, ADU per electron (a sheet saying 45 e-/ADU means 1/45 = "
                        "0.0222).", unit="ADU/e-", gt=0)
    em_gain: float | None = param(None, "EM gain of an EMCCD (> 1); none for sCMOS.", gt=1)
    read_noise: float = param(1.0, "Read noise (electrons rms, at the output).", unit="e-", ge=0)
    quantum_efficiency: float = param(1.0, "Quantum efficiency: reported photons = electrons / QE.", gt=0, le=1)
    psf_sigma: float | None = param(None, "Gaussian PSF sigma (default: 0.21·wavelength/NA, or from --psf).",
                                    unit="nm", gt=0, le=10_000)
    wavelength: float = param(0.68, "Emission wavelength (for the default PSF sigma).", unit="µm", gt=0.2, le=2)
    na: float = param(1.4, "Numerical aperture (for the default PSF sigma).", gt=0.05, le=1.7)
    psf_voxel_size: float | None = param(None, "Pixel size of a --psf image (default: its metadata).", unit="nm",
                                         gt=0, advanced=True)
    astig_c: float | None = param(None, "Astigmatic 3D PSF: focal offset c of the x/y widths (enables z).",
                                  unit="nm", advanced=True)
    astig_d: float = param(400.0, "Astigmatic 3D PSF: depth of focus d.", unit="nm", gt=0, advanced=True)
    threshold: float = param(5.0, "mle: detection threshold in noise SDs of the DoG image; learned: "
                             "probability threshold is --prob-threshold.", gt=0, le=100)
    prob_threshold: float | None = param(None, "Learned methods: detection probability threshold (default: the model's, 0.3).", gt=0, le=10,
                                  advanced=True)
    roi: int | None = param(None, "mle: fit window (odd, pixels); default 2·ceil(3σ)+1.", ge=5, le=31, advanced=True)
    fit_sigma: bool = param(False, "mle: also fit the PSF width per spot.", advanced=True)
    density: float = param(1.0, "Learned methods: expected active emitters per µm² per frame (training).",
                           unit="µm⁻²", gt=0, le=20)
    photons: float | None = param(None, "Learned methods: mean photons per emitter and frame (default: "
                                  "estimated by an MLE pass).", unit="photon", gt=0)
    background: float | None = param(None, "Learned methods: background photons per pixel (default: estimated).",
                                     unit="photon", ge=0)
    budget_s: float = param(60.0, "Learned methods without --model: training time budget.", unit="s", cli="--budget",
                            gt=0, le=7 * 86400)
    steps: int | None = param(None, "Learned methods: train exactly this many steps instead of the budget.", ge=1)
    drift: bool = param(False, "Correct lateral drift by redundant cross-correlation.")
    merge: bool = param(False, "Merge localizations of one emitter in consecutive frames.")
    merge_distance: float = param(50.0, "Merging radius.", unit="nm", gt=0, advanced=True)
    min_photons: float | None = param(None, "Drop localizations with fewer photons.", unit="photon", ge=0)
    max_uncertainty: float | None = param(None, "Drop localizations with a larger uncertainty.", unit="nm", gt=0)
    max_deviance: float | None = param(None, "mle: drop fits whose Poisson deviance per degree of freedom exceeds "
                                       "this (≈ 1 for a single emitter; 3 removes most overlapping pairs).", gt=0)
    render_pixel_size: float = param(10.0, "Pixel size of the rendering.", unit="nm", gt=0)
    render_method: str = param("gaussian", "Rendering: histogram or gaussian (s.d. = each uncertainty).",
                               choices=("histogram", "gaussian"))
    seed: int = param(0, "Random seed (training).", ge=0)
    device: str = param("auto", "Compute device (auto: CUDA when present, else cpu).", widget=False,
                        choices=("auto", "cpu", "cuda"))

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        return check_choice(v, METHODS, "method")

    @field_validator("render_method")
    @classmethod
    def _render(cls, v: str) -> str:
        return check_choice(v, ("histogram", "gaussian"), "render_method")

    @model_validator(mode="after")
    def _roi(self) -> LocalizeParams:
        if self.roi is not None and self.roi % 2 == 0:
            raise ValueError("roi must be odd")
        return self

    def camera(self) -> SMLMCamera:
        return SMLMCamera(baseline=self.baseline, gain=self.gain, em_gain=self.em_gain, read_noise=self.read_noise)


def psf_sigma_from_image(psf: ImageData, voxel_nm: float | None) -> float:
    """Gaussian sigma (nm) of a measured PSF image (2D, or the brightest plane of a 3D stack).

    Examples
    --------
    >>> from fluorecon.physics.psf import gaussian_psf
    >>> img = ImageData(gaussian_psf((31, 31), 2.0), "YX", (0.05, 0.05), {})
    >>> round(psf_sigma_from_image(img, None))
    100
    """
    data = np.asarray(psf.data, np.float64)
    vs = voxel_nm
    if vs is None and psf.voxel_size is not None:
        vs = float(psf.voxel_size[-1]) * 1000.0
    if vs is None:
        raise FluoreconError("the PSF image has no pixel size", hint="give --psf-voxel-size in nm")
    if data.ndim == 3:
        data = data[int(np.argmax(data.reshape(len(data), -1).max(1)))]
    if data.ndim != 2:
        raise FluoreconError(f"a PSF must be 2D or a 3D stack, got {data.ndim} dimensions")
    data = data - np.median(np.concatenate([data[0], data[-1], data[:, 0], data[:, -1]]))
    data = np.clip(data, 0, None)
    if data.sum() <= 0:
        raise FluoreconError("the PSF image has no signal above its border level")
    yy, xx = np.indices(data.shape)
    w = data / data.sum()
    cy, cx = (w * yy).sum(), (w * xx).sum()
    var = 0.5 * ((w * (yy - cy) ** 2).sum() + (w * (xx - cx) ** 2).sum())
    return float(math.sqrt(max(var, 1e-6))) * vs


def _pixel_size(img: ImageData, given: float | None) -> float:
    if given is not None:
        return float(given)
    if img.voxel_size is not None:
        return float(img.voxel_size[-1]) * 1000.0
    raise FluoreconError("the movie has no pixel size in its metadata", hint="give --pixel-size in nm")


def _movie(img: ImageData) -> np.ndarray:
    data = np.asarray(img.data, np.float32)
    axes = img.axes or ""
    if data.ndim == 2:
        return data[None]
    if data.ndim == 3:
        if axes and axes not in ("TYX", "ZYX", "CYX"):
            raise FluoreconError(f"an SMLM movie must be TYX, got axes {axes}")
        return data
    raise FluoreconError(f"an SMLM movie must be (T, Y, X), got shape {data.shape}",
                         hint="split channels into separate files")


def _as_table(cols: Mapping[str, np.ndarray], meta: dict[str, Any]) -> Table:
    return Table({k: np.asarray(v) for k, v in cols.items()}, meta)


@register
class LocalizeTask(Task):
    """SMLM localization as a registered task (main output: the localization table)."""

    name = "localize"
    title = "Localize (SMLM)"
    summary = "Localize single molecules in a PALM/STORM movie: Poisson MLE with CRLB, or DECODE/Deep-STORM networks."
    Params = LocalizeParams
    inputs = (InputSpec("movie", "SMLM movie (TYX), raw camera ADU."),
              InputSpec("psf", "Measured PSF image (2D, or 3D stack: its brightest plane sets the Gaussian "
                        "sigma).", required=False),
              InputSpec("model", "Trained localizer folder (from train-localizer) for decode/deepstorm.",
                        kind="path", required=False))
    outputs = (OutputSpec("localizations", "Localization table (ThunderSTORM CSV columns, nm).", kind="table"),
               OutputSpec("rendering", "Super-resolved rendering of the localizations.", kind="image"))
    trust = ("verify",)
    accepts = ("TYX", "YX")
    doc = "smlm"
    default_suffix = ".csv"
    saves_model = True
    examples = ("fluorecon localize movie.tif -o locs.csv --pixel-size 100 --gain 0.0222 --em-gain 300 "
                "--read-noise 74.4 --psf-sigma 130",
                "fluorecon localize movie.tif -o locs.csv --method decode --density 2 --budget 300",
                "fluorecon localize movie.tif -o locs.csv --drift --merge --max-uncertainty 30")

    @classmethod
    def example(cls, seed: int = 0) -> dict[str, Any]:
        """A 6-frame 24×24 simulated EMCCD movie and the MLE localizer."""
        cam = SMLMCamera.smlm2016()
        frames, _ = simulate_movie(6, (24, 24), 100.0, density=0.5, psf=130.0, camera=cam,
                                   kinetics=Blinking(on_time=2, off_time=4), seed=seed)
        return {"inputs": {"movie": ImageData(frames, "TYX", (0.1, 0.1), {})},
                "params": {"method": "mle", "baseline": 100.0, "gain": 1 / 45, "em_gain": 300.0, "read_noise": 74.4,
                           "psf_sigma": 130.0, "render_pixel_size": 20.0}}

    def run(self, inputs: Mapping[str, Any], params: LocalizeParams, progress: Any = None) -> Result:
        img = inputs["movie"]
        report = as_progress(progress)
        movie = _movie(img)
        px = _pixel_size(img, params.pixel_size)
        cam = params.camera()
        warnings: list[str] = []
        used: dict[str, Any] = {"pixel_size_nm": px}
        if inputs.get("psf") is not None:
            sigma = psf_sigma_from_image(inputs["psf"], params.psf_voxel_size)
            used["psf_sigma_from_image_nm"] = sigma
        elif params.psf_sigma is not None:
            sigma = params.psf_sigma
        else:
            sigma = 0.21 * params.wavelength * 1000.0 / params.na
            warnings.append(f"PSF sigma not given: using 0.21·λ/NA = {sigma:.0f} nm (give --psf-sigma)")
        used["psf_sigma_nm"] = sigma
        psf: GaussianPSF | AstigmaticPSF = GaussianPSF(sigma) if params.astig_c is None else \
            AstigmaticPSF(sigma, params.astig_c, params.astig_d)
        if params.method != "mle" and movie.shape[0] < 2:
            raise FluoreconError(f"--method {params.method} needs a movie with several frames; this one has 1",
                                 hint="use --method mle for single frames")
        if params.method != "mle" and isinstance(psf, AstigmaticPSF):
            raise FluoreconError("the learned localizers are 2D here", hint="use --method mle for astigmatic 3D")
        if params.method == "mle":
            cols = localize(movie, cam, px, psf=psf, threshold=params.threshold, roi=params.roi,
                            fit_sigma=params.fit_sigma, progress=report.span(0, 0.8))
        else:
            model_path = inputs.get("model")
            if model_path is not None:
                model = LocalizerModel.load(Path(model_path))
                if model.kind != params.method:
                    raise FluoreconError(f"--model holds a {model.kind} localizer, not {params.method}")
                if abs(model.sim.pixel_size - px) > 0.05 * px:
                    warnings.append(f"the model was trained for {model.sim.pixel_size:g} nm pixels, the movie has "
                                    f"{px:g} nm")
                train_p = report.span(0, 0)
            else:
                est = self._estimate(movie, cam, px, sigma, params)
                used["training_simulation"] = est
                sim = SimConfig(pixel_size=px, psf_sigma=sigma, density=params.density, photons=est["photons"],
                                background=est["background"], camera=cam.model_dump(mode="json"))
                train_p = report.span(0.0, 0.85)
                model = train_localizer(params.method, sim, budget_s=params.budget_s, steps=params.steps,
                                        seed=params.seed, progress=train_p)
                used["training"] = model.training
            cols = model.localize(movie, threshold=params.prob_threshold, progress=report.span(0.85, 0.95))
            res_model = model
        if params.quantum_efficiency != 1.0 and "intensity [photon]" in cols:
            for k in ("intensity [photon]", "offset [photon]", "bkgstd [photon]", "crlb_intensity [photon]"):
                if k in cols:
                    cols[k] = cols[k] / params.quantum_efficiency
        n_raw = len(cols["frame"])
        if params.drift:
            try:
                cols, drift = drift_correct(cols, segments=min(10, max(2, movie.shape[0] // 50)))
                used["drift_nm_last_frame"] = drift[-1].tolist()
            except FluoreconError as e:
                warnings.append(f"drift correction skipped: {e.message}")
        if params.max_deviance is not None and "deviance" not in cols:
            warnings.append("--max-deviance applies to --method mle only: ignored")
        if params.min_photons is not None or params.max_uncertainty is not None or (
                params.max_deviance is not None and "deviance" in cols):
            cols = filter_localizations(cols, min_photons=params.min_photons, max_uncertainty=params.max_uncertainty,
                                        max_deviance=params.max_deviance if "deviance" in cols else None)
        if params.merge:
            cols = merge(cols, params.merge_distance, 1)
        fov = (movie.shape[2] * px, movie.shape[1] * px)
        inside = (cols["x [nm]"] >= 0) & (cols["x [nm]"] < fov[0]) & (cols["y [nm]"] >= 0) & (cols["y [nm]"] < fov[1])
        cols = {k: v[inside] for k, v in cols.items()}
        report(0.97, "rendering")
        rp = params.render_pixel_size
        rendering = render(cols, rp, fov, method=params.render_method) if len(cols["frame"]) else \
            np.zeros((max(1, int(math.ceil(fov[1] / rp))), max(1, int(math.ceil(fov[0] / rp)))), np.float32)
        used.update(n_localizations=int(len(cols["frame"])), n_raw=int(n_raw), frames=int(movie.shape[0]),
                    mean_uncertainty_nm=float(np.mean(cols["uncertainty [nm]"])) if len(cols.get("uncertainty [nm]", []))
                    else None)
        if movie.shape[0] >= 4 and len(cols["frame"]) > 50:
            try:
                fr = frc_localizations(cols, max(rp, 5.0), fov_nm=fov)
                used["frc_resolution_nm"] = fr.info["resolution_nm"]
            except FluoreconError:
                pass
        meta = {"pixel_size_nm": px, "fov_nm": list(fov), "frames": int(movie.shape[0]), "method": params.method}
        table = _as_table(cols, meta)
        report(1.0, f"{len(table)} localizations")
        fwd = LocalizationForward(movie.shape, px, psf, cam)
        res = Result(outputs={"localizations": table, "rendering": rendering}, main="localizations",
                     axes={"rendering": "YX"}, voxel_size={"rendering": (rp / 1000.0, rp / 1000.0)},
                     params_used=used, forward=fwd, warnings=warnings)
        if params.method != "mle":
            res.extras["bundle"] = res_model
        return res

    @staticmethod
    def _estimate(movie: np.ndarray, cam: SMLMCamera, px: float, sigma: float,
                  params: LocalizeParams) -> dict[str, float]:
        """Photons and background for the training simulation: given, or from an MLE pass on ≤ 200 frames."""
        photons, background = params.photons, params.background
        if photons is None or background is None:
            sub = movie[: min(len(movie), 200)]
            cols = localize(sub, cam, px, sigma, threshold=max(params.threshold, 5.0))
            if len(cols["frame"]) >= 5:
                ph = np.percentile(cols["intensity [photon]"], 75)
                bg = float(np.median(cols["offset [photon]"]))
            else:
                ph, bg = 1000.0, float(max(np.median(cam.to_photons(sub)), 0.0))
            photons = float(photons if photons is not None else ph)
            background = float(background if background is not None else bg)
        return {"photons": float(photons), "background": float(max(background, 0.0))}


# ------------------------------------------------------------------------------------------------ render
class RenderParams(TaskParams):
    """Parameters of :class:`RenderTask`."""

    pixel_size: float = param(10.0, "Rendered pixel size.", unit="nm", gt=0, le=10_000)
    method: str = param("histogram", "histogram (counts) or gaussian (s.d. = --sigma or each uncertainty).",
                        choices=("histogram", "gaussian"))
    sigma: float | None = param(None, "Gaussian rendering: fixed s.d. (default: each localization's uncertainty).",
                                unit="nm", gt=0)
    width: float | None = param(None, "Field of view width (default: the table's, else the largest x).", unit="nm",
                                gt=0)
    height: float | None = param(None, "Field of view height (default: the table's, else the largest y).",
                                 unit="nm", gt=0)
    frc: bool = param(True, "Report the FRC resolution (two halves from alternating time blocks, 1/7 threshold).")

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        return check_choice(v, ("histogram", "gaussian"), "method")


@register
class RenderTask(Task):
    """Render a localization table into a super-resolved image (and measure its FRC resolution)."""

    name = "render"
    title = "Render localizations"
    summary = "Render an SMLM localization table as an image (histogram or Gaussian) with FRC resolution."
    Params = RenderParams
    inputs = (InputSpec("table", "Localization table (ThunderSTORM CSV: frame, x [nm], y [nm], ...).", kind="table"),)
    outputs = (OutputSpec("image", "Super-resolved image (YX, float32; counts per pixel for histogram)."),)
    trust = ()
    accepts = ("table",)
    doc = "smlm"
    examples = ("fluorecon render locs.csv -o image.tif --pixel-size 10",
                "fluorecon render locs.csv -o image.tif --pixel-size 5 --method gaussian")

    @classmethod
    def example(cls, seed: int = 0) -> dict[str, Any]:
        """A small table of localizations along two lines."""
        rng = np.random.default_rng(seed)
        n = 400
        t = rng.uniform(0, 2000, n)
        line = rng.integers(0, 2, n)
        x = np.where(line == 0, t, 1000 + 0 * t) + rng.normal(0, 10, n)
        y = np.where(line == 0, 1000 + 0 * t, t) + rng.normal(0, 10, n)
        tab = Table({"frame": rng.integers(1, 101, n), "x [nm]": np.clip(x, 0, 1999), "y [nm]": np.clip(y, 0, 1999),
                     "uncertainty [nm]": np.full(n, 10.0)}, {"fov_nm": [2000.0, 2000.0]})
        return {"inputs": {"table": tab}, "params": {"pixel_size": 20.0}}

    def run(self, inputs: Mapping[str, Any], params: RenderParams, progress: Any = None) -> Result:
        tab = inputs["table"]
        if not isinstance(tab, Table):
            if isinstance(tab, Mapping):
                tab = Table(dict(tab))
            else:
                raise FluoreconError("render needs a localization table", hint="give a .csv file")
        cols = dict(tab.columns)
        missing = [c for c in ("x [nm]", "y [nm]") if c not in cols]
        if missing:
            raise FluoreconError(f"the table lacks column(s) {', '.join(repr(m) for m in missing)}",
                                 hint=f"it has {', '.join(cols)}")
        report = as_progress(progress)
        x, y = np.asarray(cols["x [nm]"], np.float64), np.asarray(cols["y [nm]"], np.float64)
        if not (np.isfinite(x).all() and np.isfinite(y).all()):
            raise FluoreconError("the table has non-finite coordinates")
        fov_meta = tab.meta.get("fov_nm")
        w = params.width or (float(fov_meta[0]) if fov_meta else float(x.max(initial=0)) + params.pixel_size)
        h = params.height or (float(fov_meta[1]) if fov_meta else float(y.max(initial=0)) + params.pixel_size)
        outside = (x < 0) | (y < 0) | (x >= w) | (y >= h)
        if outside.any():
            k = int(np.argmax(outside))
            raise FluoreconError(f"{int(outside.sum())} localization(s) lie outside the field of view "
                                 f"[0, {w:g}) × [0, {h:g}) nm, e.g. x={x[k]:g}, y={y[k]:g}",
                                 hint="check the units (nm) and origin (top-left corner), or give --width/--height")
        nx, ny = math.ceil(w / params.pixel_size), math.ceil(h / params.pixel_size)
        if nx * ny > 2**28:
            raise FluoreconError(f"the rendering would be {ny}×{nx} pixels", hint="use a larger --pixel-size")
        report(0.1, "rendering")
        img = render(cols, params.pixel_size, (w, h), method=params.method, sigma=params.sigma)
        used: dict[str, Any] = {"fov_nm": [w, h], "n_localizations": len(tab), "shape": list(img.shape)}
        warnings: list[str] = []
        if params.frc and "frame" in cols and len(tab) > 50:
            try:
                fr = frc_localizations(cols, params.pixel_size, fov_nm=(w, h))
                used["frc_resolution_nm"] = fr.info["resolution_nm"]
                used["frc_crossed"] = bool(fr.crossed)
            except FluoreconError as e:
                warnings.append(f"FRC not computed: {e.message}")
        report(1.0, "done")
        return Result(outputs={"image": img}, main="image", axes={"image": "YX"},
                      voxel_size={"image": (params.pixel_size / 1000.0, params.pixel_size / 1000.0)},
                      params_used=used, warnings=warnings)
