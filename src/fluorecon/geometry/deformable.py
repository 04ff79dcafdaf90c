"""Learned unsupervised deformable registration (voxelmorph-style).

A small U-Net (:class:`~fluorecon.geometry.nets.DisplacementNet`) takes (fixed, moving) and predicts a
smooth displacement field ``u`` (pixels); a spatial transformer (``grid_sample``) warps ``moving`` by
``u``. It is trained **on the user's own images**, without ground truth, by minimising

``loss = MSE(smooth(warp(moving, u)), smooth(fixed)) + λ · mean |∇u|²``

on random patches (standardised intensities), as in Balakrishnan et al. (voxelmorph, 2019). After
training, each pair can optionally be polished by a few steps of instance optimisation of the field
itself (same loss, initialised by the net).

Field convention: ``registered(x) = moving(x + u(x)) ≈ fixed(x)``; ``u`` has shape ``(ndim, *fixed.shape)``.

Examples
--------
>>> from fluorecon.physics import motion
>>> s = motion.deformed_series(n_frames=1, shape=(32, 32), affine=False, seed=0)
>>> u, info = register_deformable(s["template"], s["frames"][0], steps=2, width=4, depth=2)
>>> u.shape
(2, 32, 32)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from fluorecon.errors import FluoreconError
from fluorecon.geometry.nets import (
    DisplacementNet,
    _blur,
    cosine_lr,
    normalize_frame,
    smoothness,
    warp_tensor,
)

__all__ = ["instance_optimize", "predict_field", "register_deformable", "similarity_loss", "train_deformable"]


def similarity_loss(warped: torch.Tensor, fixed: torch.Tensor, sigma: float = 1.0) -> torch.Tensor:
    """MSE of Gaussian-smoothed (σ px, against shot noise) standardised images."""
    if sigma > 0:
        warped, fixed = _blur(warped, sigma), _blur(fixed, sigma)
    return ((warped - fixed) ** 2).mean()


def _stack(movings: np.ndarray | Sequence[np.ndarray], nd: int) -> torch.Tensor:
    arr = np.asarray(movings, np.float32)
    if arr.ndim == nd:
        arr = arr[None]
    return torch.stack([normalize_frame(a) for a in arr])[:, None]


def train_deformable(fixed: np.ndarray, movings: np.ndarray | Sequence[np.ndarray], *, steps: int = 200,
                     patch: int = 64, batch: int = 4, smooth_weight: float = 1.0, levels: int = 3, width: int = 16,
                     depth: int = 2, lr: float = 2e-3, max_disp: float = 6.0, finest: int = 1, seed: int = 0,
                     budget_s: float | None = None, progress: Callable[[float, str], Any] | None = None
                     ) -> DisplacementNet:
    """Train a deformable-registration net on images to align with ``fixed`` (unsupervised).

    Parameters
    ----------
    fixed : ndarray
        The template (2D or 3D).
    movings : ndarray or list
        One image or a stack ``(N, *fixed.shape)`` (e.g. the frames of a time-lapse, already
        affinely aligned).
    steps, patch, batch : int
        Optimiser steps, patch size (px per axis) and batch size; random patches and flips.
    smooth_weight : float
        λ of the smoothness penalty (larger = smoother fields).
    levels, width, depth, max_disp, finest : net architecture (see :class:`DisplacementNet`); ``finest=1``
        estimates the field at half resolution (smooth fields; tempers shot noise).
    seed : int
    budget_s : float, optional
        Stop training after this many seconds.

    Returns
    -------
    DisplacementNet
    """
    fixed = np.asarray(fixed, np.float32)
    nd = fixed.ndim
    if nd not in (2, 3):
        raise FluoreconError(f"deformable registration needs 2D or 3D images, got {nd}-D")
    mov = _stack(movings, nd)
    if tuple(mov.shape[2:]) != fixed.shape:
        raise FluoreconError(f"moving images of shape {tuple(mov.shape[2:])} differ from the template {fixed.shape}",
                             hint="align them affinely onto the template grid first (register --model affine)")
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    fx = normalize_frame(fixed)[None, None]
    p = [min(patch, s) for s in fixed.shape]
    net = DisplacementNet(dim=nd, width=width, depth=depth, levels=levels, max_disp=max_disp / 2**finest,
                          finest=finest)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    t0 = time.perf_counter()
    net.train()
    k = 0
    for k in range(steps):
        cosine_lr(opt, lr, k, steps, time.perf_counter() - t0, budget_s)
        fb, mb = [], []
        for _ in range(batch):
            i = int(torch.randint(len(mov), (1,), generator=gen))
            lo = [int(torch.randint(s - q + 1, (1,), generator=gen)) for s, q in zip(fixed.shape, p, strict=True)]
            sl = (slice(None), slice(None), *[slice(a, a + q) for a, q in zip(lo, p, strict=True)])
            f, m = fx[sl], mov[i:i + 1][sl]
            for d in range(nd):
                if torch.rand(1, generator=gen) < 0.5:
                    f, m = f.flip(2 + d), m.flip(2 + d)
            fb.append(f)
            mb.append(m)
        f, m = torch.cat(fb), torch.cat(mb)
        u = net(f, m)
        loss = similarity_loss(warp_tensor(m, u), f) + smooth_weight * smoothness(u)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if progress is not None:
            progress((k + 1) / steps, f"deformable training step {k + 1} (loss {float(loss.detach()):.4f})")
        if budget_s is not None and time.perf_counter() - t0 > budget_s:
            break
    net.eval()
    net.trained_steps = k + 1  # type: ignore[attr-defined]
    return net


def predict_field(net: DisplacementNet, fixed: np.ndarray, moving: np.ndarray) -> np.ndarray:
    """The net's field ``(ndim, *fixed.shape)`` for one pair (whole image)."""
    with torch.no_grad():
        u = net(normalize_frame(fixed)[None, None], normalize_frame(moving)[None, None])
    return u[0].numpy().astype(np.float32)


