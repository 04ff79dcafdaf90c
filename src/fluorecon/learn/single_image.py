"""Self-supervised denoising of one image: train on the image alone for a wall-time budget, then predict.

This is what ``fluorecon denoise --method n2v`` runs. The output is in the **input's intensity units**.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from fluorecon.errors import FluoreconError

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
                         callback: Any = None, **overrides: Any) -> tuple[np.ndarray, dict]:
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
    **overrides
        Any :class:`~fluorecon.learn.train.TrainConfig` field.

    Returns
    -------
    denoised : numpy.ndarray
        Float32, same shape as ``image``, in the input's units.
    info : dict
        ``scheme``, ``steps``, ``train_s``, ``predict_s``, ``steps_per_s``, ``bundle`` (the trained
        :class:`~fluorecon.learn.bundle.Bundle`).

    Examples
    --------
    >>> x = np.random.default_rng(0).poisson(20, (64, 64)).astype(np.float32)
    >>> y, info = denoise_single_image(x, "YX", budget_s=1, progress=False, device="cpu", patch_size=32,
    ...                                model={"depth": 1, "width": 4})
    >>> y.shape, info["scheme"]
    ((64, 64), 'n2v')
    """
    from fluorecon.learn.predict import predict
    from fluorecon.learn.train import TrainConfig, train
    from fluorecon.validation import as_image

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
    bundle = train(cfg, arr, axes=axes, callback=callback)
    t1 = time.perf_counter()
    out = predict(bundle, arr, axes, tile="auto", device=device, tta=tta)
    t2 = time.perf_counter()
    info = {"scheme": name, "steps": bundle.provenance["steps"], "train_s": round(t1 - t0, 2),
            "predict_s": round(t2 - t1, 2), "steps_per_s": bundle.provenance["steps_per_s"],
            "tta": tta, "bundle": bundle}
    return out.astype(np.float32), info
