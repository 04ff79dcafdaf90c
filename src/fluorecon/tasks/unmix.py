"""Spectral unmixing as a registered task (``fluorecon unmix``).

Known spectra (``spectra`` input: a table with one row per channel and one column per dye, or an
image/array of shape (channels, dyes)): per-pixel NNLS with Poisson weights, Poisson maximum
likelihood, a network trained on simulated mixtures of these spectra, or the phasor transform
(phasorpy). Without spectra: blind Poisson NMF with the rank chosen from the data, reporting the
recovered spectra. The result's forward model is the mixing ``recording = photons·spectra × abundances``.

Examples
--------
>>> from fluorecon.physics.mixing import gaussian_spectra, simulate_mixture
>>> S = gaussian_spectra(2, 6, seed=0)
>>> sim = simulate_mixture(S, (24, 24), photons=50, seed=0)
>>> res = UnmixTask()(sim["recording"], axes="CYX", inputs={"spectra": S})
>>> res.image.shape, res.axes["image"]
((2, 24, 24), 'CYX')
>>> blind = UnmixTask()(sim["recording"], axes="CYX", method="nmf", rank=2)
>>> blind.outputs["spectra"].names
['channel', 'dye_1', 'dye_2']
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from fluorecon.classical.unmix import choose_rank, poisson_nmf, unmix_nnls, unmix_poisson
from fluorecon.errors import FluoreconError
from fluorecon.io import ImageData
from fluorecon.learn.unmix_net import train_unmix_net, unmix_learned
from fluorecon.physics.mixing import MixingForward, check_spectra, gaussian_spectra, simulate_mixture
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

__all__ = ["UnmixParams", "UnmixTask", "spectra_from_input"]

METHODS = ("auto", "nnls", "poisson", "learned", "nmf", "phasor")


class UnmixParams(TaskParams):
    method: str = param("auto", "nnls (Poisson-weighted least squares), poisson (maximum likelihood), learned "
                                "(network trained on simulated mixtures), nmf (blind: spectra estimated), phasor "
                                "(phasor coordinates, phasorpy); auto = nnls with spectra, nmf without.",
                        choices=METHODS)
    rank: int = param(0, "Blind NMF: number of dyes (0 = choose from the data).", ge=0, le=64)
    max_rank: int = param(6, "Blind NMF: largest rank tried by the automatic choice.", ge=1, le=64, advanced=True)
    photons: float = param(1.0, "Photons per recording unit (1/gain): sets the Poisson weights; the learned "
                                "method trains at the data's photon level.", gt=0, advanced=True)
    background: float = param(0.0, "Constant offset subtracted from every channel.", ge=0, unit="recording units")
    channel_floor: bool = param(False, "Also subtract each channel's 1st-percentile level (per-channel offset or "
                                       "autofluorescence floor), e.g. for 8-bit confocal spectral stacks.")
    iterations: int = param(500, "Iterations of the Poisson methods (ML, NMF).", ge=1, le=100_000, advanced=True)
    steps: int = param(400, "Learned: training steps.", ge=1, le=1_000_000)
    budget_s: float | None = param(None, "Learned: training time limit.", unit="s", gt=0)
    harmonic: int = param(1, "Phasor: harmonic.", ge=1, le=8, advanced=True)
    seed: int = param(0, "Random seed (training, NMF random init).", ge=0)


def spectra_from_input(spec: Any, n_channels: int) -> tuple[np.ndarray, list[str]]:
    """Spectra (channels × dyes) and dye names from a :class:`Table`, an ``ImageData`` or an array.

    A table may have ``id``/``channel``/``band``/``wavelength`` columns (ignored); every other column is a dye.

    Examples
    --------
    >>> t = Table({"channel": np.arange(3), "GFP": np.array([1.0, 0.5, 0.0]), "RFP": np.array([0.0, 0.5, 1.0])})
    >>> S, names = spectra_from_input(t, 3)
    >>> S.shape, names
    ((3, 2), ['GFP', 'RFP'])
    """
    if isinstance(spec, Table):
        skip = {"id", "channel", "band", "wavelength", "wavelength [um]", "wavelength [µm]", "wavelength [nm]", "index"}
        names = [n for n in spec.names if n.strip().lower() not in skip]
        if not names:
            raise FluoreconError("the spectra table has no dye columns", hint="one column per dye, one row per channel")
        S = np.stack([np.asarray(spec[n], np.float64) for n in names], 1)
    else:
        data = spec.data if isinstance(spec, ImageData) else spec
        S = np.asarray(data, np.float64)
        if S.ndim == 2 and S.shape[0] != n_channels and S.shape[1] == n_channels:
            S = S.T  # (dyes, channels) given: accept the other orientation when unambiguous
        names = [f"dye_{k + 1}" for k in range(S.shape[1] if S.ndim == 2 else 1)]
    return check_spectra(S, n_channels), names


def _channel_first(img: ImageData) -> tuple[np.ndarray, str]:
    if "C" not in img.axes:
        raise FluoreconError(f"unmixing needs a channel axis (C), the image has axes {img.axes}",
                             hint="give --axes CYX (or CZYX, TCYX) for a spectral stack")
    c = img.axes.index("C")
    x = np.moveaxis(np.asarray(img.data, np.float32), c, 0)
    rest = img.axes.replace("C", "")
    if x.shape[0] < 2:
        raise FluoreconError("unmixing needs at least 2 channels")
    return x, rest


@register
class UnmixTask(Task):
    """Spectral unmixing with known spectra (NNLS, Poisson ML, learned, phasor) or blind (Poisson NMF)."""

    name = "unmix"
    title = "Spectral unmixing"
    summary = "Separate overlapping dyes in a multi-channel (spectral) image into abundance maps."
    Params = UnmixParams
    inputs = (InputSpec("image", "Spectral image with a channel axis (CYX, CZYX, TCYX)."),
              InputSpec("spectra", "Reference spectra: a CSV table, one row per channel, one column per dye "
                                   "(blind NMF when absent).", kind="table", required=False, cli="--spectra"))
    outputs = (OutputSpec("image", "Abundances: one channel per dye (C = dyes), photons when --photons is given."),
               OutputSpec("spectra", "Spectra used or recovered (table: channel, one column per dye).", kind="table"),
               OutputSpec("residual", "Recording minus the mixing of the abundances (C = channels)."))
    trust = ("verify",)
    accepts = ("CYX", "CZYX", "TCYX")
    doc = "corrections"
    examples = ("fluorecon unmix spectral.tif -o abundances.tif --spectra spectra.csv",
                "fluorecon unmix spectral.tif -o abundances.tif --method nmf",
                "fluorecon unmix spectral.tif -o abundances.tif --spectra spectra.csv --method learned --photons 0.5")

    @classmethod
    def example(cls, seed: int = 0) -> dict[str, Any]:
        """Two overlapping dyes in 6 channels, 32×32, 50 photons, with their spectra as a table."""
        S = gaussian_spectra(2, 6, seed=seed)
        sim = simulate_mixture(S, (32, 32), photons=50, seed=seed)
        table = Table({"channel": np.arange(6), "dye_1": S[:, 0], "dye_2": S[:, 1]})
        return {"inputs": {"image": ImageData(sim["recording"], "CYX", None, {}), "spectra": table},
                "params": {"method": "nnls"}}

    def run(self, inputs: Mapping[str, Any], params: UnmixParams, progress: Any = None) -> Result:
        img: ImageData = inputs["image"]
        report = as_progress(progress)
        x, rest = _channel_first(img)
        C = x.shape[0]
        spec_in = inputs.get("spectra")
        method = params.method
        if method == "auto":
            method = "nnls" if spec_in is not None else "nmf"
        warnings: list[str] = []
        used: dict[str, Any] = {"method": method}
        xp = (x - params.background) * params.photons  # photons
        offset = np.full(C, params.background, np.float64)
        if params.channel_floor:
            floor = np.percentile(xp.reshape(C, -1), 1, axis=1)
            xp = xp - floor.reshape((C,) + (1,) * (xp.ndim - 1))
            used["channel_floor"] = (floor / params.photons).tolist()
            offset = offset + floor / params.photons
        if method == "nmf":
            if spec_in is not None:
                warnings.append("spectra were given but method nmf estimates them; the given spectra initialise it")
            rank = params.rank
            if rank > C:
                raise FluoreconError(f"rank {rank} is larger than the number of channels ({C})",
                                     hint=f"choose --rank ≤ {C}")
            if rank == 0:
                report(0.05, "choosing the rank")
                rank, devs = choose_rank(np.clip(xp, 0, None), min(params.max_rank, C),
                                         iterations=min(params.iterations, 200))
                used["deviance_by_rank"] = devs
            init: Any = "spa"
            if spec_in is not None:
                S0, _ = spectra_from_input(spec_in, C)
                init = S0 if S0.shape[1] == rank else "spa"
            report(0.3, f"Poisson NMF, rank {rank}")
            S, A, info = poisson_nmf(np.clip(xp, 0, None), rank, iterations=params.iterations, init=init,
                                     seed=params.seed)
            used.update(rank=rank, nmf=info)
            names = [f"dye_{k + 1}" for k in range(rank)]
            photons_fwd = 1.0
        else:
            if spec_in is None:
                raise FluoreconError(f"method {method} needs the dyes' spectra", hint="give --spectra FILE.csv, "
                                     "or use --method nmf to estimate them")
            S, names = spectra_from_input(spec_in, C)
            photons_fwd = 1.0
            if method == "nnls":
                report(0.2, "NNLS per pixel")
                A = unmix_nnls(xp, S, weighting="poisson", floor=1.0)
            elif method == "poisson":
                report(0.2, "Poisson maximum likelihood")
                A = unmix_poisson(np.clip(xp, 0, None), S, iterations=params.iterations)
            elif method == "learned":
                peak = float(np.percentile(xp, 99.5))
                ph = max(peak, 1.0)  # photons at abundance 1 in the peak channel
                Sn = S / S.max(0, keepdims=True)
                net, info = train_unmix_net(Sn, photons=ph, steps=params.steps, budget_s=params.budget_s,
                                            pool=16, seed=params.seed, progress=report.span(0.0, 0.9))
                A = unmix_learned(net, np.clip(xp, 0, None), photons=ph)
                A = A * ph / S.max(0)[(...,) + (None,) * (A.ndim - 1)]  # back to abundances of S (photons)
                used["training"] = info
                warnings.append("learned unmixing: trained on simulated phantom mixtures; check it with verify")
            elif method == "phasor":
                return self._phasor(x, rest, img, params, S, names)
            else:  # pragma: no cover - choices validated
                raise FluoreconError(f"unknown method {method!r}")
        fwd = MixingForward(S, photons=photons_fwd, gain=1.0)
        expected = fwd.expected(A)
        residual = (xp - expected).astype(np.float32)
        table = Table({"channel": np.arange(C), **{n: S[:, k] for k, n in enumerate(names)}})
        report(1.0, "done")
        return Result(outputs={"image": A.astype(np.float32), "spectra": table, "residual": residual},
                      axes={"image": "C" + rest, "residual": "C" + rest}, params_used={**params.to_json(), **used},
                      forward=_UnitsForward(fwd, params.photons, offset), warnings=warnings)

    def _phasor(self, x: np.ndarray, rest: str, img: ImageData, params: UnmixParams, S: np.ndarray,
                names: list[str]) -> Result:
        from phasorpy.phasor import phasor_from_signal

        mean, real, imag = phasor_from_signal(np.clip(x - params.background, 0, None), axis=0,
                                              harmonic=params.harmonic)
        out = np.stack([mean, real, imag]).astype(np.float32)
        sr, si = phasor_from_signal(S.T, axis=1, harmonic=params.harmonic)[1:]
        table = Table({"channel": np.arange(S.shape[0]), **{n: S[:, k] for k, n in enumerate(names)}},
                      meta={"phasor_real": np.asarray(sr).tolist(), "phasor_imag": np.asarray(si).tolist()})
        return Result(outputs={"image": out, "spectra": table}, axes={"image": "C" + rest},
                      params_used={**params.to_json(), "outputs": ["mean", "real", "imag"]}, forward=None,
                      warnings=["phasor: the output is (mean, G, S) phasor coordinates, not abundances"])


class _UnitsForward:
    """Mixing forward model in the recording's units: ``x = (photons·S a)/photons_per_unit + offset[c]``."""

    def __init__(self, fwd: MixingForward, photons_per_unit: float, offset: Any):
        self.fwd, self.k = fwd, float(photons_per_unit)
        self.offset = np.asarray(offset, np.float64).ravel()

    def _off(self, like: Any) -> Any:
        off = self.offset.reshape((-1,) + (1,) * (like.ndim - 1)).astype(np.float32)
        if isinstance(like, torch.Tensor):
            return torch.as_tensor(off, dtype=like.dtype, device=like.device)
        return off

    def expected(self, a: Any) -> Any:
        e = self.fwd.expected(a) / self.k
        return e + self._off(e)

    def variance(self, expected: Any) -> Any:
        v = (expected - self._off(expected)) / self.k
        return v.clamp(min=1e-6) if isinstance(v, torch.Tensor) else np.maximum(v, 1e-6)

    def to_dict(self) -> dict[str, Any]:
        return {**self.fwd.to_dict(), "photons_per_unit": self.k, "offset": self.offset.tolist()}
