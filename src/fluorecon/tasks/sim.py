"""Structured-illumination reconstruction as a task: estimate the pattern from the data, then recombine.

``fluorecon sim RAW -o OUT --angles 3 --phases 3 --na 1.4 --wavelength 0.52 --voxel-size 0.08 0.08``

The raw stack holds the frames along its leading axes (any of ``T``, ``Z``, ``C`` as the file says);
they are flattened and read in the order given by ``--order`` (slowest → fastest: ``a`` angle, ``z``
plane, ``p`` phase). 3D stacks (angles × phases × planes) are reconstructed plane by plane with one
pattern estimated on the central planes (lateral super-resolution; the axial orders of 3-beam
SIM are not used). The output sits on a grid ``--upsample`` times finer, with its voxel size.

Examples
--------
>>> ex = SIMTask.example()
>>> res = SIMTask()(ex["inputs"]["image"], **ex["params"])
>>> res.image.shape, res.voxel_size["image"]
((96, 96), (0.04, 0.04))
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from pydantic import field_validator, model_validator

from fluorecon.classical.sim import estimate_parameters, reconstruct_sim, wiener_widefield
from fluorecon.errors import FluoreconError
from fluorecon.io import ImageData
from fluorecon.learn.sim_net import predict_sim, train_sim_correction, train_sim_net
from fluorecon.physics import phantoms
from fluorecon.physics.camera import Camera
from fluorecon.physics.sim import SIMForward, SIMPattern, otf_2d, simulate_sim
from fluorecon.tasks.contract import (
    InputSpec,
    OutputSpec,
    Result,
    Task,
    TaskParams,
    as_progress,
    check_choice,
    param,
)
from fluorecon.tasks.registry import register

__all__ = ["SIMParams", "SIMStackForward", "SIMTask", "check_frame_order", "frames_to_apz"]


class SIMParams(TaskParams):
    """Parameters of :class:`SIMTask`."""

    method: str = param("classical", "classical (pattern estimated, Wiener recombination), learned (a network "
                        "trained on simulated raw frames for these optics) or learned-physics (a network that "
                        "corrects the classical reconstruction, trained likewise).",
                        choices=("classical", "learned", "learned-physics"))
    budget_s: float = param(300.0, "Learned: training wall-time budget.", unit="s", cli="--budget", gt=0,
                            le=7 * 86400)
    steps: int | None = param(None, "Learned: train exactly this many steps instead (reproducible).", ge=1,
                              le=10_000_000)
    seed: int = param(0, "Learned: random seed of the simulations and the training.", ge=0)

    angles: int = param(3, "Number of pattern orientations.", ge=1, le=12)
    phases: int = param(3, "Number of phase steps per orientation (3 for 2-beam, 5 for 3-beam SIM).", ge=3, le=15)
    order: str = param("azp", "Frame order, slowest to fastest: a = angle, z = plane, p = phase (2D: z is ignored).")
    na: float | None = param(None, "Numerical aperture of the objective (required: the OTF depends on it).",
                             gt=0, le=1.7)
    wavelength: float | None = param(None, "Emission wavelength (required: the OTF depends on it).", unit="µm",
                                     gt=0.2, le=2.0)
    offset: float = param(0.0, "Camera offset (baseline) subtracted first.", unit="ADU")
    gain: float | None = param(None, "Camera gain, for the noise model of the forward model.", unit="ADU/e-", gt=0)
    read_noise: float = param(0.0, "Camera read noise.", unit="e-", ge=0)
    wiener: float = param(0.05, "Wiener parameter (larger: smoother, less noise).", gt=0, lt=10)
    apodization: float = param(1.0, "Apodisation cut-off as a fraction of the extended support.", gt=0.2, le=1.5)
    upsample: int = param(2, "Output grid refinement.", ge=1, le=4)
    line_spacing: float | None = param(None, "Approximate pattern period of the highest order (narrows the "
                                       "search to ±10 %).", unit="µm", gt=0)
    n_orders: int | None = param(None, "Highest pattern order: 1 (2-beam) or 2 (3-beam); default from the phases.",
                                 ge=1, le=3)
    equal_phase_steps: bool = param(False, "Assume equally spaced phases and estimate only the offset "
                                    "(robust at very low signal).")
    modulation: float | None = param(None, "Fix the modulation depth instead of estimating it.", gt=0, le=1.5)
    taper: int = param(8, "Edge taper width against border leakage.", unit="px", ge=0, le=256)

    @field_validator("method")
    @classmethod
    def _method(cls, v: str) -> str:
        return check_choice(v, ("classical", "learned", "learned-physics"), "method")

    @field_validator("order")
    @classmethod
    def _order(cls, v: str) -> str:
        v = v.lower()
        if sorted(v) not in (["a", "p"], ["a", "p", "z"]):
            raise ValueError(f"order must be a permutation of 'azp' (or 'ap'), got {v!r}")
        return v

    @model_validator(mode="after")
    def _orders(self) -> SIMParams:
        m = self.n_orders if self.n_orders is not None else (1 if self.phases < 5 else 2)
        if self.phases < 2 * m + 1:
            raise ValueError(f"{self.phases} phases cannot separate orders up to ±{m} (needs {2 * m + 1})")
        return self


def frames_to_apz(raw: np.ndarray, n_angles: int, n_phases: int, order: str) -> np.ndarray:
    """Reshape ``(frames, Y, X)`` into ``(Z, A·P, Y, X)`` (angle-major, phase fastest) from ``order``.

    Examples
    --------
    >>> f = np.arange(12)[:, None, None] * np.ones((1, 2, 2))
    >>> frames_to_apz(f, 2, 3, "azp")[1, :, 0, 0].tolist()   # plane 1: angle 0 phases, then angle 1
    [3.0, 4.0, 5.0, 9.0, 10.0, 11.0]
    """
    n = raw.shape[0]
    per = n_angles * n_phases
    if n % per:
        raise FluoreconError(f"{n} frames are not a multiple of angles × phases = {n_angles}×{n_phases}",
                             hint="check --angles, --phases and that the file holds only SIM frames")
    nz = n // per
    letters = [c for c in order if c in "azp"]
    if "z" not in letters:
        letters = ["z", *letters]
    sizes = {"a": n_angles, "p": n_phases, "z": nz}
    arr = raw.reshape(*(sizes[c] for c in letters), *raw.shape[-2:])
    perm = [letters.index(c) for c in "zap"]
    arr = arr.transpose(*perm, len(letters), len(letters) + 1)
    return arr.reshape(nz, per, *raw.shape[-2:])


def _frame_directions(frames: np.ndarray, k_range: tuple[float, float]) -> np.ndarray:
    """Direction (mod π) of each frame's own pattern: the spectral peak of the frame minus the mean frame."""
    f = np.asarray(frames, np.float64)
    d = f - f.mean(axis=0, keepdims=True)
    spec = np.abs(np.fft.fft2(d))
    qy = np.fft.fftfreq(f.shape[-2])[:, None]
    qx = np.fft.fftfreq(f.shape[-1])[None, :]
    r = np.hypot(qy, qx)
    spec = np.where((r >= k_range[0]) & (r <= k_range[1]), spec, 0.0)
    flat = spec.reshape(len(f), -1).argmax(axis=1)
    iy, ix = np.unravel_index(flat, spec.shape[-2:])
    return np.mod(np.arctan2(qy[iy, 0], qx[0, ix]), np.pi)


