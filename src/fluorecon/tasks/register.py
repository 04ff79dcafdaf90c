"""Pairwise registration (``register``) and applying a transform (``transform``) as registered tasks.

``register MOVING FIXED`` finds the transform that resamples ``moving`` onto ``fixed``
(:mod:`fluorecon.geometry.transforms` documents the JSON); ``transform IMAGE --transform T.json``
applies one. A low-confidence registration is returned flagged (``low_confidence: true`` in the JSON)
with a warning — never silently as if it were good.

Examples
--------
>>> ex = RegisterTask.example()
>>> res = RegisterTask()(inputs=ex["inputs"], **ex["params"])
>>> res.outputs["transform"]["kind"], res.outputs["transform"]["low_confidence"]
('translation', False)
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import field_validator

from fluorecon.errors import FluoreconError, FluoreconWarning
from fluorecon.geometry.deformable import register_deformable
from fluorecon.geometry.pairwise import register_pair
from fluorecon.geometry.transforms import apply_transform, check_transform, make_transform, matrix_field
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

__all__ = ["RegisterParams", "RegisterTask", "RegistrationForward", "TransformParams", "TransformTask"]

MODELS = ("translation", "rigid", "affine", "deformable")


class RegistrationForward:
    """Forward model of a registration: the fixed image ≈ transform(moving), i.e. moving ≈ transform⁻¹(fixed).

    ``expected(transform)`` — the task's main output — predicts the recording (the moving image) by
    resampling the fixed image with the inverse transform; ``expected(image)`` (an array) resamples a
    moving image onto the fixed grid (the fixed image it predicts).

    Examples
    --------
    >>> from fluorecon.geometry.transforms import translation_transform
    >>> fixed = np.eye(4, dtype=np.float32)
    >>> f = RegistrationForward(translation_transform([0.0, 1.0]), fixed)
    >>> f.expected(np.eye(4, dtype=np.float32))[0].tolist()
    [0.0, 1.0, 0.0, 0.0]
    >>> f.expected(f.transform)[1].tolist()
    [1.0, 0.0, 0.0, 0.0]
    """

    def __init__(self, transform: dict[str, Any], fixed: np.ndarray, field: np.ndarray | None = None,
                 moving_shape: tuple[int, ...] | None = None, noise: Any = None):
        self.transform = transform
        self.fixed = np.asarray(fixed, np.float32)
        self.field = field
        self.moving_shape = tuple(moving_shape) if moving_shape is not None else self.fixed.shape
        self.noise = noise

    def expected(self, y: Any) -> np.ndarray:
        if isinstance(y, dict):
            t = check_transform(y)
            inv = np.linalg.inv(np.asarray(t["matrix"], np.float64))
            if self.field is None or t["kind"] != "deformable":
                return apply_transform(self.fixed, make_transform(inv, "affine", t["axes"]),
                                       output_shape=self.moving_shape)
            # deformable: fixed(x) ≈ moving(x + U(x)) ⇒ moving(y) ≈ fixed(y + G(y)), G the inverse of U
            total = matrix_field(np.asarray(t["matrix"], np.float64), self.fixed.shape) + self.field
            return motion.warp(self.fixed, motion.invert_field(total))
        return apply_transform(np.asarray(y, np.float32), self.transform, self.field, self.fixed.shape)

    def variance(self, expected: Any) -> Any:
        if self.noise is None:
            raise FluoreconError("no noise model is attached to the registration forward model")
        return self.noise.variance(expected)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "registration", "predicts": "the moving image from the fixed one (inverse transform)",
                "transform": self.transform, "fixed_shape": list(self.fixed.shape)}


class RegisterParams(TaskParams):
    model: str = param("translation", "Transform model: translation (phase correlation), rigid or affine "
                       "(intensity refinement), deformable (affine + a learned smooth displacement field).",
                       choices=MODELS)
    upsample: int = param(20, "Sub-pixel precision of the phase correlation: 1/upsample px.", ge=1, le=1000,
                          advanced=True)
    max_shift: float | None = param(None, "Largest plausible translation (px per axis); larger peaks are ignored.",
                                    unit="px", gt=0, advanced=True)
    min_confidence: float = param(0.1, "Below this confidence (0–1) the transform is flagged low-confidence "
                                  "and a warning is given.", ge=0, le=1)
    steps: int = param(200, "Deformable: training steps of the registration net on this pair.", ge=1, le=100_000)
    instance_steps: int = param(50, "Deformable: extra optimisation steps of the field for this pair.", ge=0,
                                le=10_000, advanced=True)
    smooth_weight: float = param(1.0, "Deformable: weight of the smoothness penalty (larger = smoother field).",
                                 ge=0, advanced=True)
    budget_s: float | None = param(None, "Deformable: training time limit.", unit="s", gt=0, advanced=True)
    seed: int = param(0, "Random seed of the deformable training.", ge=0)

    @field_validator("model")
    @classmethod
    def _model(cls, v: str) -> str:
        return check_choice(v, MODELS, "model")


def _spatial(img: ImageData, name: str) -> np.ndarray:
    if any(a in img.axes for a in "TC"):
        raise FluoreconError(f"{name} has axes {img.axes}; register needs one 2D or 3D image (YX or ZYX)",
                             hint="register one channel / time point, or use `fluorecon stabilize` for a movie")
    return np.asarray(img.data, np.float32)


@register
class RegisterTask(Task):
    """Pairwise registration: sub-pixel phase correlation with confidence, rigid/affine refinement, deformable."""

    name = "register"
    title = "Register"
    summary = "Find the transform that aligns a moving image with a fixed image (with a confidence)."
    Params = RegisterParams
    inputs = (InputSpec("moving", "The image to move (YX or ZYX)."),
              InputSpec("fixed", "The reference image it is aligned with (same axes).", positional=True))
    outputs = (OutputSpec("transform", "The transform (JSON; fixed → moving pixel coordinates, confidence).",
                          kind="transform"),
               OutputSpec("registered", "The moving image resampled onto the fixed image's grid."),
               OutputSpec("field", "Deformable only: displacement field (C = components, px).", kind="field"))
    trust = ("verify",)
    accepts = ("YX", "ZYX")
    doc = "geometry"
    default_suffix = ".json"
    examples = ("fluorecon register moving.tif fixed.tif -o transform.json",
                "fluorecon register moving.tif fixed.tif -o transform.json --model affine",
                "fluorecon register moving.tif fixed.tif -o transform.json --model deformable --steps 300")

    @classmethod
    def example(cls, seed: int = 0) -> dict[str, Any]:
        fixed = motion.procedural_specimen((0, 0), (48, 48), seed=seed)
        moving = np.roll(fixed, (2, -3), axis=(0, 1))
        return {"inputs": {"moving": ImageData(moving, "YX", None, {}), "fixed": ImageData(fixed, "YX", None, {})},
                "params": {"model": "translation"}}

    def run(self, inputs: Mapping[str, Any], params: RegisterParams, progress: Any = None) -> Result:
        report = as_progress(progress)
        mov_img = as_image_data(inputs["moving"], name="moving")
        fix_img = as_image_data(inputs["fixed"], name="fixed")
        moving, fixed = _spatial(mov_img, "moving"), _spatial(fix_img, "fixed")
        if moving.ndim != fixed.ndim:
            raise FluoreconError(f"moving ({mov_img.axes}) and fixed ({fix_img.axes}) have different spatial axes")
        if mov_img.voxel_size and fix_img.voxel_size and not np.allclose(mov_img.voxel_size, fix_img.voxel_size,
                                                                         rtol=1e-3):
            raise FluoreconError(f"moving pixel size {mov_img.voxel_size} µm differs from fixed {fix_img.voxel_size} µm",
                                 hint="resample one image to the other's pixel size first")
        axes = fix_img.axes
        lin = "affine" if params.model == "deformable" else params.model
        report(0.0, f"{lin} registration")
        r = register_pair(fixed, moving, lin, upsample=params.upsample, min_confidence=params.min_confidence,
                          max_shift=params.max_shift)
        warn: list[str] = []
        field = None
        kind = r.kind
        matrix = r.matrix
        metrics: dict[str, Any] = {"significance": r.significance, "overlap_ncc": r.ncc, **r.info}
        if r.low_confidence:
            warn.append(f"low registration confidence {r.confidence:.2f} (< {params.min_confidence}): the images may "
                        "share no common content; the transform is flagged low_confidence and should not be trusted")
        elif params.model == "deformable":
            nd = fixed.ndim
            aligned = apply_transform(moving, make_transform(matrix, "affine", axes), output_shape=fixed.shape)
            aligned = np.where(np.isfinite(aligned), aligned, 0).astype(np.float32)

            def prog(f: float, msg: str) -> None:
                report(0.1 + 0.8 * f, msg)

            d, dinfo = register_deformable(fixed, aligned, steps=params.steps, instance_steps=params.instance_steps,
                                           smooth_weight=params.smooth_weight, seed=params.seed,
                                           budget_s=params.budget_s, progress=prog)
            field = np.einsum("ij,j...->i...", matrix[:nd, :nd], d).astype(np.float32)
            kind = "deformable"
            metrics.update({k: v for k, v in dinfo.items() if k != "net"})
        transform = make_transform(matrix, kind, axes, confidence=r.confidence, low_confidence=r.low_confidence,
                                   voxel_size=fix_img.voxel_size, metrics=metrics,
                                   field_shape=None if field is None else field.shape)
        registered = apply_transform(moving, transform, field, output_shape=fixed.shape)
        for w in warn:
            warnings.warn(w, FluoreconWarning, stacklevel=2)
        report(1.0, "done")
        outputs: dict[str, Any] = {"transform": transform, "registered": registered}
        ax = {"registered": axes}
        vs = {"registered": fix_img.voxel_size}
        if field is not None:
            outputs["field"] = field
            ax["field"] = "C" + axes
            vs["field"] = fix_img.voxel_size
        used = {**params.to_json(), "confidence": r.confidence, "low_confidence": r.low_confidence,
                "shift_px": list(r.shift), "field_units": "px" if field is not None else None}
        return Result(outputs=outputs, main="transform", axes=ax, voxel_size=vs, params_used=used,
                      forward=RegistrationForward(transform, fixed, field, moving.shape), warnings=warn)


class TransformParams(TaskParams):
    order: int = param(1, "Interpolation order: 0 nearest, 1 linear, 3 cubic.", ge=0, le=5)
    cval: float = param(0.0, "Value given to pixels that fall outside the moving image.", advanced=True)


@register
class TransformTask(Task):
    """Apply a transform written by ``register`` (and its displacement field, for deformable ones)."""

    name = "transform"
    title = "Apply transform"
    summary = "Resample an image with a registration transform (JSON) onto the fixed image's grid."
    Params = TransformParams
    inputs = (InputSpec("image", "The image to resample (YX/ZYX, or with T/C axes: each is resampled)."),
              InputSpec("transform", "Transform JSON written by `fluorecon register`.", kind="json", cli="--transform"),
              InputSpec("field", "Displacement field of a deformable transform (the register `_field` image).",
                        required=False, cli="--field"))
    outputs = (OutputSpec("image", "The resampled image."),)
    trust = ()
    accepts = ("YX", "ZYX", "CYX", "TYX", "CZYX", "TZYX")
    doc = "geometry"
    examples = ("fluorecon transform moving.tif --transform transform.json -o registered.tif",)

    @classmethod
    def example(cls, seed: int = 0) -> dict[str, Any]:
        from fluorecon.geometry.transforms import translation_transform

        img = motion.procedural_specimen((0, 0), (32, 32), seed=seed)
        return {"inputs": {"image": ImageData(img, "YX", None, {}),
                           "transform": translation_transform([1.0, -2.0], axes="YX")}, "params": {}}

    def run(self, inputs: Mapping[str, Any], params: TransformParams, progress: Any = None) -> Result:
        img = as_image_data(inputs["image"], name="image")
        t = check_transform(inputs["transform"])
        nd = int(t["ndim"])
        n_sp = sum(a in "ZYX" for a in img.axes)
        if n_sp != nd:
            raise FluoreconError(f"the transform is {nd}-D but the image has {n_sp} spatial axes ({img.axes})")
        field = inputs.get("field")
        if isinstance(field, ImageData):
            field = np.asarray(field.data, np.float32)
        if t["kind"] == "deformable" and field is None:
            raise FluoreconError("this deformable transform needs its displacement field", hint="add --field FIELD.tif")
        if t.get("low_confidence"):
            msg = f"the transform is flagged low_confidence ({t.get('confidence')}): the result may be misaligned"
            warnings.warn(msg, FluoreconWarning, stacklevel=2)
            warns = [msg]
        else:
            warns = []
        out_shape = None if field is None else tuple(field.shape[1:])
        res = apply_transform(img.data, t, field, output_shape=out_shape, order=params.order, cval=params.cval)
        as_progress(progress)(1.0, "done")
        return Result(outputs={"image": res}, params_used={**params.to_json(), "transform_kind": t["kind"]},
                      warnings=warns)
