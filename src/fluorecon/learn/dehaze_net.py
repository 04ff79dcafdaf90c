"""Learned haze removal: a network trained on the scattering forward model predicts the haze component.

The haze of :class:`fluorecon.physics.scattering.HazeForward` is smooth but depends on the structures
(a halo proportional to the local signal), which a lower-envelope estimate cannot follow under
dense bright regions. This network works on a 4× block-averaged copy of the plane (the haze is smooth;
the receptive field covers ≈ 130 px), predicts the haze there, and the result is ``x − upsampled
haze``. It is trained on phantom planes with random depth parameters (α, σ, β) and photon levels.

Examples
--------
>>> from fluorecon.physics.scattering import simulate_haze
>>> net, info = train_dehaze_net(steps=2, patch=64, batch=2, pool=2)
>>> x = simulate_haze((64, 64), seed=3)["recording"]
>>> dehaze_learned(net, x).shape
(64, 64)
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fluorecon.errors import FluoreconError
from fluorecon.physics.phantoms import phantom
from fluorecon.physics.scattering import HazeForward

__all__ = ["DehazeNet", "dehaze_learned", "train_dehaze_net"]

_KINDS = ("mixed", "nuclei", "filaments", "puncta", "membranes")


class DehazeNet(nn.Module):
    """Plane → haze: block-average by ``factor``, dilated 3×3 convolutions, bilinear upsampling."""

    def __init__(self, width: int = 32, factor: int = 4):
        super().__init__()
        self.width, self.factor = int(width), int(factor)
        layers: list[nn.Module] = []
        cin = 2
        for d in (1, 2, 4, 8, 4, 1):
            layers += [nn.Conv2d(cin, width, 3, padding=d, dilation=d, padding_mode="replicate"), nn.ReLU()]
            cin = width
        layers.append(nn.Conv2d(width, 1, 1))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (N, 1, Y, X) in photons-like units; returns the haze estimate (N, 1, Y, X), same units."""
        ny, nx = x.shape[-2:]
        f = self.factor
        py, px = (-ny) % f, (-nx) % f
        xp = F.pad(x, (0, px, 0, py), mode="replicate")
        small = F.avg_pool2d(xp, f)
        scale = small.mean((2, 3), keepdim=True).clamp(min=1e-6)
        s = small / scale
        mn = -F.max_pool2d(-s, 3, 1, 1)  # local minimum: a cue for the haze floor
        h = F.softplus(self.body(torch.cat([s, mn], 1))) * scale
        h = F.interpolate(h, size=xp.shape[-2:], mode="bilinear", align_corners=False)
        return h[..., :ny, :nx]

    def config(self) -> dict[str, Any]:
        return {"width": self.width, "factor": self.factor}


def _sample(rng: np.random.Generator, truths: np.ndarray, patch: int) -> tuple[np.ndarray, np.ndarray]:
    i = int(rng.integers(len(truths)))
    oy, ox = (int(v) for v in rng.integers(0, truths.shape[-1] - patch + 1, 2))
    y = truths[i, oy:oy + patch, ox:ox + patch] * rng.uniform(30, 300)
    fwd = HazeForward(alpha=(0.0, 2.0), sigma=(3.0, 24.0), background=(0.0, 5.0), depth=float(rng.uniform()))
    h = fwd.haze(y)
    return rng.poisson(y + h).astype(np.float32), h.astype(np.float32)


def train_dehaze_net(*, steps: int = 800, patch: int = 128, batch: int = 8, pool: int = 32, lr: float = 2e-3,
                     width: int = 32, budget_s: float | None = None, seed: int = 0,
                     progress: Any = None) -> tuple[DehazeNet, dict[str, Any]]:
    """Train :class:`DehazeNet` on simulated hazy phantom planes (random depth, photons 30–300).

    Returns ``(net, info)`` with ``steps``, ``seconds``, ``loss``.
    """
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    size = int(patch * 1.5)
    truths = np.stack([phantom(_KINDS[i % len(_KINDS)], (size, size), seed=int(rng.integers(2**31)))
                       for i in range(pool)]).astype(np.float32)
    net = DehazeNet(width)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    losses: list[float] = []
    step = 0
    for step in range(1, steps + 1):
        xs, hs = zip(*(_sample(rng, truths, patch) for _ in range(batch)), strict=True)
        x = torch.as_tensor(np.stack(xs))[:, None]
        h = torch.as_tensor(np.stack(hs))[:, None]
        scale = x.mean((2, 3), keepdim=True).clamp(min=1e-6)
        loss = torch.mean(((net(x) - h) / scale) ** 2)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if progress is not None:
            progress(step / steps, f"training step {step} (loss {loss.item():.4g})")
        if budget_s is not None and time.perf_counter() - t0 > budget_s:
            break
    net.eval()
    return net, {"steps": step, "seconds": round(time.perf_counter() - t0, 2), "loss": float(np.mean(losses[-20:])),
                 **net.config()}


def dehaze_learned(net: DehazeNet, image: Any) -> np.ndarray:
    """Remove the haze of every plane of ``image`` (…, Y, X) with a trained :class:`DehazeNet`."""
    x = np.asarray(image, np.float32)
    if x.ndim < 2:
        raise FluoreconError(f"dehaze needs a 2D plane or a stack, got shape {x.shape}")
    planes = torch.as_tensor(x.reshape(-1, 1, *x.shape[-2:]))
    with torch.no_grad():
        h = torch.cat([net(planes[i:i + 8]) for i in range(0, len(planes), 8)])
    return torch.clamp(planes - h, min=0).reshape(x.shape).numpy().astype(np.float32)