def instance_optimize(fixed: np.ndarray, moving: np.ndarray, init: np.ndarray | None = None, *, steps: int = 50,
                      smooth_weight: float = 1.0, lr: float = 0.1) -> np.ndarray:
    """Polish a field for one pair by direct optimisation (Adam on the field; same loss as training).

    Examples
    --------
    >>> f = np.random.default_rng(0).random((16, 16)).astype(np.float32)
    >>> instance_optimize(f, f, steps=2).shape
    (2, 16, 16)
    """
    fx = normalize_frame(fixed)[None, None]
    mv = normalize_frame(moving)[None, None]
    nd = fx.dim() - 2
    u0 = torch.zeros((1, nd, *fx.shape[2:])) if init is None else torch.as_tensor(np.asarray(init, np.float32))[None]
    u = u0.clone().requires_grad_(True)
    opt = torch.optim.Adam([u], lr=lr)
    for _ in range(steps):
        loss = similarity_loss(warp_tensor(mv, u), fx) + smooth_weight * smoothness(u)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return u.detach()[0].numpy().astype(np.float32)


def register_deformable(fixed: np.ndarray, moving: np.ndarray, *, net: DisplacementNet | None = None,
                        steps: int = 200, instance_steps: int = 0, seed: int = 0, budget_s: float | None = None,
                        progress: Callable[[float, str], Any] | None = None, **train_kw: Any
                        ) -> tuple[np.ndarray, dict[str, Any]]:
    """Deformable registration of one pair: train (or reuse) the net on the pair, predict, optionally polish.

    Returns
    -------
    field, info
        ``field`` ``(ndim, *fixed.shape)`` px; info: ``loss_before``/``loss_after`` (similarity,
        standardised units), ``trained_steps``, ``smoothness``.
    """
    fixed = np.asarray(fixed, np.float32)
    moving = np.asarray(moving, np.float32)
    if fixed.shape != moving.shape:
        raise FluoreconError(f"deformable registration needs images of one shape, got {fixed.shape} and {moving.shape}",
                             hint="register affinely first (the affine result is resampled onto the fixed grid)")
    if net is None:
        net = train_deformable(fixed, moving, steps=steps, seed=seed, budget_s=budget_s, progress=progress, **train_kw)
    u = predict_field(net, fixed, moving)
    if instance_steps:
        u = instance_optimize(fixed, moving, u, steps=instance_steps,
                              smooth_weight=float(train_kw.get("smooth_weight", 1.0)))
    fx = normalize_frame(fixed)[None, None]
    mv = normalize_frame(moving)[None, None]
    with torch.no_grad():
        before = float(similarity_loss(mv, fx))
        after = float(similarity_loss(warp_tensor(mv, torch.from_numpy(u)[None]), fx))
    info = {"loss_before": before, "loss_after": after, "trained_steps": int(getattr(net, "trained_steps", steps)),
            "smoothness": float(smoothness(torch.from_numpy(u)[None])), "net": net.config()}
    return u, info
