"""Temporal consistency of restored time-lapses: flicker, temporal FRC, held-out-frame error (issue 21).

- :func:`flicker` — RMS of the frame-to-frame change of a restoration that is *not* explained by the
  frame-to-frame change of a reference: the truth when it is known (simulations), otherwise a temporal
  low-pass of the raw movie. 0 for a restoration that changes exactly like the scene; for the raw
  movie of a static scene with independent noise of SD σ it is √2·σ.
- :func:`temporal_frc` — Fourier ring correlation along time: the correlation of two movies (two
  independent restorations, or a restoration and the truth) per temporal frequency (cycles/frame).
- :func:`heldout_frame_error` — a ground-truth-free score for real movies: restore the even frames
  only and compare the interpolation of neighbouring restored frames with the held-out odd raw frames
  (Noise2Noise-style: an unbiased ranking up to the noise variance and the motion between frames,
  which are the same for every method). Given optical flows between the kept frames (one set, shared
  by all methods), the held-out frame is interpolated along the motion instead of in place.
- :func:`jinv_heldout_pixel_error` — Noise2Self (Batson & Royer 2019) held-out *pixel* score: any
  restoration is made J-invariant by grid masking (:func:`j_invariant`), and then
  ``E‖f(x) − x‖² = E‖f(x) − y‖² + σ²``: lower is better, by exactly the difference in true error.

Examples
--------
>>> rng = np.random.default_rng(0)
>>> truth = np.ones((50, 16, 16), np.float32)
>>> noisy = truth + rng.normal(0, 0.1, truth.shape).astype(np.float32)
>>> round(flicker(noisy, truth=truth) / 0.1, 1)  # √2 for independent noise
1.4
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from fluorecon.classical.denoise import holdout_replace
from fluorecon.errors import FluoreconError
from fluorecon.physics.motion import warp

__all__ = ["TemporalFRC", "flicker", "flicker_per_frame", "heldout_frame_error", "j_invariant", "jinv_heldout_pixel_error",
           "jinv_mask", "midpoint_interpolation", "temporal_frc"]


def _movie(a: Any, name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.ndim < 2:
        raise FluoreconError(f"{name} must be a movie (T, ...), got shape {arr.shape}", hint="time on the first axis")
    if arr.shape[0] < 2:
        raise FluoreconError(f"{name} has {arr.shape[0]} frame: flicker needs at least 2 frames")
    if not np.all(np.isfinite(arr)):
        raise FluoreconError(f"{name} contains NaN or Inf")
    return arr


def _reference(restored: np.ndarray, truth: Any, raw: Any, sigma_t: float) -> np.ndarray:
    if truth is not None:
        ref = _movie(truth, "truth")
    elif raw is not None:
        ref = ndimage.gaussian_filter1d(_movie(raw, "raw"), sigma_t, axis=0, mode="nearest")
    else:
        raise FluoreconError("flicker needs a reference: the truth, or the raw movie",
                             hint="pass truth=... (simulations) or raw=... (the recording)")
    if ref.shape != restored.shape:
        raise FluoreconError(f"reference shape {ref.shape} differs from the restoration's {restored.shape}")
    return ref


def flicker_per_frame(restored: Any, truth: Any = None, raw: Any = None, sigma_t: float = 2.0) -> np.ndarray:
    """RMS unexplained change between frames ``t`` and ``t+1``, for each ``t`` (length T−1).

    See :func:`flicker`.

    Examples
    --------
    >>> flicker_per_frame(np.zeros((3, 4, 4)), truth=np.zeros((3, 4, 4))).tolist()
    [0.0, 0.0]
    """
    r = _movie(restored, "restored")
    ref = _reference(r, truth, raw, sigma_t)
    d = np.diff(r, axis=0) - np.diff(ref, axis=0)
    return np.sqrt(np.mean(d.reshape(d.shape[0], -1) ** 2, axis=1))


def flicker(restored: Any, truth: Any = None, raw: Any = None, sigma_t: float = 2.0) -> float:
    """Flicker: RMS of the frame-to-frame change of ``restored`` not explained by the reference's.

    ``sqrt(mean_t,x [(r[t+1] − r[t]) − (ref[t+1] − ref[t])]²)`` in the movie's intensity units, with
    ``ref`` the truth, or (no truth) the raw movie low-passed in time by a Gaussian of ``sigma_t``
    frames — the change the data themselves support.

    Parameters
    ----------
    restored : array-like
        ``(T, ...)`` movie, time first.
    truth : array-like, optional
        Ground truth in the same units (simulations).
    raw : array-like, optional
        The recording, used when ``truth`` is None.
    sigma_t : float
        Temporal low-pass of ``raw`` (frames).

    Returns
    -------
    float

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> static = np.full((64, 8, 8), 5.0)
    >>> noisy = static + rng.normal(0, 1.0, static.shape)
    >>> smooth = np.stack([noisy[t:t + 4].mean(0) for t in range(61)])  # moving average of 4 frames
    >>> round(flicker(noisy, truth=static), 1), round(flicker(smooth, truth=static[:61]), 1)  # √2 and √2/4
    (1.4, 0.4)
    """
    return float(np.sqrt(np.mean(flicker_per_frame(restored, truth, raw, sigma_t) ** 2)))


@dataclass
class TemporalFRC:
    """Temporal FRC curve: ``freq`` (cycles/frame, 0…0.5), ``curve``, ``cutoff`` (first frequency below
    ``threshold``; 0.5 if never), ``threshold``."""

    freq: np.ndarray
    curve: np.ndarray
    cutoff: float
    threshold: float

    def to_dict(self) -> dict[str, Any]:
        return {"freq": self.freq.tolist(), "curve": self.curve.tolist(), "cutoff": self.cutoff,
                "threshold": self.threshold}


def temporal_frc(a: Any, b: Any, threshold: float = 1 / 7, remove_mean: bool = True) -> TemporalFRC:
    """Correlation of two movies per temporal frequency (Fourier ring correlation along T).

    ``curve[k] = Re Σ_x A_k(x) B_k(x)* / sqrt(Σ|A_k|² Σ|B_k|²)`` with ``A = FFT_t(a)``. Two independent
    restorations of the same scene correlate where the restoration is reproducible; a restoration
    against the truth shows up to which temporal frequency the dynamics are recovered.

    Parameters
    ----------
    a, b : array-like
        ``(T, ...)`` movies of the same shape.
    threshold : float
        Cut-off level (1/7 by default).
    remove_mean : bool
        Subtract each pixel's temporal mean (the static image) first, so that frequency 0 is ignored.

    Returns
    -------
    TemporalFRC

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> s = rng.normal(0, 1, (64, 16, 16))
    >>> r = temporal_frc(s + rng.normal(0, 1, s.shape), s + rng.normal(0, 1, s.shape))
    >>> round(float(r.curve[1:].mean()), 1)  # S / (S + N) = 0.5 at every frequency
    0.5
    """
    x, y = _movie(a, "a"), _movie(b, "b")
    if x.shape != y.shape:
        raise FluoreconError(f"movies differ in shape: {x.shape} vs {y.shape}")
    if remove_mean:
        x = x - x.mean(0)
        y = y - y.mean(0)
    fa = np.fft.rfft(x.reshape(x.shape[0], -1), axis=0)
    fb = np.fft.rfft(y.reshape(y.shape[0], -1), axis=0)
    num = np.real(np.sum(fa * np.conj(fb), axis=1))
    den = np.sqrt(np.sum(np.abs(fa) ** 2, axis=1) * np.sum(np.abs(fb) ** 2, axis=1))
    curve = np.where(den > 0, num / np.maximum(den, 1e-300), 0.0)
    freq = np.fft.rfftfreq(x.shape[0])
    below = np.nonzero(curve[1:] < threshold)[0]
    cutoff = float(freq[1 + below[0]]) if below.size else 0.5
    return TemporalFRC(freq, curve, cutoff, float(threshold))


def midpoint_interpolation(frames: Any, flows: Any = None) -> np.ndarray:
    """Frames half-way between consecutive ``frames``, in place or along the motion.

    Without ``flows``: ``(r[k] + r[k+1]) / 2``. With ``flows[k]`` (scikit-image convention, as
    :mod:`fluorecon.geometry.flow` returns: content at ``x`` in frame ``k`` is at ``x + flows[k](x)``
    in frame ``k+1``), the content at ``p`` half-way came from ``p − f/2`` and goes to ``p + f/2``:
    ``(r[k](p − f(p)/2) + r[k+1](p + f(p)/2)) / 2`` (linear interpolation).

    Parameters
    ----------
    frames : array-like
        ``(K, Y, X)``.
    flows : array-like, optional
        ``(K − 1, 2, Y, X)`` in pixels per frame step.

    Returns
    -------
    numpy.ndarray
        ``(K − 1, Y, X)`` float64.

    Examples
    --------
    >>> r = np.zeros((2, 1, 8)); r[0, 0, 2] = 1; r[1, 0, 4] = 1   # a point moving 2 px along X
    >>> f = np.zeros((1, 2, 1, 8)); f[0, 1] = 2.0
    >>> int(np.argmax(midpoint_interpolation(r, f)[0, 0])), float(midpoint_interpolation(r)[0, 0, 3])
    (3, 0.0)
    """
    r = _movie(frames, "frames")
    if flows is None:
        return 0.5 * (r[:-1] + r[1:])
    fl = np.asarray(flows, np.float32)
    if r.ndim != 3 or fl.shape != (r.shape[0] - 1, 2, *r.shape[1:]):
        raise FluoreconError(f"flows of shape {fl.shape} do not fit frames of shape {r.shape}",
                             hint="give one (2, Y, X) flow per pair of consecutive frames: (K − 1, 2, Y, X)")
    return np.stack([0.5 * (warp(r[k], -0.5 * fl[k]) + warp(r[k + 1], 0.5 * fl[k]))
                     for k in range(r.shape[0] - 1)]).astype(np.float64)


def heldout_frame_error(restored_kept: Any, heldout: Any, flows: Any = None) -> float:
    """MSE of held-out raw frames against the interpolation of the restored kept frames around them.

    Restore ``movie[0::2]`` (the kept frames) with any method that never sees ``movie[1::2]``; frame
    ``2k+1`` is predicted by ``(r[k] + r[k+1]) / 2``, or along the motion when ``flows`` between the
    kept frames are given (:func:`midpoint_interpolation`). With independent noise the expected value
    is the restoration's error + the noise variance + the interpolation's motion error — the last two
    equal for every method when every method is scored with the same ``flows``, so lower is better
    and differences are differences of true error. Motion compensation shrinks the motion term, which
    otherwise rewards methods that change the data least.

    Parameters
    ----------
    restored_kept : array-like
        ``(K, ...)`` restoration of the kept (even) frames.
    heldout : array-like
        ``(M, ...)`` raw held-out (odd) frames, ``M ≥ K − 1``; the first ``K − 1`` are used.
    flows : array-like, optional
        ``(K − 1, 2, Y, X)`` optical flow between consecutive kept frames (e.g.
        :func:`fluorecon.geometry.flow.flow_tvl1` of the raw kept frames), the same for every method.

    Returns
    -------
    float

    Examples
    --------
    >>> r = np.zeros((5, 4, 4)); h = np.ones((4, 4, 4))
    >>> heldout_frame_error(r, h)
    1.0
    """
    r = _movie(restored_kept, "restored_kept")
    h = np.asarray(heldout, dtype=np.float64)
    k = r.shape[0] - 1
    if h.shape[0] < k or h.shape[1:] != r.shape[1:]:
        raise FluoreconError(f"held-out frames {h.shape} do not fit the restored kept frames {r.shape}",
                             hint="pass movie[1::2] for a restoration of movie[0::2]")
    pred = midpoint_interpolation(r, flows)
    return float(np.mean((pred - h[:k]) ** 2))


def jinv_mask(shape: Any, grid: int, offset: tuple[int, int]) -> np.ndarray:
    """Held-out pixels of one J-invariant pass on a ``(T, Y, X)`` movie: ``y ≡ a``, ``x + t ≡ b`` (mod grid).

    In every frame the held-out pixels are ``grid`` ≥ 3 apart, so the 5×5 median that replaces one
    (:func:`fluorecon.classical.denoise.holdout_replace`) never reads another; the grid shifts by one
    pixel per frame, so a held-out pixel's neighbours in time at the same place are not held out
    (a temporal method can use them, as in training). Starting a movie at another frame only renames
    the passes (frame ``k + s`` of pass ``b`` is frame ``k`` of pass ``b − s``), so a chunk of frames
    gets the same J-invariant restoration as inside the whole movie.

    Examples
    --------
    >>> m = jinv_mask((4, 4, 4), 4, (0, 0))
    >>> [np.argwhere(m[t])[0].tolist() for t in range(2)], int(m.sum())   # (y, x) in frames 0 and 1
    ([[0, 0], [0, 3]], 4)
    """
    t, ny, nx = (int(v) for v in shape)
    if grid < 3:
        raise FluoreconError(f"J-invariant grid must be ≥ 3, got {grid}", hint="grid=4")
    yy, xx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    return np.stack([(yy % grid == offset[0] % grid) & ((xx + k) % grid == offset[1] % grid) for k in range(t)])


def j_invariant(restore: Any, movie: Any, grid: int = 4) -> np.ndarray:
    """The J-invariant version of any restoration (Noise2Self's grid masking), on a ``(T, Y, X)`` movie.

    For each of the ``grid``² passes, the pixels of :func:`jinv_mask` are replaced by the median of
    their 5×5 neighbourhood in the same frame, the movie is restored, and the output is kept at those
    pixels only. The output at a pixel therefore never depends on that pixel's noisy value.

    Parameters
    ----------
    restore : callable
        ``restore(movie) -> movie`` (a classical denoiser with fixed parameters, a trained network).
    movie : array-like
        ``(T, Y, X)``.
    grid : int
        Grid spacing (``grid``² restorations).

    Returns
    -------
    numpy.ndarray
        Float32 ``(T, Y, X)``.

    Examples
    --------
    >>> x = np.random.default_rng(0).random((3, 8, 8)).astype(np.float32)
    >>> y = j_invariant(lambda m: m, x)      # the identity becomes a 5×5 ring median: not x itself
    >>> bool(np.allclose(y, x)), y.shape
    (False, (3, 8, 8))
    """
    x = np.asarray(movie, np.float32)
    if x.ndim != 3:
        raise FluoreconError(f"J-invariant masking needs a (T, Y, X) movie, got shape {x.shape}")
    out = np.empty_like(x)
    for a in range(grid):
        for b in range(grid):
            m = jinv_mask(x.shape, grid, (a, b))
            y = np.asarray(restore(holdout_replace(x, m)), np.float32)
            out[m] = y[m]
    return out


def jinv_heldout_pixel_error(restore: Any, movie: Any, grid: int = 4) -> float:
    """Noise2Self held-out-pixel score: ``mean (J(restore)(x) − x)²`` (lower is better).

    For a J-invariant ``f`` and noise independent between pixels with zero mean,
    ``E‖f(x) − x‖² = E‖f(x) − y‖² + Σσ²`` (Batson & Royer 2019): the score minus the noise variance
    is the MSE to the unknown truth, so differences between methods are differences of true error.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = np.full((4, 32, 32), 10.0)
    >>> x = y + rng.normal(0, 1, y.shape)
    >>> round(jinv_heldout_pixel_error(lambda m: np.full_like(m, 10.0), x), 1)   # a perfect f: σ² = 1
    1.0
    """
    x = np.asarray(movie, np.float32)
    return float(np.mean((j_invariant(restore, x, grid).astype(np.float64) - x) ** 2))
