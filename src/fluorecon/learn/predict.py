"""Tiled prediction with smooth blending, for 2D/3D images, channels and stacks.

Axes handling (the engine's choice, stated): image channels (``C``) are **network channels**; a model
trained on one channel is applied to each channel separately. ``T`` is always a batch axis, and ``Z``
is a batch axis for a 2D model (a ``ZYX`` stack with a 2D model is restored plane by plane).

Tiling is exact: tiles start on multiples of the network's down-sampling factor (so pooling grids
agree with the whole image), and each tile's blending weight is exactly 0 within the network's
receptive radius of an interior tile edge, then rises with a sin² (Hann) ramp. Outputs of a purely local
network (no group norm) are therefore equal to the untiled prediction up to float rounding.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torch.nn import functional as F

from fluorecon.classical.denoise import HOLDOUT_RADIUS, holdout_mask, holdout_replace
from fluorecon.errors import FluoreconError, FluoreconWarning

__all__ = ["predict", "auto_tile", "predict_j_invariant", "tiled_apply"]


# ---------------------------------------------------------------------------------------------- helpers
def _available_bytes(device: torch.device) -> int:
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 * 2**30


def _bytes_per_pixel(model: Any) -> float:
    cfg = model.config() if hasattr(model, "config") else {}
    width = int(cfg.get("width", 32))
    # Peak of live activations in inference mode: roughly the top-level skip, the concatenation and
    # two block outputs at the top level (≈ 5·width floats per pixel), plus slack for deeper levels.
    return 4.0 * width * 8


def auto_tile(model: Any, spatial_shape: Sequence[int], device: torch.device | str = "cpu",
              fraction: float = 0.25, max_pixels: int | None = None) -> tuple[int, ...] | None:
    """Choose a tile shape from the available memory and the network's down-sampling factor.

    Returns ``None`` when the whole image fits in ``fraction`` of the free memory (no tiling).

    Examples
    --------
    >>> from fluorecon.learn.nets import UNet
    >>> auto_tile(UNet(), (64, 64)) is None
    True
    >>> auto_tile(UNet(), (4096, 4096), max_pixels=512 * 512)
    (512, 512)
    """
    device = torch.device(device)
    budget = _available_bytes(device) * fraction
    limit = int(budget / _bytes_per_pixel(model))
    if max_pixels is not None:
        limit = min(limit, int(max_pixels))
    n = int(np.prod(spatial_shape))
    if n <= limit:
        return None
    div = _divisor(model, len(spatial_shape))
    side = limit ** (1.0 / len(spatial_shape))
    tile = []
    for s, d in zip(spatial_shape, div, strict=True):
        t = max(d, int(side // d) * d)
        tile.append(min(t, int(math.ceil(s / d)) * d))
    return tuple(tile)


def _divisor(model: Any, ndim: int) -> tuple[int, ...]:
    div = getattr(model, "divisor", 1)
    if isinstance(div, int):
        div = (div,) * ndim
    return tuple(int(d) for d in div)[-ndim:]


def _radius(model: Any) -> int:
    return int(getattr(model, "receptive_radius", 32))


def _ramp(n: int, overlap: int, zero: int, left: bool, right: bool) -> np.ndarray:
    """Per-axis weight: 0 within ``zero`` px of an interior edge, sin² ramp, then 1."""
    w = np.ones(n, dtype=np.float64)
    ramp_len = max(1, overlap - 2 * zero)
    d = np.arange(min(overlap, n), dtype=np.float64)
    r = np.where(d < zero, 0.0, np.sin(0.5 * np.pi * np.clip((d - zero + 0.5) / ramp_len, 0, 1)) ** 2)
    if left:
        w[: len(r)] = np.minimum(w[: len(r)], r)
    if right:
        w[n - len(r):] = np.minimum(w[n - len(r):], r[::-1])
    return w


def _positions(size: int, tile: int, step: int) -> list[int]:
    if tile >= size:
        return [0]
    pos = list(range(0, size - tile, step))
    pos.append(size - tile)
    return sorted(set(pos))


def _pad_to(x: torch.Tensor, div: Sequence[int]) -> tuple[torch.Tensor, list[int]]:
    sp = x.shape[2:]
    extra = [(-s) % d for s, d in zip(sp, div, strict=True)]
    if any(extra):
        pads: list[int] = []
        for e in reversed(extra):
            pads += [0, e]
        mode = "reflect" if all(e < s for e, s in zip(extra, sp, strict=True)) else "replicate"
        x = F.pad(x, pads, mode=mode)
    return x, extra


_DIHEDRAL = [(k, flip) for flip in (False, True) for k in range(4)]


def _tta_apply(fn: Callable[[torch.Tensor], Any], x: torch.Tensor) -> Any:
    """Average ``fn`` over the 8 flips/rotations of the last two (Y, X) axes."""
    acc = None
    for k, flip in _DIHEDRAL:
        xt = torch.rot90(x, k, dims=(-2, -1))
        if flip:
            xt = torch.flip(xt, dims=(-1,))
        out = fn(xt.contiguous(memory_format=torch.channels_last) if xt.ndim == 4 and xt.device.type == "cpu" else xt)
        outs = out if isinstance(out, tuple) else (out,)
        inv = []
        for o in outs:
            if flip:
                o = torch.flip(o, dims=(-1,))
            inv.append(torch.rot90(o, -k, dims=(-2, -1)))
        acc = inv if acc is None else [a + b for a, b in zip(acc, inv, strict=True)]
    assert acc is not None
    res = [a / len(_DIHEDRAL) for a in acc]
    return tuple(res) if len(res) > 1 else res[0]


def tiled_apply(fn: Callable[[torch.Tensor], Any], x: torch.Tensor, *, divisor: Sequence[int], radius: int,
                tile: Sequence[int] | None, overlap: int | Sequence[int] | None = None, batch_size: int = 4,
                n_out: int | None = None) -> list[torch.Tensor]:
    """Apply ``fn`` (batch ``(N, C, *spatial)`` → tensor or tuple of tensors) tile by tile and blend.

    Parameters
    ----------
    fn : callable
        The network (or a wrapper returning ``(mean, scale)``).
    x : torch.Tensor
        ``(B, C, *spatial)``; padded internally to multiples of ``divisor``.
    divisor : sequence of int
        Down-sampling factor per spatial axis; tile starts and sizes are multiples of it.
    radius : int
        Receptive radius: blending weights are 0 this close to interior tile edges.
    tile : sequence of int or None
        Tile shape (rounded up to multiples of ``divisor``); ``None`` = one tile.
    overlap : int or sequence of int, optional
        Overlap between tiles; default ``2·radius + 16`` rounded up to the divisor.

    Returns
    -------
    list of torch.Tensor
        One blended output per output of ``fn``, cropped to the input's spatial shape.
    """
    nd = x.ndim - 2
    shape0 = x.shape[2:]
    x, _extra = _pad_to(x, divisor)
    sp = x.shape[2:]
    if tile is None:
        outs = []
        for b0 in range(0, x.shape[0], max(1, batch_size)):
            o = fn(x[b0:b0 + batch_size])
            outs.append(o if isinstance(o, tuple) else (o,))
        res = [torch.cat([o[i] for o in outs]) for i in range(len(outs[0]))]
        return [r[(slice(None), slice(None), *[slice(0, s) for s in shape0])] for r in res]
    tile = [int(math.ceil(min(t, s) / d) * d) for t, s, d in zip(tile, sp, divisor, strict=True)]
    if overlap is None:
        overlap = [int(math.ceil((2 * radius + 16) / d) * d) for d in divisor]
    elif isinstance(overlap, int):
        overlap = [int(math.ceil(overlap / d) * d) for d in divisor]
    # A tile must be at least twice the overlap, otherwise the step shrinks and the tile count explodes.
    grown = [min(max(t, 2 * int(o)), int(math.ceil(s / d) * d)) for t, o, s, d in zip(tile, overlap, sp, divisor, strict=True)]
    if grown != list(tile):
        warnings.warn(f"tile {tuple(tile)} enlarged to {tuple(grown)} (twice the overlap {tuple(overlap)} needed for "
                      "exact blending)", FluoreconWarning, stacklevel=3)
        tile = grown
    overlap = [min(int(o), max(0, t - d)) for o, t, d in zip(overlap, tile, divisor, strict=True)]
    zero = [max(0, min(radius, (o - 8) // 2)) for o in overlap]
    steps = [t - o for t, o in zip(tile, overlap, strict=True)]
    grids = [_positions(s, t, st) for s, t, st in zip(sp, tile, steps, strict=True)]
    starts = list(np.array(np.meshgrid(*grids, indexing="ij")).reshape(nd, -1).T)
    acc: list[torch.Tensor] | None = None
    wsum = torch.zeros(sp, dtype=torch.float32, device=x.device)
    jobs = [(b, tuple(int(v) for v in st)) for b in range(x.shape[0]) for st in starts]
    weights: dict[tuple[int, ...], torch.Tensor] = {}
    for st in starts:
        st = tuple(int(v) for v in st)
        ws = [_ramp(t, o, z, p > 0, p + t < s) for p, t, o, z, s in zip(st, tile, overlap, zero, sp, strict=True)]
        w = ws[0]
        for wi in ws[1:]:
            w = np.multiply.outer(w, wi)
        weights[st] = torch.as_tensor(w, dtype=torch.float32, device=x.device)
        wsum[tuple(slice(p, p + t) for p, t in zip(st, tile, strict=True))] += weights[st]
    for j0 in range(0, len(jobs), max(1, batch_size)):
        chunk = jobs[j0:j0 + batch_size]
        batch = torch.stack([x[(b, slice(None), *[slice(p, p + t) for p, t in zip(st, tile, strict=True)])]
                             for b, st in chunk])
        out = fn(batch)
        outs = out if isinstance(out, tuple) else (out,)
        if acc is None:
            acc = [torch.zeros((x.shape[0], o.shape[1], *sp), dtype=torch.float32, device=x.device) for o in outs]
        for i, (b, st) in enumerate(chunk):
            sl = tuple(slice(p, p + t) for p, t in zip(st, tile, strict=True))
            for a, o in zip(acc, outs, strict=True):
                a[(b, slice(None), *sl)] += o[i].float() * weights[st]
    assert acc is not None
    crop = (slice(None), slice(None), *[slice(0, s) for s in shape0])
    return [(a / wsum.clamp_min(1e-12))[crop] for a in acc]


# ---------------------------------------------------------------------------------------------- predict
def _is_bundle(obj: Any) -> bool:
    return hasattr(obj, "normalizer") and hasattr(obj, "members") and hasattr(obj, "model")


def _prepare_model(m: torch.nn.Module, device: torch.device, dim: int) -> torch.nn.Module:
    m = m.to(device).eval()
    if device.type == "cpu" and dim == 2:
        m = m.to(memory_format=torch.channels_last)
    return m


def predict(model_or_bundle: Any, image: Any, axes: str | None = None, tile: None | str | Sequence[int] = "auto",
            overlap: int | Sequence[int] | None = None, batch_size: int = 4, device: str = "auto", tta: bool = False,
            return_scale: bool = False, normalize: bool = True) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Restore ``image`` with a network or a :class:`~fluorecon.learn.bundle.Bundle`, tile by tile.

    Parameters
    ----------
    model_or_bundle : Bundle or torch.nn.Module
        A bundle (its normaliser is applied and undone: output in the input's units; an ensemble's
        members are averaged) or a module mapping ``(N, C, *spatial)`` → ``(N, C_out, *spatial)``.
    image : array-like
        NumPy array (or torch tensor: the result is then a tensor).
    axes : str, optional
        Axes of ``image`` (``YX``, ``ZYX``, ``CYX``, ``TYX``, ``CZYX``, ``TZYX`` ...). Guessed from
        ``ndim`` when omitted (2 → ``YX``; 3 → ``ZYX``).
    tile : None, "auto" or tuple of int
        ``None``: one tile; ``"auto"``: chosen from free memory; a tuple: tile shape (spatial axes).
    overlap : int or tuple, optional
        Tile overlap in pixels (default: twice the receptive radius + 16, rounded to the divisor).
    batch_size : int
        Tiles (or planes) per forward pass.
    device : str
        ``"cpu"``, ``"cuda"`` or ``"auto"``.
    tta : bool
        Average over the 8 flips/90° rotations in the YX plane (test-time augmentation).
    return_scale : bool
        Also return a per-pixel scale in the input's units: the probabilistic head's scale, or, for an
        ensemble, the spread of the members (combined with the head's scale when both exist).
    normalize : bool
        Apply the bundle's normaliser (ignored for a plain module).

    Returns
    -------
    numpy.ndarray (or tuple with the scale map)
        Float32, same shape and axes as ``image`` (``C`` becomes ``C_out`` when they differ).

    Examples
    --------
    >>> from fluorecon.learn.nets import UNet
    >>> net = UNet(depth=1, width=4)
    >>> out = predict(net, np.zeros((20, 30), np.float32), "YX", tile=(16, 16), device="cpu")
    >>> out.shape
    (20, 30)
    """
    from fluorecon.utils import resolve_device
    from fluorecon.validation import as_image

    was_torch = isinstance(image, torch.Tensor)
    arr, axes = as_image(image, axes)
    dev = resolve_device(device)
    if _is_bundle(model_or_bundle):
        bundle = model_or_bundle
        models = list(bundle.members) if bundle.members else [bundle.model]
        normalizer = bundle.normalizer if normalize else None
    elif isinstance(model_or_bundle, torch.nn.Module):
        models, normalizer = [model_or_bundle], None
    else:
        raise FluoreconError(f"predict needs a Bundle or a torch.nn.Module, got {type(model_or_bundle).__name__}",
                             hint="load a bundle with Bundle.load(dir) or pass a UNet")
    first = models[0]
    dim = int(getattr(first, "dim", 2))
    cin = int(first.config().get("in_channels", 1)) if hasattr(first, "config") else 1
    has_head = bool(getattr(first, "head", None))
    if return_scale and not has_head and len(models) < 2:
        raise FluoreconError("return_scale=True needs a probabilistic head or an ensemble",
                             hint="train with model={'head': 'laplace'} or with several members")

    # --- move axes into (batch, channel, *spatial)
    n_sp = dim
    spatial = axes[-n_sp:]
    if dim == 3 and not axes.endswith("ZYX"):
        raise FluoreconError(f"a 3D model needs a Z axis but the image axes are {axes!r}",
                             hint="pass a ZYX (or CZYX/TZYX) image, or use a 2D model")
    if any(arr.shape[axes.index(a)] < 1 for a in spatial):
        raise FluoreconError("image has an empty spatial axis", hint="pass a non-empty image")
    batch_axes = [a for a in axes if a not in spatial and a != "C"]
    has_c = "C" in axes
    order = [axes.index(a) for a in batch_axes] + ([axes.index("C")] if has_c else []) + \
        [axes.index(a) for a in spatial]
    x = np.transpose(arr, order)
    bshape = x.shape[: len(batch_axes)]
    nc = arr.shape[axes.index("C")] if has_c else 1
    x = x.reshape((-1, nc, *x.shape[-n_sp:]))
    per_channel = nc != cin
    if per_channel:
        if cin != 1:
            raise FluoreconError(f"the model expects {cin} channels but the image has {nc} (axes {axes!r})",
                                 hint="pass an image with the model's channels along a C axis")
        x = x.reshape((-1, 1, *x.shape[-n_sp:]))

    if normalizer is not None:
        xn = normalizer.normalize(x, channel_axis=None if per_channel else 1)
    else:
        xn = x
    xt = torch.as_tensor(np.ascontiguousarray(xn, dtype=np.float32), device=dev)

    mods = [_prepare_model(m, dev, dim) for m in models]
    want_scale = return_scale

    def fn_for(m):
        def f(b: torch.Tensor):
            if dev.type == "cpu" and b.ndim == 4:
                b = b.contiguous(memory_format=torch.channels_last)
            if want_scale and has_head:
                return m.forward_dist(b)
            return m(b)
        return (lambda b: _tta_apply(f, b)) if tta else f

    spatial_shape = xt.shape[2:]
    if isinstance(tile, str):
        if tile != "auto":
            raise FluoreconError(f"tile must be None, 'auto' or a tuple of ints, got {tile!r}",
                                 hint="e.g. tile=(512, 512)")
        tile_shape = auto_tile(first, spatial_shape, dev)
    elif tile is None:
        tile_shape = None
    else:
        tile_shape = tuple(int(t) for t in tile)
        if len(tile_shape) != n_sp or any(t < 1 for t in tile_shape):
            raise FluoreconError(f"tile {tile!r} must give {n_sp} positive sizes for the spatial axes {spatial!r}",
                                 hint="e.g. --tile 512 512 for YX")
    div = _divisor(first, n_sp)
    rad = _radius(first)
    means, scales = [], []
    with torch.inference_mode():
        for m in mods:
            res = tiled_apply(fn_for(m), xt, divisor=div, radius=rad, tile=tile_shape, overlap=overlap,
                              batch_size=batch_size)
            means.append(res[0])
            if len(res) > 1:
                scales.append(res[1])
        mean = torch.stack(means).mean(0)
        scale = None
        if want_scale:
            var = torch.zeros_like(mean)
            if len(means) > 1:
                var = var + torch.stack(means).var(0, unbiased=True)
            if scales:
                # Laplace b → variance 2b²; Gaussian σ → σ².
                f2 = 2.0 if getattr(first, "head", None) == "laplace" else 1.0
                var = var + f2 * torch.stack(scales).square().mean(0)
            scale = var.sqrt()
    out = mean.cpu().numpy()
    sc = scale.cpu().numpy() if scale is not None else None
    cout = out.shape[1]
    if normalizer is not None:
        chan_axis = None if per_channel else 1
        out = normalizer.denormalize(out, channel_axis=chan_axis)
        if sc is not None:
            sc = normalizer.denormalize_scale(sc, channel_axis=chan_axis)

    def back(a: np.ndarray) -> np.ndarray:
        c = nc if per_channel else cout
        a = a.reshape((*bshape, c, *a.shape[-n_sp:]) if (has_c or c > 1) else (*bshape, *a.shape[-n_sp:]))
        if has_c or c > 1:
            inv_axes = batch_axes + ["C"] + list(spatial)
        else:
            inv_axes = batch_axes + list(spatial)
        target_axes = axes if ("C" in axes or c == 1) else ("C" + axes if not batch_axes else axes)
        if "C" not in target_axes:
            return np.ascontiguousarray(a, dtype=np.float32)
        perm = [inv_axes.index(ch) for ch in target_axes]
        return np.ascontiguousarray(np.transpose(a, perm), dtype=np.float32)

    result = back(out)
    if was_torch:
        result = torch.from_numpy(result)
    if return_scale:
        if sc is None:
            raise FluoreconError("return_scale=True needs a probabilistic head or an ensemble",
                                 hint="train with head='laplace' or with several members")
        s = back(sc)
        return result, (torch.from_numpy(s) if was_torch else s)
    return result


