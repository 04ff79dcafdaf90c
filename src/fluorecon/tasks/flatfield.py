"""Flat-field, dark-field and baseline-drift correction as a registered task (``fluorecon flatfield``).

Fits a BaSiC-style profile (:func:`fluorecon.classical.flatfield.fit_flatfield`) on a stack of tiles or
time-lapse frames and corrects the stack, or applies a saved profile (the ``profile`` output, JSON)
to other images of the same session. The result's forward model is
``recording = flat × (corrected + baseline drift) + dark``.

Examples
--------
>>> from fluorecon.physics.illumination import simulate_tiles
>>> sim = simulate_tiles(12, (32, 32), seed=0)
>>> res = FlatfieldTask()(sim["stack"], axes="TYX", working_size=32, max_reweight=2)
>>> res.image.shape, sorted(res.outputs)
((12, 32, 32), ['darkfield', 'flatfield', 'image', 'profile'])
>>> again = FlatfieldTask()(sim["stack"][0], axes="YX", inputs={"profile": res.outputs["profile"]})
>>> bool(np.allclose(again.image, res.image[0], atol=1e-3))
True
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from fluorecon.classical.flatfield import FlatfieldProfile, fit_flatfield
from fluorecon.errors import FluoreconError
from fluorecon.io import ImageData
from fluorecon.physics.illumination import IlluminationForward, simulate_tiles
from fluorecon.tasks.contract import (
    InputSpec,
    OutputSpec,
    Result,
    Table,
    Task,
    TaskParams,
    as_progress,
    param,
)
from fluorecon.tasks.registry import register
from fluorecon.utils import resolve_device

__all__ = ["FlatfieldParams", "FlatfieldTask"]


class FlatfieldParams(TaskParams):
    darkfield: bool = param(True, "Also estimate the additive dark-field (offset pattern, dark current).")
    baseline: str = param("none", "Time-lapse baseline drift: none, drift (remove b(t) − mean b, keep the level) "
                                  "or subtract (remove b(t)). Fitted only when not none.",
                          choices=("none", "drift", "subtract"))
    working_size: int = param(128, "Fit at this size (pixels per axis; 0 = full size). Fields are smooth: 128 is "
                                   "BaSiC's choice.", unit="px", ge=0, le=4096)
    lambda_flat: float | None = param(None, "Flat-field smoothness weight (DCT L1); automatic from the data when "
                                            "empty.", gt=0, advanced=True)
    lambda_dark: float | None = param(None, "Dark-field smoothness weight; 0.2 × the flat-field's when empty.", gt=0,
                                      advanced=True)
    presmooth: float = param(0.0, "Gaussian σ applied to each frame before fitting (low photon counts).", unit="px",
                             ge=0, le=20, advanced=True)
    max_iter: int = param(500, "Iterations of each augmented-Lagrangian fit.", ge=1, le=10_000, advanced=True)
    max_reweight: int = param(10, "Re-weighting rounds (sparse residual weights).", ge=1, le=100, advanced=True)
    device: str = param("auto", "Torch device (auto: CUDA when present, else cpu).", widget=False,
                        choices=("auto", "cpu", "cuda"))


@register
class FlatfieldTask(Task):
    """Shading correction of tiles or time-lapse frames (BaSiC-style), or a saved profile applied."""

    name = "flatfield"
    title = "Flat-field correction"
    summary = "Estimate and remove uneven illumination (flat-field), dark-field and baseline drift from a stack."
    Params = FlatfieldParams
    inputs = (InputSpec("image", "Stack of tiles or time-lapse frames (TYX; ZYX/CYX: the first axis is the frame "
                                 "axis). A single image only with --profile."),
              InputSpec("profile", "A saved profile (the JSON 'profile' output of an earlier run): apply it instead "
                                   "of fitting.", kind="json", required=False, cli="--profile"))
    outputs = (OutputSpec("image", "Corrected images, float32, recording units (dark removed, flat divided)."),
               OutputSpec("flatfield", "Estimated flat-field (YX, mean 1).", kind="field"),
               OutputSpec("darkfield", "Estimated dark-field (YX, recording units).", kind="field"),
               OutputSpec("baseline", "Per-frame baseline (table: frame, baseline).", kind="table"),
               OutputSpec("profile", "The profile (JSON) to correct other images of the session.", kind="transform"))
    trust = ("verify",)
    accepts = ("TYX", "ZYX", "CYX", "YX")
    doc = "corrections"
    examples = ("fluorecon flatfield tiles.tif -o corrected.tif",
                "fluorecon flatfield movie.tif -o corrected.tif --baseline drift",
                "fluorecon flatfield other.tif -o corrected.tif --profile corrected_profile.json")

    @classmethod
    def example(cls, seed: int = 0) -> dict[str, Any]:
        """Twelve simulated 32×32 tiles with vignetting and a dark-field."""
        sim = simulate_tiles(12, (32, 32), seed=seed)
        return {"inputs": {"image": ImageData(sim["stack"], "TYX", None, {})},
                "params": {"working_size": 32, "max_reweight": 2}}

    def run(self, inputs: Mapping[str, Any], params: FlatfieldParams, progress: Any = None) -> Result:
        img: ImageData = inputs["image"]
        report = as_progress(progress)
        x = np.asarray(img.data, np.float32)
        prof_in = inputs.get("profile")
        warnings: list[str] = []
        if prof_in is not None:
            prof = FlatfieldProfile.from_dict(dict(prof_in))
            report(0.1, "applying the saved profile")
            fitted = False
        else:
            if x.ndim != 3:
                raise FluoreconError(f"flat-field estimation needs a stack of tiles/frames, got one {img.axes} image",
                                     hint="give a TYX stack of ≥ 10 tiles, or apply a saved profile with --profile")
            ws = None if params.working_size == 0 else params.working_size
            prof = fit_flatfield(x, darkfield=params.darkfield, baseline=params.baseline != "none",
                                 lambda_flat=params.lambda_flat, lambda_dark=params.lambda_dark, working_size=ws,
                                 presmooth=params.presmooth, max_iter=params.max_iter,
                                 max_reweight=params.max_reweight, device=str(resolve_device(params.device)), progress=report.span(0, 0.9))
            fitted = True
            if x.shape[0] < 10:
                warnings.append(f"only {x.shape[0]} tiles/frames: the flat-field is poorly determined (≥ 10 advised)")
        base_mode = params.baseline
        if base_mode != "none" and (prof.baseline is None or x.ndim != 3 or len(prof.baseline) != x.shape[0]):
            warnings.append("baseline correction skipped: the profile's baseline does not match these frames")
            base_mode = "none"
        corrected = prof.apply(x.reshape(-1, *x.shape[-2:]) if x.ndim > 3 else x, baseline=base_mode).reshape(x.shape)
        flat, dark = prof.fields_for(x.shape[-2:])
        fwd = IlluminationForward(flat, dark, prof.baseline if base_mode != "none" else None,
                                  baseline_mode="drift" if base_mode == "drift" else "add")
        outputs: dict[str, Any] = {"image": corrected, "flatfield": flat, "darkfield": dark,
                                   "profile": prof.to_dict()}
        yx = img.axes[-2:]
        vs = img.voxel_size[-2:] if img.voxel_size else None
        if prof.baseline is not None:
            outputs["baseline"] = Table({"frame": np.arange(len(prof.baseline)), "baseline": prof.baseline},
                                        meta={"units": "recording units"})
        report(1.0, "done")
        used = {**params.to_json(), "fitted": fitted, **{k: v for k, v in prof.info.items() if k != "seconds"}}
        return Result(outputs=outputs, axes={"flatfield": yx, "darkfield": yx},
                      voxel_size={"flatfield": vs, "darkfield": vs}, params_used=used, forward=fwd,
                      warnings=warnings)
