"""Seeded synthetic specimens (2D and 3D), values in [0, 1], ``float32``.

These are the ground truths of our simulations, demos and training data for learned restoration,
so they imitate the structures of real fluorescence images:

* ``filaments`` — microtubule/actin-like smooth random curves (persistent random walks) of varying
  brightness, thin (about 1 pixel) and crossing each other;
* ``membranes`` — cell outlines: the boundaries of a jittered Voronoi tessellation with smooth
  random deformation (faces in 3D), with brightness modulated along the membrane;
* ``puncta`` — vesicles/spots: small Gaussian blobs of varying size and brightness;
* ``nuclei`` — ellipsoidal nuclei with smooth edges, chromatin-like texture and nucleoli;
* ``mixed`` — nuclei + filaments + puncta together (a cell-like scene).

Every function takes ``shape`` ((Y, X) or (Z, Y, X)) and ``seed`` and is deterministic for a seed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from fluorecon.errors import FluoreconError

__all__ = ["KINDS", "filaments", "membranes", "mixed", "nuclei", "phantom", "puncta"]


def _shape(shape: Any) -> tuple[int, ...]:
    try:
        shp = tuple(int(s) for s in shape)
    except (TypeError, ValueError):
        raise FluoreconError(f"phantom shape must be a tuple of ints, got {shape!r}", hint="e.g. (128, 128) or (32, 128, 128)") from None
    if len(shp) not in (2, 3) or any(s < 4 for s in shp):
        raise FluoreconError(f"phantom shape must be 2D or 3D with sizes ≥ 4, got {shape!r}",
                             hint="e.g. (128, 128) or (32, 128, 128)")
    if int(np.prod(shp)) > 512**3:
        raise FluoreconError(f"phantom shape {shp} is too large to simulate in memory", hint="use a smaller shape")
    return shp


def _finish(img: np.ndarray) -> np.ndarray:
    img = np.clip(img, 0, None)
    m = img.max()
    if m > 0:
        img = img / m
    return np.clip(img, 0, 1).astype(np.float32)


def _splat(shape: tuple[int, ...], pts: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Accumulate points into a grid with linear (bilinear/trilinear) weights."""
    out = np.zeros(shape, dtype=np.float64)
    nd = len(shape)
    base = np.floor(pts).astype(int)
    frac = pts - base
    for corner in range(2**nd):
        offs = np.array([(corner >> d) & 1 for d in range(nd)])
        idx = base + offs
        w = weights * np.prod(np.where(offs == 1, frac, 1 - frac), axis=1)
        ok = np.all((idx >= 0) & (idx < np.array(shape)), axis=1)
        np.add.at(out, tuple(idx[ok].T), w[ok])
    return out


