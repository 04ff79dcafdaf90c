"""Torch building blocks of the learned geometry models: spatial transformer, losses, displacement nets.

- :func:`warp_tensor` — the spatial transformer (``grid_sample``): ``out(x) = image(x + u(x))``;
- :func:`smoothness` — mean squared spatial gradient of a field (voxelmorph's diffusion regulariser);
- :func:`charbonnier`, :func:`local_normalize` — a robust photometric loss on locally normalised
  frames (insensitive to photobleaching and global intensity changes);
- :class:`DisplacementNet` — a :class:`fluorecon.learn.nets.UNet` that takes two images and predicts a
  displacement field in pixels, applied coarse-to-fine over a pyramid (each level refines the
  upsampled field of the coarser one), so that displacements larger than the net's reach are found.

Examples
--------
>>> net = DisplacementNet(dim=2, width=8, depth=2)
>>> u = net(torch.zeros(1, 1, 32, 32), torch.zeros(1, 1, 32, 32))
>>> tuple(u.shape)
(1, 2, 32, 32)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fluorecon.learn.nets import UNet

__all__ = ["DisplacementNet", "charbonnier", "cosine_lr", "identity_grid", "local_normalize", "smoothness", "warp_tensor"]


def cosine_lr(opt: torch.optim.Optimizer, base: float, step: int, steps: int, elapsed: float,
              budget_s: float | None, warmup: float = 0.05) -> None:
    """Set a warm-up + cosine learning rate from the training progress (steps or time budget, whichever is further).

    Examples
    --------
    >>> o = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    >>> cosine_lr(o, 1.0, 50, 100, 0.0, None); round(float(o.param_groups[0]["lr"]), 3)
    0.5
    """
    frac = step / max(steps, 1)
    if budget_s:
        frac = max(frac, elapsed / budget_s)
    frac = min(frac, 1.0)
    lr = base * min(1.0, (frac + 1e-3) / warmup) * 0.5 * (1 + np.cos(np.pi * frac))
    for g in opt.param_groups:
        g["lr"] = float(max(lr, base * 1e-3))


def identity_grid(shape: tuple[int, ...], device: Any = None) -> torch.Tensor:
    """Pixel coordinates ``(1, ndim, *shape)``."""
    g = torch.meshgrid(*[torch.arange(s, dtype=torch.float32, device=device) for s in shape], indexing="ij")
    return torch.stack(g)[None]


def warp_tensor(image: torch.Tensor, field: torch.Tensor, padding_mode: str = "border") -> torch.Tensor:
    """Backward-warp ``image`` (N, C, *S) by ``field`` (N, ndim, *S) in pixels: ``out(x) = image(x + u(x))``.

    Examples
    --------
    >>> img = torch.arange(16.0).reshape(1, 1, 4, 4)
    >>> u = torch.zeros(1, 2, 4, 4); u[:, 1] = 1
    >>> warp_tensor(img, u)[0, 0, 0].tolist()
    [1.0, 2.0, 3.0, 3.0]
    """
    shape = tuple(image.shape[2:])
    nd = len(shape)
    coords = identity_grid(shape, image.device) + field
    norm = [2 * coords[:, d] / max(shape[d] - 1, 1) - 1 for d in range(nd)]
    g = torch.stack(norm[::-1], dim=-1)
    return F.grid_sample(image, g, mode="bilinear", padding_mode=padding_mode, align_corners=True)


def smoothness(field: torch.Tensor) -> torch.Tensor:
    """Mean squared forward difference of a field along every spatial axis.

    Examples
    --------
    >>> float(smoothness(torch.ones(1, 2, 8, 8)))
    0.0
    """
    nd = field.dim() - 2
    tot = field.new_zeros(())
    for d in range(nd):
        tot = tot + (torch.diff(field, dim=2 + d) ** 2).mean()
    return tot


def charbonnier(x: torch.Tensor, eps: float = 1e-2, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Robust penalty ``sqrt(x² + eps²)`` averaged (optionally over a mask)."""
    v = torch.sqrt(x * x + eps * eps)
    if mask is None:
        return v.mean()
    return (v * mask).sum() / mask.sum().clamp_min(1.0)


