"""Spectral unmixing: per-pixel non-negative least squares (Poisson-weighted), Poisson ML, blind Poisson NMF.

The recording (channels × pixels) is ``X ≈ S A`` with non-negative spectra ``S`` (channels × dyes)
and abundances ``A`` (see :mod:`fluorecon.physics.mixing`).

* :func:`unmix_nnls` — exact per-pixel NNLS, vectorised over pixels by enumerating the active sets
  (2^K − 1 small solves, exact for K ≤ 10), optionally weighted by the Poisson variance
  (iteratively re-weighted: ``w = 1/max(x̂, floor)``).
* :func:`unmix_poisson` — maximum-likelihood abundances under Poisson noise (EM / multiplicative
  updates with the spectra fixed).
* :func:`poisson_nmf` — blind: spectra *and* abundances by KL (Poisson) NMF with multiplicative
  updates (Lee & Seung; the model of Neher et al., Biophys. J. 2009), initialised from the purest
  pixels (successive projections on denoised, normalised spectra); :func:`choose_rank` picks the rank.

Examples
--------
>>> from fluorecon.physics.mixing import gaussian_spectra, simulate_mixture
>>> S = gaussian_spectra(3, 8, seed=0)
>>> sim = simulate_mixture(S, (32, 32), photons=200, seed=0)
>>> a = unmix_nnls(sim["recording"] / 200, S)
>>> bool(np.sqrt(np.mean((a - sim["abundances"]) ** 2)) < 0.1)
True
"""

from __future__ import annotations

import itertools
import time
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from fluorecon.errors import FluoreconError
from fluorecon.physics.mixing import check_spectra

__all__ = ["choose_rank", "match_spectra", "poisson_nmf", "spa_init", "spectral_angle", "unmix_nnls",
           "unmix_poisson"]


def _pixels(x: Any, name: str = "image") -> tuple[np.ndarray, tuple[int, ...]]:
    X = np.asarray(x)
    if X.ndim < 2:
        raise FluoreconError(f"{name} must have a channel axis first (C, ...), got shape {X.shape}")
    if not np.issubdtype(X.dtype, np.number) or not np.all(np.isfinite(X)):
        raise FluoreconError(f"{name} must be numeric and finite")
    return X.reshape(X.shape[0], -1).astype(np.float64), X.shape[1:]


