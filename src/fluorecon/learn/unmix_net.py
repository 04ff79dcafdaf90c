"""Learned spectral unmixing: a small convolutional network trained on simulated mixtures of known spectra.

Per-pixel NNLS ignores that neighbouring pixels share abundances; at a few photons per channel its
estimates are dominated by shot noise. This network (a small U-Net, receptive field ≈ 40 px at depth 2)
sees the neighbourhood, so it can learn the abundance prior (sparse, spatially coherent structures),
is trained on the physics forward model (:mod:`fluorecon.physics.mixing`: phantom abundances ×
the given spectra × Poisson noise at the given photon level) and returns non-negative abundances.

Examples
--------
>>> import torch
>>> from fluorecon.physics.mixing import gaussian_spectra, simulate_mixture
>>> S = gaussian_spectra(3, 6, seed=0)
>>> net, info = train_unmix_net(S, photons=20, steps=3, patch=32, batch=2, pool=4)
>>> x = simulate_mixture(S, (32, 32), photons=20, seed=5)["recording"]
>>> unmix_learned(net, x, photons=20).shape
(3, 32, 32)
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import torch
from torch import nn

from fluorecon.classical.unmix import unmix_nnls
from fluorecon.errors import FluoreconError
from fluorecon.learn.nets import UNet
from fluorecon.physics.mixing import check_spectra, simulate_mixture

__all__ = ["UnmixNet", "nnls_start", "train_unmix_net", "unmix_learned"]


def nnls_start(x: torch.Tensor, spectra: torch.Tensor) -> torch.Tensor:
    """Per-pixel NNLS of a batch (N, C, Y, X) → (N, K, Y, X) (no gradient)."""
    n, c, ny, nx = x.shape
    flat = x.detach().permute(1, 0, 2, 3).reshape(c, -1).cpu().numpy()
    a = unmix_nnls(flat, spectra.cpu().numpy(), weighting="none")
    return torch.as_tensor(a, dtype=x.dtype).reshape(-1, n, ny, nx).permute(1, 0, 2, 3).contiguous()


class UnmixNet(nn.Module):
    """Channels → abundances: per-pixel NNLS start + a correction predicted by a small U-Net from
    ``[√(counts)/√photons, NNLS start]``.

    The square root stabilises the Poisson variance of the input (counts of 0–20 photons are otherwise
    dominated by a few bright pixels). An earlier design — five dilated 3×3 layers without down-sampling
    — stayed at 0.97× the NNLS error after 400 steps where this one reaches 0.5× (benchmarks/README.md).
    """

    def __init__(self, spectra: Any, width: int = 24, depth: int = 2, photons: float = 20.0):
        super().__init__()
        S = torch.as_tensor(check_spectra(spectra))
        n_channels, n_dyes = S.shape
        self.n_channels, self.n_dyes, self.width, self.depth = int(n_channels), int(n_dyes), int(width), int(depth)
        self.photons = float(photons)
        self.register_buffer("spectra", S)
        self.body = UNet(2, n_channels + n_dyes, n_dyes, depth=self.depth, width=self.width, residual=False)

    def forward(self, x: torch.Tensor, a0: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: (N, C, Y, X) recording / photons (background removed); ``a0``: the per-pixel NNLS start
        (computed when None). Returns abundances (N, K, Y, X): the start plus a learned correction."""
        if a0 is None:
            a0 = nnls_start(x, self.spectra)
        xs = torch.sqrt(torch.clamp(x, min=0) + 0.375 / self.photons)
        return torch.relu(a0 + self.body(torch.cat([xs, a0], 1)))

    def config(self) -> dict[str, Any]:
        return {"spectra": self.spectra.tolist(), "width": self.width, "depth": self.depth, "photons": self.photons}


def train_unmix_net(spectra: Any, photons: float = 20.0, *, steps: int = 600, patch: int = 48, batch: int = 8,
                    pool: int = 48, lr: float = 2e-3, width: int = 24, depth: int = 2, background: float = 0.0,
                    budget_s: float | None = None, seed: int = 0,
                    progress: Any = None) -> tuple[UnmixNet, dict[str, Any]]:
    """Train :class:`UnmixNet` for these spectra and photon level on simulated mixtures.

    Parameters
    ----------
    spectra : (C, K)
        Mixing matrix (peak-normalised, as in :func:`~fluorecon.physics.mixing.simulate_mixture`).
    photons : float
        Expected photons in a dye's peak channel at abundance 1 (the test data's level).
    steps, patch, batch, pool, lr, width, depth
        Training steps, patch size, batch size, number of simulated abundance images, learning rate,
        U-Net width and depth. Defaults: 400 steps of batch 8 reach about half the NNLS error at 20
        photons (benchmarks/README.md, "Learned unmixing").
    budget_s : float, optional
        Stop training after this many seconds.

    Returns
    -------
    (UnmixNet, info)
        info: ``steps``, ``seconds``, ``loss`` (last 20-step mean).
    """
    S = check_spectra(spectra)
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    truths = []
    for _ in range(pool):
        sim = simulate_mixture(S, (patch * 2, patch * 2), photons=photons, seed=rng)
        truths.append(sim["abundances"])
    A = torch.as_tensor(np.stack(truths))  # (P, K, 2p, 2p)
    St = torch.as_tensor(S)
    net = UnmixNet(S, width, depth, photons)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(steps, 1))
    gen = torch.Generator().manual_seed(seed)
    losses: list[float] = []
    step = 0
    for step in range(1, steps + 1):
        idx = torch.randint(0, A.shape[0], (batch,), generator=gen)
        oy, ox = (int(v) for v in torch.randint(0, A.shape[-1] - patch + 1, (2,), generator=gen))
        a = A[idx, :, oy:oy + patch, ox:ox + patch]
        if bool(torch.rand(1, generator=gen) < 0.5):
            a = a.flip(-1)
        lam = photons * torch.einsum("ck,nkyx->ncyx", St, a) + background
        x = torch.poisson(lam, generator=gen)
        xin = (x - background) / photons
        pred = net(xin)
        loss = torch.mean((pred - a) ** 2)
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
    info = {"steps": step, "seconds": round(time.perf_counter() - t0, 2), "loss": float(np.mean(losses[-20:])),
            "photons": float(photons), "background": float(background), **net.config()}
    return net, info


def unmix_learned(net: UnmixNet, x: Any, photons: float, background: float = 0.0) -> np.ndarray:
    """Apply a trained :class:`UnmixNet` to a recording (C, Y, X) or (C, T/Z, Y, X); returns (K, ...)."""
    X = np.asarray(x, np.float32)
    if X.ndim < 3 or X.shape[0] != net.n_channels:
        raise FluoreconError(f"the network expects (C={net.n_channels}, Y, X) input, got shape {X.shape}")
    lead = X.shape[1:-2]
    xb = torch.as_tensor(X.reshape(net.n_channels, -1, *X.shape[-2:])).permute(1, 0, 2, 3)
    xin = (xb - background) / photons
    with torch.no_grad():
        out = net(xin)
    return out.permute(1, 0, 2, 3).reshape(net.n_dyes, *lead, *X.shape[-2:]).numpy().astype(np.float32)

