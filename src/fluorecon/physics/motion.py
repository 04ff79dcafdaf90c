"""Simulated geometry: tilings of a large specimen, smooth deformations, advected textures.

The ground truths of :mod:`fluorecon.geometry`: every function returns the *known* answer (tile
positions, displacement fields, flows) with the simulated recording, so registration, stitching and
optical flow can be tested against it.

Conventions
-----------
- Positions and displacements are in **pixels**, in the order of the spatial axes (``(y, x)`` or
  ``(z, y, x)``).
- A displacement field ``u`` has shape ``(ndim, *shape)``. :func:`warp` is a *backward* warp:
  ``warp(image, u)(x) = image(x + u(x))``.
- An optical-flow field ``f`` between frames ``t`` and ``t+1`` follows scikit-image's
  ``optical_flow_tvl1(frame_t, frame_t1)`` convention: ``frame_t(x) ≈ frame_t1(x + f(x))``, i.e. content
  at ``x`` in frame ``t`` moves to ``x + f(x)`` in frame ``t+1``.

Examples
--------
>>> sim = simulate_tiling(grid=(2, 2), tile_shape=(64, 64), overlap=0.15, seed=0)
>>> sim["tiles"].shape, sim["positions"].shape
((4, 64, 64), (4, 2))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from fluorecon.errors import FluoreconError
from fluorecon.physics import phantoms
from fluorecon.utils import as_rng

__all__ = [
    "advected_movie",
    "affine_field",
    "deformed_series",
    "invert_field",
    "procedural_specimen",
    "random_affine",
    "random_deformation",
    "simulate_tiling",
    "smooth_flow",
    "warp",
]


# --------------------------------------------------------------------------------------------- warping
def warp(image: np.ndarray, field: np.ndarray, order: int = 1, mode: str = "nearest") -> np.ndarray:
    """Backward-warp ``image`` by a displacement field: ``out(x) = image(x + field(x))``.

    Parameters
    ----------
    image : ndarray
        2D or 3D image.
    field : ndarray
        ``(ndim, *image.shape)`` displacement in pixels.
    order : int
        Spline order of the interpolation (1 = linear).
    mode : str
        Boundary handling of :func:`scipy.ndimage.map_coordinates`.

    Examples
    --------
    >>> img = np.arange(16.0).reshape(4, 4)
    >>> u = np.zeros((2, 4, 4)); u[1] = 1.0
    >>> warp(img, u)[0, :3].tolist()
    [1.0, 2.0, 3.0]
    """
    image = np.asarray(image, np.float32)
    field = np.asarray(field, np.float32)
    if field.shape != (image.ndim, *image.shape):
        raise FluoreconError(f"displacement field of shape {field.shape} does not fit an image of shape {image.shape}",
                             hint=f"give a field of shape {(image.ndim, *image.shape)}")
    grid = np.indices(image.shape, dtype=np.float32)
    return ndimage.map_coordinates(image, grid + field, order=order, mode=mode).astype(np.float32)


def invert_field(field: np.ndarray, iterations: int = 10) -> np.ndarray:
    """Inverse of a smooth displacement field by fixed-point iteration: ``g(y) = -f(y + g(y))``.

    Examples
    --------
    >>> f = np.full((2, 8, 8), 0.5, np.float32)
    >>> float(invert_field(f)[0, 4, 4])
    -0.5
    """
    field = np.asarray(field, np.float32)
    g = -field.copy()
    grid = np.indices(field.shape[1:], dtype=np.float32)
    for _ in range(iterations):
        coords = grid + g
        g = -np.stack([ndimage.map_coordinates(field[i], coords, order=1, mode="nearest") for i in range(len(field))])
    return g.astype(np.float32)


# ------------------------------------------------------------------------------------------- specimens
def procedural_specimen(origin: Sequence[int], shape: Sequence[int], seed: int = 0, n_waves: int = 48,
                        cell: int = 24) -> np.ndarray:
    """A specimen defined everywhere by its global coordinates (any size, computed window by window).

    Sum of ``n_waves`` random plane waves (quasi-periodic texture) and Gaussian puncta placed per
    ``cell``-pixel cell from a hash of the cell index, so that any window ``[origin, origin+shape)``
    is computed independently — tiles of a mosaic larger than memory agree where they overlap.

    Examples
    --------
    >>> a = procedural_specimen((0, 0), (32, 32))
    >>> b = procedural_specimen((8, 8), (16, 16))
    >>> bool(np.allclose(a[8:24, 8:24], b))
    True
    """
    shape = tuple(int(s) for s in shape)
    origin = tuple(int(o) for o in origin)
    nd = len(shape)
    rng = np.random.default_rng(seed)
    k = rng.normal(size=(n_waves, nd))
    k /= np.linalg.norm(k, axis=1, keepdims=True)
    k *= rng.uniform(0.05, 0.35, size=(n_waves, 1))
    phase = rng.uniform(0, 2 * np.pi, n_waves)
    amp = rng.uniform(0.2, 1.0, n_waves)
    coords = [np.arange(o, o + s, dtype=np.float32) for o, s in zip(origin, shape, strict=True)]
    img = np.zeros(shape, np.float32)
    for i in range(n_waves):
        arg = np.float32(phase[i])
        for d in range(nd):
            sh = [1] * nd
            sh[d] = shape[d]
            arg = arg + (np.float32(k[i, d]) * coords[d]).reshape(sh)
        img += np.float32(amp[i]) * np.cos(arg)
    img = np.maximum(img / np.float32(np.sqrt(n_waves)), 0)
    # puncta from hashed cells
    lo = [o // cell - 1 for o in origin]
    hi = [(o + s) // cell + 1 for o, s in zip(origin, shape, strict=True)]
    pts = []
    for idx in np.ndindex(*[h - low + 1 for h, low in zip(hi, lo, strict=True)]):
        c = [i + low for i, low in zip(idx, lo, strict=True)]
        r = np.random.default_rng([seed + 7919, *[ci + 100000 for ci in c]])
        for _ in range(2):
            pts.append((np.array(c) + r.random(nd)) * cell)
    if pts:
        pad = 6
        big = tuple(s + 2 * pad for s in shape)
        spots = np.zeros(big, np.float32)
        p = np.round(np.array(pts) - np.array(origin) + pad).astype(int)
        ok = np.all((p >= 0) & (p < np.array(big)), axis=1)
        for q in p[ok]:
            spots[tuple(q)] += 1.0
        spots = ndimage.gaussian_filter(spots, 1.5, mode="constant") * (2 * np.pi * 1.5**2) ** (nd / 2)
        img = img + 1.5 * spots[tuple(slice(pad, pad + s) for s in shape)]
    return (img / 2.0).astype(np.float32)


# ------------------------------------------------------------------------------------------------ tiling
def simulate_tiling(specimen: np.ndarray | None = None, grid: Sequence[int] = (3, 3), tile_shape: Sequence[int] = (128, 128),
                    overlap: float = 0.1, jitter: float = 2.0, photons: float | None = 200.0, background: float = 0.05,
                    shading: float = 0.2, seed: int | np.random.Generator | None = 0) -> dict[str, Any]:
    """Tiles of a specimen at known sub-pixel positions, with stage jitter, shading and Poisson noise.

    Parameters
    ----------
    specimen : ndarray, optional
        The large truth (2D or 3D). ``None``: a :func:`fluorecon.physics.phantoms.mixed` specimen just
        large enough (plus :func:`procedural_specimen` texture, so that sparse areas still register).
    grid : tuple of int
        Tiles per spatial axis (row-major, last axis fastest).
    tile_shape : tuple of int
        Tile size in pixels.
    overlap : float
        Nominal overlap fraction between neighbours (0.1 = 10 %).
    jitter : float
        Stage error: each true position = nominal + uniform(−jitter, jitter) per axis (px, sub-pixel).
    photons : float or None
        Expected photons at intensity 1 (Poisson noise); None = noiseless.
    background : float
        Uniform background added before the noise (specimen intensity units).
    shading : float
        Vignetting strength: the illumination falls to ``1 − shading`` at the tile corners.
    seed : int or Generator

    Returns
    -------
    dict
        ``tiles`` (n, *tile_shape) float32, ``positions`` (true, n × ndim, px), ``nominal`` (n × ndim),
        ``grid_index`` (n × ndim), ``specimen``, ``flatfield``, ``tile_shape``, ``overlap``.

    Examples
    --------
    >>> sim = simulate_tiling(grid=(1, 2), tile_shape=(32, 32), jitter=0, seed=1, photons=None, shading=0)
    >>> bool(np.allclose(sim["tiles"][1][:, :3], sim["tiles"][0][:, -3:], atol=1e-3))
    True
    """
    rng = as_rng(seed)
    tile_shape = tuple(int(s) for s in tile_shape)
    grid = tuple(int(g) for g in grid)
    nd = len(tile_shape)
    if len(grid) != nd:
        raise FluoreconError(f"grid {grid} and tile shape {tile_shape} have different dimensions")
    if not 0 <= overlap < 1:
        raise FluoreconError(f"overlap must be in [0, 1), got {overlap}")
    step = [int(round(s * (1 - overlap))) for s in tile_shape]
    nominal = np.array([[i * st for i, st in zip(idx, step, strict=True)] for idx in np.ndindex(*grid)], np.float64)
    margin = int(np.ceil(jitter)) + 4
    nominal += margin
    positions = nominal + rng.uniform(-jitter, jitter, size=nominal.shape)
    need = [int(nominal[:, d].max() + tile_shape[d] + margin + 4) for d in range(nd)]
    if specimen is None:
        base = procedural_specimen((0,) * nd, need, seed=int(rng.integers(1 << 30)))
        specimen = 0.6 * base + phantoms.mixed(need, seed=int(rng.integers(1 << 30)))
    specimen = np.asarray(specimen, np.float32)
    if any(specimen.shape[d] < need[d] for d in range(nd)):
        raise FluoreconError(f"specimen of shape {specimen.shape} is too small for a {grid} tiling of {tile_shape} tiles",
                             hint=f"give a specimen of at least {tuple(need)}")
    # flat-field: smooth radial vignetting
    c = [np.linspace(-1, 1, s) for s in tile_shape]
    r2 = sum(np.meshgrid(*[ci**2 for ci in c], indexing="ij")) / nd
    flat = (1 - shading * r2).astype(np.float32)
    tiles = []
    local = np.indices(tile_shape, dtype=np.float64)
    for p in positions:
        coords = local + p.reshape((nd,) + (1,) * nd)
        t = ndimage.map_coordinates(specimen, coords, order=3, mode="nearest").astype(np.float32)
        t = np.maximum(t, 0) * flat + background
        if photons is not None:
            t = rng.poisson(t * photons).astype(np.float32) / np.float32(photons)
        tiles.append(t.astype(np.float32))
    return {"tiles": np.stack(tiles), "positions": positions, "nominal": nominal,
            "grid_index": np.array(list(np.ndindex(*grid))), "specimen": specimen, "flatfield": flat,
            "tile_shape": tile_shape, "overlap": overlap, "grid": grid}


# --------------------------------------------------------------------------------------------- fields
def smooth_flow(shape: Sequence[int], amplitude: float = 2.0, smoothness: float = 16.0,
                seed: int | np.random.Generator | None = 0, translation: float = 0.0) -> np.ndarray:
    """A random smooth displacement field ``(ndim, *shape)`` with RMS ≈ ``amplitude`` px.

    Gaussian-filtered white noise (σ = ``smoothness`` px) rescaled to the requested RMS per
    component, plus an optional random global translation of up to ``translation`` px.

    Examples
    --------
    >>> u = smooth_flow((32, 32), amplitude=1.5, seed=0)
    >>> u.shape, round(float(np.sqrt((u**2).mean(axis=(1, 2))).mean()), 2)
    ((2, 32, 32), 1.5)
    """
    rng = as_rng(seed)
    shape = tuple(int(s) for s in shape)
    out = []
    for _ in shape:
        f = ndimage.gaussian_filter(rng.normal(size=shape), smoothness, mode="wrap")
        f = f - f.mean()
        f *= amplitude / max(float(np.sqrt((f**2).mean())), 1e-12)
        out.append(f + rng.uniform(-translation, translation))
    return np.stack(out).astype(np.float32)


def random_deformation(shape: Sequence[int], amplitude: float = 3.0, smoothness: float = 12.0,
                       seed: int | np.random.Generator | None = 0) -> np.ndarray:
    """A smooth non-affine deformation: :func:`smooth_flow` with its best affine fit removed.

    Examples
    --------
    >>> u = random_deformation((32, 32), seed=0)
    >>> u.shape
    (2, 32, 32)
    """
    u = smooth_flow(shape, amplitude, smoothness, seed)
    nd = len(shape)
    grid = np.indices(shape, dtype=np.float64).reshape(nd, -1)
    a = np.vstack([grid, np.ones(grid.shape[1])]).T
    for i in range(nd):
        coef, *_ = np.linalg.lstsq(a, u[i].ravel(), rcond=None)
        u[i] -= (a @ coef).reshape(shape).astype(np.float32)
    rms = float(np.sqrt((u**2).sum(0).mean()))
    return (u * (amplitude / max(rms, 1e-12))).astype(np.float32)


def random_affine(ndim: int = 2, rotation_deg: float = 3.0, scale: float = 0.03, shear: float = 0.02,
                  translation: float = 4.0, seed: int | np.random.Generator | None = 0) -> np.ndarray:
    """A random small affine ``(ndim+1, ndim+1)`` homogeneous matrix (about the image origin).

    Examples
    --------
    >>> random_affine(2, seed=0).shape
    (3, 3)
    """
    rng = as_rng(seed)
    a = np.eye(ndim)
    if ndim == 2:
        t = np.deg2rad(rng.uniform(-rotation_deg, rotation_deg))
        a = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
    a = a @ (np.eye(ndim) + np.diag(rng.uniform(-scale, scale, ndim)))
    a = a + (rng.uniform(-shear, shear, (ndim, ndim)) * (1 - np.eye(ndim)))
    m = np.eye(ndim + 1)
    m[:ndim, :ndim] = a
    m[:ndim, ndim] = rng.uniform(-translation, translation, ndim)
    return m


def affine_field(matrix: np.ndarray, shape: Sequence[int], center: Sequence[float] | None = None) -> np.ndarray:
    """Displacement field of ``x → A (x − c) + c + t`` (homogeneous ``matrix``) on a grid: ``(ndim, *shape)``.

    Examples
    --------
    >>> m = np.eye(3); m[0, 2] = 2.0
    >>> float(affine_field(m, (4, 4))[0].mean())
    2.0
    """
    shape = tuple(int(s) for s in shape)
    nd = len(shape)
    c = np.array([(s - 1) / 2 for s in shape]) if center is None else np.asarray(center, float)
    x = np.indices(shape, dtype=np.float64).reshape(nd, -1) - c[:, None]
    y = matrix[:nd, :nd] @ x + matrix[:nd, nd:nd + 1] + c[:, None]
    return (y - x - c[:, None]).reshape(nd, *shape).astype(np.float32)


def deformed_series(template: np.ndarray | None = None, n_frames: int = 4, shape: Sequence[int] = (96, 96),
                    affine: bool = True, amplitude: float = 3.0, smoothness: float = 12.0,
                    photons: float | None = 300.0, seed: int | np.random.Generator | None = 0) -> dict[str, Any]:
    """Frames of a template under random affine + smooth deformations, with their true fields.

    ``frame_k(x) = template(x + field_k(x))`` (backward warp) up to noise, so registering a frame to
    the template means estimating ``field_k``.

    Returns
    -------
    dict
        ``frames`` (n, *shape), ``template``, ``fields`` (n, ndim, *shape), ``affine_fields``,
        ``matrices`` (n, ndim+1, ndim+1).

    Examples
    --------
    >>> s = deformed_series(n_frames=2, shape=(32, 32), seed=0)
    >>> s["frames"].shape, s["fields"].shape
    ((2, 32, 32), (2, 2, 32, 32))
    """
    rng = as_rng(seed)
    if template is None:
        template = phantoms.mixed(shape, seed=int(rng.integers(1 << 30))) + 0.5 * procedural_specimen(
            (0,) * len(shape), shape, seed=int(rng.integers(1 << 30)))
    template = np.asarray(template, np.float32)
    shape = template.shape
    nd = template.ndim
    frames, fields, aff_fields, mats = [], [], [], []
    for _ in range(n_frames):
        m = random_affine(nd, seed=rng) if affine else np.eye(nd + 1)
        fa = affine_field(m, shape)
        fd = random_deformation(shape, amplitude, smoothness, seed=rng)
        # compose: x → x + fd(x) → then affine displacement sampled there
        coords = np.indices(shape, dtype=np.float32) + fd
        fa_at = np.stack([ndimage.map_coordinates(fa[i], coords, order=1, mode="nearest") for i in range(nd)])
        f = fd + fa_at
        fr = warp(template, f, order=3)
        fr = np.maximum(fr, 0) + 0.05
        if photons is not None:
            fr = rng.poisson(fr * photons).astype(np.float32) / np.float32(photons)
        frames.append(fr.astype(np.float32))
        fields.append(f)
        aff_fields.append(fa)
        mats.append(m)
    return {"frames": np.stack(frames), "template": template, "fields": np.stack(fields).astype(np.float32),
            "affine_fields": np.stack(aff_fields), "matrices": np.stack(mats)}


def advected_movie(shape: Sequence[int] = (96, 96), n_frames: int = 4, amplitude: float = 1.5, smoothness: float = 12.0,
                   bleaching: float = 0.05, photons: float | None = 30.0, background: float = 0.05,
                   texture: np.ndarray | None = None, seed: int | np.random.Generator | None = 0) -> dict[str, Any]:
    """A fluorescence time-lapse of a texture advected by smooth flows, with photobleaching and Poisson noise.

    Each step draws a new smooth flow ``f_t`` and makes ``truth_{t+1}(y) = truth_t(y + g(y))`` with
    ``g`` the inverse of ``f_t`` — so ``truth_t(x) = truth_{t+1}(x + f_t(x))`` exactly as in
    scikit-image's flow convention — times ``exp(−bleaching)``.

    Returns
    -------
    dict
        ``movie`` (T, *shape) noisy float32, ``truth`` (T, *shape), ``flows`` (T−1, ndim, *shape) px/frame.

    Examples
    --------
    >>> m = advected_movie((32, 32), n_frames=3, seed=0)
    >>> m["movie"].shape, m["flows"].shape
    ((3, 32, 32), (2, 2, 32, 32))
    """
    rng = as_rng(seed)
    shape = tuple(int(s) for s in shape)
    if n_frames < 2:
        raise FluoreconError("an advected movie needs at least 2 frames")
    if texture is None:
        texture = phantoms.mixed(shape, seed=int(rng.integers(1 << 30))) + 0.5 * procedural_specimen(
            (0,) * len(shape), shape, seed=int(rng.integers(1 << 30)))
    truth = [np.asarray(texture, np.float32)]
    flows = []
    for _ in range(n_frames - 1):
        f = smooth_flow(shape, amplitude, smoothness, seed=rng, translation=amplitude)
        g = invert_field(f)
        nxt = warp(truth[-1], g, order=3) * np.float32(np.exp(-bleaching))
        truth.append(np.maximum(nxt, 0).astype(np.float32))
        flows.append(f)
    truth_arr = np.stack(truth)
    movie = truth_arr + background
    if photons is not None:
        movie = rng.poisson(movie * photons).astype(np.float32) / np.float32(photons)
    return {"movie": movie.astype(np.float32), "truth": truth_arr, "flows": np.stack(flows).astype(np.float32)}
