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

**Attacks** (:func:`pgd_attack`, :func:`epsilon_sweep`, :func:`compare_attacks`): projected gradient ascent
(Madry et al. 2018) with ≥ 50 steps on an L∞ or L2 ball of radius ε (input units; L2 as per-pixel RMS, so
the ball is ``‖δ‖₂ ≤ ε·√N``), untargeted (maximise ``‖g(x+δ) − g(x)‖²``) or **targeted**: ``"create"``
maximises the output's intensity in a punctum-shaped window where there is none, ``"erase"`` minimises it
where there is one. Classical methods are attacked through differentiable torch versions
(:func:`torch_wiener`, :func:`torch_richardson_lucy`); :func:`match_psnr` picks a classical method's
parameter so that its PSNR on clean data matches the learned method's before they are compared.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from fluorecon.errors import FluoreconError
from fluorecon.trust._common import as_float_array, is_torch_module, numpy_callable

__all__ = ["compare_attacks", "compare_fragility", "epsilon_sweep", "fragility", "match_psnr", "pgd_attack",
           "torch_richardson_lucy", "torch_wiener"]


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


# ------------------------------------------------------------------------------------------------ attacks
def _as_torch_fn(g: Any) -> Callable:
    """A function on spatial float64 torch tensors: a torch module (via explain's wrapper) or a torch callable."""
    if is_torch_module(g):
        from fluorecon.trust.explain import _torch_fn

        fn = _torch_fn(g)
        dtype = next(g.parameters()).dtype if next(g.parameters(), None) is not None else torch.float32
        return lambda t: fn(t.to(dtype)).to(torch.float64)
    if callable(g):
        return g
    raise FluoreconError(f"cannot attack a {type(g).__name__}", hint="pass a torch module or a function on torch tensors")


def _window(shape: tuple[int, ...], centre: tuple[float, ...], sigma: float) -> np.ndarray:
    grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    q = sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True))
    w = np.exp(-0.5 * q / sigma**2)
    return w / w.sum()


def _project(d: torch.Tensor, eps: float, norm: str) -> torch.Tensor:
    if norm == "linf":
        return d.clamp(-eps, eps)
    radius = eps * math.sqrt(d.numel())
    n = float(torch.linalg.vector_norm(d))
    return d if n <= radius else d * (radius / n)


