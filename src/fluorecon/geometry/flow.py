"""Optical flow of fluorescence time-lapses: TV-L1 / iLK baselines and a CNN.

Flow convention (scikit-image's): ``flows[t]`` has shape ``(ndim, *S)`` in **pixels per frame** and
``movie[t](x) ≈ movie[t+1](x + flows[t](x))`` — content at ``x`` in frame ``t`` is found at
``x + flows[t](x)`` in frame ``t+1``. Multiply by the pixel size (µm) for µm/frame.

Methods
-------
- ``"tvl1"``: :func:`skimage.registration.optical_flow_tvl1` (classical baseline);
- ``"ilk"``: :func:`skimage.registration.optical_flow_ilk`;
- ``"cnn"``: a :class:`~fluorecon.geometry.nets.DisplacementNet` trained **on simulated fluorescence
  flows** (:mod:`fluorecon.physics.motion` textures advected by random smooth flows, photobleaching
  and Poisson noise at random photon levels; supervised endpoint-error loss), optionally fine-tuned
  **unsupervised** on the user's movie (photometric Charbonnier loss on locally normalised frames —
  insensitive to bleaching — plus a smoothness penalty). Frames are standardised one by one.

Examples
--------
>>> from fluorecon.physics import motion
>>> sim = motion.advected_movie((48, 48), n_frames=2, photons=None, seed=0)
>>> f, info = estimate_flow(sim["movie"], method="tvl1")
>>> f.shape, info["method"]
((1, 2, 48, 48), 'tvl1')
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from skimage.registration import optical_flow_ilk, optical_flow_tvl1

from fluorecon.errors import FluoreconError
from fluorecon.geometry.nets import (
    DisplacementNet,
    charbonnier,
    cosine_lr,
    local_normalize,
    normalize_frame,
    smoothness,
    warp_tensor,
)
from fluorecon.geometry.pairwise import phase_correlation
from fluorecon.physics import motion, phantoms

__all__ = ["METHODS", "clone_net", "cnn_flow", "endpoint_error", "estimate_flow", "finetune_unsupervised", "flow_ilk",
           "flow_tvl1", "photometric_residual", "train_flow_simulated"]

METHODS = ("tvl1", "ilk", "cnn")
_MODEL_CACHE: dict[tuple, DisplacementNet] = {}


def _check_movie(movie: np.ndarray) -> np.ndarray:
    movie = np.asarray(movie, np.float32)
    if movie.ndim < 3:
        raise FluoreconError(f"optical flow needs a movie (T, Y, X) with at least 2 frames, got shape {movie.shape}",
                             hint="give a time-lapse with a T axis (one frame has no motion to measure)")
    if movie.shape[0] < 2:
        raise FluoreconError("optical flow needs at least 2 frames; the movie has 1",
                             hint="give a time-lapse with a T axis of length ≥ 2")
    if not np.all(np.isfinite(movie)):
        raise FluoreconError("the movie contains NaN or Inf values")
    if min(movie.shape[1:]) < 8:
        raise FluoreconError(f"frames of shape {movie.shape[1:]} are too small for optical flow", hint="≥ 8 px per axis")
    return movie


def endpoint_error(flow: np.ndarray, truth: np.ndarray, border: int = 0) -> float:
    """Mean endpoint error (px) between flow fields ``(…, ndim, *S)``, optionally ignoring a border.

    Examples
    --------
    >>> endpoint_error(np.zeros((2, 4, 4)), np.ones((2, 4, 4)))
    1.4142135...
    """
    d = np.asarray(flow, np.float64) - np.asarray(truth, np.float64)
    nd = 2 if d.ndim in (3, 4) and d.shape[-3] == 2 else d.shape[-4] if d.ndim >= 4 else 2
    e = np.sqrt((d**2).sum(axis=-nd - 1))
    if border:
        e = e[(..., *[slice(border, -border)] * nd)]
    return float(e.mean())


def photometric_residual(movie: np.ndarray, flows: np.ndarray) -> np.ndarray:
    """Per pair: RMS of ``frame_t − frame_{t+1}(x + f)`` on standardised frames (0 = perfect; ~1.4 = unrelated)."""
    out = []
    for t in range(len(flows)):
        a = normalize_frame(movie[t])[None, None]
        b = normalize_frame(movie[t + 1])[None, None]
        w = warp_tensor(b, torch.as_tensor(np.asarray(flows[t], np.float32))[None])
        out.append(float(torch.sqrt(((w - a) ** 2).mean())))
    return np.array(out)


# ------------------------------------------------------------------------------------------- classical
def flow_tvl1(movie: np.ndarray, **kw: Any) -> np.ndarray:
    """TV-L1 flow between consecutive frames (scikit-image), on standardised frames.

    Examples
    --------
    >>> flow_tvl1(np.random.default_rng(0).random((2, 16, 16))).shape
    (1, 2, 16, 16)
    """
    movie = _check_movie(movie)
    fr = [normalize_frame(f).numpy() for f in movie]
    return np.stack([optical_flow_tvl1(fr[t], fr[t + 1], **kw) for t in range(len(fr) - 1)]).astype(np.float32)


def flow_ilk(movie: np.ndarray, **kw: Any) -> np.ndarray:
    """Iterative Lucas–Kanade flow between consecutive frames (scikit-image), on standardised frames."""
    movie = _check_movie(movie)
    fr = [normalize_frame(f).numpy() for f in movie]
    return np.stack([optical_flow_ilk(fr[t], fr[t + 1], **kw) for t in range(len(fr) - 1)]).astype(np.float32)


# ------------------------------------------------------------------------------------------------- CNN
def _texture_pool(n: int, size: int, seed: int) -> list[torch.Tensor]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        kind = rng.choice(["mixed", "filaments", "puncta", "membranes", "nuclei"])
        t = phantoms.phantom(str(kind), (size, size), seed=int(rng.integers(1 << 30)))
        t = t + rng.uniform(0.1, 0.6) * motion.procedural_specimen((0, 0), (size, size), seed=int(rng.integers(1 << 30)))
        out.append(torch.from_numpy(np.asarray(t, np.float32)))
    return out


def _random_flows(b: int, shape: tuple[int, int], amp: float, gen: torch.Generator) -> torch.Tensor:
    lo = torch.randn(b, 2, 6, 6, generator=gen)
    u = F.interpolate(lo, size=shape, mode="bicubic", align_corners=True)
    scale = amp * torch.rand(b, 1, 1, 1, generator=gen)
    u = u / u.std(dim=(2, 3), keepdim=True).clamp_min(1e-6) * scale
    u = u + amp * (2 * torch.rand(b, 2, 1, 1, generator=gen) - 1)
    return u


def simulate_flow_batch(textures: list[torch.Tensor], batch: int, patch: int, amp: float, gen: torch.Generator,
                        photons: tuple[float, float] = (3.0, 300.0), bleach: tuple[float, float] = (0.6, 1.0)
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch of simulated fluorescence frame pairs and their true flows (frame_t, frame_t1, flow)."""
    pad = int(np.ceil(2 * amp)) + 2
    crops = []
    for _ in range(batch):
        t = textures[int(torch.randint(len(textures), (1,), generator=gen))]
        y0 = int(torch.randint(t.shape[0] - patch - 2 * pad, (1,), generator=gen))
        x0 = int(torch.randint(t.shape[1] - patch - 2 * pad, (1,), generator=gen))
        c = t[y0:y0 + patch + 2 * pad, x0:x0 + patch + 2 * pad]
        if torch.rand(1, generator=gen) < 0.5:
            c = c.flip(0)
        if torch.rand(1, generator=gen) < 0.5:
            c = c.transpose(0, 1)
        crops.append(c)
    big = torch.stack(crops)[:, None]
    full = (patch + 2 * pad,) * 2
    flow = _random_flows(batch, full, amp, gen)
    f1 = big
    f0 = warp_tensor(f1, flow)
    sl = (slice(None), slice(None), slice(pad, pad + patch), slice(pad, pad + patch))
    f0, f1, flow = f0[sl], f1[sl], flow[sl]
    lo, hi = np.log(photons[0]), np.log(photons[1])
    ph = torch.exp(lo + (hi - lo) * torch.rand(batch, 1, 1, 1, generator=gen))
    bl = bleach[0] + (bleach[1] - bleach[0]) * torch.rand(batch, 1, 1, 1, generator=gen)
    bg = 0.05
    n0 = torch.poisson((f0 + bg) * ph, generator=gen) / ph
    n1 = torch.poisson((f1 * bl + bg) * ph, generator=gen) / ph

    def std(x: torch.Tensor) -> torch.Tensor:
        m = x.mean(dim=(2, 3), keepdim=True)
        s = x.std(dim=(2, 3), keepdim=True).clamp_min(1e-6)
        return (x - m) / s

    return std(n0), std(n1), flow


