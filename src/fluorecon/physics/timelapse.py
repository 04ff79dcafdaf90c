"""Simulated fluorescence time-lapses with ground truth: moving, deforming structures, bleaching, camera noise.

Unlike :func:`fluorecon.physics.motion.advected_movie` (which warps the previous frame, so a long movie
accumulates interpolation blur), every frame here is warped directly from one fixed specimen by a
displacement field that is a smooth function of time: a drift plus a periodic deformation. Hundreds of
frames stay as sharp as the first, and frame ``t`` is known exactly.

Examples
--------
>>> sim = simulate_timelapse((32, 32), n_frames=8, seed=0)
>>> sim["movie"].shape, sim["truth"].shape, sim["movie"].dtype.name
((8, 32, 32), (8, 32, 32), 'float32')
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from fluorecon.errors import FluoreconError
from fluorecon.physics import phantoms
from fluorecon.physics.camera import Camera
from fluorecon.physics.motion import smooth_flow, warp

__all__ = ["simulate_timelapse"]


def simulate_timelapse(shape: Sequence[int] = (64, 64), n_frames: int = 100, *, speed: float = 0.2,
                       deformation: float = 1.5, period: float = 40.0, smoothness: float = 10.0,
                       bleaching: float = 0.3, photons: float = 20.0, read_noise: float = 2.0, gain: float = 1.0,
                       offset: float = 100.0, background: float = 0.02, kind: str = "mixed",
                       seed: int | np.random.Generator | None = 0) -> dict[str, Any]:
    """A time-lapse ``(T, Y, X)`` of a drifting, deforming, bleaching specimen with Poisson–Gaussian noise.

    Frame ``t`` is the specimen warped by ``speed·t·d + deformation·sin(2πt/period + φ)·u`` (``d`` a
    random unit direction, ``u`` a smooth random field of unit RMS), times the bleaching factor
    ``exp(−bleaching·t/(T−1))``, recorded by a :class:`~fluorecon.physics.camera.Camera`.

    Parameters
    ----------
    shape : (int, int)
        Frame size (Y, X) in pixels.
    n_frames : int
        Number of frames (≥ 2).
    speed : float
        Drift in pixels per frame.
    deformation : float
        RMS amplitude (pixels) of the periodic deformation.
    period : float
        Period of the deformation in frames.
    smoothness : float
        Spatial smoothness (pixels) of the deformation field.
    bleaching : float
        Total bleaching over the movie: the last frame is ``exp(−bleaching)`` times as bright.
    photons, read_noise, gain, offset, background : float
        Camera: expected photons at intensity 1, read noise (e-), gain (ADU/e-), offset (ADU) and
        background (photons).
    kind : str
        Phantom kind (:data:`fluorecon.physics.phantoms.KINDS`).
    seed : int or Generator, optional
        Randomness of the specimen, the motion and the noise.

    Returns
    -------
    dict
        ``movie`` (T, Y, X) float32 ADU; ``truth`` (T, Y, X) float32 in [0, 1] (noiseless signal);
        ``expected`` (T, Y, X) the noiseless recording in ADU (``camera.expected(truth)``); ``camera``
        the :class:`Camera`; ``bleach`` (T,) factors.

    Examples
    --------
    >>> s = simulate_timelapse((32, 32), n_frames=4, speed=0.0, deformation=0.0, bleaching=0.0, seed=1)
    >>> bool(np.allclose(s["truth"][0], s["truth"][3]))
    True
    """
    if n_frames < 2:
        raise FluoreconError(f"a time-lapse needs at least 2 frames, got {n_frames}", hint="n_frames=100")
    shape = tuple(int(s) for s in shape)
    if len(shape) != 2:
        raise FluoreconError(f"frames must be 2D (Y, X), got shape {shape}")
    rng = np.random.default_rng(seed) if not isinstance(seed, np.random.Generator) else seed
    margin = int(np.ceil(speed * n_frames + 3 * deformation + 8))
    big = tuple(s + 2 * margin for s in shape)
    specimen = phantoms.phantom(kind, big, seed=int(rng.integers(1 << 30))).astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi)
    direction = np.array([np.sin(angle), np.cos(angle)], np.float32)
    u = smooth_flow(big, amplitude=1.0, smoothness=smoothness, seed=rng)
    phase = rng.uniform(0, 2 * np.pi)
    crop = (slice(margin, margin + shape[0]), slice(margin, margin + shape[1]))
    frames = []
    bleach = np.exp(-bleaching * np.arange(n_frames) / max(n_frames - 1, 1)).astype(np.float32)
    for t in range(n_frames):
        disp = (speed * t) * direction[:, None, None] + deformation * np.sin(2 * np.pi * t / period + phase) * u
        frames.append(warp(specimen, disp.astype(np.float32), order=3)[crop] * bleach[t])
    truth = np.clip(np.stack(frames), 0, None).astype(np.float32)
    cam = Camera(photons=photons, gain=gain, offset=offset, read_noise=read_noise, background=background * photons)
    movie = cam.simulate(truth, seed=rng)
    return {"movie": movie.astype(np.float32), "truth": truth, "expected": np.asarray(cam.expected(truth), np.float32),
            "camera": cam, "bleach": bleach}