def unmix_nnls(x: Any, spectra: Any, *, weighting: str = "poisson", floor: float = 1.0, background: float = 0.0,
               reweight: int = 2, chunk: int = 65536) -> np.ndarray:
    """Per-pixel non-negative least squares ``min_a≥0 Σ_c w_c (x_c − (S a)_c)²``, vectorised.

    Parameters
    ----------
    x : array (C, ...)
        Recording, channel axis first (photon units for Poisson weights).
    spectra : array (C, K)
        Mixing matrix; K ≤ 10.
    weighting : {"poisson", "none"}
        "poisson": weights ``1/max(x̂_c, floor)`` from the current fit (``reweight`` rounds, first
        round unweighted) — the variance of Poisson counts.
    floor : float
        Smallest variance (same units as ``x``).
    background : float
        Constant subtracted from ``x`` first.

    Returns
    -------
    np.ndarray
        Abundances (K, ...) float32.

    Examples
    --------
    >>> S = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    >>> unmix_nnls(np.array([[2.0], [1.5], [1.0]]), S, weighting="none").ravel().tolist()
    [2.0, 1.0]
    >>> unmix_nnls(np.array([[-1.0], [0.0], [2.0]]), S, weighting="none").ravel().astype(float).round(3).tolist()
    [0.0, 1.6]
    """
    X, sp = _pixels(x)
    S = check_spectra(spectra, X.shape[0]).astype(np.float64)
    C, K = S.shape
    if K > 10:
        raise FluoreconError(f"exact NNLS enumerates 2^K active sets; K = {K} is too many", hint="use method 'poisson'")
    if weighting not in ("poisson", "none"):
        raise FluoreconError(f"weighting must be 'poisson' or 'none', got {weighting!r}")
    X = X - background
    out = np.empty((K, X.shape[1]), np.float64)
    St = torch.as_tensor(S)
    subsets = [list(s) for r in range(1, K + 1) for s in itertools.combinations(range(K), r)]
    for i0 in range(0, X.shape[1], chunk):
        xb = torch.as_tensor(X[:, i0:i0 + chunk])  # (C, n)
        w = torch.ones_like(xb)
        a = None
        rounds = 1 + (reweight if weighting == "poisson" else 0)
        for r in range(rounds):
            if r > 0:
                w = 1.0 / torch.clamp(St @ a, min=floor)
            best = torch.zeros((K, xb.shape[1]), dtype=xb.dtype)
            best_obj = (w * xb**2).sum(0)
            for P in subsets:
                Sp = St[:, P]  # (C, p)
                # normal equations per pixel: (Sp^T W Sp) a = Sp^T W x
                M = torch.einsum("cp,cn,cq->npq", Sp, w, Sp)
                b = torch.einsum("cp,cn->np", Sp, w * xb)
                try:
                    sol = torch.linalg.solve(M + 1e-12 * torch.eye(len(P), dtype=M.dtype), b)  # (n, p)
                except RuntimeError:
                    sol = (torch.linalg.pinv(M) @ b[..., None])[..., 0]
                feas = (sol >= 0).all(1)
                res = xb - Sp @ sol.T
                obj = (w * res**2).sum(0)
                better = feas & (obj < best_obj)
                if bool(better.any()):
                    best_obj = torch.where(better, obj, best_obj)
                    full = torch.zeros_like(best)
                    full[P] = sol.T
                    best = torch.where(better[None], full, best)
            a = best
        out[:, i0:i0 + chunk] = a.numpy()
    return out.reshape(K, *sp).astype(np.float32)


def unmix_poisson(x: Any, spectra: Any, *, background: float = 0.0, iterations: int = 200, tol: float = 1e-6,
                  init: np.ndarray | None = None) -> np.ndarray:
    """Maximum-likelihood abundances under Poisson noise, spectra fixed (EM / Richardson–Lucy updates).

    Examples
    --------
    >>> S = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    >>> unmix_poisson(np.array([[2.0], [1.5], [1.0]]), S, iterations=2000).ravel().round(2).tolist()
    [2.0, 1.0]
    """
    X, sp = _pixels(x)
    S = torch.as_tensor(check_spectra(spectra, X.shape[0]).astype(np.float64))
    Xt = torch.clamp(torch.as_tensor(X), min=0)
    K = S.shape[1]
    norm = S.sum(0)[:, None]
    if init is None:
        A = torch.full((K, X.shape[1]), 1.0, dtype=Xt.dtype) * (Xt.sum(0, keepdim=True) / S.sum()).clamp(min=1e-6)
    else:
        A = torch.as_tensor(np.asarray(init, np.float64).reshape(K, -1)).clamp(min=1e-6)
    for _ in range(iterations):
        est = S @ A + background
        A_new = A * (S.T @ (Xt / est.clamp(min=1e-12))) / norm
        change = float((A_new - A).abs().max() / max(float(A.max()), 1e-12))
        A = A_new
        if change < tol:
            break
    return A.numpy().reshape(K, *sp).astype(np.float32)


def spectral_angle(a: Any, b: Any) -> float:
    """Angle (degrees) between two spectra (scale-invariant).

    Examples
    --------
    >>> spectral_angle([1, 0], [1, 1])
    45.0
    """
    u = np.asarray(a, np.float64).ravel()
    v = np.asarray(b, np.float64).ravel()
    c = float(u @ v / max(np.linalg.norm(u) * np.linalg.norm(v), 1e-300))
    return round(float(np.degrees(np.arccos(np.clip(c, -1, 1)))), 6)