def pgd_attack(g: Any, x, eps: float, *, norm: str = "linf", steps: int = 50, step_size: float | None = None,
               target: str | None = None, at: tuple[float, ...] | None = None, sigma: float = 1.5,
               random_start: bool = False, seed: int = 0) -> dict:
    """Projected gradient ascent on an ε-ball around the input: the worst perturbation found and its effect.

    Parameters
    ----------
    g : torch.nn.Module or callable
        The reconstruction, differentiable: a torch module on ``(N, C, *spatial)`` or a function on spatial
        torch tensors (e.g. :func:`torch_wiener`).
    x : array
        Input (recording) the attack starts from.
    eps : float
        Budget in input units: the largest change of a pixel (``"linf"``) or the per-pixel RMS (``"l2"``).
        ``eps = 0`` returns the clean result unchanged.
    norm : {"linf", "l2"}
    steps : int
        Ascent steps (≥ 50 recommended; each is one forward and one backward pass).
    step_size : float, optional
        Default ``2.5 ε / steps`` (L∞, Madry et al.) or ``2.5 ε √N / steps`` (L2).
    target : None, "create" or "erase"
        None: maximise the output change ``‖g(x+δ) − g(x)‖²``. ``"create"``: maximise the output intensity in a
        Gaussian window (``sigma``, pixels) at ``at``; ``"erase"``: minimise it.
    at : tuple of float
        Window centre (pixels, spatial axes) for targeted attacks.
    random_start : bool
        Start from a random point in the ball (untargeted attacks always start off zero: the gradient is 0 there).
    seed : int

    Returns
    -------
    dict
        ``delta`` and ``output`` (arrays), ``clean_output``, ``loss`` (the attacked objective per step, from the
        start), ``eps``, ``norm``, ``gain`` (``‖Δoutput‖₂ / ‖δ‖₂``), ``delta_linf``, ``delta_rms`` and, when
        targeted, ``window_before`` / ``window_after`` (output intensity in the window) and ``window_change``.

    Examples
    --------
    >>> blur = lambda t: torch.nn.functional.avg_pool2d(t[None, None], 3, 1, 1)[0, 0]
    >>> x = np.zeros((16, 16))
    >>> r = pgd_attack(blur, x, 0.1, target="create", at=(8, 8), steps=50)
    >>> bool(np.abs(r["delta"]).max() <= 0.1 + 1e-9), r["window_after"] > r["window_before"]
    (True, True)
    """
    xa = as_float_array(x, "input")
    if norm not in ("l2", "linf"):
        raise FluoreconError(f"unknown norm {norm!r}", hint="use 'l2' or 'linf'")
    if eps < 0:
        raise FluoreconError(f"eps must be ≥ 0, got {eps}", hint="give the perturbation size in input units")
    if target not in (None, "create", "erase"):
        raise FluoreconError(f"unknown target {target!r}", hint="use None, 'create' or 'erase'")
    if target is not None and at is None:
        raise FluoreconError("a targeted attack needs the window centre `at`", hint="e.g. at=(40, 60)")
    fn = _as_torch_fn(g)
    xt = torch.as_tensor(xa, dtype=torch.float64)
    with torch.no_grad():
        y0 = fn(xt).to(torch.float64)
    w = None
    if target is not None:
        w = torch.as_tensor(_window(tuple(y0.shape), tuple(at), sigma), dtype=torch.float64)
    sign = -1.0 if target == "erase" else 1.0

    def objective(d: torch.Tensor) -> torch.Tensor:
        y = fn(xt + d).to(torch.float64)
        if w is None:
            return torch.sum((y - y0) ** 2)
        return sign * torch.sum(w * y)

    alpha = step_size if step_size is not None else 2.5 * eps / max(steps, 1) * (
        1.0 if norm == "linf" else math.sqrt(xa.size))
    gen = torch.Generator().manual_seed(seed)
    d = torch.zeros_like(xt)
    if eps > 0 and (random_start or w is None):
        d = _project((torch.rand(xt.shape, generator=gen, dtype=torch.float64) * 2 - 1) * (eps if random_start else
                                                                                          0.1 * eps), eps, norm)
    losses = []
    best_d, best_l = d.clone(), -math.inf
    for _ in range(steps + 1):
        d = d.detach().requires_grad_(True)
        loss = objective(d)
        lv = float(loss.detach())
        losses.append(lv)
        if lv > best_l:
            best_l, best_d = lv, d.detach().clone()
        if eps == 0 or len(losses) > steps:
            break
        (gr,) = torch.autograd.grad(loss, d)
        with torch.no_grad():
            if norm == "linf":
                step = alpha * torch.sign(gr)
            else:
                step = alpha * gr / torch.linalg.vector_norm(gr).clamp_min(1e-30)
            d = _project(d + step, eps, norm)
    with torch.no_grad():
        y = fn(xt + best_d).to(torch.float64)
    delta, out, clean = best_d.numpy(), y.numpy(), y0.numpy()
    dn = float(np.linalg.norm(delta))
    res = {"delta": delta, "output": out, "clean_output": clean, "loss": losses, "eps": float(eps), "norm": norm,
           "steps": int(steps), "target": target,
           "gain": float(np.linalg.norm(out - clean) / dn) if dn > 0 else 0.0,
           "delta_linf": float(np.abs(delta).max()), "delta_rms": float(np.sqrt(np.mean(delta**2)))}
    if w is not None:
        wn = w.numpy()
        res["window_before"] = float((wn * clean).sum())
        res["window_after"] = float((wn * out).sum())
        res["window_change"] = res["window_after"] - res["window_before"]
    return res


def epsilon_sweep(g: Any, x, eps_values, **kwargs) -> list[dict]:
    """:func:`pgd_attack` at each budget in ``eps_values`` (arrays dropped: numbers only).

    Examples
    --------
    >>> lin = lambda t: 2.0 * t
    >>> [round(r["gain"], 3) for r in epsilon_sweep(lin, np.ones((8, 8)), [0.01, 0.1], steps=50)]
    [2.0, 2.0]
    """
    out = []
    for e in eps_values:
        r = pgd_attack(g, x, float(e), **kwargs)
        out.append({k: v for k, v in r.items() if not isinstance(v, np.ndarray) and k != "loss"}
                   | {"final_loss": r["loss"][-1] if r["loss"] else None})
    return out


def torch_wiener(psf, balance: float) -> Callable:
    """Differentiable Wiener deconvolution ``Y = H* X / (|H|² + balance)`` (periodic, 2D/3D torch tensors).

    Examples
    --------
    >>> from fluorecon.physics.psf import gaussian_psf
    >>> f = torch_wiener(gaussian_psf((9, 9), 1.0), 1e-3)
    >>> tuple(f(torch.ones(16, 16, dtype=torch.float64)).shape)
    (16, 16)
    """
    p = np.asarray(psf, np.float64)
    p = p / p.sum()

    def run(t: torch.Tensor) -> torch.Tensor:
        h = _otf(p, tuple(t.shape))
        return torch.fft.irfftn(torch.conj(h) * torch.fft.rfftn(t) / (h.abs() ** 2 + balance), s=t.shape)

    return run


