"""Learned light-field reconstruction: a VCD-style network from the light-field views to the volume.

VCD-Net (Wang et al. 2021) rearranges the rectified light field into its ``Nnum²`` views, brings
them to the full lateral grid and lets a U-Net output one channel per depth. Here the views are
upsampled (bilinear) by ``Nnum`` and fed to :class:`fluorecon.learn.nets.UNet` (2D,
``Nnum²`` (+ ``depths`` back-projection channels ``Aᵀd/Aᵀ1``, default) → ``depths`` channels,
clamped at 0 at inference; linear while training, so that sparse targets cannot kill the output). It is trained on light fields simulated with the
wave-optics operator of the user's optics (:mod:`fluorecon.physics.lightfield`, the same kernels,
on small patches) from varied 3D structures (puncta, filaments, nuclei, membranes, mixed) at
random photon levels. Inputs are divided by their mean, targets by the same number (the operator
is linear), so the network's output times the light field's mean is the volume in the units of
Richardson–Lucy's (``A·volume ≈ light field``).

Examples
--------
>>> from fluorecon.physics.lightfield import LightFieldOperator, LightFieldOptics
>>> o = LightFieldOptics(20, 0.5, 0.52, 1.0, 100.0, 2000.0, 5, osr=1)
>>> op = LightFieldOperator(o, [-2.0, 0.0, 2.0], (20, 20))
>>> net, info = train_lightfield_net(op, steps=2, patch_lenslets=4, batch_size=2, width=8, seed=0)
>>> predict_lightfield(net, np.ones((20, 20), np.float32), operator=op).shape
(3, 20, 20)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from fluorecon.errors import FluoreconError
from fluorecon.learn.nets import UNet
from fluorecon.physics import phantoms
from fluorecon.physics.camera import Camera
from fluorecon.physics.lightfield import LightFieldOperator, check_rectified
from fluorecon.utils import seed_everything

__all__ = ["LightFieldNet", "predict_lightfield", "simulate_volume", "train_lightfield_net"]

_KINDS = ("puncta", "filaments", "nuclei", "membranes", "mixed")


class LightFieldNet(nn.Module):
    """Views ``(B, N², Ly, Lx)`` (+ optionally the normalised back projection) → volume ``(B, D, Ly·N, Lx·N)``.

    With ``backprojection=True`` the input also holds ``Aᵀd / Aᵀ1`` (one channel per depth): the
    physics already sorts the light by depth, and a short CPU training only has to sharpen it.
    """

    def __init__(self, nnum: int, depths: int, width: int = 32, depth: int = 2, backprojection: bool = True):
        super().__init__()
        self.nnum, self.n_depths, self.backprojection = int(nnum), int(depths), bool(backprojection)
        cin = nnum * nnum + (depths if backprojection else 0)
        self.unet = UNet(dim=2, in_channels=cin, out_channels=depths, depth=depth, width=width, residual=False)

    def config(self) -> dict[str, Any]:
        return {"nnum": self.nnum, "depths": self.n_depths, "backprojection": self.backprojection,
                "unet": self.unet.config()}

    def forward(self, lf: torch.Tensor, bp: torch.Tensor | None = None) -> torch.Tensor:
        """``lf``: rectified light fields ``(B, Ly·N, Lx·N)`` (normalised); ``bp``: ``(B, D, Ly·N, Lx·N)``."""
        n = self.nnum
        b, y, x = lf.shape
        views = lf.reshape(b, y // n, n, x // n, n).permute(0, 2, 4, 1, 3).reshape(b, n * n, y // n, x // n)
        up = F.interpolate(views, scale_factor=n, mode="bilinear", align_corners=False)
        if self.backprojection:
            if bp is None:
                raise FluoreconError("this light-field network needs the back projection as input",
                                     hint="pass the operator to predict_lightfield")
            up = torch.cat([up, bp], dim=1)
        div = np.broadcast_to(np.asarray(self.unet.divisor), (2,))
        py, px = (-y) % int(div[-2]), (-x) % int(div[-1])
        if py or px:
            up = F.pad(up, (0, px, 0, py), mode="reflect" if min(y, x) > max(py, px) else "replicate")
        out = self.unet(up)[..., :y, :x]
        # linear while training (a saturated softplus/ReLU head can die on sparse targets), ≥ 0 after
        return out if self.training else out.clamp(min=0)


def simulate_volume(rng: np.random.Generator, shape: tuple[int, int, int]) -> np.ndarray:
    """A random 3D structure in [0, 1] (one phantom kind per draw, sparse in depth).

    Examples
    --------
    >>> simulate_volume(np.random.default_rng(0), (3, 20, 20)).shape
    (3, 20, 20)
    """
    kind = _KINDS[int(rng.integers(len(_KINDS)))]
    d = shape[0]
    big = (max(d, 4), *shape[1:])
    vol = np.asarray(phantoms.phantom(kind, big, int(rng.integers(2**31 - 1))), np.float32)[:d]
    keep = rng.random(d) < 0.7
    keep[int(rng.integers(d))] = True
    return vol * keep[:, None, None].astype(np.float32)


def train_lightfield_net(operator: LightFieldOperator, *, steps: int | None = None, budget_s: float | None = 120.0,
                         patch_lenslets: int = 8, batch_size: int = 4, width: int = 32, depth: int = 2,
                         photons: tuple[float, float] = (50.0, 5000.0), lr: float = 2e-3, seed: int = 0,
                         backprojection: bool = True,
                         callback: Callable[[int, float], Any] | None = None) -> tuple[LightFieldNet, dict[str, Any]]:
    """Train a :class:`LightFieldNet` on light fields simulated through ``operator``'s kernels.

    Training stops after ``steps`` or ``budget_s`` seconds (whichever is given; ``steps`` wins).
    ``photons``: range (log-uniform) of the photons a voxel of value 1 emits (the phantoms are in [0, 1]).
    ``callback(step, loss)`` is called every step (may raise to cancel). Returns ``(net, info)``.
    """
    if steps is None and budget_s is None:
        raise FluoreconError("give steps or budget_s")
    seed_everything(seed)
    rng = np.random.default_rng(seed)
    n, d = operator.nnum, len(operator.depths)
    p = int(min(patch_lenslets, max(operator.lenslets)))
    patch_op = LightFieldOperator(operator.optics, operator.depths, (p * n, p * n), kernels=operator.kernels,
                                  max_memory_gb=1e9)
    net = LightFieldNet(n, d, width=width, depth=depth, backprojection=backprojection)
    sens = patch_op.sensitivity().clamp(min=1e-6)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    t0 = time.perf_counter()
    losses: list[float] = []
    step = 0
    while True:
        if steps is not None and step >= steps:
            break
        if steps is None and time.perf_counter() - t0 >= float(budget_s):
            break
        xs, ys, bps = [], [], []
        for _ in range(batch_size):
            vol = simulate_volume(rng, (d, p * n, p * n))
            clean = patch_op.forward(vol)
            ph = float(np.exp(rng.uniform(np.log(photons[0]), np.log(photons[1]))))
            cam = Camera(photons=ph, gain=1.0, offset=0.0, read_noise=1.0)
            lf = cam.simulate(np.clip(clean, 0, None), seed=rng) / cam.photons
            s = max(float(lf.mean()), 1e-6)
            xs.append(lf / s)
            ys.append(vol / s)
            if backprojection:
                bps.append(patch_op.adjoint(torch.from_numpy((lf / s).astype(np.float32))) / sens)
        x = torch.from_numpy(np.stack(xs).astype(np.float32))
        y = torch.from_numpy(np.stack(ys).astype(np.float32))
        net.train()
        loss = F.mse_loss(net(x, torch.stack(bps) if backprojection else None), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        step += 1
        losses.append(loss.item())
        if callback is not None:
            callback(step, losses[-1])
    net.eval()
    return net, {"steps": step, "seconds": round(time.perf_counter() - t0, 2), "final_loss": float(np.mean(losses[-20:]))
                 if losses else None, "patch_lenslets": p, "config": net.config()}


def predict_lightfield(net: LightFieldNet, lightfield: Any, offset: float = 0.0,
                       operator: LightFieldOperator | None = None) -> np.ndarray:
    """Reconstruct a volume ``(D, Y, X)`` from a rectified light field with a trained network.

    ``operator`` (for this light field's size) gives the back-projection input of networks trained
    with it. The output is in RL's units (``A·volume ≈ light field − offset``).
    """
    lf = np.clip(np.asarray(lightfield, np.float32) - offset, 0, None)
    check_rectified(lf.shape, net.nnum)
    s = max(float(lf.mean()), 1e-6)
    x = torch.from_numpy(lf / s)
    bp = None
    if net.backprojection:
        if operator is None:
            raise FluoreconError("this light-field network needs the operator for its back-projection input",
                                 hint="predict_lightfield(net, lf, operator=LightFieldOperator(...))")
        bp = (operator.adjoint(x) / operator.sensitivity().clamp(min=1e-6))[None]
    with torch.no_grad():
        out = net(x[None], bp)[0].numpy()
    return (out * s).astype(np.float32)
