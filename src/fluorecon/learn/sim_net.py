"""Learned SIM reconstruction: a U-Net that maps the raw frames to the super-resolved image.

Trained on raw frames simulated with :mod:`fluorecon.physics.sim` for the user's optics (NA, wavelength,
pixel size, angles × phases) over varied structures (every phantom kind of the physics layer), pattern
parameters drawn at random (angle offset, frequency 0.7–0.95 of the OTF cut-off, phases with jitter,
modulation 0.3–0.9 — the network is never told them) and photon levels from 10 to 300 per pixel.
The frames are Fourier-interpolated to the output grid and divided by their mean, so the network sees
the same input whatever the exposure; its output is the specimen relative to its mean, rescaled to the
recording's units.

Examples
--------
>>> model, info = train_sim_net(n_angles=3, n_phases=3, pixel_size=0.08, na=1.2, wavelength=0.52,
...                             steps=2, patch=32, batch_size=2, width=8, depth=1, seed=0)
>>> frames = np.random.default_rng(0).poisson(20, (9, 16, 16)).astype(np.float32)
>>> predict_sim(model, frames).shape
(32, 32)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.nn import functional as F

from fluorecon.errors import FluoreconError
from fluorecon.learn.nets import UNet
from fluorecon.physics import phantoms
from fluorecon.physics.camera import Camera
from fluorecon.physics.sim import SIMPattern, check_sampling, fourier_pad, simulate_sim
from fluorecon.utils import seed_everything

__all__ = ["predict_sim", "simulate_training_pair", "train_sim_net"]

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
        x = torch.from_numpy(np.stack(xs))
        y = torch.from_numpy(np.stack(ys))[:, None]
        model.train()
        loss = F.l1_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        step += 1
        lv = float(loss.detach())
        losses.append(lv)
        if callback is not None:
            callback(step, lv)
    model.eval()
    info = {"steps": step, "seconds": round(time.perf_counter() - t0, 2), "loss_first": losses[:10],
            "loss_last": losses[-10:], "optics": {"na": na, "wavelength": wavelength, "pixel_size": pixel_size},
            "frames": n_angles * n_phases, "upsample": upsample, "seed": seed}
    return model, info


@torch.no_grad()
def predict_sim(model: UNet, frames: np.ndarray, upsample: int = 2, offset: float = 0.0) -> np.ndarray:
    """Reconstruct one plane from its raw frames ``(A·P, Y, X)``; output in the frames' units above ``offset``."""
    frames = np.asarray(frames, np.float64) - offset
    x, mean = _normalise(frames, upsample)
    div = int(max(model.divisor))
    ny, nx = x.shape[-2:]
    py, px = (-ny) % div, (-nx) % div
    t = torch.from_numpy(x)[None]
    if py or px:
        t = F.pad(t, (0, px, 0, py), mode="reflect")
    out = model(t)[0, 0, :ny, :nx].numpy()
    return (out * mean).astype(np.float32)
