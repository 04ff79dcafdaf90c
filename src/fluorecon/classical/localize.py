"""Classical single-molecule localization: detection, batched Poisson MLE with Cramér–Rao bounds, post-processing.

Pipeline (:func:`localize`): ADU → photo-electrons with the camera model; candidates from a
difference-of-Gaussians filter and local maxima above a threshold set from the filtered image's
robust noise level (:func:`detect`); all regions of interest fitted **at once** by a batched
Levenberg–Marquardt / Fisher-scoring maximisation of the Poisson likelihood of an integrated
Gaussian PSF (:func:`fit_mle`; x, y, photons, background, optionally sigma, or z through an
astigmatic calibration); the Cramér–Rao lower bound of every parameter from the Fisher information
at the estimate.

Camera noise enters the likelihood through two standard approximations: EMCCD excess noise (F = 2)
is absorbed by fitting ``data/F`` (Poisson with the right mean-variance ratio), and Gaussian read
noise by adding its variance ``γ`` (photons²) to data and model (Huang et al. 2013, sCMOS).

Post-processing: :func:`render` (histogram or Gaussian), :func:`drift_correct` (redundant
cross-correlation, Wang et al. 2014), :func:`merge` (one emitter across consecutive frames) and
:func:`filter_localizations`.

Tables are dicts of numpy columns with ThunderSTORM names (``frame`` from 1, ``x [nm]``, ...);
positions are in nm with the origin at the image's top-left corner (pixel centres at
``(j + 0.5)·pixel_size``).

Examples
--------
>>> from fluorecon.physics.smlm import SMLMCamera, simulate_movie
>>> cam = SMLMCamera(baseline=100, gain=1.0, read_noise=1.0)
>>> frames, truth = simulate_movie(3, (24, 24), 100.0, density=0.3, psf=120.0, camera=cam, seed=1)
>>> locs = localize(frames, cam, pixel_size=100.0, psf_sigma=120.0)
>>> sorted(k for k in locs if "[nm]" in k)[:3]
['crlb_x [nm]', 'crlb_y [nm]', 'sigma [nm]']
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from scipy.spatial import cKDTree

from fluorecon.errors import FluoreconError
from fluorecon.physics.smlm import AstigmaticPSF, GaussianPSF, SMLMCamera

__all__ = ["detect", "drift_correct", "filter_localizations", "fit_mle", "localize", "merge", "render"]

_SQ2PI = math.sqrt(2 * math.pi)


def _cols(table: Any) -> dict[str, np.ndarray]:
    if hasattr(table, "outputs") and hasattr(table, "main"):
        table = table.outputs[table.main]
    cols = table.columns if hasattr(table, "columns") else table
    return {k: np.asarray(v) for k, v in cols.items()}


def _need(cols: dict[str, np.ndarray], names: tuple[str, ...]) -> None:
    missing = [c for c in names if c not in cols]
    if missing:
        raise FluoreconError(f"the localization table lacks column(s) {', '.join(repr(m) for m in missing)}",
                             hint=f"it has {', '.join(cols) or 'no columns'}")


# ---------------------------------------------------------------------------------------------- detect
def detect(photons: np.ndarray, sigma: float, threshold: float = 5.0, *, border: int = 0,
           min_distance: int | None = None, noise_var: float | np.ndarray | None = None) -> np.ndarray:
    """Candidate emitters: local maxima of a difference-of-Gaussians above ``threshold`` noise SDs.

    Parameters
    ----------
    photons : (T, Y, X) array
        Frames in photo-electrons (baseline removed).
    sigma : float
        PSF sigma in pixels.
    threshold : float
        In noise SDs of the DoG image: with ``noise_var`` (per-pixel variance of the frames in
        photons², scalar or per frame ``(T,)``) the SD is propagated through the filter
        (``sqrt(noise_var · Σ k²)``); otherwise it is the DoG image's robust SD (1.4826 × MAD).
    border : int
        Pixels excluded at the frame edges.
    min_distance : int, optional
        Half-size of the local-maximum window (default ``max(1, round(sigma))``).

    Returns
    -------
    (n, 3) int array of ``(frame index from 0, row, col)``.

    Examples
    --------
    >>> img = np.zeros((1, 15, 15), np.float32); img[0, 7, 5] = 100
    >>> detect(img + 1, 1.0).tolist()
    [[0, 7, 5]]
    """
    x = np.asarray(photons, np.float32)
    if x.ndim == 2:
        x = x[None]
    s = float(sigma)
    dog = ndimage.gaussian_filter(x, (0, s, s), mode="mirror") - ndimage.gaussian_filter(
        x, (0, 2.5 * s, 2.5 * s), mode="mirror")
    if noise_var is not None:
        m = 8 * int(math.ceil(2.5 * s)) + 1
        delta = np.zeros((1, m, m), np.float64)
        c = delta.shape[1] // 2
        delta[0, c, c] = 1.0
        kern = ndimage.gaussian_filter(delta, (0, s, s), mode="constant") - ndimage.gaussian_filter(
            delta, (0, 2.5 * s, 2.5 * s), mode="constant")
        nv = np.asarray(noise_var, np.float64)
        noise = np.sqrt(np.clip(nv, 1e-12, None) * float((kern**2).sum()))
        noise = noise.reshape(-1, 1, 1) if noise.ndim == 1 else noise
    else:
        sample = dog[:, ::2, ::2].ravel()
        noise = max(1.4826 * float(np.median(np.abs(sample - np.median(sample)))), 1e-6)
    r = int(min_distance) if min_distance else max(1, int(round(s)))
    mx = ndimage.maximum_filter(dog, size=(1, 2 * r + 1, 2 * r + 1), mode="nearest")
    peaks = (dog == mx) & (dog > threshold * noise)
    if border > 0:
        peaks[:, :border] = peaks[:, -border:] = False
        peaks[:, :, :border] = peaks[:, :, -border:] = False
    return np.argwhere(peaks)


# ------------------------------------------------------------------------------------------------ model
def _erf_terms(c: torch.Tensor, s: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Integrated Gaussian E, dE/dc and dE/ds over ``n`` unit pixels (batched)."""
    k = torch.arange(n + 1, dtype=c.dtype, device=c.device)
    a = (k - c[:, None]) / s[:, None]  # (N, n+1)
    cdf = 0.5 * torch.erf(a / math.sqrt(2))
    pdf = torch.exp(-0.5 * a * a) / _SQ2PI
    e = cdf[:, 1:] - cdf[:, :-1]
    de_dc = -(pdf[:, 1:] - pdf[:, :-1]) / s[:, None]
    de_ds = -(a[:, 1:] * pdf[:, 1:] - a[:, :-1] * pdf[:, :-1]) / s[:, None]
    return e, de_dc, de_ds