def train_flow_simulated(steps: int = 300, *, patch: int = 96, batch: int = 8, amplitude: float = 3.0,
                         levels: int = 4, finest: int = 2, width: int = 16, depth: int = 2, lr: float = 2e-3,
                         seed: int = 0,
                         budget_s: float | None = None, progress: Callable[[float, str], Any] | None = None,
                         cache: bool = True) -> DisplacementNet:
    """Train the CNN flow on simulated fluorescence flows (supervised endpoint error).

    Parameters
    ----------
    steps : int
        Optimiser steps (stops earlier at ``budget_s`` seconds if given).
    patch, batch : int
        Training patch size and batch size.
    amplitude : float
        Largest simulated displacement scale (px): flows have RMS up to ``amplitude`` plus a
        translation up to ``amplitude``.
    levels, finest : int
        Pyramid levels of the coarse-to-fine inference (used in training too) and the finest level
        estimated (2: a quarter of the resolution, then upsampled; flows are smooth).
    seed : int
    cache : bool
        Reuse a net trained with the same settings in this process.

    Examples
    --------
    >>> net = train_flow_simulated(steps=2, patch=32, batch=2, width=4, depth=2, cache=False)
    >>> type(net).__name__
    'DisplacementNet'
    """
    key = (steps, patch, batch, amplitude, levels, finest, width, depth, lr, seed, budget_s)
    if cache and key in _MODEL_CACHE:
        return _MODEL_CACHE[key]
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = DisplacementNet(dim=2, width=width, depth=depth, levels=levels, max_disp=max(2.0, amplitude) / 2**finest,
                          smooth_sigma=0.5, finest=finest)
    textures = _texture_pool(6, max(192, patch + 4 * int(np.ceil(2 * amplitude)) + 16), seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    t0 = time.perf_counter()
    net.train()
    for k in range(steps):
        cosine_lr(opt, lr, k, steps, time.perf_counter() - t0, budget_s)
        f0, f1, flow = simulate_flow_batch(textures, batch, patch, amplitude, gen)
        pred = net(f0, f1)
        epe = torch.sqrt(((pred - flow) ** 2).sum(1) + 1e-6).mean()
        opt.zero_grad()
        epe.backward()
        opt.step()
        if progress is not None:
            progress((k + 1) / steps, f"flow training step {k + 1} (EPE {float(epe.detach()):.3f} px)")
        if budget_s is not None and time.perf_counter() - t0 > budget_s:
            break
    net.eval()
    net.trained_steps = k + 1  # type: ignore[attr-defined]
    if cache:
        _MODEL_CACHE[key] = net
    return net


def finetune_unsupervised(net: DisplacementNet, movie: np.ndarray, steps: int = 100, *, patch: int = 64,
                          lr: float = 5e-4, smooth_weight: float = 0.5, seed: int = 0,
                          progress: Callable[[float, str], Any] | None = None) -> DisplacementNet:
    """Fine-tune a flow net on the user's movie without ground truth (photometric + smoothness loss).

    The photometric term compares locally normalised frames (Charbonnier penalty), so photobleaching
    and shading do not bias the flow; Poisson noise is tempered by the normalisation's smoothing.
    """
    movie = _check_movie(movie)
    gen = torch.Generator().manual_seed(seed)
    frames = torch.stack([normalize_frame(f) for f in movie])[:, None]
    T, _, H, W = frames.shape
    p = min(patch, H, W)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    net.train()
    for k in range(steps):
        t = int(torch.randint(T - 1, (1,), generator=gen))
        y0 = int(torch.randint(H - p + 1, (1,), generator=gen))
        x0 = int(torch.randint(W - p + 1, (1,), generator=gen))
        a = frames[t:t + 1, :, y0:y0 + p, x0:x0 + p]
        b = frames[t + 1:t + 2, :, y0:y0 + p, x0:x0 + p]
        u = net(a, b)
        w = warp_tensor(b, u)
        loss = charbonnier(local_normalize(w, 3.0) - local_normalize(a, 3.0), 0.1) + smooth_weight * smoothness(u)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if progress is not None:
            progress((k + 1) / steps, f"unsupervised fine-tuning step {k + 1} (loss {float(loss.detach()):.3f})")
    net.eval()
    return net


def clone_net(net: DisplacementNet) -> DisplacementNet:
    """An independent copy of a flow net (e.g. to fine-tune on one movie without touching the cached one)."""
    import copy

    net.unet._bottleneck = None  # a non-leaf tensor kept by the UNet for feature statistics
    return copy.deepcopy(net)


def cnn_flow(movie: np.ndarray, net: DisplacementNet, init: str = "none") -> np.ndarray:
    """Apply a trained flow net to consecutive frame pairs of a 2D movie ``(T, Y, X)``.

    ``init="ilk"`` starts the coarse-to-fine estimate from scikit-image's iLK flow, which the net then
    refines (a hybrid: classical initialisation, learned correction); ``"none"`` starts from zero.
    """
    movie = _check_movie(movie)
    if movie.ndim != 3:
        raise FluoreconError("the CNN flow is 2D (T, Y, X); use method='tvl1' for 3D movies")
    if init not in ("none", "ilk"):
        raise FluoreconError(f"unknown CNN flow initialisation {init!r}", hint="none or ilk")
    start = flow_ilk(movie) if init == "ilk" else None
    out = []
    with torch.no_grad():
        for t in range(len(movie) - 1):
            a = normalize_frame(movie[t])[None, None]
            b = normalize_frame(movie[t + 1])[None, None]
            u0 = None if start is None else torch.from_numpy(start[t])[None]
            out.append(net(a, b, init=u0)[0].numpy())
    return np.stack(out).astype(np.float32)


def estimate_flow(movie: np.ndarray, method: str = "cnn", *, steps: int = 300, budget_s: float | None = None,
                  finetune_steps: int = 0, seed: int = 0, net: DisplacementNet | None = None,
                  progress: Callable[[float, str], Any] | None = None, **kw: Any) -> tuple[np.ndarray, dict[str, Any]]:
    """Flow between consecutive frames of a movie ``(T, *S)`` → ``(T−1, ndim, *S)`` px/frame, and info.

    Parameters
    ----------
    movie : ndarray
        Time first; at least 2 frames (a single frame is refused with a clear error).
    method : {"cnn", "tvl1", "ilk"}
    steps, budget_s, seed : CNN training on simulated flows (see :func:`train_flow_simulated`).
    finetune_steps : int
        CNN: extra unsupervised steps on this movie.
    net : DisplacementNet, optional
        A trained CNN to reuse.
    **kw
        Passed to scikit-image for tvl1/ilk.

    Returns
    -------
    flows, info
        info: ``method``, ``photometric_residual`` (per pair, standardised units), ``pair_confidence``
        (phase-correlation confidence of each frame pair: < 0.1 = no common content, warned), ``seconds``,
        ``warnings``.
    """
    movie = _check_movie(movie)
    if method not in METHODS:
        raise FluoreconError(f"unknown flow method {method!r}", hint=f"use one of {', '.join(METHODS)}")
    t0 = time.perf_counter()
    info: dict[str, Any] = {"method": method, "warnings": []}
    if method == "tvl1":
        flows = flow_tvl1(movie, **kw)
    elif method == "ilk":
        flows = flow_ilk(movie, **kw)
    else:
        if movie.ndim != 3:
            raise FluoreconError("the CNN flow is 2D (T, Y, X)", hint="use --method tvl1 for 3D movies")
        if net is None:
            net = train_flow_simulated(steps, seed=seed, budget_s=budget_s, progress=progress)
        if finetune_steps:
            net = finetune_unsupervised(clone_net(net), movie, finetune_steps, seed=seed)
        flows = cnn_flow(movie, net)
        info["trained_steps"] = int(getattr(net, "trained_steps", steps))
        info["net"] = net.config()
    res = photometric_residual(movie, flows) if movie.ndim == 3 else np.array([])
    info["photometric_residual"] = res.tolist()
    # common-content check per pair (calibrated phase-correlation confidence of the whole frames)
    conf = [phase_correlation(movie[t], movie[t + 1], upsample=1, refine=False).confidence for t in range(len(flows))]
    info["pair_confidence"] = conf
    bad = [t for t, c in enumerate(conf) if c < 0.1]
    if bad:
        info["warnings"].append(f"frame pairs {bad}: consecutive frames share little common content (confidence "
                                "< 0.1): the flow there is unreliable")
    info["seconds"] = round(time.perf_counter() - t0, 3)
    return flows, info
