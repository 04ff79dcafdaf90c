"""Scattered-light haze removal as a registered task (``fluorecon dehaze``).

Classical: the scattering model ``x = y + α·G_σ * y + β`` fitted to each plane (α, σ, β from the data)
and the haze reassigned (:func:`fluorecon.classical.dehaze.dehaze`, method "model"); "envelope": the
non-linear (clipped) low-pass background, which also removes true low-frequency signal. Learned: a network trained on the scattering forward
model (:mod:`fluorecon.physics.scattering`) predicts the haze. The result's forward model is
``recording = result + removed haze`` (the haze map is an output).

Examples
--------
>>> from fluorecon.physics.scattering import simulate_haze
>>> sim = simulate_haze((2, 48, 48), seed=0)
>>> res = DehazeTask()(sim["recording"], axes="ZYX")
>>> res.image.shape, sorted(res.outputs)
((2, 48, 48), ['haze', 'image'])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from fluorecon.classical.dehaze import dehaze
from fluorecon.io import ImageData
from fluorecon.learn.dehaze_net import dehaze_learned, train_dehaze_net
from fluorecon.physics.scattering import AdditiveForward, simulate_haze
from fluorecon.tasks.contract import InputSpec, OutputSpec, Result, Task, TaskParams, as_progress, param
from fluorecon.tasks.registry import register

__all__ = ["DehazeParams", "DehazeTask"]


class DehazeParams(TaskParams):
    method: str = param("classical", "classical (scattering model fitted per plane, haze reassigned), envelope "
                                     "(clipped low-pass background, size from the data) or learned (network trained "
                                     "on the haze forward model).", choices=("classical", "envelope", "learned"))
    size: float = param(0.0, "Classical: halo σ in pixels; envelope: background σ (0 = from the data).",
                        unit="px", ge=0, le=2048)
    factor: float = param(8.0, "Envelope: background σ as a multiple of the structure size.", gt=0, le=100,
                          advanced=True)
    iterations: int = param(30, "Envelope: rounds of the clipped low-pass.", ge=1, le=1000, advanced=True)
    steps: int = param(600, "Learned: training steps on simulated haze.", ge=1, le=1_000_000)
    budget_s: float | None = param(None, "Learned: training time limit.", unit="s", gt=0)
    seed: int = param(0, "Random seed of the training.", ge=0)


@register
class DehazeTask(Task):
    """Remove the low-frequency scattered-light component plane by plane."""

    name = "dehaze"
    title = "Haze removal"
    summary = "Remove scattered-light haze (smooth, depth-dependent background) from each plane."
    Params = DehazeParams
    inputs = (InputSpec("image", "Hazy image or stack (YX, ZYX, TYX; planes are processed independently)."),)
    outputs = (OutputSpec("image", "Haze-free image, float32, recording units."),
               OutputSpec("haze", "The removed scattered component (same shape)."))
    trust = ("verify",)
    accepts = ("YX", "ZYX", "TYX", "CYX", "TZYX", "CZYX")
    doc = "corrections"
    examples = ("fluorecon dehaze stack.tif -o clear.tif",
                "fluorecon dehaze stack.tif -o clear.tif --size 40",
                "fluorecon dehaze stack.tif -o clear.tif --method learned --steps 600")

    @classmethod
    def example(cls, seed: int = 0) -> dict[str, Any]:
        """Two 48×48 hazy phantom planes (shallow and deep)."""
        sim = simulate_haze((2, 48, 48), seed=seed)
        return {"inputs": {"image": ImageData(sim["recording"], "ZYX", None, {})}, "params": {"method": "classical"}}

    def run(self, inputs: Mapping[str, Any], params: DehazeParams, progress: Any = None) -> Result:
        img: ImageData = inputs["image"]
        report = as_progress(progress)
        x = np.asarray(img.data, np.float32)
        used: dict[str, Any] = params.to_json()
        warnings: list[str] = []
        if params.method in ("classical", "envelope"):
            report(0.1, "estimating the haze")
            out, info = dehaze(x, img.axes, method="model" if params.method == "classical" else "envelope",
                               size=params.size if params.size > 0 else "auto", factor=params.factor,
                               iterations=params.iterations)
            used["size_used"] = info["size"]
            if "alpha" in info:
                used.update(alpha_used=info["alpha"], background_used=info["beta"])
        else:
            net, info = train_dehaze_net(steps=params.steps, budget_s=params.budget_s, seed=params.seed,
                                         progress=report.span(0.0, 0.9))
            out = dehaze_learned(net, x)
            used["training"] = info
            warnings.append("learned dehazing: trained on simulated phantoms and haze; check it with verify")
        haze = (x - out).astype(np.float32)
        report(1.0, "done")
        return Result(outputs={"image": out, "haze": haze}, params_used=used, forward=AdditiveForward(haze),
                      warnings=warnings)