def _model(theta: torch.Tensor, r: int, mode: str, psf: Any, pixel_size: float,
           sigma: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Expected photons (N, r*r) and Jacobian (N, P, r*r) for parameters ``theta`` (N, P)."""
    x, y, n, b = theta[:, 0], theta[:, 1], theta[:, 2], theta[:, 3]
    if mode == "z":
        z = theta[:, 4]
        sx, sy = psf.sigmas(z, pixel_size)
        dsx, dsy = psf.dsigmas_dz(z, pixel_size)
    elif mode == "sigma":
        sx = sy = theta[:, 4]
    else:
        sx = sy = torch.full_like(x, sigma)
    ex, dex, dsxe = _erf_terms(x, sx, r)
    ey, dey, dsye = _erf_terms(y, sy, r)
    shape = ey[:, :, None] * ex[:, None, :]
    mu = b[:, None, None] + n[:, None, None] * shape
    jac = [n[:, None, None] * ey[:, :, None] * dex[:, None, :],
           n[:, None, None] * dey[:, :, None] * ex[:, None, :],
           shape, torch.ones_like(shape)]
    if mode == "z":
        jac.append(n[:, None, None] * (ey[:, :, None] * (dsxe * dsx[:, None])[:, None, :]
                                       + (dsye * dsy[:, None])[:, :, None] * ex[:, None, :]))
    elif mode == "sigma":
        jac.append(n[:, None, None] * (ey[:, :, None] * dsxe[:, None, :] + dsye[:, :, None] * ex[:, None, :]))
    j = torch.stack(jac, 1).reshape(len(theta), len(jac), r * r)
    return mu.reshape(len(theta), r * r), j


def fit_mle(rois: np.ndarray, sigma: float = 1.3, *, psf: GaussianPSF | AstigmaticPSF | None = None,
            pixel_size: float = 100.0, fit_sigma: bool = False, excess: float = 1.0,
            read_var: float | np.ndarray = 0.0, iterations: int = 30, z_starts: tuple[float, ...] = (-300.0, 0.0, 300.0),
            ) -> dict[str, np.ndarray]:
    """Batched Poisson maximum-likelihood fit of an integrated Gaussian to many ROIs at once.

    Levenberg–Marquardt on the Fisher-scoring normal equations ``(I + λ·diag I) Δ = ∇ log L`` with
    per-spot damping (a step is kept only when it raises that spot's likelihood).

    Parameters
    ----------
    rois : (N, R, R) array
        Photo-electrons per pixel (baseline removed).
    sigma : float
        PSF sigma in pixels (2D fixed-sigma model; the start value with ``fit_sigma``).
    psf : AstigmaticPSF, optional
        Fit z (nm) through the calibration ``σx(z), σy(z)`` (``pixel_size`` converts to pixels).
    fit_sigma : bool
        Also fit one sigma per spot.
    excess : float
        Noise excess factor (2 for EMCCD).
    read_var : float or (N, R, R) array
        Read-noise variance in photo-electrons² (per pixel for sCMOS).
    iterations : int
    z_starts : tuple of float
        Astigmatic fits start at each of these depths (nm) and keep the best likelihood.

    Returns
    -------
    dict
        ``x``, ``y`` (pixels within the ROI, pixel k spans [k, k+1)), ``photons``, ``background``
        (per pixel), ``sigma`` (pixels) or ``z`` (nm), ``crlb_x``, ``crlb_y``, ``crlb_photons``,
        ``crlb_background`` (+ ``crlb_sigma``/``crlb_z``), ``loglik``, ``deviance`` (per degree of
        freedom), ``converged``; the same keys, of length 0, for ``N = 0``.

    Examples
    --------
    >>> from fluorecon.physics.smlm import integrated_gaussian
    >>> ex = integrated_gaussian(np.array([4.2]), np.array([1.3]), 9)[0]
    >>> ey = integrated_gaussian(np.array([4.7]), np.array([1.3]), 9)[0]
    >>> roi = (1000 * np.outer(ey, ex) + 10)[None]
    >>> r = fit_mle(roi, 1.3)
    >>> round(float(r["x"][0]), 3), round(float(r["y"][0]), 3), round(float(r["photons"][0]))
    (4.2, 4.7, 1000)
    """
    d = torch.as_tensor(np.asarray(rois, np.float64))
    if d.ndim != 3 or d.shape[1] != d.shape[2]:
        raise FluoreconError(f"ROIs must be (N, R, R), got {tuple(d.shape)}")
    n_spots, r, _ = d.shape
    if psf is not None and not isinstance(psf, AstigmaticPSF):
        sigma = psf.sigma / pixel_size
        psf = None
    mode = "z" if psf is not None else ("sigma" if fit_sigma else "xy")
    if n_spots == 0:
        # Nothing detected: the same keys and dtypes as a non-empty fit of this mode (callers index them all).
        empty = {k: np.zeros(0, np.float64) for k in ("x", "y", "photons", "background", "crlb_x", "crlb_y",
                                                       "crlb_photons", "crlb_background", "loglik", "deviance")}
        empty["converged"] = np.zeros(0, bool)
        for k in (("z", "crlb_z") if mode == "z" else ("sigma", "crlb_sigma")):
            empty[k] = np.zeros(0, np.float64)
        return empty
    gam = torch.as_tensor(np.asarray(read_var, np.float64)).reshape(-1, r * r) if np.ndim(read_var) else \
        torch.full((1, 1), float(read_var), dtype=torch.float64)
    gam = gam.expand(n_spots, r * r) if gam.shape[0] != n_spots else gam
    F = float(excess)
    flat = d.reshape(n_spots, r * r)
    data_e = (flat / F + gam / F**2).clamp(min=0)

    border = torch.cat([d[:, 0], d[:, -1], d[:, 1:-1, 0], d[:, 1:-1, -1]], 1)
    b0 = border.median(1).values.clamp(min=0.5)
    n0 = (flat - b0[:, None]).clamp(min=0).sum(1).clamp(min=10.0)
    w = (d - b0[:, None, None]).clamp(min=0)
    ws = w.sum((1, 2)).clamp(min=1e-6)
    k = torch.arange(r, dtype=torch.float64) + 0.5
    x0 = (w.sum(1) * k).sum(1) / ws
    y0 = (w.sum(2) * k).sum(1) / ws
    starts: list[torch.Tensor] = []
    if mode == "z":
        for z in z_starts:
            starts.append(torch.stack([x0, y0, n0, b0, torch.full_like(x0, z)], 1))
    elif mode == "sigma":
        starts.append(torch.stack([x0, y0, n0, b0, torch.full_like(x0, sigma)], 1))
    else:
        starts.append(torch.stack([x0, y0, n0, b0], 1))

    def loglik(th: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        mu, j = _model(th, r, mode, psf, pixel_size, sigma)
        mu_e = (mu / F + gam / F**2).clamp(min=1e-9)
        ll = (data_e * torch.log(mu_e) - mu_e).sum(1)
        return ll, mu_e, j / F

    def clamp(th: torch.Tensor) -> torch.Tensor:
        th = th.clone()
        th[:, 0:2] = th[:, 0:2].clamp(-1.0, r + 1.0)
        th[:, 2] = th[:, 2].clamp(min=1.0)
        th[:, 3] = th[:, 3].clamp(min=1e-3)
        if mode == "sigma":
            th[:, 4] = th[:, 4].clamp(0.4, r / 2)
        if mode == "z":
            th[:, 4] = th[:, 4].clamp(-3 * psf.d, 3 * psf.d)
        return th

    best: tuple[torch.Tensor, torch.Tensor] | None = None
    for th in starts:
        lam = torch.full((n_spots,), 1e-3, dtype=torch.float64)
        ll, mu_e, j = loglik(th)
        for _ in range(iterations):
            grad = (j * (data_e / mu_e - 1)[:, None, :]).sum(2)
            info = torch.einsum("npk,nqk->npq", j / mu_e[:, None, :], j)
            diag = torch.diagonal(info, dim1=1, dim2=2)
            a = info + torch.diag_embed(lam[:, None] * diag + 1e-9)
            step = torch.linalg.solve(a, grad[..., None])[..., 0]
            cand = clamp(th + step)
            ll_c, mu_c, j_c = loglik(cand)
            ok = ll_c >= ll - 1e-9
            th = torch.where(ok[:, None], cand, th)
            ll = torch.where(ok, ll_c, ll)
            mu_e = torch.where(ok[:, None], mu_c, mu_e)
            j = torch.where(ok[:, None, None], j_c, j)
            lam = torch.where(ok, (lam / 10).clamp(min=1e-7), (lam * 10).clamp(max=1e7))
        if best is None:
            best = (th, ll)
        else:
            better = ll > best[1]
            best = (torch.where(better[:, None], th, best[0]), torch.where(better, ll, best[1]))
    th, ll = best  # type: ignore[misc]
    _, mu_e, j = loglik(th)
    info = torch.einsum("npk,nqk->npq", j / mu_e[:, None, :], j)
    try:
        cov = torch.linalg.inv(info)
        crlb = torch.sqrt(torch.diagonal(cov, dim1=1, dim2=2).clamp(min=0))
    except RuntimeError:
        crlb = torch.full_like(th, float("nan"))
    # Poisson deviance 2·Σ[d·log(d/μ) − (d − μ)] ~ χ²(R² − P) for a good fit: large for overlapping emitters
    dev = 2 * (torch.where(data_e > 0, data_e * torch.log(data_e.clamp(min=1e-12) / mu_e), torch.zeros_like(mu_e))
               - (data_e - mu_e)).sum(1)
    dof = r * r - th.shape[1]
    conv = torch.isfinite(crlb).all(1) & (th[:, 0] > 0) & (th[:, 0] < r) & (th[:, 1] > 0) & (th[:, 1] < r)
    out = {"x": th[:, 0], "y": th[:, 1], "photons": th[:, 2], "background": th[:, 3], "crlb_x": crlb[:, 0],
           "crlb_y": crlb[:, 1], "crlb_photons": crlb[:, 2], "crlb_background": crlb[:, 3], "loglik": ll,
           "deviance": dev / dof, "converged": conv}
    if mode == "z":
        out["z"], out["crlb_z"] = th[:, 4], crlb[:, 4]
    elif mode == "sigma":
        out["sigma"], out["crlb_sigma"] = th[:, 4], crlb[:, 4]
    else:
        out["sigma"], out["crlb_sigma"] = torch.full_like(th[:, 0], sigma), torch.zeros_like(th[:, 0])
    return {k: v.numpy() for k, v in out.items()}


# --------------------------------------------------------------------------------------------- localize
def extract_rois(frames: np.ndarray, candidates: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``size``² ROIs around ``(t, row, col)`` candidates, shifted inside the frame at the edges.

    Returns ``(rois (N, size, size), origins (N, 2) row/col of each ROI's top-left pixel)``.
    """
    t, h, w = frames.shape
    if size > min(h, w):
        raise FluoreconError(f"fit window {size} px is larger than the frames ({h}×{w})",
                             hint="use a smaller --roi or larger frames")
    c = np.asarray(candidates, np.int64).reshape(-1, 3)
    r0 = np.clip(c[:, 1] - size // 2, 0, h - size)
    c0 = np.clip(c[:, 2] - size // 2, 0, w - size)
    ii = r0[:, None, None] + np.arange(size)[None, :, None]
    jj = c0[:, None, None] + np.arange(size)[None, None, :]
    rois = frames[c[:, 0][:, None, None], ii, jj]
    return rois.astype(np.float64), np.stack([r0, c0], 1)


def localize(frames: np.ndarray, camera: SMLMCamera, pixel_size: float, psf_sigma: float | None = None, *,
             psf: GaussianPSF | AstigmaticPSF | None = None, threshold: float = 5.0, roi: int | None = None,
             fit_sigma: bool = False, iterations: int = 30, batch: int = 20000,
             progress: Any = None) -> dict[str, np.ndarray]:
    """Localize emitters in an SMLM movie (ADU) with detection + batched Poisson MLE.

    Parameters
    ----------
    frames : (T, Y, X) array in ADU
    camera : SMLMCamera
    pixel_size : float
        nm per camera pixel.
    psf_sigma : float
        Gaussian PSF sigma in nm (or give ``psf``).
    psf : GaussianPSF or AstigmaticPSF, optional
        An astigmatic PSF makes the fit 3D (``z [nm]`` column).
    threshold : float
        Detection threshold in noise SDs of the DoG image.
    roi : int, optional
        Fit window (odd, pixels); default ``2·ceil(3σ)+1`` (at least 7).
    fit_sigma : bool
    iterations : int
    batch : int
        Spots fitted per batch.
    progress : callable(fraction, message), optional

    Returns
    -------
    dict of columns: ``frame``, ``x [nm]``, ``y [nm]`` (``z [nm]``), ``sigma [nm]``,
    ``intensity [photon]``, ``offset [photon]``, ``bkgstd [photon]``, ``uncertainty [nm]`` (lateral
    CRLB, ``sqrt((σx² + σy²)/2)``), ``crlb_x [nm]``, ``crlb_y [nm]`` (``crlb_z [nm]``),
    ``crlb_intensity [photon]``, ``loglik``, ``deviance`` (Poisson deviance per degree of freedom).
    With nothing detected every column is present with length 0 (same dtypes).
    """
    x = np.asarray(frames, np.float32)
    if x.ndim == 2:
        x = x[None]
    if x.ndim != 3:
        raise FluoreconError(f"an SMLM movie must be (T, Y, X), got {x.ndim} dimensions")
    if x.shape[0] == 0:
        raise FluoreconError("the SMLM movie has no frames", hint="give a movie with at least one frame")
    if not pixel_size or pixel_size <= 0:
        raise FluoreconError("the camera pixel size is missing or ≤ 0", hint="give --pixel-size in nm")
    if psf is None:
        if psf_sigma is None or psf_sigma <= 0:
            raise FluoreconError("the PSF sigma is missing or ≤ 0", hint="give --psf-sigma in nm")
        psf = GaussianPSF(float(psf_sigma))
    s_px = (psf.sigma0 if isinstance(psf, AstigmaticPSF) else psf.sigma) / pixel_size
    size = int(roi) if roi else max(7, 2 * math.ceil(3 * s_px) + 1)
    size = min(size, min(x.shape[1:]) - (1 - min(x.shape[1:]) % 2))
    ph = camera.to_photons(x).astype(np.float32)
    report = progress if callable(progress) else (lambda f, m: None)
    report(0.0, "detecting")
    rv = camera.read_variance_photons(x.shape)
    bg = np.clip(np.median(ph.reshape(len(ph), -1), axis=1), 0, None)
    cand = detect(ph, s_px, threshold, noise_var=camera.excess * bg + float(np.mean(rv)))
    cols: dict[str, list[np.ndarray]] = {}
    n = len(cand)
    for s in range(0, max(n, 1), batch):
        c = cand[s:s + batch]
        rois, org = extract_rois(ph, c, size)
        if np.ndim(rv):
            rvr, _ = extract_rois(np.broadcast_to(rv, ph.shape), c, size)
        else:
            rvr = float(rv)
        fit = fit_mle(rois, s_px, psf=psf if isinstance(psf, AstigmaticPSF) else None, pixel_size=pixel_size,
                      fit_sigma=fit_sigma, excess=camera.excess, read_var=rvr, iterations=iterations)
        ok = fit["converged"].astype(bool)
        part = {
            "frame": c[ok, 0] + 1,
            "x [nm]": (org[ok, 1] + fit["x"][ok]) * pixel_size,
            "y [nm]": (org[ok, 0] + fit["y"][ok]) * pixel_size,
            "sigma [nm]": (fit["sigma"][ok] * pixel_size) if "sigma" in fit else np.full(ok.sum(), s_px * pixel_size),
            "intensity [photon]": fit["photons"][ok],
            "offset [photon]": fit["background"][ok],
            "bkgstd [photon]": np.sqrt(fit["background"][ok] * camera.excess + np.mean(rv)),
            "uncertainty [nm]": np.sqrt((fit["crlb_x"][ok] ** 2 + fit["crlb_y"][ok] ** 2) / 2) * pixel_size,
            "crlb_x [nm]": fit["crlb_x"][ok] * pixel_size,
            "crlb_y [nm]": fit["crlb_y"][ok] * pixel_size,
            "crlb_intensity [photon]": fit["crlb_photons"][ok],
            "loglik": fit["loglik"][ok],
            "deviance": fit["deviance"][ok],
        }
        if "z" in fit:
            part["z [nm]"] = fit["z"][ok]
            part["crlb_z [nm]"] = fit["crlb_z"][ok]
        for k, v in part.items():
            cols.setdefault(k, []).append(np.asarray(v))
        report(min(1.0, (s + batch) / max(n, 1)), f"fitted {min(s + batch, n)}/{n} spots")
    out = {k: np.concatenate(v) for k, v in cols.items()}
    order = np.lexsort((out["x [nm]"], out["frame"]))
    out = {k: v[order] for k, v in out.items()}
    out["frame"] = out["frame"].astype(np.int64)
    return out


# ---------------------------------------------------------------------------------------- post-process
def render(table: Any, pixel_size: float = 10.0, fov_nm: tuple[float, float] | None = None, *,
           method: str = "histogram", sigma: float | None = None, weights: str | None = None) -> np.ndarray:
    """Render localizations into a super-resolved image ``(Y, X)`` float32.

    Parameters
    ----------
    table : dict of columns or Table
    pixel_size : float
        Rendered pixel size (nm).
    fov_nm : (width, height), optional
        Field of view (nm); default: up to the largest coordinate.
    method : {"histogram", "gaussian"}
        Counts per pixel, or a Gaussian per localization of s.d. ``sigma`` nm (default: each
        localization's ``uncertainty [nm]``, else 20 nm); each Gaussian integrates to 1.
    weights : str, optional
        Column to weight by (e.g. ``"intensity [photon]"``).

    Examples
    --------
    >>> t = {"x [nm]": np.array([15.0, 15.0]), "y [nm]": np.array([5.0, 5.0])}
    >>> render(t, 10.0, (30.0, 20.0)).tolist()
    [[0.0, 2.0, 0.0], [0.0, 0.0, 0.0]]
    """
    cols = _cols(table)
    _need(cols, ("x [nm]", "y [nm]"))
    if not pixel_size > 0:
        raise FluoreconError("render pixel size must be > 0 nm")
    x, y = cols["x [nm]"].astype(np.float64), cols["y [nm]"].astype(np.float64)
    if fov_nm is None:
        fov_nm = (float(x.max(initial=0)) + pixel_size, float(y.max(initial=0)) + pixel_size)
    nx, ny = max(1, int(math.ceil(fov_nm[0] / pixel_size))), max(1, int(math.ceil(fov_nm[1] / pixel_size)))
    if nx * ny > 2**28:
        raise FluoreconError(f"the rendering would be {ny}×{nx} pixels", hint="use a larger render pixel size")
    wts = cols[weights].astype(np.float64) if weights else np.ones_like(x)
    method = method.lower()
    if method == "histogram":
        img, _, _ = np.histogram2d(y, x, bins=(ny, nx), range=((0, ny * pixel_size), (0, nx * pixel_size)),
                                   weights=wts)
        return img.astype(np.float32)
    if method != "gaussian":
        raise FluoreconError(f"unknown render method {method!r}", hint="use histogram or gaussian")
    if sigma is not None:
        s = np.full_like(x, float(sigma))
    elif "uncertainty [nm]" in cols:
        s = np.clip(cols["uncertainty [nm]"].astype(np.float64), 1.0, None)
    else:
        s = np.full_like(x, 20.0)
    s_px = np.clip(s / pixel_size, 0.3, None)
    rad = int(min(np.ceil(4 * s_px.max(initial=1)) + 1, 60))
    img = np.zeros((ny + 2 * rad, nx + 2 * rad), np.float64)
    xp, yp = x / pixel_size, y / pixel_size
    ci, cj = np.floor(yp).astype(int), np.floor(xp).astype(int)
    offs = np.arange(-rad, rad + 1)
    for s0 in range(0, len(x), 50000):
        sl = slice(s0, s0 + 50000)
        k = offs[None, :]
        ey = _gauss_1d(ci[sl, None] + k, yp[sl, None], s_px[sl, None])
        ex = _gauss_1d(cj[sl, None] + k, xp[sl, None], s_px[sl, None])
        patch = wts[sl, None, None] * ey[:, :, None] * ex[:, None, :]
        ii = (ci[sl, None, None] + offs[None, :, None] + rad)
        jj = (cj[sl, None, None] + offs[None, None, :] + rad)
        np.add.at(img, (np.broadcast_to(ii, patch.shape), np.broadcast_to(jj, patch.shape)), patch)
    return img[rad:rad + ny, rad:rad + nx].astype(np.float32)


def _gauss_1d(k: np.ndarray, c: np.ndarray, s: np.ndarray) -> np.ndarray:
    from scipy.special import erf

    return 0.5 * (erf((k + 1 - c) / (np.sqrt(2) * s)) - erf((k - c) / (np.sqrt(2) * s)))


def _subpixel_peak(cc: np.ndarray) -> tuple[float, float]:
    i, j = np.unravel_index(int(np.argmax(cc)), cc.shape)
    out = []
    for axis, idx in ((0, i), (1, j)):
        n = cc.shape[axis]
        if 0 < idx < n - 1:
            sl = [i, j]
            vals = []
            for d in (-1, 0, 1):
                sl[axis] = idx + d
                vals.append(cc[tuple(sl)])
            den = vals[0] - 2 * vals[1] + vals[2]
            out.append(idx + (0.5 * (vals[0] - vals[2]) / den if den != 0 else 0.0))
        else:
            out.append(float(idx))
    return out[0], out[1]


def drift_correct(table: Any, *, segments: int = 10, pixel_size: float = 20.0, max_shift_nm: float = 500.0,
                  outlier_nm: float = 30.0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Lateral drift correction by redundant cross-correlation (RCC, Wang et al. 2014).

    The localizations are split into ``segments`` time blocks; every pair of block renderings is
    cross-correlated (FFT, sub-pixel parabolic peak); the over-determined pairwise shifts are solved
    by least squares for one drift per block (first block = 0), pairs whose residual exceeds
    ``outlier_nm`` are dropped and the system re-solved; the per-frame drift is interpolated
    linearly between block centres and subtracted.

    Returns
    -------
    (corrected table, drift (T, 2) in nm: columns x, y, per frame 1..T)

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> pos = rng.uniform(500, 2500, (300, 2))
    >>> fr = np.repeat(np.arange(1, 101), 30)
    >>> idx = rng.integers(0, 300, len(fr))
    >>> t = {"frame": fr, "x [nm]": pos[idx, 0] + 0.5 * fr + rng.normal(0, 10, len(fr)),
    ...      "y [nm]": pos[idx, 1] - 0.3 * fr + rng.normal(0, 10, len(fr))}
    >>> _, drift = drift_correct(t, segments=5)
    >>> bool(abs((drift[-1, 0] - drift[0, 0]) - 49.5) < 10), bool(abs((drift[-1, 1] - drift[0, 1]) + 29.7) < 10)
    (True, True)
    """
    cols = _cols(table)
    _need(cols, ("frame", "x [nm]", "y [nm]"))
    fr = cols["frame"].astype(np.int64)
    if len(fr) == 0:
        # checked before the frame count, which an empty table would misreport as 1
        raise FluoreconError("drift correction needs localizations: the table is empty",
                             hint="lower the detection threshold, or check the camera parameters")
    t_max = int(fr.max(initial=1))
    if segments < 2 or t_max < segments:
        raise FluoreconError(f"drift correction needs at least {max(segments, 2)} frames in ≥ 2 segments")
    edges = np.linspace(0.5, t_max + 0.5, segments + 1)
    seg = np.clip(np.searchsorted(edges, fr, side="right") - 1, 0, segments - 1)
    x, y = cols["x [nm]"], cols["y [nm]"]
    fov = (float(x.max()) + pixel_size, float(y.max()) + pixel_size)
    imgs = [render({"x [nm]": x[seg == k], "y [nm]": y[seg == k]}, pixel_size, fov, method="gaussian",
                   sigma=pixel_size) for k in range(segments)]
    ffts = [np.fft.rfft2(im - im.mean()) for im in imgs]
    shape = imgs[0].shape
    max_px = max_shift_nm / pixel_size
    pairs, shifts = [], []
    for i in range(segments):
        for j in range(i + 1, segments):
            cc = np.fft.fftshift(np.fft.irfft2(ffts[i].conj() * ffts[j], s=shape))
            cy, cx = shape[0] // 2, shape[1] // 2
            r = int(min(max_px, cy - 1, cx - 1))
            win = cc[cy - r:cy + r + 1, cx - r:cx + r + 1]
            py, px = _subpixel_peak(win)
            pairs.append((i, j))
            shifts.append(((px - r) * pixel_size, (py - r) * pixel_size))
    a = np.zeros((len(pairs), segments - 1))
    for row, (i, j) in enumerate(pairs):
        if j > 0:
            a[row, j - 1] += 1
        if i > 0:
            a[row, i - 1] -= 1
    b = np.asarray(shifts)
    keep = np.ones(len(pairs), bool)
    for _ in range(3):
        sol, *_ = np.linalg.lstsq(a[keep], b[keep], rcond=None)
        res = np.linalg.norm(a @ sol - b, axis=1)
        new = res <= outlier_nm
        if new.all() or new.sum() < segments - 1 or (new == keep).all():
            break
        keep = new
    drift_seg = np.vstack([np.zeros(2), sol])
    centres = 0.5 * (edges[1:] + edges[:-1])
    frames_all = np.arange(1, t_max + 1)
    drift = np.stack([np.interp(frames_all, centres, drift_seg[:, 0]),
                      np.interp(frames_all, centres, drift_seg[:, 1])], 1)
    out = dict(cols)
    out["x [nm]"] = x - drift[fr - 1, 0]
    out["y [nm]"] = y - drift[fr - 1, 1]
    return out, drift


def merge(table: Any, max_distance: float = 50.0, max_gap: int = 1) -> dict[str, np.ndarray]:
    """Merge localizations of one emitter in consecutive frames (ThunderSTORM's "merging").

    Localizations within ``max_distance`` nm of a track's last position, at most ``max_gap`` frames
    later, join that track (nearest first). A merged localization has the inverse-variance-weighted
    position (weights ``1/uncertainty²`` when present), the summed photons, the first frame, the
    combined uncertainty and ``detections`` (count).

    Examples
    --------
    >>> t = {"frame": np.array([1, 2, 3, 3]), "x [nm]": np.array([100.0, 110.0, 105.0, 900.0]),
    ...      "y [nm]": np.array([50.0, 50.0, 50.0, 50.0]), "intensity [photon]": np.ones(4)}
    >>> m = merge(t)
    >>> m["x [nm]"].round(1).tolist(), m["detections"].tolist(), m["intensity [photon]"].tolist()
    ([105.0, 900.0], [3, 1], [3.0, 1.0])
    """
    cols = _cols(table)
    _need(cols, ("frame", "x [nm]", "y [nm]"))
    fr = cols["frame"].astype(np.int64)
    order = np.argsort(fr, kind="stable")
    n = len(fr)
    track = np.full(n, -1, np.int64)
    active: dict[int, tuple[int, float, float]] = {}  # track -> (last frame, x, y)
    nt = 0
    x, y = cols["x [nm]"], cols["y [nm]"]
    frames = np.unique(fr)
    start = np.searchsorted(fr[order], frames)
    stop = np.searchsorted(fr[order], frames, side="right")
    for f, s0, s1 in zip(frames, start, stop, strict=True):
        idx = order[s0:s1]
        active = {k: v for k, v in active.items() if f - v[0] <= max_gap}
        if active:
            keys = np.fromiter(active.keys(), np.int64)
            pts = np.array([[active[k][1], active[k][2]] for k in keys])
            tree = cKDTree(pts)
            dist, nn = tree.query(np.column_stack([x[idx], y[idx]]), distance_upper_bound=max_distance)
            taken: set[int] = set()
            for q in np.argsort(dist):
                if np.isfinite(dist[q]) and nn[q] < len(keys) and keys[nn[q]] not in taken:
                    track[idx[q]] = keys[nn[q]]
                    taken.add(int(keys[nn[q]]))
        for i in idx:
            if track[i] < 0:
                track[i] = nt
                nt += 1
            active[int(track[i])] = (int(f), float(x[i]), float(y[i]))
    unc = cols.get("uncertainty [nm]")
    w = 1.0 / np.clip(unc, 1e-3, None) ** 2 if unc is not None else np.ones(n)
    wsum = np.bincount(track, w, nt)
    out: dict[str, np.ndarray] = {}
    first = np.full(nt, np.iinfo(np.int64).max)
    np.minimum.at(first, track, fr)
    for k, v in cols.items():
        if k == "frame":
            out[k] = first
        elif k in ("intensity [photon]",):
            # float64 even for an empty table (np.bincount of no entries returns int64)
            out[k] = np.bincount(track, v.astype(np.float64), nt).astype(np.float64)
        elif k == "uncertainty [nm]":
            out[k] = 1.0 / np.sqrt(wsum)
        elif np.issubdtype(v.dtype, np.number):
            out[k] = np.bincount(track, w * v.astype(np.float64), nt) / wsum
    out["detections"] = np.bincount(track, minlength=nt)
    return out


def filter_localizations(table: Any, *, min_photons: float | None = None, max_uncertainty: float | None = None,
                         sigma_range: tuple[float, float] | None = None,
                         max_deviance: float | None = None) -> dict[str, np.ndarray]:
    """Keep localizations with enough photons, small enough uncertainty (nm), sigma in range (nm).

    ``max_deviance`` drops MLE fits whose Poisson deviance per degree of freedom (column
    ``deviance``, ≈ 1 for a good single-emitter fit) is larger — typically overlapping emitters.

    Examples
    --------
    >>> t = {"intensity [photon]": np.array([50.0, 500.0]), "uncertainty [nm]": np.array([30.0, 8.0])}
    >>> filter_localizations(t, min_photons=100)["intensity [photon]"].tolist()
    [500.0]
    """
    cols = _cols(table)
    keep = np.ones(len(next(iter(cols.values()))) if cols else 0, bool)
    if min_photons is not None:
        _need(cols, ("intensity [photon]",))
        keep &= cols["intensity [photon]"] >= min_photons
    if max_uncertainty is not None:
        _need(cols, ("uncertainty [nm]",))
        keep &= cols["uncertainty [nm]"] <= max_uncertainty
    if max_deviance is not None:
        _need(cols, ("deviance",))
        keep &= cols["deviance"] <= max_deviance
    if sigma_range is not None:
        _need(cols, ("sigma [nm]",))
        keep &= (cols["sigma [nm]"] >= sigma_range[0]) & (cols["sigma [nm]"] <= sigma_range[1])
    return {k: v[keep] for k, v in cols.items()}