def _smooth_noise(shape: tuple[int, ...], sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Unit-variance Gaussian random field with correlation length ``sigma`` (pixels)."""
    f = int(sigma // 3) if sigma >= 6 else 1
    if f > 1:  # very smooth fields: draw on a coarse grid and interpolate (same look, far cheaper)
        coarse = tuple(max(2, -(-s // f)) for s in shape)
        n = ndimage.gaussian_filter(rng.standard_normal(coarse), sigma / f, mode="wrap")
        n = ndimage.zoom(n, [s / c for s, c in zip(shape, coarse, strict=True)], order=1, grid_mode=True,
                         mode="grid-wrap")
        n = n[tuple(slice(0, s) for s in shape)]
    else:
        n = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return n / (n.std() + 1e-12)


def filaments(shape: Sequence[int], seed: int | np.random.Generator | None = 0, n: int | None = None,
              width: float = 0.8, persistence: float = 30.0, isotropic: bool = False) -> np.ndarray:
    """Microtubule-like filaments: persistent random walks rendered with a small Gaussian width.

    Parameters
    ----------
    shape : tuple of int
        ``(Y, X)`` or ``(Z, Y, X)``.
    seed : int or Generator
    n : int, optional
        Number of filaments (default scales with the area).
    width : float
        Gaussian σ of the filament cross-section in pixels.
    persistence : float
        Persistence length in pixels (larger = straighter).
    isotropic : bool
        3D only: orient filaments uniformly in 3D. By default they lie mostly parallel to the
        coverslip (gentle Z tilt), as cytoskeleton in adherent cells does.

    Examples
    --------
    >>> f = filaments((64, 64), seed=0)
    >>> f.shape, f.dtype, float(f.max())
    ((64, 64), dtype('float32'), 1.0)
    """
    shp = _shape(shape)
    rng = np.random.default_rng(seed)
    nd = len(shp)
    lateral = max(shp[-2:])
    if n is None:
        n = max(3, int(round(12 * (shp[-1] * shp[-2]) / 128**2 * (1 if nd == 2 else max(1.0, shp[0] / 16)))))
    step = 0.5
    pts_all, w_all = [], []
    for _ in range(int(n)):
        length = int(rng.uniform(0.6, 1.6) * lateral / step)
        p = rng.uniform(0, 1, nd) * np.array(shp)
        d = rng.standard_normal(nd)
        if nd == 3 and not isotropic:
            d[0] *= 0.3  # filaments lie mostly parallel to the coverslip
        d /= np.linalg.norm(d)
        pts = np.empty((length, nd))
        # angular diffusion: tangent changes by ~ sqrt(step / persistence) per step
        kick = np.sqrt(step / persistence)
        for i in range(length):
            pts[i] = p
            d = d + kick * rng.standard_normal(nd) * (np.array([0.3, 1, 1]) if nd == 3 and not isotropic else 1)
            if nd == 3 and not isotropic:
                d[0] *= 0.97  # relax towards the lateral plane: filaments tilt gently in Z
            d /= np.linalg.norm(d)
            if nd == 3 and not 0 <= p[0] + step * d[0] <= shp[0] - 1:
                d[0] = -d[0]  # stay inside the (usually thin) Z range, like a filament under a coverslip
            p = p + step * d
        brightness = rng.uniform(0.4, 1.0)
        # brightness varies slowly along the filament (labelling density)
        mod = 1 + 0.25 * np.sin(np.arange(length) * step / rng.uniform(8, 25) + rng.uniform(0, 2 * np.pi))
        pts_all.append(pts)
        w_all.append(brightness * mod * step)
    img = _splat(shp, np.concatenate(pts_all), np.concatenate(w_all))
    img = ndimage.gaussian_filter(img, width)
    return _finish(img)


def membranes(shape: Sequence[int], seed: int | np.random.Generator | None = 0, n_cells: int | None = None,
              thickness: float = 1.0) -> np.ndarray:
    """Cell outlines: boundaries between neighbouring cells of a deformed Voronoi tessellation.

    Examples
    --------
    >>> m = membranes((64, 64), seed=1)
    >>> m.shape, float(m.min()) >= 0, float(m.max())
    ((64, 64), True, 1.0)
    """
    shp = _shape(shape)
    rng = np.random.default_rng(seed)
    nd = len(shp)
    if n_cells is None:
        n_cells = max(4, int(round(10 * np.prod(shp[-2:]) / 128**2)))
    seeds = rng.uniform(0, 1, (int(n_cells), nd)) * np.array(shp)
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float64) for s in shp], indexing="ij"), axis=-1)
    # smooth random warp makes the cell boundaries curved instead of straight Voronoi edges
    warp_amp = 0.06 * min(shp[-2:])
    for ax in range(nd):
        grid[..., ax] += warp_amp * _smooth_noise(shp, max(3.0, min(shp) / 6), rng)
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(seeds).query(grid.reshape(-1, nd), k=2)
    d1 = dist[:, 0].reshape(shp)
    d2 = dist[:, 1].reshape(shp)
    ridge = d2 - d1  # 0 on a boundary
    img = np.exp(-0.5 * (ridge / (2 * thickness)) ** 2)
    mod = 0.7 + 0.3 * np.tanh(_smooth_noise(shp, 4.0, rng))
    img = ndimage.gaussian_filter(img * mod, 0.6)
    return _finish(img)


def puncta(shape: Sequence[int], seed: int | np.random.Generator | None = 0, n: int | None = None,
           size: tuple[float, float] = (0.7, 2.0)) -> np.ndarray:
    """Vesicle-like spots: Gaussian blobs with random σ in ``size`` (pixels) and brightness.

    Examples
    --------
    >>> p = puncta((32, 48, 48), seed=2)
    >>> p.shape, float(p.max())
    ((32, 48, 48), 1.0)
    """
    shp = _shape(shape)
    rng = np.random.default_rng(seed)
    nd = len(shp)
    if n is None:
        n = max(5, int(round(60 * np.prod(shp[-2:]) / 128**2 * (1 if nd == 2 else 2))))
    img = np.zeros(shp)
    sigmas = rng.uniform(size[0], size[1], int(n))
    # group by similar size so that a few Gaussian filters render all spots
    edges = np.linspace(size[0], size[1], 5)
    pos = rng.uniform(0, 1, (int(n), nd)) * (np.array(shp) - 1)
    bright = rng.uniform(0.2, 1.0, int(n)) ** 1.5
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        sel = (sigmas >= lo) & (sigmas <= hi)
        if not sel.any():
            continue
        s = 0.5 * (lo + hi)
        layer = _splat(shp, pos[sel], bright[sel] * (2 * np.pi * s * s) ** (nd / 2))
        img += ndimage.gaussian_filter(layer, s)
    return _finish(img)


def nuclei(shape: Sequence[int], seed: int | np.random.Generator | None = 0, n: int | None = None,
           radius: tuple[float, float] | None = None) -> np.ndarray:
    """Nuclei: non-overlapping ellipsoids with soft edges, chromatin texture and nucleoli.

    Examples
    --------
    >>> m = nuclei((64, 64), seed=3)
    >>> m.shape, float(m.max())
    ((64, 64), 1.0)
    """
    shp = _shape(shape)
    rng = np.random.default_rng(seed)
    nd = len(shp)
    lat = min(shp[-2:])
    if radius is None:
        radius = (0.08 * lat, 0.16 * lat)
    if n is None:
        n = max(2, int(round(6 * np.prod(shp[-2:]) / 128**2)))
    img = np.zeros(shp)
    occupied = np.zeros(shp, dtype=bool)
    texture = 0.75 + 0.25 * np.tanh(_smooth_noise(shp, 1.5, rng))
    placed = 0
    for _ in range(int(n) * 10):
        if placed >= n:
            break
        r = rng.uniform(*radius)
        axes_r = r * rng.uniform(0.75, 1.25, nd)
        if nd == 3:
            axes_r[0] = min(axes_r[0] * 0.7, shp[0] / 2.5)
        c = rng.uniform(0, 1, nd) * np.array(shp)
        theta = rng.uniform(0, np.pi)
        # work in the bounding box of this nucleus only (cost ∝ nucleus, not image)
        ext = [axes_r[0] * 1.3 + 3] if nd == 3 else []
        ext += [axes_r[-2:].max() * 1.3 + 3] * 2
        box = tuple(slice(max(0, int(ci - e)), min(si, int(ci + e) + 1)) for ci, e, si in zip(c, ext, shp, strict=True))
        if any(b.stop <= b.start for b in box):
            continue
        coords = np.meshgrid(*[np.arange(b.start, b.stop, dtype=np.float64) for b in box], indexing="ij", sparse=True)
        dy, dx = coords[-2] - c[-2], coords[-1] - c[-1]
        u = np.cos(theta) * dy + np.sin(theta) * dx
        v = -np.sin(theta) * dy + np.cos(theta) * dx
        q = (u / axes_r[-2]) ** 2 + (v / axes_r[-1]) ** 2
        if nd == 3:
            q = q + ((coords[0] - c[0]) / axes_r[0]) ** 2
        inside = q < 1
        if (inside & occupied[box]).any() or not inside.any():
            continue
        occupied[box] |= q < 1.2
        body = 1.0 / (1.0 + np.exp((np.sqrt(q) - 1) * r / 1.2))  # soft edge, ~1 px
        level = rng.uniform(0.5, 0.9)
        nuc = level * body * texture[box]
        for _k in range(int(rng.integers(1, 4))):  # nucleoli: darker or brighter spots inside
            off = rng.uniform(-0.45, 0.45, nd) * axes_r
            rr = sum(((coords[i] - c[i] - off[i]) / (0.22 * r)) ** 2 for i in range(nd))
            nuc = nuc * (1 - 0.5 * np.exp(-rr)) if rng.random() < 0.5 else nuc + 0.3 * body * np.exp(-rr)
        img[box] = np.maximum(img[box], nuc)
        placed += 1
    img = ndimage.gaussian_filter(img, 0.7)
    return _finish(img)


def mixed(shape: Sequence[int], seed: int | np.random.Generator | None = 0) -> np.ndarray:
    """Cell-like scene: dim nuclei, filaments and bright puncta.

    Examples
    --------
    >>> mixed((48, 48), seed=0).shape
    (48, 48)
    """
    shp = _shape(shape)
    rng = np.random.default_rng(seed)
    s = rng.integers(0, 2**31, 3)
    img = 0.35 * nuclei(shp, int(s[0])) + 0.8 * filaments(shp, int(s[1])) + puncta(shp, int(s[2]))
    return _finish(img)


KINDS: dict[str, Callable[..., np.ndarray]] = {
    "filaments": filaments,
    "membranes": membranes,
    "puncta": puncta,
    "nuclei": nuclei,
    "mixed": mixed,
}


def phantom(kind: str, shape: Sequence[int], seed: int | np.random.Generator | None = 0, **kw: Any) -> np.ndarray:
    """Make a phantom of ``kind`` (one of :data:`KINDS`).

    Examples
    --------
    >>> phantom("puncta", (32, 32), seed=0).shape
    (32, 32)
    """
    if kind not in KINDS:
        raise FluoreconError(f"unknown phantom kind {kind!r}", hint=f"use one of {', '.join(KINDS)}")
    return KINDS[kind](shape, seed, **kw)
