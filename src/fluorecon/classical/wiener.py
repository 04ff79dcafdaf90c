"""Wiener / Tikhonov deconvolution with the balance chosen by generalised cross-validation."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from skimage.restoration import estimate_sigma

from fluorecon.classical._common import _as_image, _device, _prep_psf, _torch_dtype, estimate_background
from fluorecon.errors import FluoreconError
from fluorecon.physics.sampling import pad_index
from fluorecon.validation import check_psf, to_numpy

__all__ = ["estimate_noise_std", "wiener"]


def _laplacian_otf(fft_shape: tuple[int, ...], nd: int):
    k = np.zeros((3,) * nd)
    c = (1,) * nd
    k[c] = 2 * nd
    for ax in range(nd):
        for d in (-1, 1):
            idx = list(c)
            idx[ax] += d
            k[tuple(idx)] = -1
    t = torch.zeros(fft_shape, dtype=torch.float64)
    t[tuple(slice(0, 3) for _ in range(nd))] = torch.as_tensor(k)
    t = torch.roll(t, shifts=[-1] * nd, dims=list(range(nd)))
    return torch.fft.rfftn(t)


def estimate_noise_std(image: Any) -> float:
    """Gaussian noise standard deviation (wavelet MAD, ``skimage.restoration.estimate_sigma``).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> round(estimate_noise_std(rng.normal(0, 2.0, (128, 128))), 1)
    2.0
    """
    return float(estimate_sigma(np.asarray(image, dtype=np.float64)))


def _gcv_balance(spec, h2, d2, last_len: int) -> float:
    """Generalised cross-validation (Golub, Heath & Wahba 1979) for the Wiener/Tikhonov weight.

    ``GCV(λ) = Σ w |(1 − A_λ) Y|² / (Σ w (1 − A_λ))²`` with ``A_λ = |H|² / (|H|² + λ|D|²)`` over the
    half spectrum (``w`` = 2 for the columns that stand for two frequencies); minimised on a log grid.
    """
    y2 = spec.abs().to(torch.float64) ** 2
    w = torch.full((h2.shape[-1],), 2.0, dtype=torch.float64, device=h2.device)
    w[0] = 1.0
    if last_len % 2 == 0:
        w[-1] = 1.0
    d2b = torch.broadcast_to(d2, h2.shape)
    best, best_lam = np.inf, 1e-3
    for lam in np.logspace(-8, 1, 46):
        r = (lam * d2b) / (h2 + lam * d2b)  # 1 − A_λ
        num = float(torch.sum(w * r * r * y2))
        den = float(torch.sum(w * r)) ** 2
        g = num / max(den, 1e-300)
        if g < best:
            best, best_lam = g, float(lam)
    return best_lam


def wiener(image: Any, psf: Any, balance: float | None = None, *, reg: str = "laplacian", padding: str = "reflect",
           offset: float = 0.0, background: float | str = 0.0, device: Any = "cpu", dtype: Any = np.float32,
           return_info: bool = False):
    """Wiener / Tikhonov deconvolution ``X = conj(H) Y / (|H|² + balance · |D|²)``.

    Parameters
    ----------
    image, psf : array-like
        As for :func:`richardson_lucy` (leading axes are a batch).
    balance : float, optional
        Regularisation weight. None: automatic, by generalised cross-validation (no ground truth,
        no noise estimate needed). ``|D|²`` is normalised to mean 1 so that ``balance`` means the same
        for both regularisers.
    reg : {"laplacian", "identity"}
        Laplacian (smoothness prior, as scikit-image) or identity (Tikhonov / classic Wiener).
    padding : {"reflect", "periodic"}
        Mirror padding by ``psf//2`` (then to a fast length), or circular.
    offset, background : float
        Subtracted from the data before filtering (``background="auto"`` as in RL).

    Examples
    --------
    >>> from fluorecon.physics.psf import gaussian_psf
    >>> img = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    >>> wiener(img, gaussian_psf((7, 7), 1.0), balance=1e-2).shape
    (32, 32)
    """
    arr = _as_image(image)
    p_raw = to_numpy(psf, "PSF")
    if p_raw.ndim > arr.ndim:
        check_psf(p_raw, arr.ndim)
    nd = p_raw.ndim
    p = _prep_psf(p_raw, arr.shape[-nd:], 1)
    if padding not in ("reflect", "periodic"):
        raise FluoreconError(f"unknown padding {padding!r} for Wiener", hint="use 'reflect' or 'periodic'")
    if reg not in ("laplacian", "identity"):
        raise FluoreconError(f"unknown regulariser {reg!r}", hint="use 'laplacian' or 'identity'")
    if balance is not None and (not np.isfinite(balance) or balance < 0):
        raise FluoreconError(f"balance must be ≥ 0, got {balance}", hint="e.g. 1e-3, or None for automatic")
    dev = _device(device)
    tdt = _torch_dtype(dtype)
    out = np.empty(arr.shape, dtype=np.float32 if tdt == torch.float32 else np.float64)
    balances = []
    for bidx in np.ndindex(*arr.shape[:-nd]) if arr.ndim > nd else [()]:
        data = arr[bidx].astype(np.float64) - offset
        bg = estimate_background(data) if background == "auto" else float(background)
        data = data - bg
        # reflect: the full half-sample-symmetric extension (2n per axis) is exactly periodic, so the
        # circular filter sees no seam (a thin mirror pad leaves a jump that the inverse amplifies).
        grid = tuple(2 * n for n in data.shape) if padding == "reflect" else data.shape
        t = torch.as_tensor(data.astype(np.float32 if tdt == torch.float32 else np.float64)).to(dev)
        if padding == "reflect":
            for ax, n in enumerate(data.shape):
                t = torch.index_select(t, ax, torch.as_tensor(pad_index(n, 0, n, "reflect"), device=dev))
        dims = list(range(-nd, 0))
        tp = torch.zeros(grid, dtype=tdt, device=dev)
        tp[tuple(slice(0, q) for q in p.shape)] = torch.as_tensor(p, dtype=tdt, device=dev)
        otf = torch.fft.rfftn(torch.roll(tp, shifts=[-(q // 2) for q in p.shape], dims=dims), dim=dims)
        del tp
        spec = torch.fft.rfftn(t, dim=dims)
        if reg == "identity":
            d2 = torch.ones((), dtype=torch.float64, device=dev)
        else:
            d2 = _laplacian_otf(grid, nd).abs().to(dev) ** 2
            d2 = d2 / d2.mean()
        h2 = otf.abs().to(torch.float64) ** 2
        bal = _gcv_balance(spec, h2, d2, grid[-1]) if balance is None else float(balance)
        balances.append(bal)
        filt = otf.conj().to(torch.complex128) / (h2 + bal * d2)
        spec.mul_(filt.to(spec.dtype))
        res = torch.fft.irfftn(spec, s=grid, dim=dims)[tuple(slice(0, n) for n in data.shape)]
        out[bidx] = res.cpu().numpy() + bg
    if return_info:
        return out, {"balance": balances[0] if len(balances) == 1 else balances, "reg": reg, "padding": padding}
    return out
