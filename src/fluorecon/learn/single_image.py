"""Self-supervised denoising of one image: train on the image alone for a wall-time budget, then predict.

This is what ``fluorecon denoise --method n2v`` runs. The output is in the **input's intensity units**.

Held-out pixels (``holdout=True``, the default): one pixel per 8×8 cell on two interleaved grids is
replaced by the median of its neighbourhood *before* training, so the network never sees their noisy
values, neither as input nor as target. The network's prediction at those pixels is then an honest
self-supervised score (Noise2Self: its expected squared error to the noisy pixel is the true MSE plus
the noise variance). Grid A selects the training checkpoint (the weights with the lowest held-out loss
are kept: a run that starts to fit the noise ends at its best point); grid B is never used for any
decision here and is returned (``info["holdout"]``) so that callers can compare the network with
other methods on the same pixels (:func:`fluorecon.tasks.denoise.denoise` does).
"""

from __future__ import annotations

import time
import warnings
from typing import Any

import numpy as np
import torch

from fluorecon.classical.denoise import holdout_mask, holdout_replace
from fluorecon.errors import FluoreconError, FluoreconWarning
from fluorecon.learn.bundle import Bundle
from fluorecon.learn.predict import predict
from fluorecon.learn.schemes import BLIND_SPOT
from fluorecon.learn.train import TrainConfig, train
from fluorecon.validation import as_image

#: Scheme names accepted by :func:`denoise_single_image`; ``"auto"`` = the best one measured here.
SINGLE_IMAGE_SCHEMES = ("auto", "n2v", "n2v2", "structn2v", "nb2nb")
BEST_SCHEME = "n2v"

# Settings tuned on the FMD confocal pairs under a 120 s / 2-thread budget (see docs/learn.md).
_DEFAULTS: dict[str, dict[str, Any]] = {
    "n2v": dict(patch_size=64, batch_size=16, lr=2e-3, mask_grid=4, replace="median"),
    "n2v2": dict(patch_size=64, batch_size=16, lr=2e-3, mask_grid=4, replace="median"),
    "structn2v": dict(patch_size=64, batch_size=16, lr=2e-3, mask_grid=4, replace="median", struct_span=2),
    "nb2nb": dict(patch_size=64, batch_size=16, lr=2e-3, nb2nb_gamma=1.0),
}