def _blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    nd = x.dim() - 2
    r = max(int(3 * sigma), 1)
    k = torch.exp(-0.5 * (torch.arange(-r, r + 1, dtype=x.dtype, device=x.device) / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    for d in range(nd):
        shape = [1] * nd
        shape[d] = 2 * r + 1
        w = k.reshape(1, 1, *shape).repeat(c, 1, *([1] * nd))
        pad = [0, 0] * nd
        pad[2 * (nd - 1 - d)] = r
        pad[2 * (nd - 1 - d) + 1] = r
        xp = F.pad(x, pad, mode="replicate")
        x = (F.conv2d if nd == 2 else F.conv3d)(xp, w, groups=c)
    return x


def local_normalize(x: torch.Tensor, sigma: float = 4.0, eps: float = 1e-2) -> torch.Tensor:
    """Subtract the local mean and divide by the local standard deviation (Gaussian windows of ``sigma`` px).

    Invariant to smooth multiplicative intensity changes such as photobleaching and shading.
    """
    mu = _blur(x, sigma)
    d = x - mu
    sd = torch.sqrt(_blur(d * d, sigma) + eps * eps)
    return d / sd


def normalize_frame(x: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Per-image standardisation (robust to bleaching and gain): ``(x − mean) / std`` as a tensor."""
    t = torch.as_tensor(np.asarray(x, np.float32)) if not isinstance(x, torch.Tensor) else x.float()
    return (t - t.mean()) / t.std().clamp_min(1e-6)


class DisplacementNet(nn.Module):
    """Two images in, displacement field (pixels) out: a U-Net applied coarse-to-fine.

    Parameters
    ----------
    dim : int
        2 or 3.
    width, depth : int
        U-Net size.
    levels : int
        Pyramid levels used by :meth:`forward` (factor 2 each); the same net refines at every level.
    max_disp : float
        The net's output is ``max_disp · tanh(·)`` px per level (keeps early training stable).
    smooth_sigma : float
        Gaussian smoothing (px) of each predicted increment (a smooth-field prior, like voxelmorph's).
    finest : int
        Finest pyramid level processed (0 = full resolution; 2 = a quarter): smooth fields need no
        full-resolution estimate, and averaging 2^finest pixels per axis tempers shot noise. The
        field is upsampled (linearly) to full resolution.
    """

    def __init__(self, dim: int = 2, width: int = 16, depth: int = 3, levels: int = 1, max_disp: float = 4.0,
                 smooth_sigma: float = 1.0, finest: int = 0):
        super().__init__()
        self.dim = dim
        self.levels = int(levels)
        self.max_disp = float(max_disp)
        self.smooth_sigma = float(smooth_sigma)
        self.finest = int(finest)
        self.unet = UNet(dim=dim, in_channels=2, out_channels=dim, depth=depth, width=width, residual=False)
        self._cfg = {"dim": dim, "width": width, "depth": depth, "levels": levels, "max_disp": max_disp,
                     "smooth_sigma": smooth_sigma, "finest": finest}

    def config(self) -> dict[str, Any]:
        return dict(self._cfg)

    def _pad(self, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, ...]]:
        div = self.unet.divisor
        shape = tuple(x.shape[2:])
        pad: list[int] = []
        for s, dv in zip(reversed(shape), reversed(div), strict=True):
            pad += [0, (-s) % dv]
        return (F.pad(x, pad, mode="replicate") if any(pad) else x), shape

    def step(self, fixed: torch.Tensor, moving: torch.Tensor) -> torch.Tensor:
        """One level: the increment that warps ``moving`` onto ``fixed``."""
        x, shape = self._pad(torch.cat([fixed, moving], 1))
        u = self.max_disp * torch.tanh(self.unet(x) / self.max_disp)
        u = u[(slice(None), slice(None), *[slice(0, s) for s in shape])]
        if self.smooth_sigma > 0:
            u = _blur(u, self.smooth_sigma)
        return u

    def forward(self, fixed: torch.Tensor, moving: torch.Tensor, levels: int | None = None,
                init: torch.Tensor | None = None) -> torch.Tensor:
        """Field ``u`` such that ``warp_tensor(moving, u) ≈ fixed``; inputs (N, 1, *S), already normalised.

        ``init`` (N, ndim, *S): a starting field (e.g. a classical estimate) that the net refines.
        """
        levels = self.levels if levels is None else int(levels)
        pool = F.avg_pool2d if self.dim == 2 else F.avg_pool3d
        pyr_f, pyr_m = [fixed], [moving]
        for _ in range(max(levels, self.finest + 1) - 1):
            if min(pyr_f[-1].shape[2:]) < 16:
                break
            pyr_f.append(pool(pyr_f[-1], 2))
            pyr_m.append(pool(pyr_m[-1], 2))
        finest = min(self.finest, len(pyr_f) - 1)
        u = None
        mode = "bilinear" if self.dim == 2 else "trilinear"
        for f, m in zip(reversed(pyr_f[finest:]), reversed(pyr_m[finest:]), strict=True):
            if u is None and init is not None:
                k = fixed.shape[2] / f.shape[2]
                u = F.interpolate(init, size=tuple(f.shape[2:]), mode=mode, align_corners=True) / k
            elif u is None:
                u = torch.zeros((f.shape[0], self.dim, *f.shape[2:]), dtype=f.dtype, device=f.device)
            else:
                u = 2 * F.interpolate(u, size=tuple(f.shape[2:]), mode=mode, align_corners=True)
            mw = warp_tensor(m, u)
            u = u + self.step(f, mw)
        if finest > 0:
            u = (2**finest) * F.interpolate(u, size=tuple(fixed.shape[2:]), mode=mode, align_corners=True)
        return u
