"""Stabilization of a time-lapse against a template as a registered task (``stabilize``).

Every frame is registered to a template (median of the frames by default, or ``--template FILE``):
translation / rigid / affine, and ``deformable`` adds a voxelmorph-style net trained on this movie
(:mod:`fluorecon.geometry.stabilize`). Outputs: the stabilized movie, the displacement fields
(axes ``TCYX``, px; ``stabilized[t](x) = movie[t](x + fields[t](x))``) and the per-frame matrices.

Examples
--------
>>> ex = StabilizeTask.example()
>>> res = StabilizeTask()(inputs=ex["inputs"], **ex["params"])
>>> res.image.shape, res.axes["fields"]
((2, 32, 32), 'TCYX')
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import field_validator

from fluorecon.errors import FluoreconError
from fluorecon.geometry.stabilize import MODELS, stabilize
from fluorecon.geometry.transforms import make_transform
from fluorecon.io import ImageData
from fluorecon.physics import motion
from fluorecon.tasks.contract import (
    InputSpec,
    OutputSpec,
    Result,
    Task,
    TaskParams,
    as_image_data,
    as_progress,
    check_choice,
    param,
)
from fluorecon.tasks.registry import register

__all__ = ["StabilizeForward", "StabilizeParams", "StabilizeTask"]

TEMPLATES = ("median", "mean", "first")


class StabilizeForward:
    """Forward model of stabilization: each recorded frame ≈ the stabilized frame warped back by its field.

    ``expected(stabilized)`` applies the inverse of each frame's field (fixed-point inverse).
    """

    def __init__(self, fields: np.ndarray, noise: Any = None):
        self.fields = np.asarray(fields, np.float32)
        self.noise = noise

    def expected(self, y: Any) -> np.ndarray:
        y = np.asarray(y, np.float32)
        return np.stack([motion.warp(y[k], motion.invert_field(self.fields[k])) for k in range(len(y))])

    def variance(self, expected: Any) -> Any:
        if self.noise is None:
            raise FluoreconError("no noise model is attached to the stabilization forward model")
        return self.noise.variance(expected)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "stabilization", "predicts": "each recorded frame from the stabilized one",
                "frames": int(len(self.fields))}


class StabilizeParams(TaskParams):
    model: str = param("affine", "translation, rigid, affine, or deformable (affine + learned smooth field).",
                       choices=MODELS)
    reference: str = param("median", "Template when no --template image is given: the median, mean or first frame.",
                           choices=TEMPLATES)
    steps: int = param(300, "Deformable: training steps of the registration net on this movie.", ge=1, le=1_000_000)
    budget_s: float | None = param(None, "Deformable: training time limit.", unit="s", gt=0)
    smooth_weight: float = param(1.0, "Deformable: smoothness weight (larger = smoother fields).", ge=0, advanced=True)
    instance_steps: int = param(0, "Deformable: extra per-frame optimisation steps of the field.", ge=0, le=10_000,
                                advanced=True)
    min_confidence: float = param(0.1, "Frames registered below this confidence are left unmoved (with a warning).",
                                  ge=0, le=1)
    seed: int = param(0, "Random seed of the deformable training.", ge=0)

    @field_validator("model")
    @classmethod
    def _model(cls, v: str) -> str:
        return check_choice(v, MODELS, "model")

    @field_validator("reference")
    @classmethod
    def _reference(cls, v: str) -> str:
        return check_choice(v, TEMPLATES, "reference")


@register
class StabilizeTask(Task):
    """Register every frame of a moving, deforming time-lapse to a template (rigid/affine, then deformable)."""

    name = "stabilize"
    title = "Stabilize"
    summary = "Register every frame of a time-lapse to a template; output the stabilized movie and the fields."
    Params = StabilizeParams
    inputs = (InputSpec("movie", "Time-lapse with a T axis (TYX or TZYX)."),
              InputSpec("template", "Reference image (YX/ZYX); default: the median frame.", required=False,
                        cli="--template"))
    outputs = (OutputSpec("image", "The stabilized movie."),
               OutputSpec("fields", "Displacement field per frame, axes TCYX (C = components), px.", kind="field"),
               OutputSpec("transforms", "Per-frame rigid/affine transforms (JSON) and confidences.", kind="transform"))
    trust = ("verify",)
    accepts = ("TYX", "TZYX")
    doc = "geometry"
    examples = ("fluorecon stabilize movie.tif -o stable.tif --model rigid",
                "fluorecon stabilize movie.tif -o stable.tif --model deformable --steps 300")

    @classmethod
    def example(cls, seed: int = 0) -> dict[str, Any]:
        s = motion.deformed_series(n_frames=2, shape=(32, 32), seed=seed)
        return {"inputs": {"movie": ImageData(s["frames"], "TYX", None, {})}, "params": {"model": "translation"}}

    def run(self, inputs: Mapping[str, Any], params: StabilizeParams, progress: Any = None) -> Result:
        report = as_progress(progress)
        img = as_image_data(inputs["movie"], name="movie")
        if "T" not in img.axes:
            raise FluoreconError(f"stabilize needs a time-lapse with a T axis; the image has axes {img.axes}",
                                 hint="use `fluorecon register` for one pair of images (or --axes TYX)")
        if "C" in img.axes:
            raise FluoreconError("stabilize takes one channel", hint="split the channels first")
        movie = np.moveaxis(img.data, img.axes.index("T"), 0)
        tpl: Any = params.reference
        if inputs.get("template") is not None:
            t = inputs["template"]
            tpl = np.asarray(t.data if isinstance(t, ImageData) else t, np.float32)
        out = stabilize(movie, tpl, params.model, steps=params.steps, smooth_weight=params.smooth_weight,
                        instance_steps=params.instance_steps, min_confidence=params.min_confidence, seed=params.seed,
                        budget_s=params.budget_s, progress=report)
        sp = "".join(a for a in img.axes if a in "ZYX")
        kind = "affine" if params.model == "deformable" else params.model
        transforms = {"schema": "fluorecon.transforms", "version": 1, "template": out["info"]["template"],
                      "frames": [make_transform(m, kind, sp, confidence=c, low_confidence=bool(c < params.min_confidence))
                                 for m, c in zip(out["matrices"], out["confidence"], strict=True)]}
        used = {**params.to_json(), "field_units": "px",
                **{k: v for k, v in out["info"].items() if k not in ("deformable_net",)}}
        res = Result(outputs={"image": out["stabilized"], "fields": out["fields"], "transforms": transforms},
                     axes={"image": "T" + sp, "fields": "TC" + sp},
                     voxel_size={"image": img.voxel_size, "fields": img.voxel_size}, params_used=used,
                     forward=StabilizeForward(out["fields"]), warnings=out["warnings"])
        if "deformable_net" in out["info"]:
            res.extras["deformable_net"] = out["info"]["deformable_net"]
        return res