J_INVARIANT_MODES = ("exact", "linear")


def predict_j_invariant(model: Any, image: Any, axes: str | None = None, *, grid: int = 4, mode: str = "exact",
                        calib_size: int = 256, calib_offsets: int = 2, bins: int = 4, tile: None | str | Sequence[int] = "auto",
                        device: str = "cpu", tta: bool = False, batch_size: int = 4,
                        return_info: bool = False) -> np.ndarray | tuple[np.ndarray, dict]:
    """Predict every pixel with its own value hidden (blind-spot / J-invariant inference).

    ``mode="exact"``: for each of the ``grid``² offsets, one pixel per ``grid``×``grid`` cell is
    replaced by the median of its 5×5 ring (:func:`~fluorecon.classical.denoise.holdout_replace`,
    the blind-spot training input) and the prediction is kept at those pixels: ``grid``² full
    predictions, and no output pixel depends on its own input value.

    ``mode="linear"``: one plain prediction ``y``, corrected to first order for the network's
    response to a pixel's own value: ``y − g·(x − r)``, with ``r`` the ring median of every pixel and
    the gain ``g`` measured with exact blind-spot passes on a central ``calib_size``² crop
    (``calib_offsets`` offsets; ``g`` depends on the predicted intensity, in ``bins`` quantile bins,
    interpolated; ``bins=1``: one gain). Costs about 1 + ``calib_offsets``·(crop / image) predictions instead of
    ``grid``²; the pixel's own value still enters through the network's nonlinearity (its effect on
    quality, measured on tuning data: ``benchmarks/train_throughput.py --jinv-tune``).

    Parameters
    ----------
    model : Bundle or torch.nn.Module
        A 2D network (the masks are in YX; stacks are handled plane by plane by :func:`predict`).
    image : array-like
        ``YX`` or with leading batch axes (``ZYX``/``TYX`` with a 2D model).
    grid : int
        Mask spacing (≥ 3, so that no replaced pixel's ring contains another replaced pixel).
    mode : {"exact", "linear"}
    calib_size, calib_offsets, bins : see ``mode="linear"``.
    tile, device, tta, batch_size : see :func:`predict`.
    return_info : bool
        Also return ``{"mode", "passes", "gain"}`` (``passes`` in full-image equivalents).

    Examples
    --------
    >>> from fluorecon.learn.nets import UNet
    >>> net = UNet(depth=1, width=4, residual=True).eval()
    >>> with torch.no_grad():
    ...     _ = [p.zero_() for p in net.parameters()]      # a residual net with zero weights = identity
    >>> x = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    >>> ring = holdout_replace(x, np.ones(x.shape, bool))
    >>> ye = predict_j_invariant(net, x, "YX")             # exact: the identity becomes the ring median
    >>> yl, info = predict_j_invariant(net, x, "YX", mode="linear", return_info=True)
    >>> bool(np.allclose(ye, ring, atol=1e-6)), bool(np.allclose(yl, ring, atol=1e-5)), round(info["gain"][0], 3)
    (True, True, 1.0)
    """
    if mode not in J_INVARIANT_MODES:
        raise FluoreconError(f"unknown J-invariant inference mode {mode!r}", hint=f"use one of {', '.join(J_INVARIANT_MODES)}")
    if int(grid) < 3:
        raise FluoreconError(f"blind-spot grid must be ≥ 3, got {grid}", hint="e.g. grid=4 (16 passes in exact mode)")
    x = np.asarray(image, np.float32)
    if x.ndim < 2:
        raise FluoreconError(f"J-invariant inference needs an image with Y and X axes, got shape {x.shape}",
                             hint="pass a 2D image or a stack of 2D planes")
    kw: dict[str, Any] = {"tile": tile, "device": device, "tta": tta, "batch_size": batch_size}
    grid = int(grid)
    if mode == "exact":
        out = np.empty_like(x)
        for oy in range(grid):
            for ox in range(grid):
                m = holdout_mask(x.shape, grid, (oy, ox))
                out[m] = predict(model, holdout_replace(x, m), axes, **kw)[m]
        info: dict[str, Any] = {"mode": mode, "passes": float(grid * grid), "gain": None}
        return (out, info) if return_info else out
    y = predict(model, x, axes, **kw)
    # The ring median of every pixel, as holdout_replace computes it for a masked one (lower median of
    # the 24 neighbours, symmetric border), by scipy's rank filter: half the time of the generic one.
    fp = np.ones((2 * HOLDOUT_RADIUS + 1,) * 2, bool)
    fp[HOLDOUT_RADIUS, HOLDOUT_RADIUS] = False
    ring = ndimage.rank_filter(x, (int(fp.sum()) - 1) // 2, footprint=fp.reshape((1,) * (x.ndim - 2) + fp.shape),
                               mode="reflect")
    # Calibration on the central plane's central crop: plain and blind-spot predictions of the same
    # crop, so that the crop's own borders affect both alike.
    ny, nx = x.shape[-2:]
    plane = x.reshape(-1, ny, nx)[x.reshape(-1, ny, nx).shape[0] // 2]
    c = int(max(16, calib_size))
    cy, cx = max((ny - c) // 2, 0), max((nx - c) // 2, 0)
    xc = np.ascontiguousarray(plane[cy:cy + c, cx:cx + c])
    ckw = dict(kw, tile=None if xc.size <= 1024 * 1024 else tile)
    yc = predict(model, xc, "YX", **ckw)
    offs = [(grid // 2, grid // 2), (0, 0), (grid // 2, 0), (0, grid // 2)][: max(1, int(calib_offsets))]
    dy, dx, yv = [], [], []
    # Within the receptive radius of the crop's edge, padding mirrors a pixel onto its own window
    # (a gain that the image's interior does not have): those pixels are left out of the fit.
    band = min(_radius(model), xc.shape[0] // 4, xc.shape[1] // 4)
    inner = np.zeros(xc.shape, bool)
    inner[band:xc.shape[0] - band, band:xc.shape[1] - band] = True
    for o in offs:
        m = holdout_mask(xc.shape, grid, o) & inner
        xm = holdout_replace(xc, m)
        yb = predict(model, xm, "YX", **ckw)
        dy.append((yc - yb)[m])
        dx.append((xc - xm)[m])
        yv.append(yc[m])
    d, e, v = (np.concatenate(a).astype(np.float64) for a in (dy, dx, yv))
    nb = max(1, int(bins))
    edges = np.quantile(v, np.linspace(0, 1, nb + 1))
    which = np.clip(np.searchsorted(edges, v, side="right") - 1, 0, nb - 1)
    gains, centres = [], []
    for b in range(nb):
        sel = which == b
        den = float(np.sum(e[sel] ** 2))
        gains.append(float(np.sum(d[sel] * e[sel]) / den) if den > 0 else 0.0)
        centres.append(float(np.median(v[sel])) if sel.any() else float(edges[b]))
    g = np.interp(y, centres, gains).astype(np.float32) if nb > 1 else np.float32(gains[0])
    out = (y - g * (x - ring)).astype(np.float32)
    passes = 1.0 + (1 + len(offs)) * xc.size / plane.size / max(1, x.size // plane.size)
    info = {"mode": mode, "passes": round(passes, 3), "gain": gains, "gain_at": centres}
    return (out, info) if return_info else out


def _threads() -> int:
    return int(os.environ.get("OMP_NUM_THREADS", torch.get_num_threads()))
