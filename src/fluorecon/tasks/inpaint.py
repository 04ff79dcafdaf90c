"""Filling light-sheet shadows (occluded regions) as a registered task (``fluorecon inpaint``).

The mask (transmission of the light sheet, 1 = unshadowed) is given (``--mask FILE``) or estimated from
the image (shadow detection along the illumination axis,
:func:`fluorecon.classical.inpaint.estimate_shadow_mask`). Methods:

* ``classical``: attenuation correction ``b + (x − b)/M`` where the shadow is partial, biharmonic
  inpainting where it is (nearly) total (:func:`fluorecon.classical.inpaint.inpaint_classical`);
* ``biharmonic``: scikit-image's biharmonic inpainting of every shadowed pixel (the plain peer);
* ``learned``: a network trained on this image with simulated shadows and binomial thinning
  (:mod:`fluorecon.learn.inpaint_net`).

The result's forward model is ``x = b + M·(y − b)`` (:class:`fluorecon.physics.occlusion.OcclusionForward`),
so ``verify`` checks the result against the recording where light was recorded (a filled region
under a total shadow is unconstrained by the recording: the report says how much of the image that is).

Examples
--------
>>> from fluorecon.physics.occlusion import simulate_shadows
>>> sim = simulate_shadows((64, 64), seed=0)
>>> res = InpaintTask()(sim["recording"], axes="YX", offset=100.0)
>>> res.image.shape, sorted(res.outputs)
((64, 64), ['image', 'mask'])
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fluorecon.classical.inpaint import (
    estimate_offset,
    estimate_shadow_mask,
    inpaint_biharmonic,
    inpaint_classical,
    occluded_mask,
)
from fluorecon.errors import FluoreconError
from fluorecon.io import ImageData
from fluorecon.learn.inpaint_net import InpaintModel, inpaint_learned, train_inpaint_net
from fluorecon.physics.noise_model import estimate_poisson_gaussian
from fluorecon.physics.occlusion import OcclusionForward, check_mask, simulate_shadows
from fluorecon.tasks.contract import InputSpec, OutputSpec, Result, Task, TaskParams, as_progress, param
from fluorecon.tasks.registry import register

__all__ = ["InpaintParams", "InpaintTask"]

_AXES = {"x": -1, "y": -2}
_DIRS = {"forward": 1, "backward": -1, "both": 0}


class InpaintParams(TaskParams):
    method: str = param("classical", "classical (divide by the transmission where the shadow is partial, "
                                     "biharmonic fill where it is total), biharmonic (scikit-image, every shadowed "
                                     "pixel) or learned (network trained on this image with simulated shadows).",
                        choices=("classical", "biharmonic", "learned"))
    illumination_axis: str = param("x", "Axis along which the light sheet propagates (the shadows run along it).",
                                   choices=("x", "y"))
    direction: str = param("forward", "Where the light enters: forward (at index 0 of the axis), backward, or "
                                      "both (dual-sided or unknown). Used to estimate the mask.",
                           choices=("forward", "backward", "both"))
    mask_kind: str = param("transmission", "How to read --mask: transmission (values in [0, 1], 1 = unshadowed) "
                                           "or occluded (non-zero = occluded, scikit-image's convention).",
                           choices=("transmission", "occluded"))
    offset: float | None = param(None, "Camera offset (not attenuated by shadows); estimated (darkest level) "
                                       "when empty.", unit="ADU")
    gain: float | None = param(None, "Learned: camera gain (ADU per photo-electron); estimated from the image "
                                     "when empty.", gt=0, advanced=True)
    shadow_width: float = param(16.0, "Widest shadow expected, across the illumination axis (mask estimation).",
                                unit="px", gt=0, le=4096, advanced=True)
    threshold: float = param(0.1, "Smallest log attenuation counted as shadow (mask estimation).", ge=0, le=5,
                             advanced=True)
    min_transmission: float = param(0.25, "Classical: below this transmission the pixel is filled, above it "
                                          "divided by the transmission.", gt=0, le=1, advanced=True)
    steps: int = param(400, "Learned: training steps.", ge=1, le=1_000_000)
    width: int = param(16, "Learned: U-Net width.", ge=2, le=256, advanced=True)
    budget_s: float | None = param(None, "Learned: training time limit.", unit="s", gt=0)
    seed: int = param(0, "Learned: random seed (patches, simulated shadows, thinning, weights).", ge=0)


@register
class InpaintTask(Task):
    """Fill the shadows of a light-sheet image (occlusion inpainting), mask given or estimated."""

    name = "inpaint"
    title = "Shadow inpainting"
    summary = "Fill light-sheet shadows (occluded regions behind absorbing objects): mask given or estimated."
    Params = InpaintParams
    inputs = (InputSpec("image", "Shadowed image or stack (YX, ZYX, TYX: planes are processed independently)."),
              InputSpec("mask", "Transmission of the light sheet (1 = unshadowed), (Y, X) or the image's shape; "
                                "estimated from the image when not given.", required=False, cli="--mask"),
              InputSpec("weights", "Learned: a model folder saved earlier with --save-model (skips training).",
                        kind="path", required=False, cli="--weights"))
    outputs = (OutputSpec("image", "Image with the shadows filled, float32, recording units."),
               OutputSpec("mask", "The transmission used (given or estimated), float32 in [0, 1]."))
    trust = ("verify",)
    accepts = ("YX", "ZYX", "TYX")
    doc = "howto/inpaint"
    saves_model = True
    examples = ("fluorecon inpaint sheet.tif -o filled.tif",
                "fluorecon inpaint sheet.tif -o filled.tif --mask shadows.tif --method learned --steps 400",
                "fluorecon inpaint sheet.tif -o filled.tif --illumination-axis y --direction both --check")

    @classmethod
    def example(cls, seed: int = 0) -> dict[str, Any]:
        """A 64×64 simulated light-sheet plane with shadows (camera offset 100 ADU)."""
        sim = simulate_shadows((64, 64), seed=seed)
        return {"inputs": {"image": ImageData(sim["recording"], "YX", None, {})},
                "params": {"method": "classical", "offset": 100.0}}

    def run(self, inputs: Mapping[str, Any], params: InpaintParams, progress: Any = None) -> Result:
        img: ImageData = inputs["image"]
        report = as_progress(progress)
        x = np.asarray(img.data, np.float32)
        if any(a in img.axes for a in "C") or x.ndim > 3:
            raise FluoreconError(f"inpaint takes YX, ZYX or TYX images, got axes {img.axes}",
                                 hint="split the channels first (each channel has its own shadows)")
        if x.shape[-1] < 8 or x.shape[-2] < 8:
            raise FluoreconError(f"image {x.shape[-2]}×{x.shape[-1]} is too small to inpaint", hint="≥ 8×8 pixels")
        axis = _AXES[params.illumination_axis]
        offset = estimate_offset(x) if params.offset is None else float(params.offset)
        used: dict[str, Any] = {**params.to_json(), "offset_used": offset}
        warnings: list[str] = []
        given = inputs.get("mask")
        if given is not None:
            raw = np.asarray(given.data if isinstance(given, ImageData) else given)
            m = occluded_mask(raw) if params.mask_kind == "occluded" else raw
            mask = check_mask(m, x.shape)
            used["mask_source"] = "given"
        else:
            report(0.02, "estimating the shadows")
            mask = estimate_shadow_mask(x, axis=axis, direction=_DIRS[params.direction], offset=offset,
                                        shadow_width=params.shadow_width, threshold=params.threshold)
            used["mask_source"] = "estimated"
        shadowed = float((mask < 0.9).mean())
        used["shadowed_fraction"] = round(shadowed, 4)
        used["occluded_fraction"] = round(float((mask < params.min_transmission).mean()), 4)
        extras: dict[str, Any] = {}
        if shadowed == 0:
            warnings.append("no shadow found (mask ≥ 0.9 everywhere): the image is returned unchanged")
            out = x.copy()
        elif params.method == "classical":
            report(0.2, "correcting and filling the shadows")
            out = inpaint_classical(x, mask, offset=offset, min_transmission=params.min_transmission)
        elif params.method == "biharmonic":
            report(0.2, "biharmonic inpainting")
            out = inpaint_biharmonic(x, mask)
        else:
            weights = inputs.get("weights")
            if weights is not None:
                model = InpaintModel.load(Path(weights))
                used["weights"] = str(weights)
            else:
                gain = params.gain
                if gain is None:
                    gain = float(estimate_poisson_gaussian(x, offset=offset).gain)
                    used["gain_estimated"] = gain
                model = train_inpaint_net(x, mask, offset=offset, gain=gain, axis=axis, steps=params.steps,
                                          width=params.width, budget_s=params.budget_s, seed=params.seed,
                                          progress=report.span(0.05, 0.9))
                used["training"] = model.info
                extras["bundle"] = model
            out = inpaint_learned(model, x, mask)
            warnings.append("learned inpainting: filled regions are the network's guess from the surroundings; "
                            "under total shadows the recording cannot confirm them")
        report(1.0, "done")
        return Result(outputs={"image": out.astype(np.float32), "mask": mask.astype(np.float32)}, params_used=used,
                      forward=OcclusionForward(mask, offset=offset), warnings=warnings, extras=extras)
