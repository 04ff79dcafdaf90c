"""Optical flow of a fluorescence time-lapse as a registered task (``flow``).

Output: the flow between consecutive frames, axes ``"TCYX"`` (T = frame pairs, C = (dy, dx)) or
``"TCZYX"``, in **µm/frame** when the pixel size is known, else px/frame (``params_used["units"]``).
Convention (scikit-image's): ``movie[t](x) ≈ movie[t+1](x + flow[t](x))``.

Examples
--------
>>> ex = FlowTask.example()
>>> res = FlowTask()(inputs=ex["inputs"], **ex["params"])
>>> res.image.shape, res.axes["flow"], res.params_used["units"]
((1, 2, 32, 32), 'TCYX', 'px/frame')
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import field_validator

from fluorecon.errors import FluoreconError
from fluorecon.geometry.flow import METHODS, estimate_flow
from fluorecon.geometry.nets import warp_tensor
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

__all__ = ["FlowForward", "FlowParams", "FlowTask"]


class FlowForward:
    """Forward model of optical flow: frame t+1 ≈ frame t advected by the flow (times the bleaching ratio).

    ``expected(flow_px)`` returns the movie predicted from its first frames: frame 0 as recorded, frame
    ``t+1`` = frame ``t`` moved along ``flow[t]`` (backward warp by the negated flow, a first-order
    inverse) and scaled by the ratio of frame means.
    """

    def __init__(self, movie: np.ndarray, scale: np.ndarray | None = None, noise: Any = None):
        self.movie = np.asarray(movie, np.float32)
        self.scale = scale  # µm per px per component, to convert a µm/frame output back to px
        self.noise = noise

    def expected(self, y: Any) -> np.ndarray:
        import torch

        flow = np.asarray(y, np.float32)
        if self.scale is not None:
            flow = flow / self.scale.reshape(1, -1, *([1] * (flow.ndim - 2)))
        out = [self.movie[0]]
        for t in range(len(flow)):
            ratio = float(self.movie[t + 1].mean() / max(self.movie[t].mean(), 1e-12))
            a = torch.from_numpy(self.movie[t])[None, None]
            w = warp_tensor(a, -torch.from_numpy(flow[t])[None])[0, 0].numpy()
            out.append(w * ratio)
        return np.stack(out).astype(np.float32)

    def variance(self, expected: Any) -> Any:
        if self.noise is None:
            raise FluoreconError("no noise model is attached to the flow forward model")
        return self.noise.variance(expected)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "advection", "predicts": "frame t+1 from frame t and flow[t]",
                "units": "µm/frame" if self.scale is not None else "px/frame"}


class FlowParams(TaskParams):
    method: str = param("cnn", "cnn (trained on simulated fluorescence flows, robust to bleaching and shot "
                        "noise), tvl1 (scikit-image TV-L1) or ilk (iterative Lucas–Kanade).", choices=METHODS)
    steps: int = param(300, "CNN: training steps on simulated flows.", ge=1, le=1_000_000)
    budget_s: float | None = param(None, "CNN: training time limit.", unit="s", gt=0)
    finetune_steps: int = param(0, "CNN: unsupervised fine-tuning steps on this movie (photometric + smoothness).",
                                ge=0, le=100_000, advanced=True)
    seed: int = param(0, "Random seed of the CNN training.", ge=0)

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        return check_choice(v, METHODS, "method")


@register
class FlowTask(Task):
    """Optical flow between consecutive frames: TV-L1 / iLK baselines or a CNN trained on simulations."""

    name = "flow"
    title = "Optical flow"
    summary = "Measure motion between consecutive frames of a time-lapse (flow field per frame pair)."
    Params = FlowParams
    inputs = (InputSpec("movie", "Time-lapse with a T axis (TYX, or TZYX with method tvl1/ilk)."),)
    outputs = (OutputSpec("flow", "Flow per frame pair, axes TCYX (C = dy, dx), µm/frame (px/frame without a "
                          "pixel size).", kind="field"),)
    trust = ("verify",)
    accepts = ("TYX", "TZYX")
    doc = "geometry"
    examples = ("fluorecon flow movie.tif -o flow.tif", "fluorecon flow movie.tif -o flow.tif --method tvl1")

    @classmethod
    def example(cls, seed: int = 0) -> dict[str, Any]:
        sim = motion.advected_movie((32, 32), n_frames=2, seed=seed)
        return {"inputs": {"movie": ImageData(sim["movie"], "TYX", None, {})}, "params": {"method": "tvl1"}}

    def run(self, inputs: Mapping[str, Any], params: FlowParams, progress: Any = None) -> Result:
        report = as_progress(progress)
        img = as_image_data(inputs["movie"], name="movie")
        if "T" not in img.axes:
            raise FluoreconError(f"optical flow needs a time-lapse with a T axis; the image has axes {img.axes}",
                                 hint="give a movie (TYX); a single frame has no motion to measure (--axes TYX "
                                 "if the file's axes are wrong)")
        if "C" in img.axes:
            raise FluoreconError("flow takes one channel", hint="split the channels first")
        movie = np.moveaxis(img.data, img.axes.index("T"), 0)
        flows, info = estimate_flow(movie, params.method, steps=params.steps, budget_s=params.budget_s,
                                    finetune_steps=params.finetune_steps, seed=params.seed,
                                    progress=report.span(0, 0.95))
        report(1.0, "done")
        sp = "".join(a for a in img.axes if a in "ZYX")
        scale = None
        units = "px/frame"
        if img.voxel_size is not None:
            scale = np.asarray(img.voxel_size, np.float32)
            flows = flows * scale.reshape(1, -1, *([1] * (flows.ndim - 2)))
            units = "µm/frame"
        used = {**params.to_json(), "units": units, "axes_components": list(sp.lower()),
                **{k: v for k, v in info.items() if k not in ("warnings",)}}
        return Result(outputs={"flow": flows.astype(np.float32)}, main="flow", axes={"flow": "TC" + sp},
                      voxel_size={"flow": img.voxel_size}, params_used=used, forward=FlowForward(movie, scale),
                      warnings=list(info["warnings"]))
