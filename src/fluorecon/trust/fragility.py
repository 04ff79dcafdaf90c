"""Fragility probe: how much does the output change per unit change of the input?

For a perturbation δ of a given size, the **gain** is ``‖g(x+δ) − g(x)‖₂ / ‖δ‖₂`` (dimensionless; 1 for
the identity, < 1 for a smoothing denoiser, > 1 where the method amplifies perturbations). Probes:

* ``random`` — Gaussian directions (what noise does);
* ``power`` — derivative-free worst case: power iteration with finite differences,
  ``v ← (g(x+εv) − g(x)) / ‖·‖``; converges to the dominant direction of the local Jacobian. Works for
  every method (classical or learned), so it is the like-for-like comparison;
* ``fgsm`` / ``pgd`` — gradient-directed (torch models or any differentiable torch function): one signed /
  normalised gradient step of ``‖g(x+δ) − g(x)‖²`` from a random start (FGSM-style), then ``steps``
  projected steps (PGD) on the ε-ball.

Use :func:`compare_fragility` to report learned and classical methods side by side.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from fluorecon.errors import FluoreconError
from fluorecon.trust._common import as_float_array, is_torch_module, numpy_callable

__all__ = ["compare_fragility", "fragility"]


def _scale(d: np.ndarray, eps: float, norm: str) -> np.ndarray:
    if norm == "l2":  # eps is the per-pixel RMS of the perturbation
        return d * (eps * np.sqrt(d.size) / max(np.linalg.norm(d), 1e-30))
    return eps * np.sign(d)


def fragility(g: Any, x, eps: float | None = None, *, norm: str = "l2", n_random: int = 8, power_iters: int = 8,
              steps: int = 5, gradient: str | Callable | None = "auto", seed: int = 0) -> dict:
    """Output change per unit input change under random, worst-case and gradient-directed perturbations.

    Parameters
    ----------
    g : callable or torch.nn.Module
        The reconstruction method (numpy → numpy, or a module on ``(N, C, *spatial)``).
    x : array
        The input image the method is probed at.
    eps : float, optional
        Perturbation size in input units: per-pixel RMS (``norm="l2"``) or maximum (``"linf"``).
        Default: 1 % of the input's 1–99.8 percentile range.
    norm : {"l2", "linf"}
    n_random : int
        Random directions.
    power_iters : int
        Finite-difference power iterations (one evaluation each).
    steps : int
        PGD steps after the FGSM step (gradient probes only).
    gradient : "auto", None or callable
        ``"auto"`` uses autograd when ``g`` is a torch module; a callable on torch tensors (spatial
        shape in and out) is differentiated instead of ``g``; ``None`` skips gradient probes.
    seed : int

    Returns
    -------
    dict
        ``eps``, ``norm``, ``random_mean``, ``random_max``, ``power``, and (gradient probes) ``fgsm`` and
        ``pgd`` gains; ``worst`` is the largest gain found.

    Examples
    --------
    >>> from scipy.ndimage import gaussian_filter
    >>> r = fragility(lambda v: gaussian_filter(v, 2.0), np.random.default_rng(0).random((32, 32)), gradient=None)
    >>> r["random_mean"] < r["power"] <= 1.0
    True
    """
    xa = as_float_array(x, "input")
    if norm not in ("l2", "linf"):
        raise FluoreconError(f"unknown norm {norm!r}", hint="use 'l2' or 'linf'")
    if eps is None:
        lo, hi = np.percentile(xa, [1, 99.8])
        eps = 0.01 * float(hi - lo) if hi > lo else 0.01
    if eps <= 0:
        raise FluoreconError(f"eps must be positive, got {eps}", hint="give the perturbation size in input units")
    rng = np.random.default_rng(seed)
    f = numpy_callable(g)
    y0 = f(xa)

    def gain(d: np.ndarray) -> tuple[float, np.ndarray]:
        dy = f(xa + d) - y0
        return float(np.linalg.norm(dy) / max(np.linalg.norm(d), 1e-30)), dy

    rnd = [gain(_scale(rng.standard_normal(xa.shape), eps, norm))[0] for _ in range(n_random)]
    out: dict = {"eps": float(eps), "norm": norm, "random_mean": float(np.mean(rnd)) if rnd else None,
                 "random_max": float(np.max(rnd)) if rnd else None}

    # Derivative-free power iteration (J v by finite differences); needs same-shape output.
    v = _scale(rng.standard_normal(xa.shape), eps, norm)
    best = 0.0
    if power_iters > 0 and y0.shape == xa.shape:
        for _ in range(power_iters):
            gn, dy = gain(v)
            best = max(best, gn)
            v = _scale(dy if np.any(dy) else rng.standard_normal(xa.shape), eps, norm)
        out["power"] = float(best)

    tfn = None
    if callable(gradient) and not isinstance(gradient, str):
        tfn = gradient
    elif gradient == "auto" and is_torch_module(g):
        from fluorecon.trust.explain import _torch_fn

        tfn = _torch_fn(g)
    if tfn is not None:
        out.update(_gradient_probes(tfn, g, xa, eps, norm, steps, rng, gain))
    out["worst"] = float(max(v for k, v in out.items() if k in ("random_max", "power", "fgsm", "pgd") and v is not None))
    return out


def _gradient_probes(tfn, g, xa, eps, norm, steps, rng, gain) -> dict:
    import torch

    p = next(g.parameters(), None) if is_torch_module(g) else None
    dtype = p.dtype if p is not None else torch.float64
    xt = torch.as_tensor(xa, dtype=dtype)
    with torch.no_grad():
        y0 = tfn(xt)

    def grad_at(d: np.ndarray) -> np.ndarray:
        dt = torch.as_tensor(d, dtype=dtype).requires_grad_(True)
        loss = torch.sum((tfn(xt + dt) - y0) ** 2)
        (gr,) = torch.autograd.grad(loss, dt)
        return gr.double().numpy()

    d = _scale(rng.standard_normal(xa.shape), 0.1 * eps, "l2")  # random start: the gradient is 0 at δ=0
    d = _scale(grad_at(d), eps, norm)
    fgsm = gain(d)[0]
    best = fgsm
    for _ in range(steps):
        # normalised ascent step then projection back onto the ε-sphere (power iteration on JᵀJ for l2)
        d = _scale(d + _scale(grad_at(d), eps, norm), eps, norm)
        best = max(best, gain(d)[0])
    return {"fgsm": float(fgsm), "pgd": float(best)}


def compare_fragility(methods: dict[str, Any], x, eps: float | None = None, **kwargs) -> dict[str, dict]:
    """Run :func:`fragility` for several methods on the same input and size (learned vs classical).

    Examples
    --------
    >>> from scipy.ndimage import gaussian_filter
    >>> res = compare_fragility({"identity": lambda v: v, "blur": lambda v: gaussian_filter(v, 1)},
    ...                         np.random.default_rng(0).random((16, 16)), eps=0.01, gradient=None)
    >>> round(res["identity"]["random_mean"], 6), res["blur"]["worst"] < 1
    (1.0, True)
    """
    return {name: fragility(g, x, eps, **kwargs) for name, g in methods.items()}