def torch_richardson_lucy(psf, iterations: int, background: float = 0.0) -> Callable:
    """Differentiable Richardson–Lucy (periodic; the input must be positive, a background may be given).

    Examples
    --------
    >>> from fluorecon.physics.psf import gaussian_psf
    >>> f = torch_richardson_lucy(gaussian_psf((9, 9), 1.0), 5)
    >>> round(float(f(torch.ones(16, 16, dtype=torch.float64)).mean()), 6)
    1.0
    """
    p = np.asarray(psf, np.float64)
    p = p / p.sum()

    def run(t: torch.Tensor) -> torch.Tensor:
        h = _otf(p, tuple(t.shape))

        def conv(a, k):
            return torch.fft.irfftn(torch.fft.rfftn(a) * k, s=t.shape)

        data = t.clamp_min(1e-6)
        est = torch.full_like(t, float(data.mean().detach()))
        for _ in range(iterations):
            ratio = data / (conv(est, h) + background).clamp_min(1e-6)
            est = est * conv(ratio, torch.conj(h))
        return est

    return run


def _otf(psf: np.ndarray, shape: tuple[int, ...]) -> torch.Tensor:
    k = np.zeros(shape)
    k[tuple(slice(0, n) for n in psf.shape)] = psf
    k = np.roll(k, [-(n // 2) for n in psf.shape], axis=tuple(range(len(shape))))
    return torch.fft.rfftn(torch.as_tensor(k))


def match_psnr(make: Callable[[Any], Callable], params, x, truth, target_psnr: float,
               data_range: float | None = None) -> tuple[Any, float]:
    """The parameter of a (classical) method whose PSNR on ``x`` against ``truth`` is closest to ``target_psnr``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> truth = np.zeros((16, 16)); truth[8, 8] = 1.0
    >>> make = lambda a: (lambda t: a * t)
    >>> match_psnr(make, [0.5, 1.0], truth, truth, float("inf"))[0]
    1.0
    """
    t = as_float_array(truth, "truth")
    rng_ = data_range if data_range is not None else float(t.max() - t.min()) or 1.0
    xt = torch.as_tensor(as_float_array(x, "input"), dtype=torch.float64)
    best = None
    for p in params:
        with torch.no_grad():
            y = _as_torch_fn(make(p))(xt).to(torch.float64).numpy()
        mse = float(np.mean((y - t) ** 2))
        ps = math.inf if mse == 0 else 10 * math.log10(rng_**2 / mse)
        gap = 0.0 if ps == target_psnr else abs(ps - target_psnr)
        if best is None or gap < best[2]:
            best = (p, ps, gap)
    assert best is not None
    return best[0], best[1]


def compare_attacks(methods: dict[str, Any], x, eps_values, *, at: tuple[float, ...] | None = None,
                    erase_at: tuple[float, ...] | None = None, norms=("linf", "l2"), steps: int = 50,
                    sigma: float = 1.5) -> dict[str, dict]:
    """ε sweeps of untargeted and targeted (create / erase a punctum) PGD attacks for several methods.

    Returns ``{method: {"<norm>/<attack>": [per-ε numbers]}}`` (see :func:`epsilon_sweep`); attacks:
    ``"untargeted"``, ``"create"`` (at ``at``) and ``"erase"`` (at ``erase_at``), when the centres are given.

    Examples
    --------
    >>> res = compare_attacks({"x2": lambda t: 2 * t}, np.ones((8, 8)), [0.1], norms=("linf",))
    >>> round(res["x2"]["linf/untargeted"][0]["gain"], 3)
    2.0
    """
    out: dict[str, dict] = {}
    for name, g in methods.items():
        d: dict[str, list] = {}
        for norm in norms:
            d[f"{norm}/untargeted"] = epsilon_sweep(g, x, eps_values, norm=norm, steps=steps)
            if at is not None:
                d[f"{norm}/create"] = epsilon_sweep(g, x, eps_values, norm=norm, steps=steps, target="create", at=at,
                                                    sigma=sigma)
            if erase_at is not None:
                d[f"{norm}/erase"] = epsilon_sweep(g, x, eps_values, norm=norm, steps=steps, target="erase",
                                                   at=erase_at, sigma=sigma)
        out[name] = d
    return out
