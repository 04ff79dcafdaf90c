"""Learned SIM reconstruction: a U-Net that maps the raw frames to the super-resolved image.

Trained on raw frames simulated with :mod:`fluorecon.physics.sim` for the user's optics (NA, wavelength,
pixel size, angles × phases) over varied structures (every phantom kind of the physics layer), pattern
parameters drawn at random (angle offset, frequency 0.7–0.95 of the OTF cut-off, phases with jitter,
modulation 0.3–0.9 — the network is never told them) and photon levels from 10 to 300 per pixel.
The frames are Fourier-interpolated to the output grid and divided by their mean, so the network sees
the same input whatever the exposure; its output is the specimen relative to its mean, rescaled to the
recording's units.

:class:`SIMCorrectionNet` is the physics-informed variant: the classical reconstruction (pattern
estimated from the same frames, :mod:`fluorecon.classical.sim`) is an extra input channel and the
network predicts a correction added to it, so it starts from what the physics already gives and learns
where the estimate or the Wiener filter fall short (noise, ringing, a mis-estimated pattern). It is
trained on a pool of whole simulated scenes (the estimation needs the whole field), refreshed as it
trains, with random dihedral transforms, and with pattern imperfections drawn at random (phase jitter
up to 0.3 rad, per-angle contrast 0.3–1).

Examples
--------
>>> model, info = train_sim_net(n_angles=3, n_phases=3, pixel_size=0.08, na=1.2, wavelength=0.52,
...                             steps=2, patch=32, batch_size=2, width=8, depth=1, seed=0)
>>> frames = np.random.default_rng(0).poisson(20, (9, 16, 16)).astype(np.float32)
>>> predict_sim(model, frames).shape
(32, 32)
>>> net, _ = train_sim_correction(n_angles=3, n_phases=3, pixel_size=0.08, na=1.2, wavelength=0.52, steps=1,
...                               scene=64, crop=32, pool=2, batch_size=2, width=8, depth=1, seed=0)
>>> predict_sim(net, np.random.default_rng(0).poisson(50, (9, 32, 32)).astype(np.float32)).shape
(64, 64)
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from fluorecon.classical.sim import estimate_parameters, reconstruct_sim
from fluorecon.errors import FluoreconError, FluoreconWarning
from fluorecon.learn.nets import UNet
from fluorecon.physics import phantoms
from fluorecon.physics.camera import Camera
from fluorecon.physics.sim import SIMPattern, check_sampling, fourier_pad, simulate_sim
from fluorecon.utils import seed_everything

__all__ = ["SIMCorrectionNet", "classical_channel", "predict_sim", "simulate_training_pair", "train_sim_correction",
           "train_sim_net"]

_KINDS = ("filaments", "puncta", "membranes", "nuclei", "mixed")


def _normalise(frames: np.ndarray, upsample: int) -> tuple[np.ndarray, float]:
    up = fourier_pad(np.asarray(frames, np.float64), upsample)
    mean = max(float(np.mean(frames)), 1e-6)
    return (up / mean).astype(np.float32), mean


def simulate_training_pair(rng: np.random.Generator, *, n_angles: int, n_phases: int, pixel_size: float, na: float,
                           wavelength: float, patch: int, upsample: int = 2,
                           photons: tuple[float, float] = (10.0, 300.0)) -> tuple[np.ndarray, np.ndarray]:
    """One (normalised frames on the fine grid, normalised truth) pair with random structure and pattern."""
    kind = _KINDS[int(rng.integers(len(_KINDS)))]
    truth = np.asarray(phantoms.phantom(kind, (patch, patch), int(rng.integers(2**31 - 1))), np.float64)
    truth = truth + 0.02 * rng.random()                       # a little background: never all dark
    kc = 2 * na / wavelength * pixel_size
    pat = SIMPattern.regular(n_angles, n_phases, k=float(rng.uniform(0.7, 0.95) * kc),
                             modulation=float(rng.uniform(0.3, 0.9)), angle0=float(rng.uniform(0, np.pi)),
                             phase0=float(rng.uniform(0, 2 * np.pi)))
    ph = float(np.exp(rng.uniform(np.log(photons[0]), np.log(photons[1]))))
    cam = Camera(photons=ph / max(truth.mean(), 1e-3), gain=1.0, offset=0.0, read_noise=1.0)
    raw, _ = simulate_sim(truth, pat, pixel_size=pixel_size, na=na, wavelength=wavelength, upsample=upsample,
                          camera=cam, seed=rng, phase_jitter=0.05)
    x, _ = _normalise(raw, upsample)
    y = (truth / truth.mean()).astype(np.float32)
    return x, y


def _l1_step(model: torch.nn.Module, opt: torch.optim.Optimizer, xs: np.ndarray, ys: np.ndarray) -> float:
    """One clipped Adam step on the L1 loss of a batch (targets get a channel axis); returns the loss."""
    model.train()
    loss = F.l1_loss(model(torch.from_numpy(xs)), torch.from_numpy(ys)[:, None])
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    return float(loss.detach())


def train_sim_net(*, n_angles: int, n_phases: int, pixel_size: float, na: float, wavelength: float,
                  steps: int | None = 500, budget_s: float | None = None, patch: int = 96, batch_size: int = 8,
                  width: int = 32, depth: int = 3, lr: float = 1e-3, seed: int = 0, upsample: int = 2,
                  callback: Callable[[int, float], Any] | None = None) -> tuple[UNet, dict[str, Any]]:
    """Train the SIM network on simulations for the given optics; returns ``(model, info)``.

    ``steps`` (reproducible) or ``budget_s`` (wall time) bounds the training; ``callback(step, loss)``
    may raise to stop it (the model trained so far is returned by the caller's handler).
    """
    check_sampling(pixel_size, na, wavelength)
    if steps is None and budget_s is None:
        raise FluoreconError("give steps or budget_s for the SIM network's training")
    if patch % (2 * 2**depth):
        raise FluoreconError(f"patch {patch} must be a multiple of {2 * 2**depth}")
    rng = seed_everything(seed)
    model = UNet(dim=2, in_channels=n_angles * n_phases, out_channels=1, depth=depth, width=width, residual=False)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    t0 = time.perf_counter()
    losses: list[float] = []
    step = 0
    raw_patch = patch // upsample
    while True:
        if steps is not None and step >= steps:
            break
        if budget_s is not None and time.perf_counter() - t0 >= budget_s:
            break
        xs, ys = zip(*(simulate_training_pair(rng, n_angles=n_angles, n_phases=n_phases, pixel_size=pixel_size,
                                              na=na, wavelength=wavelength, patch=raw_patch * upsample,
                                              upsample=upsample) for _ in range(batch_size)), strict=True)
        lv = _l1_step(model, opt, np.stack(xs), np.stack(ys))
        step += 1
        losses.append(lv)
        if callback is not None:
            callback(step, lv)
    model.eval()
    info = {"steps": step, "seconds": round(time.perf_counter() - t0, 2), "loss_first": losses[:10],
            "loss_last": losses[-10:], "optics": {"na": na, "wavelength": wavelength, "pixel_size": pixel_size},
            "frames": n_angles * n_phases, "upsample": upsample, "seed": seed}
    return model, info


class SIMCorrectionNet(torch.nn.Module):
    """A U-Net that corrects the classical SIM reconstruction: ``classical + net(frames, classical)``.

    Input channels: the ``A·P`` normalised frames on the fine grid, then the classical reconstruction
    divided by the frames' mean (:func:`classical_channel`); ``optics`` holds what the classical channel
    needs (``n_angles``, ``n_phases``, ``pixel_size``, ``na``, ``wavelength``, ``wiener``, ``upsample``).
    """

    def __init__(self, optics: dict[str, Any], width: int = 32, depth: int = 3):
        super().__init__()
        self.optics = dict(optics)
        self.unet = UNet(dim=2, in_channels=int(optics["n_angles"]) * int(optics["n_phases"]) + 1, out_channels=1,
                         depth=depth, width=width, residual=False)
        # Start as the identity on the classical channel: the correction is learned from zero.
        torch.nn.init.zeros_(self.unet.final.weight)
        torch.nn.init.zeros_(self.unet.final.bias)

    @property
    def divisor(self) -> tuple[int, ...]:
        return self.unet.divisor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, -1:] + self.unet(x)


def classical_channel(frames: np.ndarray, optics: dict[str, Any]) -> np.ndarray:
    """The classical reconstruction (pattern estimated from ``frames``) divided by the frames' mean.

    The classical step's weak-modulation warning is silenced: the network is trained on weak and
    distorted patterns and takes the channel for what it is.
    """
    kw = {"pixel_size": optics["pixel_size"], "na": optics["na"], "wavelength": optics["wavelength"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FluoreconWarning)
        est = estimate_parameters(frames, int(optics["n_angles"]), int(optics["n_phases"]), **kw)
        rec, _ = reconstruct_sim(frames, est, upsample=int(optics["upsample"]), wiener=float(optics["wiener"]), **kw)
    return (rec / max(float(np.mean(frames)), 1e-6)).astype(np.float32)


def _dihedral(a: np.ndarray, code: int) -> np.ndarray:
    a = np.rot90(a, code % 4, axes=(-2, -1))
    return np.ascontiguousarray(a[..., ::-1] if code >= 4 else a)


def _correction_scene(rng: np.random.Generator, optics: dict[str, Any], scene: int,
                      photons: tuple[float, float]) -> tuple[np.ndarray, np.ndarray]:
    """One whole simulated scene: (frames + classical channel, normalised truth), on the fine grid."""
    up = int(optics["upsample"])
    kind = _KINDS[int(rng.integers(len(_KINDS)))]
    truth = np.asarray(phantoms.phantom(kind, (scene, scene), int(rng.integers(2**31 - 1))), np.float64)
    truth = truth + 0.02 * rng.random()
    kc = 2 * optics["na"] / optics["wavelength"] * optics["pixel_size"]
    n_a, n_p = int(optics["n_angles"]), int(optics["n_phases"])
    pat = SIMPattern.regular(n_a, n_p, k=float(rng.uniform(0.7, 0.95) * kc), modulation=float(rng.uniform(0.3, 0.9)),
                             angle0=float(rng.uniform(0, np.pi)), phase0=float(rng.uniform(0, 2 * np.pi)))
    ph = float(np.exp(rng.uniform(np.log(photons[0]), np.log(photons[1]))))
    cam = Camera(photons=ph / max(truth.mean(), 1e-3), gain=1.0, offset=0.0, read_noise=1.0)
    raw, _ = simulate_sim(truth, pat, pixel_size=optics["pixel_size"], na=optics["na"],
                          wavelength=optics["wavelength"], upsample=up, camera=cam, seed=rng,
                          phase_jitter=float(rng.uniform(0.02, 0.3)), contrast=rng.uniform(0.3, 1.0, n_a))
    x, _ = _normalise(raw, up)
    try:
        c = classical_channel(np.asarray(raw, np.float64), optics)
    except FluoreconError:          # an unusable estimate: the network must then do without it
        c = x.mean(axis=0)
    return np.concatenate([x, c[None]]), (truth / truth.mean()).astype(np.float32)


def train_sim_correction(*, n_angles: int, n_phases: int, pixel_size: float, na: float, wavelength: float,
                         steps: int | None = 500, budget_s: float | None = None, scene: int = 128, pool: int = 64,
                         refresh: int = 1, crop: int = 64, batch_size: int = 8, width: int = 16, depth: int = 3, lr: float = 1e-3,
                         wiener: float = 0.05, seed: int = 0, upsample: int = 2,
                         photons: tuple[float, float] = (10.0, 300.0), cpu_budget: bool = False,
                         callback: Callable[[int, float], Any] | None = None) -> tuple[SIMCorrectionNet, dict[str, Any]]:
    """Train :class:`SIMCorrectionNet` on simulated scenes (``scene`` px on the fine grid); ``(model, info)``.

    A pool of ``pool`` scenes is simulated first and ``refresh`` scenes of it are replaced per step
    (the classical estimate costs more than a step); each step trains on random ``crop``² windows. ``budget_s`` counts the pool's simulation too:
    process CPU time when ``cpu_budget`` (comparable under load), else wall time.
    """
    check_sampling(pixel_size, na, wavelength)
    if steps is None and budget_s is None:
        raise FluoreconError("give steps or budget_s for the SIM correction network's training")
    if scene % (upsample * 2**depth) or crop % 2**depth or crop > scene:
        raise FluoreconError(f"scene {scene} must be a multiple of {upsample * 2**depth} and crop {crop} a multiple "
                             f"of {2**depth} no larger than the scene")
    clock = time.process_time if cpu_budget else time.perf_counter
    rng = seed_everything(seed)
    optics = {"n_angles": n_angles, "n_phases": n_phases, "pixel_size": pixel_size, "na": na,
              "wavelength": wavelength, "wiener": wiener, "upsample": upsample}
    model = SIMCorrectionNet(optics, width=width, depth=depth)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    t0 = clock()
    if steps is not None:       # no more scenes than the steps can draw
        pool = min(pool, batch_size * steps)
    data = [_correction_scene(rng, optics, scene, photons) for _ in range(max(pool, batch_size))]
    losses: list[float] = []
    step = 0
    while True:
        if steps is not None and step >= steps:
            break
        if budget_s is not None and clock() - t0 >= budget_s:
            break
        for _ in range(refresh):
            data[int(rng.integers(len(data)))] = _correction_scene(rng, optics, scene, photons)
        idx = rng.choice(len(data), batch_size, replace=False)
        xs, ys = [], []
        for i in idx:
            code, oy, ox = int(rng.integers(8)), *rng.integers(scene - crop + 1, size=2)
            win = (..., slice(oy, oy + crop), slice(ox, ox + crop))
            xs.append(_dihedral(data[i][0][win], code))
            ys.append(_dihedral(data[i][1][win], code))
        lv = _l1_step(model, opt, np.stack(xs), np.stack(ys))
        step += 1
        losses.append(lv)
        if callback is not None:
            callback(step, lv)
    model.eval()
    info = {"steps": step, "seconds": round(clock() - t0, 2), "clock": "cpu" if cpu_budget else "wall",
            "loss_first": losses[:10], "loss_last": losses[-10:], "optics": optics, "seed": seed,
            "pool": pool, "scene": scene}
    return model, info


@torch.no_grad()
def predict_sim(model: UNet | SIMCorrectionNet, frames: np.ndarray, upsample: int = 2,
                offset: float = 0.0) -> np.ndarray:
    """Reconstruct one plane from its raw frames ``(A·P, Y, X)``; output in the frames' units above ``offset``.

    A :class:`SIMCorrectionNet` computes its classical channel from the same frames (its own optics).
    """
    frames = np.asarray(frames, np.float64) - offset
    x, mean = _normalise(frames, upsample)
    if isinstance(model, SIMCorrectionNet):
        x = np.concatenate([x, classical_channel(frames, model.optics)[None]])
    div = int(max(model.divisor))
    ny, nx = x.shape[-2:]
    py, px = (-ny) % div, (-nx) % div
    t = torch.from_numpy(x)[None]
    if py or px:
        t = F.pad(t, (0, px, 0, py), mode="reflect")
    out = model(t)[0, 0, :ny, :nx].numpy()
    return (out * mean).astype(np.float32)
