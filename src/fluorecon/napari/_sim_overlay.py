"""The estimated SIM pattern drawn over the data in napari: crests on the raw frames, peaks on the spectrum.

After a ``sim`` run the user should *see* whether the estimate is right: the pattern's crest lines
(where ``1 + m cos(2π k·r + φ)`` is maximal) are drawn as a Shapes layer on each raw frame, so a
wrong phase or angle is visible as lines that miss the stripes; and the frames' log-spectrum is
shown with a Points layer on the pattern peaks ``±j·k`` (labelled with period, angle and
modulation), so a wrong wave vector is a circle beside the bright spot.

Examples
--------
>>> from fluorecon.physics.sim import SIMPattern
>>> pat = SIMPattern.regular(n_angles=1, n_phases=3, k=0.25)
>>> lines = crest_lines(pat, (16, 16))
>>> len(lines) > 0, lines[0].shape
(True, (2, 3))
>>> pts, feats = spectrum_peaks(pat, (16, 16))
>>> pts.tolist()                      # ±k around the centre of the shifted spectrum
[[8.0, 12.0], [8.0, 4.0]]
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fluorecon.errors import FluoreconError
from fluorecon.physics.sim import SIMPattern
from fluorecon.tasks.sim import frames_to_apz

__all__ = ["add_sim_overlay", "crest_lines", "frame_index", "log_spectrum", "spectrum_peaks"]


def frame_index(n_angles: int, n_phases: int, n_planes: int = 1, order: str = "azp") -> np.ndarray:
    """Index in the raw stack of frame ``(plane, angle, phase)``, as the SIM task reads ``order``.

    Examples
    --------
    >>> frame_index(2, 3, 1, "pa")[0].tolist()        # phase slowest: angle 0 is frames 0, 2, 4
    [[0, 2, 4], [1, 3, 5]]
    """
    n = n_angles * n_phases * n_planes
    idx = np.arange(n, dtype=np.float64)[:, None, None]
    apz = frames_to_apz(idx, n_angles, n_phases, order)[:, :, 0, 0]
    return apz.reshape(n_planes, n_angles, n_phases).astype(int)


def _clip_line(point: np.ndarray, direction: np.ndarray, shape: Sequence[int]) -> np.ndarray | None:
    """End points of the line ``point + t·direction`` inside the box ``[0, Y−1] × [0, X−1]`` (None: misses)."""
    lo, hi = -np.inf, np.inf
    for ax in range(2):
        top = shape[ax] - 1
        if abs(direction[ax]) < 1e-12:
            if not 0 <= point[ax] <= top:
                return None
            continue
        t1, t2 = (0 - point[ax]) / direction[ax], (top - point[ax]) / direction[ax]
        lo, hi = max(lo, min(t1, t2)), min(hi, max(t1, t2))
    if hi <= lo:
        return None
    return np.stack([point + lo * direction, point + hi * direction])


def crest_lines(pattern: SIMPattern, shape: Sequence[int], *, n_planes: int = 1, order: str = "azp",
                max_lines: int = 20000) -> list[np.ndarray]:
    """Crest lines of every frame's pattern, as ``(2, 3)`` end points ``(frame, y, x)`` in raw pixels.

    A crest of frame ``(a, p)`` is where ``k_a·r + φ_{a,p}/2π`` is an integer (``r = (y, x)``, pixel
    centres at integers, as :class:`~fluorecon.physics.sim.SIMPattern` defines the pattern).
    """
    ny, nx = (int(s) for s in shape[-2:])
    index = frame_index(pattern.n_angles, pattern.n_phases, n_planes, order)
    corners = np.array([[0, 0], [0, nx - 1], [ny - 1, 0], [ny - 1, nx - 1]], np.float64)
    lines: list[np.ndarray] = []
    for a in range(pattern.n_angles):
        k = pattern.k[a]
        k2 = float(k @ k)
        if k2 <= 0:
            continue
        along = np.array([-k[1], k[0]])                        # perpendicular to k: the crest direction
        proj = corners @ k
        for p in range(pattern.n_phases):
            shift = pattern.phases[a, p] / (2 * np.pi)
            for n in range(int(np.floor(proj.min() + shift)), int(np.ceil(proj.max() + shift)) + 1):
                seg = _clip_line((n - shift) * k / k2, along, (ny, nx))
                if seg is None:
                    continue
                for z in range(n_planes):
                    frame = np.full((2, 1), float(index[z, a, p]))
                    lines.append(np.hstack([frame, seg]))
                    if len(lines) > max_lines:
                        raise FluoreconError(f"more than {max_lines} crest lines to draw",
                                             hint="show the overlay on a crop, or only the spectrum peaks")
    return lines


def spectrum_peaks(pattern: SIMPattern, shape: Sequence[int], n_orders: int = 1) -> tuple[np.ndarray, dict[str, Any]]:
    """Positions of the pattern peaks ``±j·k`` on the centred (``fftshift``-ed) spectrum, with labels."""
    ny, nx = (int(s) for s in shape[-2:])
    centre = np.array([ny // 2, nx // 2], np.float64)
    pts, label = [], []
    for a in range(pattern.n_angles):
        period = 1 / max(float(np.hypot(*pattern.k[a])), 1e-12)
        angle = float(np.degrees(np.arctan2(pattern.k[a, 0], pattern.k[a, 1])))
        for j in range(1, n_orders + 1):
            for sign in (1, -1):
                pts.append(centre + sign * j * pattern.k[a] * np.array([ny, nx]))
                label.append(f"a{a} order {sign * j:+d}: {period / j:.2f} px, {angle:.1f}°, "
                             f"m={pattern.modulation[a]:.2f}")
    return np.asarray(pts).reshape(-1, 2), {"label": label}


def log_spectrum(frames: np.ndarray) -> np.ndarray:
    """Mean over frames of ``log(1 + |FFT|)`` of each mean-subtracted frame, centred: the pattern peaks
    stand out where a phase step moved the specimen's copy."""
    f = np.asarray(frames, np.float64).reshape(-1, *np.shape(frames)[-2:])
    f = f - f.mean(axis=(-2, -1), keepdims=True)
    return np.fft.fftshift(np.log1p(np.abs(np.fft.fft2(f))).mean(axis=0)).astype(np.float32)


