"""Training schemes: what the network sees and what the loss compares.

- ``care``: supervised, noisy/degraded → clean pairs (Weigert et al. 2018).
- ``n2n``: Noise2Noise, pairs of independent noisy recordings (Lehtinen et al. 2018).
- ``n2v``: blind-spot self-supervision (Krull et al. 2019) — our version masks a stratified grid of
  pixels (one per ``grid``-cell, ≈ 6 % by default instead of N2V's 0.2 %, so each step carries ~30× more
  gradient signal), replaces them with the **median** of their neighbourhood (the N2V2 fix; no
  centre pixel), and computes the loss only on masked pixels.
- ``n2v2``: ``n2v`` plus the N2V2 architecture fixes (no top-level skip, max-blur pooling).
- ``structn2v``: ``n2v`` plus a structured mask: neighbours along one axis (within ``struct_span``)
  are also replaced, for noise correlated along that axis (Broaddus et al. 2020).
- ``nb2nb``: Neighbor2Neighbor (Huang et al. 2021), the fast single-image scheme: two sub-images are
  drawn from random neighbouring pixels of every 2×2 cell; the net maps one to the other, with the
  regulariser that ties the sub-sampled full-resolution output to the pair. Every pixel contributes to
  the loss (vs a few % for blind-spot schemes), which is why it converges in fewer steps.

Every scheme is a function ``loss(net, batch, gen, cfg) -> torch.Tensor`` over a batch
``(N, K, C, *spatial)`` (``K`` = 2 for pairs, 1 for single images) and a ``torch.Generator``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import torch
from torch.nn import functional as F

from fluorecon.errors import FluoreconError

SUPERVISED = ("care", "n2n")
SELF_SUPERVISED = ("n2v", "n2v2", "structn2v", "nb2nb")
SCHEMES = SUPERVISED + SELF_SUPERVISED
BLIND_SPOT = ("n2v", "n2v2", "structn2v")

__all__ = ["SCHEMES", "SUPERVISED", "SELF_SUPERVISED", "get_scheme", "blind_spot_mask", "nb2nb_subsample"]


def _masked_mse(out: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if mask is None:
        return F.mse_loss(out, target)
    return ((out - target) ** 2 * mask).sum() / mask.sum().clamp_min(1) / out.shape[1]


def _fit_loss(net, inp: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    if getattr(net, "head", None):
        return net.nll(inp, target, mask)
    return _masked_mse(net(inp), target, mask)


# --------------------------------------------------------------------------------------- blind spot
def _neighbour_offsets(dim: int, radius: int) -> list[tuple[int, ...]]:
    rng = range(-radius, radius + 1)
    return [o for o in itertools.product(*[rng] * dim) if any(o)]


def _shifted(x: torch.Tensor, offsets: list[tuple[int, ...]], radius: int) -> torch.Tensor:
    dim = x.ndim - 2
    pad = [radius] * (2 * dim)
    xp = F.pad(x, pad, mode="reflect")
    sp = x.shape[2:]
    views = []
    for o in offsets:
        sl = tuple(slice(radius + d, radius + d + s) for d, s in zip(o, sp, strict=True))
        views.append(xp[(slice(None), slice(None), *sl)])
    return torch.stack(views, dim=0)


def blind_spot_mask(x: torch.Tensor, gen: torch.Generator, grid: int = 4, replace: str = "median", radius: int = 2,
                    struct_axis: int | None = None, struct_span: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask one random pixel per ``grid``-cell and replace it; return ``(masked input, mask)``.

    Parameters
    ----------
    x : torch.Tensor
        ``(N, C, *spatial)``.
    gen : torch.Generator
        Source of randomness (seeded → reproducible masks).
    grid : int
        Cell size per spatial axis: the masked fraction is ``grid**-dim``.
    replace : "median" or "uniform"
        N2V2's median of the neighbourhood without the centre, or N2V's random neighbour.
    radius : int
        Neighbourhood half-width for the replacement.
    struct_axis, struct_span : int, optional
        structN2V: also replace the neighbours at offsets ``±1..±span`` along spatial axis ``struct_axis``
        (``-1`` = X) with random pixels of the patch.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> xm, m = blind_spot_mask(torch.rand(2, 1, 16, 16), g, grid=4)
    >>> int(m.sum())
    32
    """
    n, c, *sp = x.shape
    dim = len(sp)
    cells = [s // grid for s in sp]
    if any(v < 1 for v in cells):
        raise FluoreconError(f"patch {tuple(sp)} is smaller than the masking grid {grid}", hint="use larger patches")
    # one random offset per cell
    offs = [torch.randint(0, grid, (n, *cells), generator=gen) for _ in range(dim)]
    mask = torch.zeros((n, *[v * grid for v in cells]), dtype=x.dtype)
    idx = [torch.arange(v) * grid for v in cells]
    mesh = torch.meshgrid(*idx, indexing="ij")
    coords = [mesh[d].unsqueeze(0) + offs[d] for d in range(dim)]
    bidx = torch.arange(n).view(-1, *[1] * dim).expand(n, *cells)
    mask[(bidx, *coords)] = 1.0
    full = torch.zeros((n, *sp), dtype=x.dtype)
    full[(slice(None), *[slice(0, v * grid) for v in cells])] = mask
    mask = full.unsqueeze(1).to(x.device)
    # Replacement values are computed only at the masked pixels (a few % of the patch).
    offsets = _neighbour_offsets(dim, radius)
    xp = F.pad(x, [radius] * (2 * dim), mode="reflect")
    pos = torch.nonzero(full, as_tuple=True)  # (batch, *spatial) of masked pixels
    off = torch.tensor(offsets, device=x.device)  # (K, dim)
    idx = [pos[0][:, None].expand(-1, len(offsets))]
    idx += [pos[1 + d][:, None] + radius + off[:, d][None, :] for d in range(dim)]
    # values: (M, K, C)
    vals = xp.movedim(1, -1)[tuple(idx)]
    if replace == "median":
        repv = vals.median(dim=1).values
    elif replace == "uniform":
        k = torch.randint(0, len(offsets), (vals.shape[0], 1, 1), generator=gen).to(x.device)
        repv = torch.gather(vals, 1, k.expand(-1, 1, vals.shape[2])).squeeze(1)
    else:
        raise FluoreconError(f"unknown replacement {replace!r}", hint="use 'median' (N2V2) or 'uniform' (N2V)")
    xm = x.clone()
    xm.movedim(1, -1)[pos] = repv
    if struct_axis is not None and struct_span > 0:
        ax = 2 + (struct_axis % dim)
        smask = torch.zeros_like(mask)
        for s in range(1, struct_span + 1):
            smask = smask + torch.roll(mask, s, dims=ax) + torch.roll(mask, -s, dims=ax)
        smask = (smask > 0) & ~mask.bool()
        flat = x.reshape(n, c, -1)
        ridx = torch.randint(0, flat.shape[-1], flat.shape, generator=gen).to(x.device)
        rnd = torch.gather(flat, 2, ridx).reshape(x.shape)
        xm = torch.where(smask, rnd, xm)
    return xm, mask


def _loss_blind_spot(net, batch: torch.Tensor, gen: torch.Generator, cfg: Any) -> torch.Tensor:
    x = batch[:, 0]
    struct = cfg.struct_axis if cfg.scheme == "structn2v" else None
    xm, mask = blind_spot_mask(x, gen, grid=cfg.mask_grid, replace=cfg.replace, struct_axis=struct,
                               struct_span=cfg.struct_span if struct is not None else 0)
    if xm.ndim == 4 and xm.device.type == "cpu":
        xm = xm.contiguous(memory_format=torch.channels_last)
    return _fit_loss(net, xm, x, mask)


# ------------------------------------------------------------------------------------ supervised
def _loss_pairs(net, batch: torch.Tensor, gen: torch.Generator, cfg: Any) -> torch.Tensor:
    if batch.shape[1] < 2:
        raise FluoreconError(f"scheme {cfg.scheme!r} needs pairs (input, target)", hint="pass targets=...")
    x, y = batch[:, 0], batch[:, 1]
    if cfg.scheme == "n2n" and torch.rand((), generator=gen) < 0.5:
        x, y = y, x  # both are noisy: use each as input half of the time
    if x.ndim == 4 and x.device.type == "cpu":
        x = x.contiguous(memory_format=torch.channels_last)
    return _fit_loss(net, x, y, None)


# ------------------------------------------------------------------------------ Neighbor2Neighbor
_NB_PAIRS = torch.tensor([[0, 1], [1, 0], [0, 2], [2, 0], [1, 3], [3, 1], [2, 3], [3, 2]])


def nb2nb_subsample(x: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Neighbor2Neighbor's random neighbour sub-sampler over 2×2 cells of the last two axes.

    Returns ``(g1, g2, choice)``; ``choice`` (per cell) lets :func:`_apply_choice` sub-sample another
    image the same way.
    """
    *lead, h, w = x.shape
    h2, w2 = h // 2, w // 2
    choice = torch.randint(0, len(_NB_PAIRS), (x.shape[0], h2, w2), generator=gen).to(x.device)
    g1, g2 = _apply_choice(x, choice)
    return g1, g2, choice


def _apply_choice(x: torch.Tensor, choice: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    *lead, h, w = x.shape
    h2, w2 = h // 2, w // 2
    cells = x[..., : 2 * h2, : 2 * w2].reshape(*lead, h2, 2, w2, 2).movedim(-3, -2).reshape(*lead, h2, w2, 4)
    pairs = _NB_PAIRS.to(x.device)[choice]  # (N, h2, w2, 2)
    shape = [x.shape[0]] + [1] * (len(lead) - 1) + [h2, w2, 1]
    i1 = pairs[..., 0].reshape(shape).expand(*lead, h2, w2, 1)
    i2 = pairs[..., 1].reshape(shape).expand(*lead, h2, w2, 1)
    return torch.gather(cells, -1, i1).squeeze(-1), torch.gather(cells, -1, i2).squeeze(-1)


def _loss_nb2nb(net, batch: torch.Tensor, gen: torch.Generator, cfg: Any) -> torch.Tensor:
    x = batch[:, 0]
    g1, g2, choice = nb2nb_subsample(x, gen)
    cl = x.ndim == 4 and x.device.type == "cpu"
    with torch.no_grad():
        fx = net(x.contiguous(memory_format=torch.channels_last) if cl else x)
    f1, f2 = _apply_choice(fx, choice)
    inp = g1.contiguous(memory_format=torch.channels_last) if cl else g1
    out = net(inp)
    diff = out - g2
    rec = (diff ** 2).mean()
    reg = ((diff - (f1 - f2)) ** 2).mean()
    return rec + cfg.nb2nb_gamma * reg


def get_scheme(name: str) -> Callable[..., torch.Tensor]:
    """Return the loss function of a scheme.

    Examples
    --------
    >>> get_scheme("care").__name__
    '_loss_pairs'
    """
    if name in SUPERVISED:
        return _loss_pairs
    if name in BLIND_SPOT:
        return _loss_blind_spot
    if name == "nb2nb":
        return _loss_nb2nb
    raise FluoreconError(f"unknown training scheme {name!r}", hint=f"use one of {', '.join(SCHEMES)}")
