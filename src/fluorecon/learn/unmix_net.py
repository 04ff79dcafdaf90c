"""Learned spectral unmixing: a small convolutional network trained on simulated mixtures of known spectra.

Per-pixel NNLS ignores that neighbouring pixels share abundances; at a few photons per channel its
estimates are dominated by shot noise. This network (a small U-Net, receptive field ≈ 40 px at depth 2)
sees the neighbourhood, so it can learn the abundance prior (sparse, spatially coherent structures),
is trained on the physics forward model (:mod:`fluorecon.physics.mixing`: phantom abundances ×
the given spectra × Poisson noise at the given photon level) and returns non-negative abundances.
It starts from a classical estimate — NNLS of the Gaussian-smoothed channels, σ chosen on simulated
scenes — and learns only a residual (last layer zero at start, gradient clipping, warm-up + cosine
learning rate), which removed the seed-to-seed spread of the earlier per-pixel-NNLS start.

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
from scipy import ndimage
from torch import nn

from fluorecon.classical.unmix import unmix_nnls
from fluorecon.errors import FluoreconError
from fluorecon.learn.nets import UNet
from fluorecon.physics.mixing import check_spectra, simulate_mixture

__all__ = ["UnmixNet", "choose_start_sigma", "nnls_start", "train_unmix_net", "unmix_learned"]


def nnls_start(x: torch.Tensor, spectra: torch.Tensor, sigma: float = 0.0) -> torch.Tensor:
    """Per-pixel NNLS of a batch (N, C, Y, X) → (N, K, Y, X) (no gradient), of the channels smoothed by a
    Gaussian of ``sigma`` pixels first (0: none)."""
    n, c, ny, nx = x.shape
    xd = x.detach().cpu().numpy()
    if sigma > 0:
        xd = ndimage.gaussian_filter(xd, [0, 0, sigma, sigma], mode="reflect")
    flat = np.ascontiguousarray(xd.transpose(1, 0, 2, 3)).reshape(c, -1)
    a = unmix_nnls(flat, spectra.cpu().numpy(), weighting="none")
    return torch.as_tensor(a, dtype=x.dtype).reshape(-1, n, ny, nx).permute(1, 0, 2, 3).contiguous()


def choose_start_sigma(spectra: Any, photons: float, *, grid: tuple[float, ...] = (0.0, 0.5, 0.7, 1.0, 1.5, 2.0),
                       scenes: int = 2, size: int = 64, seed: int | np.random.Generator | None = 0) -> float:
    """The smoothing σ (pixels) of the NNLS start with the lowest abundance RMSE on simulated scenes drawn
    from ``seed`` (the training distribution, never the scenes a result is reported on).

    Examples
    --------
    >>> from fluorecon.physics.mixing import gaussian_spectra
    >>> choose_start_sigma(gaussian_spectra(2, 5, seed=0), 20, grid=(0.0, 1.0), scenes=1, size=32) in (0.0, 1.0)
    True
    """
    S = torch.as_tensor(check_spectra(spectra))
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    sims = [simulate_mixture(S.numpy(), (size, size), photons=photons, seed=rng) for _ in range(scenes)]
    x = torch.as_tensor(np.stack([s["recording"] for s in sims]) / photons)
    a = np.stack([s["abundances"] for s in sims])
    err = [float(np.mean((nnls_start(x, S, g).numpy() - a) ** 2)) for g in grid]
    return float(grid[int(np.argmin(err))])


class UnmixNet(nn.Module):
    """Channels → abundances: a spatially smoothed NNLS start + a correction predicted by a small U-Net
    from ``[√(counts)/√photons, smoothed-NNLS start]``.

    The square root stabilises the Poisson variance of the input (counts of 0–20 photons are otherwise
    dominated by a few bright pixels). The start is NNLS of the channels smoothed at ``sigma`` px (chosen
    on simulated scenes by :func:`choose_start_sigma`; 0 = per-pixel NNLS), and the last layer starts at
    zero, so an untrained net returns that classical estimate exactly and training only has to learn a
    residual: with a per-pixel NNLS start the seed-to-seed spread of the result was 0.54–0.96× NNLS.
    """

    def __init__(self, spectra: Any, width: int = 24, depth: int = 2, photons: float = 20.0, sigma: float = 0.0):
        super().__init__()
        S = torch.as_tensor(check_spectra(spectra))
        n_channels, n_dyes = S.shape
        self.n_channels, self.n_dyes, self.width, self.depth = int(n_channels), int(n_dyes), int(width), int(depth)
        self.photons, self.sigma = float(photons), float(sigma)
        self.register_buffer("spectra", S)
        self.body = UNet(2, n_channels + n_dyes, n_dyes, depth=self.depth, width=self.width, residual=False)
        nn.init.zeros_(self.body.final.weight)
        nn.init.zeros_(self.body.final.bias)

    def forward(self, x: torch.Tensor, a0: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: (N, C, Y, X) recording / photons (background removed); ``a0``: the smoothed-NNLS start
        (computed when None). Returns abundances (N, K, Y, X): the start plus a learned correction."""
        if a0 is None:
            a0 = nnls_start(x, self.spectra, self.sigma)
        xs = torch.sqrt(torch.clamp(x, min=0) + 0.375 / self.photons)
        return torch.relu(a0 + self.body(torch.cat([xs, a0], 1)))

    def config(self) -> dict[str, Any]:
        return {"spectra": self.spectra.tolist(), "width": self.width, "depth": self.depth, "photons": self.photons,
                "sigma": self.sigma}


def train_unmix_net(spectra: Any, photons: float = 20.0, *, steps: int = 600, patch: int = 48, batch: int = 8,
                    pool: int = 48, lr: float = 2e-3, width: int = 24, depth: int = 2, background: float = 0.0,
                    sigma: float | str = "auto", clip: float = 1.0, budget_s: float | None = None, seed: int = 0,
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
        U-Net width and depth. 400 steps of batch 8 reach about 0.45× the per-pixel NNLS error at 20
        photons (benchmarks/README.md, "Corrections: … learned unmixing").
    sigma : float or "auto"
        Smoothing σ (pixels) of the NNLS start; "auto": :func:`choose_start_sigma` on two extra simulated
        scenes drawn from this seed's generator.
    clip : float
        Gradient-norm clip (a few Poisson batches with bright pixels otherwise throw the net off).
    budget_s : float, optional
        Stop training after this many seconds.

    Returns
    -------
    (UnmixNet, info)
        info: ``steps``, ``seconds``, ``loss`` (last 20-step mean), ``sigma``.
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
    if isinstance(sigma, str):
        if sigma != "auto":
            raise FluoreconError(f"sigma must be a number of pixels or 'auto', got {sigma!r}")
        sigma = choose_start_sigma(S, photons, seed=rng)
    net = UnmixNet(S, width, depth, photons, sigma=float(sigma))
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    warm = max(1, steps // 20)  # short linear warm-up, then cosine decay
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda i: min(1.0, (i + 1) / warm) * 0.5 * (1 + np.cos(np.pi * min(i, steps) / max(steps, 1))))
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
        nn.utils.clip_grad_norm_(net.parameters(), clip)
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

