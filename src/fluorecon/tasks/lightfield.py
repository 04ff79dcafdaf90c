"""Light-field microscopy as a task: one rectified light field → a volume (``fluorecon lightfield``).

``fluorecon lightfield RAW.tif -o VOLUME.tif --nnum 15 --pitch 150 --f-ml 3000 --magnification 40
--na 0.95 --wavelength 0.52 --medium-index 1.0 --z-min -12 --z-max 0 --z-step 3``

The light field must be rectified (``Nnum`` pixels per lenslet, centres at pixel ``Nnum // 2`` of
every block; :func:`fluorecon.physics.lightfield.rectify` resamples a raw frame). The wave-optics
operator is computed from the optics (:mod:`fluorecon.physics.lightfield`), then Richardson–Lucy
(:mod:`fluorecon.classical.lightfield`) or a VCD-style network trained on simulations for these
optics (:mod:`fluorecon.learn.lightfield_net`) reconstructs the volume (ZYX, voxel
``(z_step, pitch/Nnum/M, pitch/Nnum/M)`` µm). The result's forward model re-projects it to the light
field for ``--check`` / ``fluorecon verify``.

Examples
--------
>>> ex = LightFieldTask.example()
>>> res = LightFieldTask()(ex["inputs"]["image"], **ex["params"])
>>> res.image.shape, res.axes["image"], res.forward.expected(res.image).shape
((3, 30, 30), 'ZYX', (30, 30))
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import model_validator

from fluorecon.classical.lightfield import richardson_lucy_lightfield
from fluorecon.errors import FluoreconError
from fluorecon.io import ImageData
from fluorecon.learn.lightfield_net import predict_lightfield, train_lightfield_net
from fluorecon.physics.camera import Camera
from fluorecon.physics.lightfield import (
    LightFieldForward,
    LightFieldOperator,
    LightFieldOptics,
    check_rectified,
    simulate_lightfield,
)
from fluorecon.tasks.contract import InputSpec, OutputSpec, Result, Task, TaskParams, as_progress, param
from fluorecon.tasks.registry import register

__all__ = ["LightFieldParams", "LightFieldTask", "depths_from_params", "optics_from_params"]


class LightFieldParams(TaskParams):
    """Parameters of :class:`LightFieldTask`."""

    method: str = param("rl", "rl (Richardson–Lucy over the wave-optics operator) or learned (a VCD-style network "
                        "trained on simulated light fields for these optics).", choices=("rl", "learned"))
    nnum: int = param(15, "Pixels per lenslet of the rectified light field (odd).", ge=3, le=63)
    pitch: float = param(150.0, "Microlens pitch (at the microlens array).", unit="µm", gt=0)
    f_ml: float = param(3000.0, "Microlens focal length (array–sensor distance).", unit="µm", gt=0)
    magnification: float = param(40.0, "Objective magnification onto the microlens array.", gt=0)
    na: float = param(0.95, "Objective numerical aperture.", gt=0, le=1.7)
    wavelength: float = param(0.52, "Emission wavelength.", unit="µm", gt=0.2, le=2.0)
    medium_index: float = param(1.0, "Refractive index of the immersion medium (air 1.0, water 1.33, oil 1.518).",
                                ge=1.0, le=2.0)
    z_min: float = param(-6.0, "Shallowest depth of the volume (0 = native focal plane).", unit="µm")
    z_max: float = param(6.0, "Deepest depth of the volume.", unit="µm")
    z_step: float = param(2.0, "Spacing of the volume's planes.", unit="µm", gt=0)
    osr: int = param(3, "Wave-optics samples per pixel for the PSF (odd).", ge=1, le=9, advanced=True)
    iterations: int = param(30, "RL: maximum number of iterations.", ge=1, le=1000)
    stop: str = param("auto", "RL stopping rule: auto (discrepancy principle when a noise model is known or can be "
                      "fitted), discrepancy, change, or none (exactly --iterations).",
                      choices=("auto", "discrepancy", "change", "none"))
    offset: float = param(0.0, "Camera offset (baseline) subtracted first.", unit="ADU")
    background: float = param(0.0, "Constant background above the offset.", unit="ADU", ge=0)
    gain: float | None = param(None, "Camera gain, for the noise model (stopping rule, verify).", unit="ADU/e-", gt=0)
    read_noise: float = param(0.0, "Camera read noise.", unit="e-", ge=0)
    max_memory_gb: float = param(4.0, "Refuse operators needing more memory than this.", unit="GB", gt=0,
                                 advanced=True)
    budget_s: float = param(120.0, "Learned: training wall-time budget.", unit="s", cli="--budget", gt=0,
                            le=7 * 86400)
    steps: int | None = param(None, "Learned: train exactly this many steps instead (reproducible).", ge=1,
                              le=10_000_000)
    seed: int = param(0, "Learned: random seed of the simulations and the training.", ge=0)

    @model_validator(mode="after")
    def _depths(self) -> LightFieldParams:
        if self.z_max < self.z_min:
            raise ValueError(f"z_max ({self.z_max}) is below z_min ({self.z_min}): give the depth range low to high")
        if (self.z_max - self.z_min) / self.z_step > 200:
            raise ValueError("more than 200 depths: raise --z-step or narrow --z-min/--z-max")
        if self.nnum % 2 == 0:
            raise ValueError(f"nnum must be odd (a pixel at every lenslet centre), got {self.nnum}")
        return self


def optics_from_params(p: LightFieldParams) -> LightFieldOptics:
    """The :class:`LightFieldOptics` of a parameter set."""
    return LightFieldOptics(magnification=p.magnification, na=p.na, wavelength=p.wavelength,
                            medium_index=p.medium_index, pitch=p.pitch, f_ml=p.f_ml, nnum=p.nnum, osr=p.osr)


def depths_from_params(p: LightFieldParams) -> list[float]:
    """The depths ``z_min, z_min + z_step, …, ≤ z_max`` (µm).

    Examples
    --------
    >>> depths_from_params(LightFieldParams(z_min=-2, z_max=2, z_step=2))
    [-2.0, 0.0, 2.0]
    """
    n = int(np.floor((p.z_max - p.z_min) / p.z_step + 1e-6)) + 1
    return [round(p.z_min + i * p.z_step, 6) for i in range(n)]


@register
class LightFieldTask(Task):
    """Volume reconstruction from one rectified light field."""

    name = "lightfield"
    title = "Light-field microscopy"
    summary = "Reconstruct a volume from one rectified light field (wave-optics model; RL or learned)."
    Params = LightFieldParams
    inputs = (InputSpec("image", "Rectified light field (YX, Nnum pixels per lenslet)."),)
    outputs = (OutputSpec("image", "The reconstructed volume (ZYX, depths z_min…z_max)."),)
    accepts = ("YX",)
    doc = "lightfield"
    output_tag = "_volume"
    examples = ("fluorecon lightfield worm.tif -o worm_volume.tif --nnum 15 --pitch 150 --f-ml 3000 "
                "--magnification 40 --na 0.95 --wavelength 0.52 --medium-index 1.0 --z-min -12 --z-max 0 --z-step 3",)

    def run(self, inputs: Mapping[str, ImageData], params: LightFieldParams, progress: Any = None) -> Result:
        img = inputs["image"]
        report = as_progress(progress)
        if img.data.ndim != 2:
            raise FluoreconError(f"a light field is one 2D frame (YX), got axes {img.axes} shape {img.data.shape}",
                                 hint="give one rectified light-field image")
        check_rectified(img.data.shape, params.nnum)
        optics = optics_from_params(params)
        depths = depths_from_params(params)
        warnings: list[str] = []
        rl = max(optics.radius_lenslets(z) for z in depths)
        ly, lx = img.data.shape[0] // params.nnum, img.data.shape[1] // params.nnum
        if rl > 2 * max(ly, lx):
            raise FluoreconError(
                f"the depth range {params.z_min:g}…{params.z_max:g} µm spreads a point over ±{rl} lenslets, more than "
                f"twice this {ly}×{lx}-lenslet light field: those depths are outside what its PSF can describe",
                hint="narrow --z-min/--z-max or give a larger light field")
        if img.voxel_size is not None:
            px = float(img.voxel_size[-1])
            if abs(px - optics.pixel_size) > 0.05 * optics.pixel_size:
                warnings.append(f"the file's pixel size {px:g} µm differs from pitch/Nnum/M = {optics.pixel_size:g} µm;"
                                " the optics parameters are used")
        report(0.0, "computing the light-field PSF")
        op = LightFieldOperator(optics, depths, img.data.shape, max_memory_gb=params.max_memory_gb,
                                progress=report.span(0.0, 0.3))
        used: dict[str, Any] = {"depths_um": depths, "radius_lenslets": op.radius, "pixel_size_um": optics.pixel_size}
        if params.method == "rl":
            stop = None if params.stop == "none" else params.stop
            vol, info = richardson_lucy_lightfield(img.data, op, params.iterations, background=params.background,
                                                   offset=params.offset, stop=stop, gain=params.gain,
                                                   read_noise=params.read_noise, progress=report.span(0.3, 1.0),
                                                   return_info=True)
            used.update(iterations=info["iterations"], stop_reason=info["stop_reason"], rule=info["rule"])
            if info["rule"] == "discrepancy" and info["stop_reason"] == "iterations":
                warnings.append(f"RL ran all {params.iterations} iterations before the discrepancy rule was met "
                                "(raise --iterations)")
        else:
            train_report = report.span(0.3, 0.95)
            total = params.steps
            t0 = time.perf_counter()

            def on_step(step: int, loss: float) -> None:
                frac = step / total if total else (time.perf_counter() - t0) / params.budget_s
                train_report(frac, f"training step {step} (loss {loss:.3g})")

            net, tinfo = train_lightfield_net(op, steps=params.steps, budget_s=None if params.steps else params.budget_s,
                                              seed=params.seed, callback=on_step)
            vol = predict_lightfield(net, img.data, offset=params.offset + params.background, operator=op)
            used["training"] = tinfo
            if tinfo["steps"] < 300:
                warnings.append(f"the light-field network trained for only {tinfo['steps']} steps: expect a poor "
                                "result (raise --budget or --steps)")
        report(1.0, "done")
        fwd = LightFieldForward(op, offset=params.offset, background=params.background, gain=params.gain,
                                read_noise=params.read_noise)
        vs = (float(params.z_step), optics.pixel_size, optics.pixel_size)
        return Result(outputs={"image": vol.astype(np.float32)}, axes={"image": "ZYX"}, voxel_size={"image": vs},
                      params_used=used, forward=fwd, warnings=warnings)

    @classmethod
    def example(cls, seed: int = 0) -> dict[str, Any]:
        """A 30×30 light field (Nnum 5) of beads at three depths, 100 ADU offset."""
        params = {"nnum": 5, "pitch": 100.0, "f_ml": 2000.0, "magnification": 20.0, "na": 0.5, "wavelength": 0.52,
                  "medium_index": 1.0, "z_min": -2.0, "z_max": 2.0, "z_step": 2.0, "osr": 1, "iterations": 10,
                  "stop": "none", "offset": 100.0, "gain": 1.0, "read_noise": 1.0}
        p = LightFieldParams(**params)
        op = LightFieldOperator(optics_from_params(p), depths_from_params(p), (30, 30))
        rng = np.random.default_rng(seed)
        vol = np.zeros(op.volume_shape, np.float32)
        for z in range(vol.shape[0]):
            ys, xs = rng.integers(4, 26, 2), rng.integers(4, 26, 2)
            vol[z, ys, xs] = 300.0
        lf, _ = simulate_lightfield(vol, op, Camera(photons=1.0, gain=1.0, offset=100.0, read_noise=1.0), seed=seed)
        px = op.optics.pixel_size
        return {"inputs": {"image": ImageData(lf, "YX", (px, px), {})}, "params": params}