def add_sim_overlay(viewer: Any, raw: np.ndarray, params_used: Mapping[str, Any], *, order: str = "azp",
                    scale: Sequence[float] | None = None, name: str = "SIM") -> list[Any]:
    """Add the crest lines (Shapes, on the raw stack) and the spectrum with its peaks to ``viewer``.

    ``params_used`` is the SIM result's (its ``pattern``, ``planes`` and ``estimate.n_orders``);
    ``scale`` the raw layer's (frames axis first). Returns the layers added.
    """
    if "pattern" not in params_used:
        raise FluoreconError("these results carry no SIM pattern", hint="run the sim task first")
    pattern = SIMPattern.from_dict(params_used["pattern"])
    n_planes = int(params_used.get("planes", 1))
    n_orders = int(params_used.get("estimate", {}).get("n_orders", 1))
    raw = np.asarray(raw)
    frames = raw.reshape(-1, *raw.shape[-2:])
    layers = []
    try:
        lines = crest_lines(pattern, frames.shape[-2:], n_planes=n_planes, order=order)
    except FluoreconError:
        lines = []                          # too many to draw (long stacks): the spectrum peaks still show the fit
    yx = tuple(scale[-2:]) if scale is not None else (1.0, 1.0)
    if lines:
        layers.append(viewer.add_shapes(lines, shape_type="line", edge_color="cyan", edge_width=0.5,
                                        name=f"{name} pattern crests", scale=(1.0, *yx), opacity=0.6))
    spec = log_spectrum(frames)
    layers.append(viewer.add_image(spec, name=f"{name} spectrum (log)", colormap="magma"))
    pts, feats = spectrum_peaks(pattern, frames.shape[-2:], n_orders)
    layers.append(viewer.add_points(pts, name=f"{name} pattern peaks", size=max(3, frames.shape[-1] // 40),
                                    face_color="transparent", border_color="cyan", features=feats,
                                    text={"string": "{label}", "size": 8, "color": "cyan"}))
    return layers
