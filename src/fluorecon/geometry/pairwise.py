"""Pairwise registration: sub-pixel phase correlation with a confidence, then rigid/affine refinement.

Confidence
----------
Two independent checks are combined, because a phase-correlation peak always exists:

- **significance** ``z``: height of the phase-correlation peak in robust standard deviations of the
  correlation surface. For two unrelated images the largest of ``N`` values is about
  ``sqrt(2 ln N)`` (≈ 4.5–5 for 10⁴–10⁵ pixels); a true match stands far above it;
- **overlap correlation** ``ncc``: Pearson correlation of the two images (lightly smoothed against
  shot noise) over their overlap after the shift.

``info["sharpness"]`` gives, per axis, the relative drop of ``ncc`` 2 px away from the optimum: near 0
along an edge or in smooth content (that component of the shift is poorly determined); stitching
uses it to weight each axis of a link.

``confidence = clip((z − z_chance + 1) / 3, 0, 1) · clip(ncc, 0, 1)`` with ``z_chance = sqrt(2 ln N) + 1``
and a result is flagged ``low_confidence`` when ``confidence < min_confidence`` (default 0.1) —
the caller must then warn, never silently use the transform.

Examples
--------
>>> from fluorecon.physics import motion
>>> sim = motion.simulate_tiling(grid=(1, 1), tile_shape=(96, 96), seed=0, photons=None)
>>> fixed = sim["tiles"][0]
>>> moving = np.roll(fixed, (3, -2), axis=(0, 1))
>>> r = phase_correlation(fixed, moving)
>>> [round(v, 1) for v in r.shift], r.low_confidence
([-3.0, 2.0], False)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage
from skimage.registration._phase_cross_correlation import _upsampled_dft

from fluorecon.errors import FluoreconError
from fluorecon.geometry.transforms import make_transform

__all__ = ["PairResult", "overlap_ncc", "phase_correlation", "refine_affine", "register_pair"]


@dataclass
class PairResult:
    """Result of a pairwise registration.

    ``shift`` moves ``moving`` onto ``fixed`` (``ndimage.shift(moving, shift) ≈ fixed``), pixels;
    ``matrix`` is the homogeneous fixed → moving matrix; ``confidence`` in [0, 1].
    """

    shift: tuple[float, ...]
    confidence: float
    low_confidence: bool
    significance: float
    ncc: float
    matrix: np.ndarray
    kind: str = "translation"
    info: dict[str, Any] = field(default_factory=dict)

    def to_transform(self, axes: str, voxel_size: Sequence[float] | None = None) -> dict[str, Any]:
        """The documented transform dict (:mod:`fluorecon.geometry.transforms`)."""
        metrics = {"significance": self.significance, "overlap_ncc": self.ncc, **self.info}
        return make_transform(self.matrix, self.kind, axes, confidence=self.confidence,
                              low_confidence=self.low_confidence, voxel_size=voxel_size, metrics=metrics)


def _prep(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, np.float32)
    a = a - a.mean()
    # Tukey-like window against edge effects of the circular correlation
    win = np.ones(a.shape, np.float32)
    for d, n in enumerate(a.shape):
        w = np.ones(n, np.float32)
        m = max(n // 8, 1)
        ramp = 0.5 - 0.5 * np.cos(np.linspace(0, np.pi, m, dtype=np.float32))
        w[:m] = ramp
        w[n - m:] = ramp[::-1]
        sh = [1] * a.ndim
        sh[d] = n
        win = win * w.reshape(sh)
    return a * win


def overlap_ncc(fixed: np.ndarray, moving: np.ndarray, shift: Sequence[float], sigma: float = 1.0) -> float:
    """Pearson correlation of ``fixed`` and ``moving`` shifted by ``shift`` over their common region.

    Examples
    --------
    >>> a = np.random.default_rng(0).random((32, 32))
    >>> round(overlap_ncc(a, a, (0, 0)), 3)
    1.0
    """
    s = np.round(np.asarray(shift)).astype(int)
    sl_f, sl_m = [], []
    for d, n in enumerate(fixed.shape):
        k = int(s[d])
        if abs(k) >= n - 2:
            return 0.0
        sl_f.append(slice(max(k, 0), n + min(k, 0)))
        sl_m.append(slice(max(-k, 0), n + min(-k, 0)))
    a = np.asarray(fixed, np.float32)[tuple(sl_f)]
    b = np.asarray(moving, np.float32)[tuple(sl_m)]
    if sigma > 0:
        a = ndimage.gaussian_filter(a, sigma)
        b = ndimage.gaussian_filter(b, sigma)
    a = a - a.mean()
    b = b - b.mean()
    den = float(np.sqrt((a * a).sum() * (b * b).sum()))
    return float((a * b).sum() / den) if den > 0 else 0.0


def phase_correlation(fixed: np.ndarray, moving: np.ndarray, upsample: int = 20, min_confidence: float = 0.1,
                      max_shift: Sequence[float] | float | None = None, refine: bool = True) -> PairResult:
    """Sub-pixel translation between two same-shape 2D/3D images, with a confidence.

    Parameters
    ----------
    fixed, moving : ndarray
        Same shape. ``moving`` is the image to move onto ``fixed``.
    upsample : int
        Sub-pixel precision 1/``upsample`` px (scikit-image's upsampled DFT).
    min_confidence : float
        Below this the result is flagged ``low_confidence``.
    max_shift : float or sequence, optional
        Largest plausible |shift| per axis (px); peaks beyond are ignored (stage-error bound).
    refine : bool
        Polish the sub-pixel shift by Gauss–Newton least squares on the unwindowed overlap
        (:func:`refine_translation`); removes the bias of the apodisation window towards 0.

    Returns
    -------
    PairResult

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> a, b = rng.random((64, 64)), rng.random((64, 64))
    >>> phase_correlation(a, b).low_confidence
    True
    """
    fixed = np.asarray(fixed, np.float32)
    moving = np.asarray(moving, np.float32)
    if fixed.shape != moving.shape:
        raise FluoreconError(f"images to register have different shapes {fixed.shape} and {moving.shape}",
                             hint="crop or pad them to the same shape")
    if fixed.ndim not in (2, 3):
        raise FluoreconError(f"phase correlation needs 2D or 3D images, got {fixed.ndim}-D")
    if min(fixed.shape) < 4:
        raise FluoreconError(f"images of shape {fixed.shape} are too small to register", hint="at least 4 px per axis")
    a, b = _prep(fixed), _prep(moving)
    fa, fb = np.fft.fftn(a), np.fft.fftn(b)
    cross = fa * np.conj(fb)
    cross /= np.maximum(np.abs(cross), 1e-12 * np.abs(cross).max() + 1e-30)
    surf = np.real(np.fft.ifftn(cross))
    if max_shift is not None:
        ms = np.broadcast_to(np.asarray(max_shift, float), (fixed.ndim,))
        mask = np.ones(surf.shape, bool)
        for d, n in enumerate(surf.shape):
            k = np.fft.fftfreq(n) * n
            sh = [1] * surf.ndim
            sh[d] = n
            mask &= (np.abs(k) <= ms[d] + 0.5).reshape(sh)
        surf_m = np.where(mask, surf, -np.inf)
    else:
        surf_m = surf
    peak = np.unravel_index(int(np.argmax(surf_m)), surf.shape)
    med = float(np.median(surf))
    mad = float(np.median(np.abs(surf - med))) * 1.4826 + 1e-12
    z = (float(surf[peak]) - med) / mad
    coarse = np.array([p if p <= n // 2 else p - n for p, n in zip(peak, surf.shape, strict=True)], float)
    # sub-pixel refinement: upsampled DFT of the cross-power spectrum around the chosen peak
    # (Guizar-Sicairos et al. 2008, as in scikit-image's phase_cross_correlation)
    shift = coarse.copy()
    if upsample > 1:
        region = float(np.ceil(upsample * 1.5))
        dftshift = np.fix(region / 2.0)
        offset = dftshift - coarse * upsample
        up = _upsampled_dft(cross.conj(), region, upsample, offset).conj()
        mx = np.array(np.unravel_index(int(np.argmax(np.abs(up))), up.shape), float) - dftshift
        if np.all(np.abs(mx / upsample) <= 1.0):
            shift = coarse + mx / upsample
    if refine:
        shift = refine_translation(fixed, moving, shift)
    ncc = overlap_ncc(fixed, moving, shift)
    # localisation per axis: how much the overlap correlation drops 2 px away from the optimum
    # (≈ 0 along an edge or in smooth content: that axis of the shift is poorly determined)
    sharp = []
    for d in range(fixed.ndim):
        e = np.zeros(fixed.ndim)
        e[d] = 2.0
        side = 0.5 * (overlap_ncc(fixed, moving, shift + e) + overlap_ncc(fixed, moving, shift - e))
        sharp.append(float(np.clip((ncc - side) / max(abs(ncc), 1e-6), 0.0, 1.0)))
    z_chance = float(np.sqrt(2 * np.log(surf.size))) + 1.0
    conf = float(np.clip((z - z_chance + 1.0) / 3.0, 0, 1) * np.clip(ncc, 0, 1))
    m = np.eye(fixed.ndim + 1)
    m[: fixed.ndim, fixed.ndim] = -shift
    return PairResult(tuple(float(v) for v in shift), conf, conf < min_confidence, float(z), float(ncc), m,
                      info={"z_chance": z_chance, "sharpness": sharp})


# ------------------------------------------------------------------------------------------------ refine
def refine_translation(fixed: np.ndarray, moving: np.ndarray, shift: Sequence[float], iterations: int = 8,
                       sigma: float = 1.0) -> np.ndarray:
    """Gauss–Newton (Lucas–Kanade) refinement of a translation on the overlap, in the spatial domain.

    Minimises ``Σ (fixed(x) − a · moving(x − s) − b)²`` over ``s`` (and gain ``a``, offset ``b``) on
    the pixels where both images are defined, with both images smoothed by the same Gaussian
    (``sigma`` px, against shot noise). Returns the input shift if an update diverges.

    Examples
    --------
    >>> from fluorecon.physics import motion
    >>> f = motion.procedural_specimen((0, 0), (48, 48), seed=3)
    >>> m = ndimage.shift(f, (0.3, -0.4), order=3, mode="nearest")
    >>> refine_translation(f, m, (0.0, 0.0)).round(1).tolist()
    [-0.3, 0.4]
    """
    a = ndimage.gaussian_filter(np.asarray(fixed, np.float64), sigma) if sigma > 0 else np.asarray(fixed, np.float64)
    b = ndimage.gaussian_filter(np.asarray(moving, np.float64), sigma) if sigma > 0 else np.asarray(moving, np.float64)
    s0 = np.asarray(shift, np.float64).copy()
    s = s0.copy()
    nd = a.ndim
    for _ in range(iterations):
        m = int(np.ceil(np.abs(s).max())) + 2
        if any(n - 2 * m < 4 for n in a.shape):
            return s0
        inner = tuple(slice(m, n - m) for n in a.shape)
        w = ndimage.shift(b, s, order=3, mode="nearest")[inner]
        grads = [g[inner] for g in np.gradient(ndimage.shift(b, s, order=3, mode="nearest"))]
        f = a[inner]
        # model: f ≈ α w + β ; d/ds w(x) = −∇w
        jac = np.stack([-g.ravel() for g in grads] + [w.ravel(), np.ones(w.size)], axis=1)
        alpha = 1.0
        sol, *_ = np.linalg.lstsq(jac, f.ravel() - 0.0, rcond=None)
        alpha = sol[nd] if abs(sol[nd]) > 1e-9 else 1.0
        ds = sol[:nd] / alpha
        if not np.all(np.isfinite(ds)) or np.abs(ds).max() > 2:
            return s0
        s = s + ds
        if np.abs(ds).max() < 1e-3:
            break
    if np.abs(s - s0).max() > 1.5:
        return s0
    return s


def _normalise(img: np.ndarray) -> np.ndarray:
    img = ndimage.gaussian_filter(np.asarray(img, np.float32), 1.0)
    lo, hi = np.percentile(img, [1, 99.5])
    return ((img - lo) / max(hi - lo, 1e-6)).astype(np.float32)


def _grid(shape: Sequence[int]) -> torch.Tensor:
    """Pixel coordinates (ndim, *shape) as float tensor."""
    return torch.stack(torch.meshgrid(*[torch.arange(s, dtype=torch.float32) for s in shape], indexing="ij"))


def sample(image: torch.Tensor, coords: torch.Tensor, padding_mode: str = "zeros") -> torch.Tensor:
    """Sample ``image`` (N, C, *spatial) at pixel coordinates ``coords`` (N, ndim, *out) with ``grid_sample``.

    The spatial transformer of the learned models: differentiable in both arguments.

    Examples
    --------
    >>> img = torch.arange(16.0).reshape(1, 1, 4, 4)
    >>> c = _grid((4, 4))[None]; c[:, 1] += 1
    >>> sample(img, c, "border")[0, 0, 0].tolist()
    [1.0, 2.0, 3.0, 3.0]
    """
    nd = coords.shape[1]
    shape = image.shape[2:]
    norm = [2 * coords[:, d] / max(shape[d] - 1, 1) - 1 for d in range(nd)]
    g = torch.stack(norm[::-1], dim=-1)  # grid_sample wants (x, y[, z])
    return F.grid_sample(image, g, mode="bilinear", padding_mode=padding_mode, align_corners=True)


def refine_affine(fixed: np.ndarray, moving: np.ndarray, init: np.ndarray | None = None, model: str = "affine",
                  levels: int = 3, iterations: int = 40) -> tuple[np.ndarray, dict[str, Any]]:
    """Refine a fixed → moving matrix by minimising the squared intensity difference (multi-scale L-BFGS).

    Parameters
    ----------
    fixed, moving : ndarray
        2D or 3D images (moving may differ in shape).
    init : ndarray, optional
        Initial homogeneous fixed → moving matrix (e.g. from :func:`phase_correlation`).
    model : {"rigid", "affine"}
        Rigid: rotation + translation (2D: 1 angle; 3D: rotation vector); affine: full matrix.
    levels, iterations : int
        Pyramid levels (factor 2) and L-BFGS iterations per level.

    Returns
    -------
    matrix, info
        Refined homogeneous matrix; info ``{"loss_before", "loss_after"}`` (normalised units).

    Examples
    --------
    >>> from fluorecon.physics import motion
    >>> f = motion.procedural_specimen((0, 0), (64, 64), seed=1)
    >>> m = np.eye(3); m[0, 2] = 1.5
    >>> mov = ndimage.affine_transform(f, np.linalg.inv(m)[:2, :2], np.linalg.inv(m)[:2, 2])
    >>> est, _ = refine_affine(f, mov, model="rigid")
    >>> round(float(est[0, 2]), 1)
    1.5
    """
    if model not in ("rigid", "affine"):
        raise FluoreconError(f"unknown refinement model {model!r}", hint="use rigid or affine")
    nd = fixed.ndim
    f0, m0 = _normalise(fixed), _normalise(moving)
    init = np.eye(nd + 1) if init is None else np.asarray(init, np.float64)
    c = np.array([(s - 1) / 2 for s in fixed.shape])
    # parameterise about the fixed image centre: x_m = A (x − c) + c + t
    a0 = init[:nd, :nd]
    t0 = init[:nd, nd] + a0 @ c - c
    nrot = 1 if nd == 2 else 3
    if model == "rigid":
        if nd == 2:
            p_rot = torch.tensor([float(np.arctan2(a0[1, 0], a0[0, 0]))], dtype=torch.float64, requires_grad=True)
        else:
            p_rot = torch.zeros(nrot, dtype=torch.float64, requires_grad=True)
        params = [p_rot]
    else:
        p_a = torch.tensor(a0, dtype=torch.float64, requires_grad=True)
        params = [p_a]
    p_t = torch.tensor(t0, dtype=torch.float64, requires_grad=True)
    params.append(p_t)

    def matrix_a() -> torch.Tensor:
        if model == "affine":
            return p_a
        if nd == 2:
            th = p_rot[0]
            return torch.stack([torch.stack([torch.cos(th), -torch.sin(th)]), torch.stack([torch.sin(th), torch.cos(th)])])
        k = torch.zeros(3, 3, dtype=torch.float64)
        k = k + torch.tensor([[0, 0, 0], [0, 0, -1], [0, 1, 0]], dtype=torch.float64) * p_rot[0]
        k = k + torch.tensor([[0, 0, 1], [0, 0, 0], [-1, 0, 0]], dtype=torch.float64) * p_rot[1]
        k = k + torch.tensor([[0, -1, 0], [1, 0, 0], [0, 0, 0]], dtype=torch.float64) * p_rot[2]
        return torch.matrix_exp(k) @ torch.tensor(a0, dtype=torch.float64)

    losses = {}
    for lvl in reversed(range(levels)):
        s = 2**lvl
        if min(fixed.shape) // s < 16:
            continue
        fz = ndimage.zoom(f0, 1 / s, order=1) if s > 1 else f0
        mz = ndimage.zoom(m0, 1 / s, order=1) if s > 1 else m0
        ft = torch.from_numpy(fz)[None, None]
        mt = torch.from_numpy(mz)[None, None]
        grid = _grid(fz.shape).double().reshape(nd, -1) * s  # full-resolution fixed coordinates
        cc = torch.tensor(c, dtype=torch.float64)[:, None]
        opt = torch.optim.LBFGS(params, lr=1, max_iter=iterations, line_search_fn="strong_wolfe")

        def objective(grid: torch.Tensor = grid, cc: torch.Tensor = cc, s: int = s, fz: np.ndarray = fz,
                      mt: torch.Tensor = mt, ft: torch.Tensor = ft) -> torch.Tensor:
            xm = matrix_a() @ (grid - cc) + cc + p_t[:, None]
            coords = (xm / s).float().reshape(1, nd, *fz.shape)
            warped = sample(mt, coords)
            inside = sample(torch.ones_like(mt), coords)
            return ((warped - ft) ** 2 * inside).sum() / inside.sum().clamp_min(1.0)

        def closure(opt: torch.optim.Optimizer = opt, objective: Any = objective) -> torch.Tensor:
            opt.zero_grad()
            loss = objective()
            loss.backward()
            return loss

        if "loss_before" not in losses:
            with torch.no_grad():
                losses["loss_before"] = float(objective())
        opt.step(closure)
        with torch.no_grad():
            losses["loss_after"] = float(objective())
    a = matrix_a().detach().numpy()
    t = p_t.detach().numpy()
    out = np.eye(nd + 1)
    out[:nd, :nd] = a
    out[:nd, nd] = t - a @ c + c
    return out, losses


def register_pair(fixed: np.ndarray, moving: np.ndarray, model: str = "translation", *, upsample: int = 20,
                  min_confidence: float = 0.1, max_shift: float | None = None) -> PairResult:
    """Register ``moving`` onto ``fixed``: phase correlation, then rigid/affine refinement if asked.

    Images of different shapes are padded (translation search) to a common shape. The confidence
    of a refined result is that of the phase correlation times the overlap correlation after the
    refinement.

    Examples
    --------
    >>> from fluorecon.physics import motion
    >>> f = motion.procedural_specimen((0, 0), (64, 64), seed=2)
    >>> r = register_pair(f, np.roll(f, 2, axis=1), "rigid")
    >>> round(r.shift[1], 1) if r.kind == "translation" else round(-float(r.matrix[1, 2]), 1)
    -2.0
    """
    fixed = np.asarray(fixed, np.float32)
    moving = np.asarray(moving, np.float32)
    if fixed.ndim != moving.ndim:
        raise FluoreconError(f"fixed ({fixed.ndim}-D) and moving ({moving.ndim}-D) images differ in dimension")
    if model not in ("translation", "rigid", "affine"):
        raise FluoreconError(f"unknown model {model!r} for register_pair", hint="translation, rigid or affine")
    shape = tuple(max(a, b) for a, b in zip(fixed.shape, moving.shape, strict=True))
    fp = np.pad(fixed, [(0, s - n) for s, n in zip(shape, fixed.shape, strict=True)], mode="edge")
    mp = np.pad(moving, [(0, s - n) for s, n in zip(shape, moving.shape, strict=True)], mode="edge")
    pc = phase_correlation(fp, mp, upsample=upsample, min_confidence=min_confidence, max_shift=max_shift)
    if model == "translation" or pc.low_confidence:
        return pc
    mat, info = refine_affine(fixed, moving, init=pc.matrix, model=model)
    nd = fixed.ndim
    warped = ndimage.affine_transform(moving, mat[:nd, :nd], mat[:nd, nd], output_shape=fixed.shape, order=1,
                                      mode="constant", cval=np.nan)
    ok = np.isfinite(warped)
    a = ndimage.gaussian_filter(fixed, 1.0)[ok]
    b = ndimage.gaussian_filter(np.nan_to_num(warped), 1.0)[ok]
    a, b = a - a.mean(), b - b.mean()
    ncc = float((a * b).sum() / max(np.sqrt((a * a).sum() * (b * b).sum()), 1e-12))
    conf = float(np.clip(pc.confidence / max(pc.ncc, 1e-6) * ncc, 0, 1))
    low = conf < min_confidence
    shift = tuple(float(-v) for v in mat[:nd, nd])
    return PairResult(shift, conf, low, pc.significance, ncc, mat, kind=model,
                      info={**pc.info, **info, "phase_correlation_shift": list(pc.shift)})
