"""Richardson–Lucy volume reconstruction from one light field (Broxton et al. 2013; Prevedel et al. 2014).

``x ← x · Aᵀ(d / (A x + b)) / Aᵀ1`` with ``A`` the wave-optics light-field operator
(:class:`fluorecon.physics.lightfield.LightFieldOperator`), ``d`` the offset-subtracted light field
and ``b`` a constant background. Each iteration is one forward and one back projection (small FFTs
and a batched matrix product on the lenslet grid).

Stopping rules (``stop``):

- ``"discrepancy"`` (= ``"auto"`` when a noise model is known or can be fitted): the Poisson
  discrepancy principle (Bertero et al. 2010). The data are turned into photon-like counts
  ``z = (d + c)/a`` (gain ``a``, read-noise shift ``c``, from :func:`fluorecon.classical.stopping.photon_model`);
  the run stops at the first iteration whose mean Poisson deviance ``2/N Σ z ln(z/m) − z + m``
  falls to its expected value for Poisson data of that mean (≈ 1 for large counts). Conservative:
  it stops before noise is fitted.
- ``"change"``: relative change of the volume below ``tol``.
- ``None``: exactly ``iterations``.

Examples
--------
>>> from fluorecon.physics.lightfield import LightFieldOperator, LightFieldOptics
>>> o = LightFieldOptics(20, 0.5, 0.52, 1.0, 100.0, 2000.0, 5, osr=1)
>>> op = LightFieldOperator(o, [-3.0, 0.0, 3.0], (20, 20))
>>> truth = np.zeros((3, 20, 20), np.float32); truth[0, 7, 12] = truth[2, 12, 6] = 100.0
>>> vol, info = richardson_lucy_lightfield(op.forward(truth), op, 40, return_info=True)
>>> vol.shape, info["iterations"], bool(vol[0, 7, 12] > vol[1, 7, 12])
((3, 20, 20), 40, True)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from fluorecon.classical.stopping import _expected_deviance, photon_model
from fluorecon.errors import FluoreconError
from fluorecon.physics.lightfield import LightFieldOperator

__all__ = ["LF_STOPS", "poisson_deviance", "richardson_lucy_lightfield"]

LF_STOPS = (None, "auto", "discrepancy", "change")


def poisson_deviance(counts: torch.Tensor, model: torch.Tensor) -> float:
    """Mean Poisson deviance ``2/N Σ z ln(z/m) − z + m`` (``z ln z = 0`` at ``z = 0``).

    Examples
    --------
    >>> poisson_deviance(torch.tensor([1.0, 4.0]), torch.tensor([1.0, 4.0]))
    0.0
    """
    m = model.clamp(min=1e-6)
    z = counts.clamp(min=0)
    t = torch.where(z > 0, z * torch.log(z / m), torch.zeros_like(z)) - z + m
    return float(2 * t.mean())


def richardson_lucy_lightfield(lightfield: Any, operator: LightFieldOperator, iterations: int = 30, *,
                               background: float = 0.0, offset: float = 0.0, stop: str | None = None,
                               gain: float | None = None, read_noise: float = 0.0, tol: float = 1e-3,
                               init: Any = None, callback: Callable[[int, torch.Tensor], Any] | None = None,
                               progress: Any = None, return_info: bool = False) -> Any:
    """Richardson–Lucy reconstruction of a volume ``(D, Y, X)`` from a rectified light field ``(Y, X)``.

    Parameters
    ----------
    lightfield : array (Y, X)
        The recorded, rectified light field (ADU).
    operator : LightFieldOperator
        The measurement operator for this light field's size and the wanted depths.
    iterations : int
        Maximum number of iterations (exact count with ``stop=None``).
    background, offset : float
        Constant background (ADU above the offset) and camera offset; the model is ``offset + b + A x``.
    stop : None, "auto", "discrepancy" or "change"
        Stopping rule (module docstring).
    gain, read_noise : float, optional
        Camera gain (ADU/e-) and read noise (e-) for the discrepancy rule; fitted when not given.
    tol : float
        Relative change for ``stop="change"``.
    init : array (D, Y, X), optional
        Starting volume (default: constant, with the data's total intensity).
    callback : callable, optional
        ``callback(k, estimate)``; returning True stops.
    progress : callable, optional
        ``progress(fraction, message)``; may raise to cancel.
    return_info : bool
        Also return ``{"iterations", "stop_reason", "deviance", ...}``.

    Returns
    -------
    volume : np.ndarray (D, Y, X), float32 (or ``(volume, info)``)
    """
    if stop not in LF_STOPS:
        raise FluoreconError(f"unknown stop rule {stop!r}", hint=f"use one of {', '.join(map(str, LF_STOPS[1:]))}")
    if int(iterations) < 1:
        raise FluoreconError(f"iterations must be ≥ 1, got {iterations}")
    data = np.asarray(lightfield, np.float32)
    if data.shape != operator.image_shape:
        raise FluoreconError(f"light field shape {data.shape} does not match the operator's {operator.image_shape}",
                             hint="build the operator for this light field's size")
    if not np.all(np.isfinite(data)):
        raise FluoreconError("the light field contains NaN or Inf values")
    dev = operator.device
    d = torch.from_numpy(np.clip(data - offset, 0, None)).to(dev)
    bg = float(max(background, 0.0))
    sens = operator.sensitivity().clamp(min=1e-6 * float(operator.sensitivity().max()))
    if init is None:
        total = max(float(d.sum()) - bg * d.numel(), 1e-6)
        x = torch.full(operator.volume_shape, total / float(sens.sum()), device=dev)
    else:
        x = torch.as_tensor(np.asarray(init, np.float32), device=dev).clamp(min=0).clone()
        if tuple(x.shape) != operator.volume_shape:
            raise FluoreconError(f"init shape {tuple(x.shape)} does not match the volume {operator.volume_shape}")
    rule = stop
    a = c = None
    how = None
    if rule in ("auto", "discrepancy"):
        a, c, how = photon_model(data - offset, gain, read_noise)
        if a is None:
            if rule == "discrepancy":
                raise FluoreconError("the discrepancy rule needs a noise model and none could be fitted",
                                     hint="give the camera gain (ADU/e-) and read noise, or use stop='change'")
            rule = "change"
        else:
            rule = "discrepancy"
    info: dict[str, Any] = {"stop": stop, "rule": rule, "deviance": [], "photon_model": how}
    if a is not None:
        info.update(gain=a, shift=c)
    reason = "iterations"
    k = 0
    with torch.no_grad():
        for k in range(1, int(iterations) + 1):
            model = operator.forward(x) + bg
            if rule == "discrepancy":
                z = (d + c) / a
                m = (model.clamp(min=0) + c) / a
                dv = poisson_deviance(z, m)
                want = _expected_deviance(m.cpu().numpy())
                info["deviance"].append(dv)
                if k > 1 and dv <= want:
                    info["expected_deviance"] = want
                    reason = "discrepancy"
                    k -= 1
                    break
            ratio = d / model.clamp(min=1e-6)
            new = x * operator.adjoint(ratio) / sens
            if rule == "change":
                ch = float((new - x).norm() / new.norm().clamp(min=1e-12))
                x = new
                if ch < tol:
                    reason = "change"
                    break
            else:
                x = new
            if progress is not None:
                progress(k / int(iterations), f"light-field RL iteration {k}")
            if callback is not None and callback(k, x):
                reason = "callback"
                break
    info["iterations"] = k
    info["stop_reason"] = reason
    out = x.cpu().numpy().astype(np.float32)
    return (out, info) if return_info else out