def denoise_single_image(image: np.ndarray, axes: str, scheme: str = "auto", budget_s: float = 120.0, seed: int = 0,
                         device: str = "auto", progress: bool = True, steps: int | None = None, tta: bool = False,
                         callback: Any = None, holdout: bool = True, blind_spot_inference: bool | None = None,
                         **overrides: Any) -> tuple[np.ndarray, dict]:
    """Denoise ``image`` by training a U-Net on it alone (self-supervised), then predicting it.

    Parameters
    ----------
    image : numpy.ndarray
        The noisy image (2D, a stack ``ZYX``/``TYX`` — a 2D network over all planes — or with ``C``).
    axes : str
        Its axes.
    scheme : str
        ``"auto"`` (= ``"n2v"``), ``"n2v"``, ``"n2v2"``, ``"structn2v"`` or ``"nb2nb"``.
    budget_s : float
        Training wall-time budget in seconds (prediction comes on top).
    seed : int
    device : str
    progress : bool
        Show a progress bar.
    steps : int, optional
        Stop after this many steps instead (the schedule then follows steps: reproducible).
    tta : bool
        Test-time augmentation (8 flips/rotations) at prediction.
    callback : callable, optional
        ``callback(step, loss)`` after each training step; raising inside it stops training
        (napari's Cancel).
    holdout : bool
        Hold out two sparse pixel grids from training (module docstring): checkpoint selection on
        grid A, an unbiased score on grid B. ``False`` trains on every pixel and keeps the last weights.
    blind_spot_inference : bool, optional
        Predict every pixel with its own value hidden (:func:`predict_blind_spot`, 16 predictions)
        instead of one plain prediction. Default: on for 2D networks of the blind-spot schemes
        (``n2v``, ``n2v2``, ``structn2v``), whose loss never constrains the response to a pixel's own
        value; off for ``nb2nb`` and 3D networks.
    **overrides
        Any :class:`~fluorecon.learn.train.TrainConfig` field.

    Returns
    -------
    denoised : numpy.ndarray
        Float32, same shape as ``image``, in the input's units.
    info : dict
        ``scheme``, ``steps``, ``train_s``, ``predict_s``, ``steps_per_s``, ``bundle`` (the trained
        :class:`~fluorecon.learn.bundle.Bundle`), ``inference`` (``"blind_spot"`` or
        ``"standard"``), ``center_gain`` (the network's mean ∂output/∂input of a pixel on itself in a
        plain prediction, see :func:`center_gain`; 0 by construction for what blind-spot inference
        returns), and with ``holdout``: ``selected_step`` (checkpoint kept),
        ``holdout`` (``stride``, ``loss_a``/``loss_b`` in normalised units², ``curve_a``, and — not
        JSON — ``mask_b``, the boolean grid B, and ``values_b``, the predictions there from the image
        with both grids replaced).

    Examples
    --------
    >>> x = np.random.default_rng(0).poisson(20, (64, 64)).astype(np.float32)
    >>> y, info = denoise_single_image(x, "YX", budget_s=1, progress=False, device="cpu", patch_size=32,
    ...                                model={"depth": 1, "width": 4})
    >>> y.shape, info["scheme"]
    ((64, 64), 'n2v')
    """
    if scheme not in SINGLE_IMAGE_SCHEMES:
        raise FluoreconError(f"unknown single-image scheme {scheme!r}",
                             hint=f"use one of {', '.join(SINGLE_IMAGE_SCHEMES)}")
    if steps is None and (budget_s is None or budget_s <= 0):
        raise FluoreconError(f"budget must be positive, got {budget_s}", hint="e.g. --budget 120")
    arr, axes = as_image(image, axes)
    name = BEST_SCHEME if scheme == "auto" else scheme
    kw: dict[str, Any] = dict(_DEFAULTS[name])
    # Small images: shrink the patch so that training still works (never below 16 px).
    ny, nx = arr.shape[-2], arr.shape[-1]
    ps = kw["patch_size"]
    if min(ny, nx) < ps:
        ps = max(16, (min(ny, nx) // 8) * 8)
        if min(ny, nx) < ps:
            raise FluoreconError(f"image {arr.shape} is too small for self-supervised training (needs ≥ 16×16 in YX)",
                                 hint="use a classical method (--method nlm) for tiny images")
        kw["patch_size"] = ps
    kw.update(overrides)
    cfg = TrainConfig(scheme=name, axes=axes, steps=steps, budget_s=None if steps else budget_s, seed=seed,
                      device=device, progress=progress, val_fraction=0.0, **kw)
    t0 = time.perf_counter()
    train_img, monitor, mask_a, mask_b, stride = arr, None, None, None, 0
    if holdout:
        stride = 8 if min(ny, nx) >= 128 else 4
        mask_a = holdout_mask(arr.shape, stride, (stride // 2, stride // 2 - 1))
        mask_b = holdout_mask(arr.shape, stride, (0, stride - 1))
        train_img = holdout_replace(arr, mask_a | mask_b)
        monitor = _holdout_monitor(train_img, arr, axes, mask_a, device)
    bundle = train(cfg, train_img, axes=axes, callback=callback, monitor=monitor)
    t1 = time.perf_counter()
    if blind_spot_inference is None:  # 2D networks: the YX replacement matches the 2D training masks
        blind_spot_inference = name in BLIND_SPOT and bundle.model.config().get("dim", 2) == 2
    if blind_spot_inference:
        out = predict_blind_spot(bundle, arr, axes, grid=max(int(cfg.mask_grid), 3), device=device, tta=tta)
    else:
        out = predict(bundle, arr, axes, tile="auto", device=device, tta=tta)
    t2 = time.perf_counter()
    prov = bundle.provenance
    info: dict[str, Any] = {"scheme": name, "steps": prov["steps"], "train_s": round(t1 - t0, 2),
                            "predict_s": round(t2 - t1, 2), "steps_per_s": prov["steps_per_s"],
                            "tta": tta, "bundle": bundle, "center_gain": center_gain(bundle, arr, axes, device, seed),
                            "inference": "blind_spot" if blind_spot_inference else "standard"}
    _warn_training(prov["steps"], t1 - t0, steps, budget_s)
    if holdout:
        ho = predict(bundle, train_img, axes, tile="auto", device=device, tta=tta)
        sc = (bundle.normalizer.hi[0] - bundle.normalizer.lo[0]) ** 2
        mon = prov.get("monitor") or {}
        info["selected_step"] = mon.get("best_step", prov["steps"])
        info["holdout"] = {"stride": stride, "mask_b": mask_b, "values_b": ho[mask_b],
                           "loss_a": float(np.mean((ho[mask_a] - arr[mask_a]) ** 2) / sc),
                           "loss_b": float(np.mean((ho[mask_b] - arr[mask_b]) ** 2) / sc),
                           "curve_a": mon.get("curve")}
    return out.astype(np.float32), info


def _holdout_monitor(train_img: np.ndarray, arr: np.ndarray, axes: str, mask: np.ndarray, device: str):
    """``monitor(net, normalizer)``: MSE of the network's prediction to the noisy held-out pixels."""

    def monitor(net: torch.nn.Module, normalizer) -> float:
        pred = predict(Bundle(net, normalizer, config={"axes": axes}), train_img, axes, tile="auto", device=device)
        return float(np.mean((pred[mask] - arr[mask]) ** 2) / (normalizer.hi[0] - normalizer.lo[0]) ** 2)

    return monitor


def center_gain(model: Any, image: np.ndarray, axes: str, device: str = "cpu", seed: int = 0, crop: int = 256) -> float:
    """Mean derivative of each output pixel with respect to the same input pixel (Hutchinson estimate).

    A blind-spot network is trained only on pixels whose own value was hidden, so nothing in its loss
    constrains how it responds to a pixel's own value at prediction. A denoiser keeps this gain in
    [0, 1); a gain near or above 1 means that pixel noise is passed through or amplified. Estimated on
    a central ≤ ``crop``² region with one ±ε Rademacher probe.

    Examples
    --------
    >>> from fluorecon.learn.nets import UNet
    >>> from fluorecon.learn.normalize import PercentileNormalizer
    >>> x = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    >>> net = UNet(depth=1, width=4, residual=True).eval()
    >>> with torch.no_grad():
    ...     _ = [p.zero_() for p in net.parameters()]
    >>> ident = Bundle(net, PercentileNormalizer(0, 100).fit(x), config={"axes": "YX"})
    >>> round(center_gain(ident, x, "YX"), 3)     # a residual net with zero weights is the identity
    1.0
    """
    x = np.asarray(image, np.float32)
    ny, nx = x.shape[-2:]
    cy, cx = max((ny - crop) // 2, 0), max((nx - crop) // 2, 0)
    xc = np.ascontiguousarray(x[..., cy:cy + crop, cx:cx + crop])
    b = np.random.default_rng(seed).choice(np.array([-1.0, 1.0], np.float32), xc.shape)
    lo, hi = np.percentile(xc, [1, 99])
    eps = 0.01 * float(hi - lo) if hi > lo else 0.01
    y0 = predict(model, xc, axes, tile=None, device=device)
    y1 = predict(model, xc + eps * b, axes, tile=None, device=device)
    return float(np.mean(b * (y1 - y0)) / eps)


#: Fewer training steps than this and a self-supervised network has barely started learning.
MIN_USEFUL_STEPS = 50


def _warn_training(done: int, train_s: float, steps: int | None, budget_s: float | None) -> None:
    """Warn when the budget allowed almost no training, or when training overran its budget."""
    if done < MIN_USEFUL_STEPS:
        how = f"--steps {steps}" if steps else f"the {budget_s:g} s budget"
        warnings.warn(f"{how} allowed only {done} training steps (< {MIN_USEFUL_STEPS}): the network is barely "
                      "trained and the result is close to its initialisation; raise --budget or give --steps "
                      "(e.g. --steps 500)", FluoreconWarning, stacklevel=3)
    if steps is None and budget_s and train_s > 1.25 * budget_s + 2.0:
        warnings.warn(f"training took {train_s:.1f} s, over its {budget_s:g} s budget (slow steps); the step count "
                      "depends on the machine's speed: give --steps for a reproducible run", FluoreconWarning,
                      stacklevel=3)


def predict_blind_spot(model: Any, image: np.ndarray, axes: str, grid: int = 4, device: str = "cpu",
                       tta: bool = False) -> np.ndarray:
    """J-invariant prediction: every pixel predicted with its own value hidden, as in training.

    For each of the ``grid``² offsets, one pixel per ``grid``×``grid`` cell is replaced by the median
    of its 5×5 neighbourhood (exactly the blind-spot training input, :mod:`fluorecon.learn.schemes`)
    and the network's output is kept at those pixels. The output at a pixel then never depends on
    that pixel's noise: no pass-through of noise whatever the network learned about its centre
    input, and the held-out score of :mod:`fluorecon.tasks.denoise` describes exactly what is
    returned. Costs ``grid``² predictions.

    Examples
    --------
    >>> from fluorecon.learn.nets import UNet
    >>> from fluorecon.learn.normalize import PercentileNormalizer
    >>> x = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    >>> net = UNet(depth=1, width=4, residual=True).eval()
    >>> with torch.no_grad():
    ...     _ = [p.zero_() for p in net.parameters()]
    >>> ident = Bundle(net, PercentileNormalizer(0, 100).fit(x), config={"axes": "YX"})
    >>> y = predict_blind_spot(ident, x, "YX")     # the identity network becomes a 5×5 ring median
    >>> from fluorecon.classical.denoise import holdout_mask, holdout_replace
    >>> m = holdout_mask(x.shape, 4, (1, 2))
    >>> bool(np.allclose(y[m], holdout_replace(x, m)[m])), bool(np.allclose(y, x))
    (True, False)
    """
    x = np.asarray(image, np.float32)
    out = np.empty_like(x)
    for oy in range(grid):
        for ox in range(grid):
            m = holdout_mask(x.shape, grid, (oy, ox))
            y = predict(model, holdout_replace(x, m), axes, tile="auto", device=device, tta=tta)
            out[m] = y[m]
    return out