def match_spectra(estimated: Any, reference: Any) -> tuple[np.ndarray, np.ndarray]:
    """Pair estimated with reference spectra (columns) minimising the total spectral angle.

    Returns ``(order, angles)``: ``estimated[:, order[j]]`` matches ``reference[:, j]`` at ``angles[j]``°.

    Examples
    --------
    >>> order, ang = match_spectra(np.array([[0, 1], [1, 0.]]), np.eye(2))
    >>> order.tolist(), ang.tolist()
    ([1, 0], [0.0, 0.0])
    """
    E = np.asarray(estimated, np.float64)
    R = np.asarray(reference, np.float64)
    cost = np.array([[spectral_angle(E[:, i], R[:, j]) for j in range(R.shape[1])] for i in range(E.shape[1])])
    rows, cols = linear_sum_assignment(cost)
    order = np.empty(R.shape[1], int)
    order[cols] = rows
    return order, cost[order, np.arange(R.shape[1])]


def spa_init(X: np.ndarray, rank: int, quantile: float = 0.5) -> np.ndarray:
    """Successive projection algorithm: the ``rank`` purest pixel spectra of X (C × N), columns sum 1.

    Only pixels brighter than the ``quantile`` of the total intensity take part (noise rejection).

    Examples
    --------
    >>> X = np.array([[1, 0, 0.5], [0, 1, 0.5]])
    >>> spa_init(X, 2, quantile=0).round(2).tolist()
    [[1.0, 0.0], [0.0, 1.0]]
    """
    tot = X.sum(0)
    keep = tot > np.quantile(tot, quantile) if quantile > 0 else tot > 0
    if keep.sum() < rank:
        keep = tot > 0
    Y = X[:, keep] / tot[keep]
    R = Y.copy()
    idx = []
    for _ in range(rank):
        j = int(np.argmax((R**2).sum(0)))
        idx.append(j)
        u = R[:, j] / max(np.linalg.norm(R[:, j]), 1e-300)
        R = R - np.outer(u, u @ R)
    W = np.clip(Y[:, idx], 0, None) + 1e-3 / X.shape[0]
    return W / W.sum(0, keepdims=True)


