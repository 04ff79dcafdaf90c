"""Explanations: which input pixels justify a chosen region of the output?

For a user-selected output region R (a mask or a box) and the scalar ``s(x) = mean(g(x)[R])``:

* :func:`gradient_saliency` — ``∂s/∂x`` by automatic differentiation (torch models and any differentiable
  torch function);
* :func:`perturbation_covariance` — model-agnostic: perturb the input with many small noise draws δ and
  estimate, per input pixel j, ``Cov(δ_j, Δs) / σ²``. For a linear operator ``g(x) = A x`` this equals
  ``mean_{i∈R} A[i, :]``, the corresponding row of the operator (for a blur: the PSF, flipped and
  centred on the region); for a nonlinear g it is the local linearisation, averaged over the noise
  scale σ. Antithetic pairs (±δ) cancel all even-order terms. With ``design="hadamard"`` the draws are
  rows of a Hadamard matrix (random sign-flipped columns), which makes the estimate *exact* for a
  linear g once the number of draws reaches the number of pixels.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from fluorecon.errors import FluoreconError
from fluorecon.trust._common import as_float_array, is_torch_module

__all__ = ["explain", "gradient_saliency", "perturbation_covariance", "region_mask"]


def region_mask(region: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Boolean mask for ``region``: a boolean/0-1 array of ``shape``, a tuple of slices, or a box
    ``(start_0, stop_0, start_1, stop_1, ...)`` over the spatial axes.

    Examples
    --------
    >>> region_mask((1, 3, 0, 2), (4, 4)).sum()
    np.int64(4)
    """
    if isinstance(region, np.ndarray) or hasattr(region, "shape"):
        m = np.asarray(region).astype(bool)
        if m.shape != tuple(shape):
            raise FluoreconError(f"region mask has shape {m.shape}, the output has {tuple(shape)}",
                                 hint="draw the mask on the output image")
    else:
        reg = tuple(region)
        if reg and all(isinstance(r, slice) for r in reg):
            sl = reg
        elif len(reg) == 2 * len(shape) and all(isinstance(v, (int, np.integer)) for v in reg):
            sl = tuple(slice(int(reg[2 * i]), int(reg[2 * i + 1])) for i in range(len(shape)))
        else:
            raise FluoreconError(f"cannot read region {region!r}",
                                 hint="pass a boolean mask, a tuple of slices or a box (y0, y1, x0, x1)")
        m = np.zeros(shape, bool)
        m[sl] = True
    if not m.any():
        raise FluoreconError("the selected region is empty", hint="select at least one output pixel")
    return m


def _torch_fn(g: Any) -> Callable:
    """Turn a torch module into a function on a spatial tensor (adds/removes batch and channel axes)."""
    import torch

    if is_torch_module(g):
        def f(t: torch.Tensor) -> torch.Tensor:
            return g(t[None, None])[0, 0]
        return f
    return g


def gradient_saliency(g: Any, x, region: Any) -> np.ndarray:
    """Gradient of the region's mean output with respect to every input pixel.

    Parameters
    ----------
    g : torch.nn.Module or callable on torch tensors
        A module mapping ``(N, C, *spatial)`` or a differentiable function on a spatial tensor.
    x : array
        The input image.
    region : mask, slices or box
        The output region (see :func:`region_mask`).

    Returns
    -------
    ndarray
        Saliency map, same shape as ``x``.

    Examples
    --------
    >>> import torch
    >>> sal = gradient_saliency(lambda t: 2 * t, np.ones((4, 4)), (0, 2, 0, 2))
    >>> float(sal.sum())
    2.0
    """
    import torch

    xa = as_float_array(x, "input")
    f = _torch_fn(g)
    p = next(g.parameters(), None) if is_torch_module(g) else None
    t = torch.tensor(xa, dtype=p.dtype if p is not None else torch.float64, requires_grad=True)
    out = f(t)
    m = torch.as_tensor(region_mask(region, tuple(out.shape)))
    s = out[m].mean()
    (grad,) = torch.autograd.grad(s, t)
    return grad.detach().double().cpu().numpy()