def _order_consistency(raw: np.ndarray, n_angles: int, n_phases: int, order: str,
                       k_range: tuple[float, float]) -> float:
    """How well the frames that ``order`` groups into one angle share one pattern direction (0…1)."""
    apz = frames_to_apz(raw, n_angles, n_phases, order)
    nz = apz.shape[0]
    mid = apz[max(0, nz // 2 - 1):min(nz, nz // 2 + 2)].sum(axis=0)
    theta = _frame_directions(mid, k_range).reshape(n_angles, n_phases)
    return float(np.mean(np.abs(np.exp(2j * theta).mean(axis=1))))


def check_frame_order(raw: np.ndarray, n_angles: int, n_phases: int, order: str, k_range: tuple[float, float]
                      ) -> dict[str, float]:
    """Refuse a frame order that the patterns contradict: the frames of one angle must share its direction.

    Each frame's pattern direction is read from its own spectrum; if the frames that ``order`` puts
    in one angle point in different directions while another order groups them consistently, the
    stack is not in ``order`` (the error names the order that fits).

    Examples
    --------
    >>> from fluorecon.physics.sim import SIMPattern
    >>> frames = SIMPattern.regular(3, 3, k=0.2, angle0=0.3).illumination((32, 32))
    >>> check_frame_order(frames, 3, 3, "ap", (0.1, 0.3))["ap"]
    1.0
    """
    if n_angles < 2:
        return {}
    letters = "azp" if "z" in order and raw.shape[0] > n_angles * n_phases else "ap"
    candidates = sorted({"".join(p) for p in itertools.permutations(letters)})
    scores = {c: round(_order_consistency(raw, n_angles, n_phases, c, k_range), 3) for c in candidates}
    given = next(c for c in candidates if c == "".join(x for x in order if x in letters))
    best = max(scores, key=lambda c: scores[c])
    if scores[given] < 0.8 and scores[best] > 0.95:
        raise FluoreconError(f"the frames are not in the order --order {order}: the frames it groups as one angle "
                             f"show different pattern directions (consistency {scores[given]:.2f}), order {best!r} "
                             f"groups them consistently ({scores[best]:.2f})",
                             hint=f"give --order {best} (slowest to fastest: a = angle, z = plane, p = phase)")
    return scores


def _apz_to_frames(apz: np.ndarray, n_angles: int, n_phases: int, order: str) -> np.ndarray:
    nz = apz.shape[0]
    letters = [c for c in order if c in "azp"]
    if "z" not in letters:
        letters = ["z", *letters]
    arr = apz.reshape(nz, n_angles, n_phases, *apz.shape[-2:])
    perm = ["zap".index(c) for c in letters]
    return arr.transpose(*perm, 3, 4).reshape(-1, *apz.shape[-2:])


class SIMStackForward:
    """The forward model of a (plane-by-plane) SIM reconstruction, in the raw file's frame layout."""

    def __init__(self, plane: SIMForward, n_angles: int, n_phases: int, order: str, three_d: bool):
        self.plane = plane
        self.n_angles, self.n_phases, self.order, self.three_d = n_angles, n_phases, order, three_d

    def expected(self, y: Any) -> np.ndarray:
        y = np.asarray(y)
        planes = y[None] if not self.three_d else y
        apz = np.stack([self.plane.expected(p) for p in planes])
        return _apz_to_frames(apz, self.n_angles, self.n_phases, self.order)

    def variance(self, expected: Any) -> np.ndarray:
        return self.plane.variance(expected)

    def to_dict(self) -> dict[str, Any]:
        return {**self.plane.to_dict(), "kind": "sim-stack", "order": self.order, "three_d": self.three_d}


@register
class SIMTask(Task):
    """2D-SIM reconstruction with pattern estimation (plane by plane for 3D stacks)."""

    name = "sim"
    title = "Structured illumination"
    summary = "Reconstruct a super-resolved image from SIM raw frames; the pattern is estimated from the data."
    Params = SIMParams
    inputs = (InputSpec("image", "Raw SIM frames (angles × phases [× planes]) along the leading axes."),)
    outputs = (OutputSpec("image", "The SIM reconstruction on the refined grid."),
               OutputSpec("widefield", "The widefield reference (mean of the frames, same Wiener filter)."))
    accepts = ("TYX", "ZYX", "CYX", "TZYX")
    doc = "sim"
    output_tag = "_sim"
    examples = ("fluorecon sim raw.tif -o sim.tif --angles 3 --phases 3 --na 1.4 --wavelength 0.52 "
                "--voxel-size 0.065 0.065",)

    def run(self, inputs: Mapping[str, ImageData], params: SIMParams, progress: Any = None) -> Result:
        img = inputs["image"]
        report = as_progress(progress)
        if img.voxel_size is None:
            raise FluoreconError("SIM reconstruction needs the raw pixel size",
                                 hint="give --voxel-size Y X in µm (or a file whose metadata holds it)")
        missing = [opt for opt, v in (("--na", params.na), ("--wavelength", params.wavelength)) if v is None]
        if missing:
            raise FluoreconError(f"SIM reconstruction needs the optics: {' and '.join(missing)} not given",
                                 hint="the OTF is computed from them, e.g. --na 1.4 --wavelength 0.52 (emission, µm)")
        dx = float(img.voxel_size[-1])
        raw = np.asarray(img.data, np.float64).reshape(-1, *img.data.shape[-2:])
        apz = frames_to_apz(raw, params.angles, params.phases, params.order)
        kc = 2 * params.na / params.wavelength * dx
        # Direction only: any order of the pattern in the transferred annulus will do.
        k_search = (0.25 * kc, 0.98 * kc)
        order_scores = check_frame_order(raw, params.angles, params.phases, params.order, k_search)
        nz = apz.shape[0]
        three_d = nz > 1
        # One pattern for the stack: estimated on the sum of the central planes (most in-focus signal).
        mid = slice(max(0, nz // 2 - 1), min(nz, nz // 2 + 2))
        est_frames = apz[mid].sum(axis=0) - params.offset * (mid.stop - mid.start)
        report(0.0, "estimating the pattern")
        est = estimate_parameters(est_frames, params.angles, params.phases, pixel_size=dx, na=params.na,
                                  wavelength=params.wavelength, n_orders=params.n_orders,
                                  line_spacing=params.line_spacing, equal_phase_steps=params.equal_phase_steps,
                                  taper=params.taper)
        pattern = SIMPattern(est.k, est.phases, est.modulation if params.modulation is None else params.modulation)
        warnings = []
        if np.any(pattern.modulation < 0.15):
            warnings.append(f"weak pattern modulation {np.round(pattern.modulation, 2).tolist()}: the result is close "
                            "to a widefield deconvolution, and the estimated pattern may be wrong")
        recs, wfs = [], []
        model = None
        rinfo: dict[str, Any] = {}
        if params.method in ("learned", "learned-physics"):
            train_report = report.span(0.1, 0.8)
            total = params.steps
            t0 = time.perf_counter()

            def on_step(step: int, loss: float) -> None:
                frac = step / total if total else (time.perf_counter() - t0) / params.budget_s
                train_report(frac, f"training step {step} (loss {loss:.3g})")

            common = dict(n_angles=params.angles, n_phases=params.phases, pixel_size=dx, na=params.na,
                          wavelength=params.wavelength, steps=params.steps,
                          budget_s=None if params.steps else params.budget_s, seed=params.seed,
                          upsample=params.upsample, callback=on_step)
            if params.method == "learned":
                model, tinfo = train_sim_net(**common)
            else:
                # Its classical channel uses its own estimate with this Wiener parameter (no taper, no
                # fixed modulation): what it was trained with.
                model, tinfo = train_sim_correction(**common, wiener=params.wiener, scene=64 * params.upsample)
            rinfo = {"training": tinfo}
            if tinfo["steps"] < 200:
                warnings.append(f"the SIM network trained for only {tinfo['steps']} steps: expect a poor result "
                                "(raise --budget or --steps)")
        for z in range(nz):
            sub = report.span(0.1 + 0.9 * z / nz, 0.1 + 0.9 * (z + 1) / nz)
            if model is not None:
                recs.append(predict_sim(model, apz[z], params.upsample, params.offset))
                wfs.append(wiener_widefield(apz[z] - params.offset, pixel_size=dx, na=params.na,
                                            wavelength=params.wavelength, upsample=params.upsample,
                                            wiener=params.wiener))
                continue
            rec, rinfo = reconstruct_sim(apz[z], pattern, pixel_size=dx, na=params.na, wavelength=params.wavelength,
                                         n_orders=params.n_orders, upsample=params.upsample, wiener=params.wiener,
                                         apodization=params.apodization, offset=params.offset, taper=params.taper,
                                         progress=sub)
            recs.append(rec)
            wfs.append(wiener_widefield(apz[z] - params.offset, pixel_size=dx, na=params.na,
                                        wavelength=params.wavelength, upsample=params.upsample, wiener=params.wiener))
        report(1.0, "done")
        out = np.stack(recs) if three_d else recs[0]
        wf = np.stack(wfs) if three_d else wfs[0]
        axes = "ZYX" if three_d else "YX"
        fine = (dx / params.upsample, dx / params.upsample)
        vs = ((float(img.voxel_size[0]) if len(img.voxel_size) == 3 and three_d else 1.0), *fine) if three_d else fine
        otf = otf_2d(img.data.shape[-2:], dx, params.na, params.wavelength, upsample=params.upsample)
        plane = SIMForward(pattern, otf, params.upsample, offset=params.offset, gain=params.gain,
                           read_noise=params.read_noise)
        fwd = SIMStackForward(plane, params.angles, params.phases, params.order, three_d)
        used = {"pattern": pattern.to_dict(), "estimate": est.info, "quality": est.quality,
                "reconstruction": rinfo, "planes": nz, "order_consistency": order_scores}
        return Result(outputs={"image": out, "widefield": wf}, axes={"image": axes, "widefield": axes},
                      voxel_size={"image": vs, "widefield": vs}, params_used=used, forward=fwd, warnings=warnings)

    @classmethod
    def example(cls, seed: int = 0) -> dict[str, Any]:
        """Nine 48×48 raw frames of simulated filaments (2-beam SIM, 3 angles × 3 phases)."""
        truth = phantoms.filaments((96, 96), seed=seed)
        pat = SIMPattern.regular(3, 3, k=0.25, modulation=0.8, angle0=0.2)
        raw, _ = simulate_sim(truth, pat, pixel_size=0.08, na=1.2, wavelength=0.52, seed=seed,
                              camera=Camera(photons=200.0, gain=1.0, offset=100.0, read_noise=1.0))
        return {"inputs": {"image": ImageData(raw, "TYX", (0.08, 0.08), {})},
                "params": {"na": 1.2, "wavelength": 0.52, "offset": 100.0, "gain": 1.0, "read_noise": 1.0,
                           "taper": 0}}