def poisson_nmf(x: Any, rank: int, *, iterations: int = 500, tol: float = 1e-6, init: Any = "spa",
                smooth: float = 1.0, background: float = 0.0, fixed_spectra: bool = False,
                seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Blind Poisson (KL) NMF ``X ≈ S A``: spectra (columns sum 1) and abundances.

    Parameters
    ----------
    x : array (C, ...)
        Recording, channel axis first, non-negative counts (a constant offset: ``background``).
    rank : int
        Number of components (≤ C).
    iterations, tol
        Multiplicative updates; stop when the relative change of the KL divergence < ``tol``.
    init : "spa", "random" or array (C, rank)
        Initial spectra: purest pixels of the ``smooth``-σ Gaussian-filtered image (default), random,
        or given.
    smooth : float
        Spatial σ (pixels) of the denoising used only for the initialisation.
    background : float or array (C,)
        Offset subtracted first (one value, or one per channel).

    Returns
    -------
    spectra (C, rank), abundances (rank, ...), info
        Spectra sum to 1 per component, so an abundance is the component's total photon count.
        info: ``iterations``, ``kl`` (generalised KL divergence per element), ``seconds``.

    Examples
    --------
    >>> from fluorecon.physics.mixing import gaussian_spectra, simulate_mixture
    >>> S = gaussian_spectra(2, 6, seed=0)
    >>> sim = simulate_mixture(S, (32, 32), photons=100, seed=0)
    >>> W, A, info = poisson_nmf(sim["recording"], 2)
    >>> bool(match_spectra(W, S)[1].max() < 5)
    True
    """
    t0 = time.perf_counter()
    X, sp = _pixels(x)
    C = X.shape[0]
    if not isinstance(rank, int | np.integer) or rank < 1:
        raise FluoreconError(f"rank must be a positive integer, got {rank!r}")
    if rank > C:
        raise FluoreconError(f"rank {rank} is larger than the number of channels ({C})",
                             hint=f"choose a rank ≤ {C} (the number of dyes you expect)")
    bg = np.asarray(background, np.float64).reshape(-1, 1) if np.ndim(background) else float(background)
    if (X < -1e-6).any() and np.all(bg == 0):
        raise FluoreconError("Poisson NMF needs non-negative data", hint="subtract the camera offset or set background")
    Xc = np.clip(X - bg, 0, None)
    if isinstance(init, str):
        if init == "spa":
            xs = np.asarray(x, np.float64)
            if smooth > 0 and xs.ndim >= 3:
                xs = ndimage.gaussian_filter(xs, [0] + [smooth] * (xs.ndim - 1))
            W0 = spa_init(np.clip(xs.reshape(C, -1) - bg, 0, None), rank)
        elif init == "random":
            W0 = np.random.default_rng(seed).uniform(0.1, 1, (C, rank))
            W0 /= W0.sum(0, keepdims=True)
        else:
            raise FluoreconError(f"init must be 'spa', 'random' or an array, got {init!r}")
    else:
        W0 = check_spectra(init, C).astype(np.float64)
        if W0.shape[1] != rank:
            raise FluoreconError(f"initial spectra have {W0.shape[1]} components, rank is {rank}")
        W0 = W0 / W0.sum(0, keepdims=True)
    Xt = torch.as_tensor(Xc)
    W = torch.as_tensor(W0)
    A = torch.linalg.lstsq(W, Xt).solution.clamp(min=0) + 1e-3 * Xt.mean()
    eps = 1e-12

    def kl(W: torch.Tensor, A: torch.Tensor) -> float:
        est = (W @ A).clamp(min=eps)
        return float((torch.xlogy(Xt, Xt / est) - Xt + est).mean())

    last = kl(W, A)
    it = 0
    for it in range(1, iterations + 1):
        R = Xt / (W @ A).clamp(min=eps)
        A = A * (W.T @ R) / W.sum(0)[:, None].clamp(min=eps)
        if not fixed_spectra:
            R = Xt / (W @ A).clamp(min=eps)
            W = W * (R @ A.T) / A.sum(1)[None].clamp(min=eps)
            s = W.sum(0).clamp(min=eps)
            W = W / s
            A = A * s[:, None]
        if it % 10 == 0 or it == iterations:
            cur = kl(W, A)
            if abs(last - cur) <= tol * max(abs(last), eps):
                last = cur
                break
            last = cur
    info = {"iterations": it, "kl": last, "seconds": round(time.perf_counter() - t0, 3), "rank": int(rank)}
    return W.numpy().astype(np.float32), A.numpy().reshape(rank, *sp).astype(np.float32), info


def choose_rank(x: Any, max_rank: int | None = None, *, threshold: float = 0.1, iterations: int = 200,
                background: float = 0.0) -> tuple[int, list[float]]:
    """Choose the NMF rank: the smallest r after which one more component lowers the Poisson deviance by
    less than ``threshold`` × the decrease from rank 1 to rank 2.

    Returns ``(rank, deviances)`` (deviance per element for ranks 1…max_rank).

    Examples
    --------
    >>> from fluorecon.physics.mixing import gaussian_spectra, simulate_mixture
    >>> S = gaussian_spectra(3, 8, width_um=0.02, seed=0)
    >>> choose_rank(simulate_mixture(S, (24, 24), photons=200, seed=0)["recording"], 4, iterations=60)[0]
    3
    """
    X, _ = _pixels(x)
    C = X.shape[0]
    max_rank = min(C, 6) if max_rank is None else int(max_rank)
    if max_rank > C:
        raise FluoreconError(f"max rank {max_rank} is larger than the number of channels ({C})")
    devs = []
    for r in range(1, max_rank + 1):
        _, _, info = poisson_nmf(x, r, iterations=iterations, background=background)
        devs.append(2 * info["kl"])
    if len(devs) < 2:
        return 1, devs
    ref = max(devs[0] - devs[1], 1e-12)
    rank = max_rank
    for r in range(1, max_rank):  # r: current rank (1-based); devs[r] is rank r+1
        if devs[r - 1] - devs[r] < threshold * ref:
            rank = r
            break
    return rank, devs