def _batched_numpy(g: Any) -> Callable[[np.ndarray], np.ndarray]:
    """``(B, *spatial) -> (B, *out_spatial)`` for a torch module (one batched call) or numpy callable."""
    if is_torch_module(g):
        import torch

        p = next(g.parameters(), None)
        dtype = p.dtype if p is not None else torch.float32

        def run(b: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                return g(torch.as_tensor(b, dtype=dtype)[:, None])[:, 0].double().numpy()
        return run
    return lambda b: np.stack([np.asarray(g(v), dtype=np.float64) for v in b])


def _hadamard_rows(n_pixels: int, n: int, rng: np.random.Generator) -> np.ndarray:
    from scipy.linalg import hadamard

    size = 1 << max(0, int(np.ceil(np.log2(n_pixels))))
    if size > 1 << 15:
        raise FluoreconError(f"a Hadamard design for {n_pixels} pixels is too large",
                             hint="use design='rademacher' or crop the input around the region")
    h = hadamard(size).astype(np.float64)
    cols = rng.choice(size, n_pixels, replace=False)
    signs = rng.choice([-1.0, 1.0], n_pixels)
    rows = rng.permutation(size)[: min(n, size)]
    return h[np.ix_(rows, cols)] * signs


def perturbation_covariance(g: Any, x, region: Any, *, n: int = 1024, sigma: float | None = None,
                            design: str = "auto", batch: int = 64, seed: int | np.random.Generator | None = 0
                            ) -> np.ndarray:
    """Per input pixel, the covariance between its perturbation and the change of the region's mean output.

    Parameters
    ----------
    g : callable or torch.nn.Module
        Any reconstruction method (numpy → numpy, or a module on ``(N, C, *spatial)``).
    x : array
        The input image.
    region : mask, slices or box
        The output region (see :func:`region_mask`).
    n : int
        Number of antithetic draw pairs (2n evaluations of g).
    sigma : float, optional
        Perturbation amplitude per pixel (default 1 % of the input's 1–99.8 percentile range).
    design : {"auto", "rademacher", "hadamard", "gaussian"}
        Distribution of the draws; ``"hadamard"`` is exact for linear g when ``n ≥`` pixels (and
        without replacement, so less noisy than independent draws otherwise). ``"auto"``: Hadamard up
        to 2¹⁵ pixels, Rademacher beyond.
    batch : int
        Draws per call when g is a torch module.
    seed : int or Generator

    Returns
    -------
    ndarray
        ``Cov(δ_j, Δs) / σ²`` per input pixel: the effective weights of the input on the region.

    Examples
    --------
    >>> from scipy.ndimage import uniform_filter
    >>> cov = perturbation_covariance(lambda v: uniform_filter(v, 3, mode="constant"), np.zeros((8, 8)),
    ...                               (4, 5, 4, 5), n=64, design="hadamard")
    >>> np.round(cov[3:6, 3:6] * 9, 6).tolist() == [[1.0] * 3] * 3
    True
    """
    xa = as_float_array(x, "input")
    if n < 1:
        raise FluoreconError(f"n must be ≥ 1, got {n}", hint="use e.g. n=1024 draws")
    if design not in ("auto", "rademacher", "hadamard", "gaussian"):
        raise FluoreconError(f"unknown design {design!r}", hint="use 'auto', 'rademacher', 'hadamard' or 'gaussian'")
    if design == "auto":
        design = "hadamard" if xa.size <= 1 << 15 else "rademacher"
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    if sigma is None:
        lo, hi = np.percentile(xa, [1, 99.8])
        sigma = 0.01 * float(hi - lo) if hi > lo else 0.01 * max(float(np.abs(xa).max()), 1.0)
    if sigma <= 0:
        raise FluoreconError(f"sigma must be positive, got {sigma}", hint="use a small fraction of the intensity range")
    run = _batched_numpy(g)
    y0 = run(xa[None])[0]
    mask = region_mask(region, y0.shape)
    npx = xa.size
    if design == "hadamard":
        draws = _hadamard_rows(npx, n, rng)
    elif design == "rademacher":
        draws = rng.choice([-1.0, 1.0], size=(n, npx))
    else:
        draws = rng.standard_normal((n, npx))
    acc = np.zeros(npx)
    bsz = max(1, batch // 2)
    for start in range(0, draws.shape[0], bsz):
        d = draws[start:start + bsz].reshape((-1, *xa.shape)) * sigma
        out = run(np.concatenate([xa + d, xa - d], 0))
        k = d.shape[0]
        ds = 0.5 * (out[:k][:, mask].mean(1) - out[k:][:, mask].mean(1))  # antithetic: odd orders only
        acc += (d.reshape(k, -1) * ds[:, None]).sum(0)
    return (acc / (draws.shape[0] * sigma**2)).reshape(xa.shape)


def explain(g: Any, x, region: Any, *, n: int = 512, sigma: float | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """Both explanations as images: ``{"saliency": ..., "covariance": ...}`` (saliency only for torch g).

    Examples
    --------
    >>> e = explain(lambda v: v * 3, np.zeros((6, 6)), (2, 3, 2, 3), n=32)
    >>> round(float(e["covariance"][2, 2]), 6)
    3.0
    """
    out = {"covariance": perturbation_covariance(g, x, region, n=n, sigma=sigma, seed=seed)}
    if is_torch_module(g):
        out["saliency"] = gradient_saliency(g, x, region)
    return out
