"""Time as a dimension: self-supervised spatiotemporal restoration of time-lapses (issue 21).

A frame-by-frame denoiser sees one frame at a time, so its errors are independent from frame to
frame and the restored movie flickers. Here the time axis ``T`` of a ``(T, Y, X)`` movie is the first
axis of a 3D (t, y, x) U-Net (anisotropic: pooling in YX only, any temporal window), trained with a
scheme that time makes possible:

- ``"deepcad"`` — DeepCAD-RT-style interleaved-frame Noise2Noise: the odd frames and the even frames
  are two noisy recordings of nearly the same scene (sampled half a frame apart), so the network learns
  to map the sub-movie of even frames onto the sub-movie of odd frames (and back). Needs slow content
  relative to the frame rate.
- ``"n2v-t"`` — spatiotemporal blind spot (SUPPORT-like): Noise2Void over (t, y, x), one pixel per 4³
  cell hidden and replaced by the median of its 5³ neighbourhood. Works for any motion: the network
  learns from a pixel's neighbours in space and in the adjacent frames.
- ``"convlstm"`` — the recurrent variant (DBlink-style): a per-frame 2D encoder, a bidirectional
  ConvLSTM over time at half resolution and a per-frame decoder (:class:`RecurrentNet`), trained with
  the same spatiotemporal blind spot as ``n2v-t``. Its temporal reach is the whole movie (the forward
  and backward states carry memory), not a fixed window.

``n2v-t`` and ``deepcad`` wrap :func:`fluorecon.learn.train.train` (the engine's U-Net, normaliser,
schedule and bundle): the movie is passed as a ``ZYX`` stack whose Z is time. Prediction
(:func:`predict_temporal`) runs :func:`fluorecon.learn.predict.predict` over the whole movie with tiles
along T (with overlap). ``convlstm`` has its own small training loop (:func:`train_recurrent`) and bundle
(:class:`RecurrentBundle`, safetensors + JSON). :func:`restore_in_time_chunks` restores a movie of any
length chunk by chunk along T from an array-like (zarr, memmap) into an array-like, blending overlaps.

Examples
--------
>>> rng = np.random.default_rng(0)
>>> movie = rng.poisson(20, (16, 32, 32)).astype(np.float32)
>>> out, info = denoise_temporal(movie, "TYX", scheme="n2v-t", steps=2, window=8, patch_size=16,
...                              width=4, device="cpu")
>>> out.shape, info["scheme"]
((16, 32, 32), 'n2v-t')
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from fluorecon._atomic import atomic_path
from fluorecon.errors import FluoreconError
from fluorecon.learn.bundle import Bundle, package_versions, sha256_file, write_safetensors
from fluorecon.learn.normalize import PercentileNormalizer
from fluorecon.learn.predict import predict
from fluorecon.learn.schemes import blind_spot_mask
from fluorecon.learn.train import TrainConfig, train
from fluorecon.physics.noise_model import NoiseModel
from fluorecon.validation import as_image

__all__ = ["TEMPORAL_SCHEMES", "ConvLSTMCell", "RecurrentBundle", "RecurrentNet", "apply_fusion", "check_movie",
           "chunk_weights", "denoise_temporal", "fit_fusion", "min_frames", "noise_neighbour_correlation", "predict_recurrent",
           "predict_temporal", "restore_in_time_chunks", "train_recurrent", "train_temporal"]

TEMPORAL_SCHEMES = ("n2v-t", "deepcad", "convlstm")
RECURRENT_KIND = "fluorecon-recurrent-bundle"


def min_frames(scheme: str, window: int) -> int:
    """Frames a movie needs for ``scheme`` with a temporal window of ``window`` frames.

    ``deepcad`` splits the movie into odd and even frames, each at least ``window`` long.

    Examples
    --------
    >>> min_frames("deepcad", 8), min_frames("n2v-t", 8)
    (16, 8)
    """
    return 2 * int(window) if scheme == "deepcad" else int(window)


def check_movie(movie: Any, axes: str | None, window: int = 1, scheme: str = "n2v-t",
                name: str = "movie") -> tuple[np.ndarray, str]:
    """Validate a time-lapse for a temporal method: a ``TYX`` float32 array with enough frames.

    Parameters
    ----------
    movie : array-like or list of arrays
        The time-lapse. A list of frames is stacked (frames of different sizes are refused).
    axes : str
        Must contain ``T`` (``"TYX"``); ``None`` assumes ``TYX`` for a 3D array.
    window : int
        Temporal window (frames per training patch).
    scheme : str
        Temporal scheme (``deepcad`` needs twice the window).

    Returns
    -------
    (numpy.ndarray, str)
        Float32 movie and its axes (``"TYX"``).

    Examples
    --------
    >>> check_movie(np.zeros((8, 16, 16)), "TYX", window=8)[0].shape
    (8, 16, 16)
    >>> try:
    ...     check_movie(np.zeros((8, 16, 16)), "ZYX")
    ... except FluoreconError as e:
    ...     print(e.hint)
    give --axes TYX (the first axis is time)
    """
    if isinstance(movie, list | tuple):
        shapes = {tuple(np.shape(f)) for f in movie}
        if len(shapes) > 1:
            raise FluoreconError(f"{name}: frames of varying size {sorted(shapes)}",
                                 hint="crop or pad every frame to the same size before restoring the movie")
        movie = np.stack([np.asarray(f) for f in movie])
        axes = axes or "TYX"
    if axes is None and np.ndim(movie) == 3:
        axes = "TYX"
    axes = (axes or "").upper()
    if "T" not in axes:
        raise FluoreconError(f"{name}: a temporal method needs a time axis T, got axes {axes or '?'!r}",
                             hint="give --axes TYX (the first axis is time)")
    arr, axes = as_image(movie, axes, name=name)
    if axes != "TYX":
        raise FluoreconError(f"{name}: temporal methods restore TYX movies, got axes {axes!r}",
                             hint="restore each channel / plane as its own TYX movie")
    need = min_frames(scheme, window)
    if arr.shape[0] < need:
        raise FluoreconError(f"{name}: {arr.shape[0]} frames is fewer than the {need} that {scheme} with a temporal "
                             f"window of {window} needs", hint=f"give a movie of at least {need} frames, or a smaller "
                             f"window (--window {max(arr.shape[0] // (2 if scheme == 'deepcad' else 1), 1)})")
    return arr, axes


def _config(scheme: str, window: int, patch_size: int, width: int, depth: int, steps: int | None,
            budget_s: float | None, seed: int, device: str, progress: bool, **overrides: Any) -> TrainConfig:
    kw: dict[str, Any] = dict(scheme="n2n" if scheme == "deepcad" else "n2v", axes="ZYX", dim=3,
                              patch_size=[int(window), int(patch_size), int(patch_size)], batch_size=8,
                              model={"depth": depth, "width": width, "anisotropic": True,
                                     # Noise2Noise starts from the identity (a non-residual 3D net collapsed
                                     # to a constant in 100 steps); a blind-spot net must not (it would learn
                                     # to pass each pixel through): non-residual, the engine's default
                                     "residual": scheme == "deepcad"}, steps=steps,
                              budget_s=None if steps else budget_s, seed=seed, device=device, progress=progress,
                              val_fraction=0.0)
    kw.update(overrides)
    return TrainConfig(**kw)


def train_temporal(movie: Any, axes: str | None = "TYX", scheme: str = "n2v-t", *, window: int = 8,
                   patch_size: int = 32, width: int = 16, depth: int = 2, steps: int | None = 300,
                   budget_s: float | None = None, seed: int = 0, device: str = "auto", progress: bool = False,
                   callback: Callable[[int, float], None] | None = None,
                   **overrides: Any) -> Bundle | RecurrentBundle:
    """Train a spatiotemporal (t, y, x) U-Net on one movie, self-supervised.

    Parameters
    ----------
    movie : array-like
        ``(T, Y, X)`` noisy time-lapse.
    axes : str
        ``"TYX"``.
    scheme : {"n2v-t", "deepcad", "convlstm"}
        Spatiotemporal blind spot, interleaved-frame Noise2Noise, or the recurrent variant trained with
        the spatiotemporal blind spot (:func:`train_recurrent`; ``depth`` does not apply).
    window : int
        Frames per training patch (the temporal extent the network learns from).
    patch_size : int
        YX size of training patches (≤ the frame size).
    width, depth : int
        U-Net width (channels of the first level) and depth.
    steps : int, optional
        Training steps; ``None`` trains for ``budget_s`` seconds.
    budget_s : float, optional
        Wall-time budget when ``steps`` is None.
    seed, device, progress, callback
        As for :func:`fluorecon.learn.train.train`.
    **overrides
        Any other :class:`~fluorecon.learn.train.TrainConfig` field (``lr``, ``batch_size``, ...).

    Returns
    -------
    Bundle or RecurrentBundle
        ``provenance["temporal"]`` records the scheme and window; apply it with :func:`predict_temporal`.

    Examples
    --------
    >>> m = np.random.default_rng(0).poisson(9, (16, 16, 16)).astype(np.float32)
    >>> b = train_temporal(m, "TYX", "deepcad", window=8, patch_size=16, width=4, steps=1, device="cpu")
    >>> b.provenance["temporal"]["scheme"], b.model.config()["dim"]
    ('deepcad', 3)
    """
    if scheme not in TEMPORAL_SCHEMES:
        raise FluoreconError(f"unknown temporal scheme {scheme!r}", hint=f"use one of {', '.join(TEMPORAL_SCHEMES)}")
    if scheme == "convlstm":
        keep = {k: overrides[k] for k in ("batch_size", "lr", "mask_grid") if k in overrides}
        return train_recurrent(movie, axes, window=window, patch_size=patch_size, width=width, steps=steps,
                               budget_s=None if steps else budget_s, seed=seed, device=device, callback=callback,
                               **keep)
    arr, _ = check_movie(movie, axes, window, scheme)
    ps = int(min(patch_size, arr.shape[1], arr.shape[2]))
    ps = max(8, ps - ps % 4)
    if min(arr.shape[1:]) < ps:
        raise FluoreconError(f"frames {arr.shape[1:]} are too small for spatiotemporal training (needs ≥ 8×8)",
                             hint="use --method classical for tiny frames")
    cfg = _config(scheme, window, ps, width, depth, steps, budget_s, seed, device, progress, **overrides)
    if steps is None and budget_s is None:
        raise FluoreconError("training needs steps or a wall-time budget", hint="steps=300 or budget_s=120")
    if scheme == "deepcad":
        n = arr.shape[0] // 2
        even, odd = arr[0:2 * n:2], arr[1:2 * n:2]
        bundle = train(cfg, [even], [odd], axes="ZYX", callback=callback)
    else:
        bundle = train(cfg, [arr], axes="ZYX", callback=callback)
    bundle.provenance["temporal"] = {"scheme": scheme, "window": int(window), "axes": "TYX"}
    return bundle


def predict_temporal(bundle: Bundle | RecurrentBundle, movie: Any, axes: str | None = "TYX", *, window: int | None = None,
                     device: str = "auto", batch_size: int = 4) -> np.ndarray:
    """Restore a whole movie with a spatiotemporal bundle, in tiles along time with overlap.

    Parameters
    ----------
    bundle : Bundle or RecurrentBundle
        From :func:`train_temporal` (a :class:`RecurrentBundle` goes to :func:`predict_recurrent`).
    movie : array-like
        ``(T, Y, X)``.
    window : int, optional
        Frames per prediction tile (default: 8 × the training window, at most the movie); tiles overlap
        by twice the network's receptive radius, so the result does not depend on the tiling.
    device : str
        ``"cpu"``, ``"cuda"`` or ``"auto"``.

    Returns
    -------
    numpy.ndarray
        Float32 ``(T, Y, X)`` in the movie's units.

    Examples
    --------
    >>> m = np.random.default_rng(0).poisson(9, (16, 16, 16)).astype(np.float32)
    >>> b = train_temporal(m, "TYX", "n2v-t", window=8, patch_size=16, width=4, steps=1, device="cpu")
    >>> predict_temporal(b, m, device="cpu").shape
    (16, 16, 16)
    """
    if isinstance(bundle, RecurrentBundle):
        return np.asarray(predict_recurrent(bundle, check_movie(movie, axes, 1, "convlstm")[0], device=device))
    arr, _ = check_movie(movie, axes, 1, "n2v-t")
    t = arr.shape[0]
    train_window = int((bundle.provenance.get("temporal") or {}).get("window", 8))
    wt = int(window or 8 * train_window)
    cfg = bundle.model.config()
    tile: Any = None
    overlap: Any = None
    if t > wt:
        r_xy = int(bundle.model.receptive_radius)
        # anisotropic net: no pooling in T, one frame of reach per 3×3×3 conv (2 per block, 2·depth+1 blocks)
        r_t = 2 * (2 * int(cfg.get("depth", 2)) + 1) if cfg.get("anisotropic") else r_xy
        overlap = (2 * r_t + 12, 2 * r_xy + 16, 2 * r_xy + 16)
        tile = (max(wt, 2 * overlap[0]), arr.shape[1], arr.shape[2])
    out = predict(bundle, arr, "ZYX", tile=tile, overlap=overlap, device=device, batch_size=batch_size)
    return np.asarray(out, np.float32)


def denoise_temporal(movie: Any, axes: str | None = "TYX", scheme: str = "n2v-t", *, window: int = 8,
                     patch_size: int = 32, width: int = 16, depth: int = 2, steps: int | None = 300,
                     budget_s: float | None = None, seed: int = 0, device: str = "auto", progress: bool = False,
                     callback: Callable[[int, float], None] | None = None, **overrides: Any) -> tuple[np.ndarray, dict]:
    """Train a spatiotemporal network on ``movie`` and restore it (what ``fluorecon denoise-movie`` runs).

    Parameters are those of :func:`train_temporal`.

    Returns
    -------
    (numpy.ndarray, dict)
        The restored movie (float32, input units) and ``info``: ``scheme``, ``window``, ``steps``,
        ``train_s``, ``predict_s``, ``frames_per_s`` (inference), ``bundle``.

    Examples
    --------
    >>> m = np.random.default_rng(0).poisson(9, (16, 16, 16)).astype(np.float32)
    >>> out, info = denoise_temporal(m, scheme="deepcad", steps=1, patch_size=16, width=4, device="cpu")
    >>> out.shape, info["steps"]
    ((16, 16, 16), 1)
    """
    t0 = time.perf_counter()
    bundle = train_temporal(movie, axes, scheme, window=window, patch_size=patch_size, width=width, depth=depth,
                            steps=steps, budget_s=budget_s, seed=seed, device=device, progress=progress,
                            callback=callback, **overrides)
    t1 = time.perf_counter()
    out = predict_temporal(bundle, movie, axes, device=device)
    t2 = time.perf_counter()
    info = {"scheme": scheme, "window": int(window), "steps": int(bundle.provenance["steps"]),
            "train_s": round(t1 - t0, 3), "predict_s": round(t2 - t1, 3),
            "frames_per_s": round(out.shape[0] / max(t2 - t1, 1e-9), 2), "bundle": bundle}
    return out, info


# ------------------------------------------------------------------------------------- recurrent variant
class ConvLSTMCell(nn.Module):
    """A convolutional LSTM cell (Shi et al. 2015): the gates are 3×3 convolutions of input and state.

    Examples
    --------
    >>> cell = ConvLSTMCell(4, 8)
    >>> h, c = cell(torch.zeros(1, 4, 6, 6), (torch.zeros(1, 8, 6, 6), torch.zeros(1, 8, 6, 6)))
    >>> tuple(h.shape)
    (1, 8, 6, 6)
    """

    def __init__(self, in_channels: int, hidden: int):
        super().__init__()
        self.hidden = int(hidden)
        self.gates = nn.Conv2d(in_channels + self.hidden, 4 * self.hidden, 3, padding=1)
        with torch.no_grad():  # forget-gate bias 1: the state starts by remembering (Jozefowicz et al. 2015)
            self.gates.bias[self.hidden:2 * self.hidden].fill_(1.0)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        h, c = state
        i, f, o, g = self.gates(torch.cat([x, h], 1)).chunk(4, 1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class RecurrentNet(nn.Module):
    """Per-frame encoder → bidirectional ConvLSTM over T (half resolution) → per-frame decoder.

    Input and output are ``(B, T, Y, X)`` with ``Y`` and ``X`` even. The encoder sees one frame; the
    forward and the backward ConvLSTM carry what the past and the future frames showed, so every
    output frame depends on the whole sequence (DBlink's design). The full-resolution skip connection
    keeps fine detail; the network is not residual (a blind-spot net must not pass its input through).

    Parameters
    ----------
    width : int
        Channels of the full-resolution features (the recurrent state has ``2·width``).

    Examples
    --------
    >>> net = RecurrentNet(width=4)
    >>> tuple(net(torch.zeros(2, 5, 8, 8)).shape)
    (2, 5, 8, 8)
    """

    def __init__(self, width: int = 16):
        super().__init__()
        w = int(width)
        self.width = w
        self.enc = nn.Sequential(nn.Conv2d(1, w, 3, padding=1), nn.ReLU(), nn.Conv2d(w, w, 3, padding=1), nn.ReLU())
        self.down = nn.Sequential(nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.ReLU())
        self.fwd = ConvLSTMCell(2 * w, 2 * w)
        self.bwd = ConvLSTMCell(2 * w, 2 * w)
        self.mix = nn.Sequential(nn.Conv2d(4 * w, 2 * w, 3, padding=1), nn.ReLU())
        self.up = nn.ConvTranspose2d(2 * w, w, 2, stride=2)
        self.dec = nn.Sequential(nn.Conv2d(2 * w, w, 3, padding=1), nn.ReLU(), nn.Conv2d(w, 1, 1))

    def config(self) -> dict[str, Any]:
        return {"kind": "recurrent", "width": self.width}

    def _scan(self, cell: ConvLSTMCell, e: torch.Tensor, order: range) -> list[torch.Tensor]:
        b, _, _, hh, ww = e.shape
        h = e.new_zeros(b, cell.hidden, hh, ww)
        c = torch.zeros_like(h)
        out: list[torch.Tensor] = [h] * e.shape[1]
        for t in order:
            h, c = cell(e[:, t], (h, c))
            out[t] = h
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, hh, ww = x.shape
        s = self.enc(x.reshape(b * t, 1, hh, ww))
        e = self.down(s)
        e = e.reshape(b, t, *e.shape[1:])
        hf = torch.stack(self._scan(self.fwd, e, range(t)), 1)
        hb = torch.stack(self._scan(self.bwd, e, range(t - 1, -1, -1)), 1)
        d = self.mix(torch.cat([hf, hb], 2).reshape(b * t, -1, *e.shape[-2:]))
        out = self.dec(torch.cat([self.up(d), s], 1))
        return out.reshape(b, t, hh, ww)


class RecurrentBundle:
    """A trained :class:`RecurrentNet` with its normaliser and provenance; saved as safetensors + JSON.

    Examples
    --------
    >>> import tempfile
    >>> b = RecurrentBundle(RecurrentNet(4), PercentileNormalizer().fit(np.arange(10.0)), {"window": 8})
    >>> RecurrentBundle.load(b.save(tempfile.mkdtemp() + "/m")).model.width
    4
    """

    def __init__(self, model: RecurrentNet, normalizer: PercentileNormalizer, provenance: dict | None = None):
        self.model = model.eval()
        self.normalizer = normalizer
        self.provenance: dict[str, Any] = dict(provenance or {})

    def save(self, path: str | Path) -> Path:
        """Write ``weights.safetensors`` and ``bundle.json`` (atomically) into the folder ``path``."""
        final = Path(path)
        if final.exists() and final.is_file():
            raise FluoreconError(f"bundle path {final} is an existing file", hint="give a folder path for the bundle")
        with atomic_path(final, is_dir=True) as tmp:
            state = {k: v.detach().cpu().contiguous() for k, v in self.model.state_dict().items()}
            write_safetensors(state, tmp / "weights.safetensors", metadata={"format": "pt"})
            doc = {"kind": RECURRENT_KIND, "model": self.model.config(), "normalizer": self.normalizer.to_dict(),
                   "provenance": self.provenance, "files": {"weights.safetensors":
                                                            sha256_file(tmp / "weights.safetensors")},
                   "versions": package_versions()}
            (tmp / "bundle.json").write_text(json.dumps(doc, indent=2, sort_keys=True, default=float))
        return final

    @classmethod
    def load(cls, path: str | Path) -> RecurrentBundle:
        """Read a folder written by :meth:`save` (hash-checked; never unpickles)."""
        from safetensors.torch import load_file

        p = Path(path)
        jp = p / "bundle.json"
        if not jp.is_file():
            raise FluoreconError(f"{p} has no bundle.json", hint="give the folder written by --save-model")
        doc = json.loads(jp.read_text())
        if doc.get("kind") != RECURRENT_KIND:
            raise FluoreconError(f"{jp} is not a recurrent time-lapse bundle", hint="load it with Bundle.load")
        wp = p / "weights.safetensors"
        if sha256_file(wp) != doc["files"]["weights.safetensors"]:
            raise FluoreconError(f"{wp} does not match the hash in bundle.json", hint="the bundle is corrupt")
        net = RecurrentNet(int(doc["model"]["width"]))
        net.load_state_dict(load_file(str(wp)))
        return cls(net, PercentileNormalizer.from_dict(doc["normalizer"]), doc.get("provenance"))


def _lr(progress: float) -> float:
    # the engine's schedule: 5 % warm-up, cosine decay to 2 %
    p = min(max(progress, 0.0), 1.0)
    if p < 0.05:
        return max(p / 0.05, 0.02)
    return 0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * (p - 0.05) / 0.95))


def train_recurrent(movie: Any, axes: str | None = "TYX", *, window: int = 8, patch_size: int = 32,
                    width: int = 16, steps: int | None = 300, budget_s: float | None = None, seed: int = 0,
                    device: str = "auto", batch_size: int = 8, lr: float = 5e-3, mask_grid: int = 4,
                    callback: Callable[[int, float], None] | None = None) -> RecurrentBundle:
    """Train a :class:`RecurrentNet` on one movie with the spatiotemporal blind spot of ``n2v-t``.

    Each step draws ``batch_size`` random ``window × patch_size²`` crops (random flips, transposes
    and time reversal), hides one voxel per ``mask_grid``³ cell (replaced by the median of its 5³
    neighbourhood, :func:`fluorecon.learn.schemes.blind_spot_mask`) and fits the hidden voxels.

    Parameters
    ----------
    movie : array-like
        ``(T, Y, X)`` noisy time-lapse.
    window, patch_size : int
        Frames and YX size of the training crops.
    width : int
        Network width.
    steps, budget_s : int or None, float or None
        Training steps, or (``steps=None``) wall-time seconds.
    seed : int
        Seeds the initial weights, the crops and the masks: same seed, same weights (on a CPU).
    device, batch_size, lr, mask_grid, callback
        Compute device, crops per step, peak learning rate (5e-3: at 2e-3 the net was still worse than
        the recording after 60 steps on 16 frames of 32², 0.58× its MSE at 5e-3), masking grid,
        ``callback(step, loss)``.

    Returns
    -------
    RecurrentBundle

    Examples
    --------
    >>> m = np.random.default_rng(0).poisson(9, (8, 16, 16)).astype(np.float32)
    >>> b = train_recurrent(m, window=8, patch_size=16, width=4, steps=1, device="cpu")
    >>> b.provenance["temporal"]["scheme"], b.provenance["steps"]
    ('convlstm', 1)
    """
    arr, _ = check_movie(movie, axes, window, "convlstm")
    if steps is None and budget_s is None:
        raise FluoreconError("training needs steps or a wall-time budget", hint="steps=300 or budget_s=120")
    ps = int(min(patch_size, arr.shape[1], arr.shape[2]))
    ps -= ps % mask_grid
    if ps < 8:
        raise FluoreconError(f"frames {arr.shape[1:]} are too small for spatiotemporal training (needs ≥ 8×8)",
                             hint="use --method classical for tiny frames")
    win = int(window) - int(window) % mask_grid or int(window)
    dev = _device(device)
    norm = PercentileNormalizer().fit(arr)
    x = torch.from_numpy(norm.normalize(arr))
    torch.manual_seed(seed)
    net = RecurrentNet(width).to(dev)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    t_len, ny, nx = arr.shape
    t0 = time.perf_counter()
    step, losses = 0, []
    net.train()
    while True:
        elapsed = time.perf_counter() - t0
        if (steps is not None and step >= steps) or (steps is None and elapsed >= float(budget_s or 0)):
            break
        frac = step / steps if steps is not None else elapsed / float(budget_s or 1)
        for g in opt.param_groups:
            g["lr"] = lr * _lr(frac)
        crops = []
        for _ in range(batch_size):
            t, y, xx = rng.integers(0, t_len - win + 1), rng.integers(0, ny - ps + 1), rng.integers(0, nx - ps + 1)
            c = x[t:t + win, y:y + ps, xx:xx + ps]
            flips = [d for d, f in zip((0, 1, 2), rng.random(3) < 0.5, strict=True) if f]
            c = torch.flip(c, flips) if flips else c
            crops.append(c.transpose(1, 2) if rng.random() < 0.5 else c)
        batch = torch.stack(crops)[:, None]
        xm, mask = blind_spot_mask(batch, gen, grid=mask_grid, replace="median", radius=2)
        out = net(xm[:, 0].to(dev))
        m = mask[:, 0].to(dev)
        loss = ((out - batch[:, 0].to(dev)) ** 2 * m).sum() / m.sum().clamp(min=1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        losses.append(float(loss.detach()))
        if callback is not None:
            callback(step, losses[-1])
    net.eval()
    prov = {"steps": step, "seed": int(seed), "train_s": round(time.perf_counter() - t0, 3),
            "loss_last": float(np.mean(losses[-20:])) if losses else None,
            "temporal": {"scheme": "convlstm", "window": int(window), "axes": "TYX", "patch_size": ps,
                         "mask_grid": int(mask_grid), "batch_size": int(batch_size), "lr": float(lr)}}
    return RecurrentBundle(net, norm, prov)


def _device(device: str) -> torch.device:
    from fluorecon.utils import resolve_device

    return resolve_device(device)


def chunk_weights(overlap: int, margin: int) -> np.ndarray:
    """Weight of the earlier chunk on the ``overlap`` frames it shares with the next one.

    1 on the first ``margin`` frames, a linear ramp, 0 on the last ``margin`` frames; the next chunk
    gets ``1 − w``. A frame is thus taken only from chunks where it lies at least ``margin`` frames
    from the chunk's cut edge, where the network sees the same context as in the whole movie.

    Examples
    --------
    >>> chunk_weights(6, 2).tolist()
    [1.0, 1.0, 0.75, 0.25, 0.0, 0.0]
    """
    ramp = overlap - 2 * margin
    if ramp < 1:
        raise FluoreconError(f"an overlap of {overlap} frames leaves no ramp beside margins of {margin}",
                             hint="overlap > 2 · margin")
    mid = 1.0 - (np.arange(ramp) + 0.5) / ramp
    return np.concatenate([np.ones(margin), mid, np.zeros(margin)]).astype(np.float32)


def restore_in_time_chunks(restore: Callable[[np.ndarray], np.ndarray], movie: Any, out: Any = None, *,
                           chunk: int = 64, margin: int = 12, ramp: int = 8) -> Any:
    """Restore a ``(T, Y, X)`` movie of any length in chunks of ``chunk`` frames, blending the overlaps.

    Only one chunk of input, its restoration and the pending overlap are held in memory: ``movie``
    may be a zarr array, a memory map or anything sliceable along T, and ``out`` anything that takes
    slice assignment (a zarr array written frame range by frame range). Consecutive chunks share
    ``2·margin + ramp`` frames, weighted by :func:`chunk_weights`; with ``margin`` ≥ the method's
    temporal receptive radius the result equals restoring the whole movie at once.

    Parameters
    ----------
    restore : callable
        ``restore(frames) -> frames`` on a float32 ``(t, Y, X)`` array.
    movie : array-like
        ``(T, Y, X)``, sliced ``movie[a:b]``.
    out : array-like, optional
        ``(T, Y, X)`` destination; default a new float32 array.
    chunk, margin, ramp : int
        Frames per chunk, frames discarded next to each cut, frames of the linear cross-fade.

    Returns
    -------
    array-like
        ``out``.

    Examples
    --------
    >>> from scipy import ndimage
    >>> m = np.random.default_rng(0).random((100, 4, 4)).astype(np.float32)
    >>> f = lambda a: ndimage.uniform_filter1d(a, 5, axis=0, mode="nearest")  # temporal radius 2
    >>> y = restore_in_time_chunks(f, m, chunk=30, margin=2, ramp=4)
    >>> bool(np.allclose(y, f(m), atol=1e-6))
    True
    """
    shape = tuple(int(v) for v in movie.shape)
    if len(shape) != 3:
        raise FluoreconError(f"chunks in time need a (T, Y, X) movie, got shape {shape}", hint="give a TYX movie")
    t_len = shape[0]
    ov = 2 * int(margin) + int(ramp)
    if out is None:
        out = np.empty(shape, np.float32)
    def run(a: int, b: int) -> np.ndarray:
        frames = np.asarray(movie[a:b], np.float32)
        return np.asarray(restore(frames), np.float32)

    if t_len <= chunk:
        out[:] = run(0, t_len)
        return out
    if chunk < 2 * ov:
        raise FluoreconError(f"chunks of {chunk} frames are too short for an overlap of {ov} frames",
                             hint=f"chunk ≥ {2 * ov} (or smaller margin/ramp)")
    w = chunk_weights(ov, margin)[:, None, None]
    step = chunk - ov
    start, pending = 0, None
    while True:
        stop = min(start + chunk, t_len)
        r = run(start, stop)
        if r.shape != (stop - start, *shape[1:]):
            raise FluoreconError(f"restore returned shape {r.shape} for frames {start}:{stop}")
        head = 0
        if pending is not None:
            out[start:start + ov] = pending + (1.0 - w) * r[:ov]
            head = ov
        if stop >= t_len:
            out[start + head:stop] = r[head:]
            return out
        out[start + head:stop - ov] = r[head:-ov]
        pending = w * r[-ov:]
        start += step


def predict_recurrent(bundle: RecurrentBundle, movie: Any, axes: str | None = "TYX", *, chunk: int = 64,
                      margin: int = 12, ramp: int = 8, device: str = "auto", out: Any = None) -> Any:
    """Restore a movie with a :class:`RecurrentBundle`, in chunks of ``chunk`` frames along T.

    The bidirectional state reaches the whole chunk; chunks overlap by ``2·margin + ramp`` frames
    (:func:`restore_in_time_chunks`). The recurrent memory fades (forget gates), so a ``margin`` of
    12 frames makes the chunked result match the whole-movie one within the tolerance measured in
    the tests.

    Examples
    --------
    >>> m = np.random.default_rng(0).poisson(9, (8, 16, 16)).astype(np.float32)
    >>> b = train_recurrent(m, window=8, patch_size=16, width=4, steps=1, device="cpu")
    >>> predict_recurrent(b, m, device="cpu").shape
    (8, 16, 16)
    """
    if not hasattr(movie, "__getitem__") or not hasattr(movie, "shape") or isinstance(movie, list | tuple):
        movie, _ = check_movie(movie, axes, 1, "convlstm")
    dev = _device(device)
    net = bundle.model.to(dev)

    def run(frames: np.ndarray) -> np.ndarray:
        x = bundle.normalizer.normalize(frames)
        ny, nx = x.shape[1:]
        xt = torch.from_numpy(np.pad(x, ((0, 0), (0, ny % 2), (0, nx % 2)), mode="reflect"))[None].to(dev)
        with torch.no_grad():
            y = net(xt)[0, :, :ny, :nx].cpu().numpy()
        return bundle.normalizer.denormalize(y)

    return restore_in_time_chunks(run, movie, out, chunk=chunk, margin=margin, ramp=ramp)


# ------------------------------------------------------------------------------- posterior fusion
def noise_neighbour_correlation(movie: Any, percentile: float = 30.0) -> float:
    """Correlation of the camera noise between adjacent pixels, from frame differences of dim pixels.

    A blind spot of one pixel is J-invariant only for pixel-independent noise; with correlated noise
    a prediction from the neighbours carries part of the pixel's own noise, and
    ``E(f − x)² = E(f − y)² + v_n − 2·Cov(f − y, x − y)`` underestimates the prediction's error.
    Consecutive-frame differences at the pixels whose temporal mean is dim (below ``percentile``;
    little structure and motion there) give the noise's correlation to the right and below,
    averaged, clipped to [0, 0.5].

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> white = rng.normal(100, 5, (8, 64, 64))
    >>> abs(noise_neighbour_correlation(white)) < 0.03
    True
    >>> from scipy import ndimage
    >>> corr = ndimage.uniform_filter(rng.normal(0, 5, (8, 64, 65)), (1, 1, 2))[..., :64] + 100
    >>> round(noise_neighbour_correlation(corr), 1)     # a 2-pixel mean along X: 0.5 there, 0 along Y
    0.3
    """
    m = np.asarray(movie, np.float64)
    if m.ndim != 3 or m.shape[0] < 2:
        return 0.0
    d = m[1:] - m[:-1]
    # dim by the temporal mean, not by each noisy value: selecting on the values would select on
    # the noise itself and bias its correlation toward 0
    mean = m.mean(0)
    ok = np.broadcast_to(mean < np.percentile(mean, percentile), d.shape)
    rs = []
    for sl_a, sl_b in (((..., slice(None, -1)), (..., slice(1, None))),
                       ((slice(None), slice(None, -1)), (slice(None), slice(1, None)))):
        sel = ok[sl_a] & ok[sl_b]
        if sel.sum() > 100:
            a, b = d[sl_a][sel], d[sl_b][sel]
            rs.append(float(np.corrcoef(a, b)[0, 1]))
    return float(np.clip(np.mean(rs), 0.0, 0.5)) if rs else 0.0


def fit_fusion(raw: Any, prior: Any, noise: NoiseModel, bins: int = 16,
               noise_correlation: float = 0.0) -> dict[str, Any]:
    """Fit the per-pixel fusion of a J-invariant prediction with the raw pixel (Laine et al. 2019).

    A blind-spot network predicts each pixel from its neighbours only (``prior`` must not depend on
    the pixel's own noisy value: a J-invariant prediction); the raw pixel is a second, independent
    estimate of the same truth with the camera's variance ``v_n``. On data whose structures are
    about a pixel wide (lysosomes, undersampled puncta) the neighbours cannot tell how bright a
    pixel is, and the prediction alone blurs; the Gaussian posterior mean of the two,
    ``prior + v_f / (v_f + v_n) · (raw − prior)``, keeps what the raw pixel knows. The prediction's
    error variance ``v_f`` is measured on the movie itself, per intensity bin of the prediction:
    for a J-invariant prediction ``E[(prior − raw)²] = E[(prior − truth)²] + v_n`` (Noise2Self), so
    ``v_f = mean((prior − raw)² − v_n)`` needs no clean data.

    Parameters
    ----------
    raw : array-like
        The noisy recording (ADU, the units of ``noise``).
    prior : array-like
        A J-invariant restoration of ``raw`` (same shape).
    noise : NoiseModel
        Poisson–Gaussian camera model of ``raw`` (e.g. from
        :func:`fluorecon.physics.noise_model.estimate_poisson_gaussian`); ``v_n = noise.variance(prior)``.
    bins : int
        Equal-count intensity bins of ``prior`` for ``v_f``.
    noise_correlation : float
        Correlation ``ρ`` of the noise between adjacent pixels (:func:`noise_neighbour_correlation`).
        A prediction from the neighbours then shares up to ``ρ·v_n`` of covariance with the pixel's
        noise, so ``2·ρ·v_n`` is added back to ``v_f`` (the bound for a prediction that averages
        neighbours; it errs toward trusting the raw pixel).

    Returns
    -------
    dict
        JSON-able: ``edges`` (bin edges of ``prior``), ``prior_var`` (``v_f`` per bin, ADU²), ``gain``,
        ``offset``, ``read_var``; apply with :func:`apply_fusion` (also to other frames of the movie).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> truth = np.full((4, 32, 32), 100.0)
    >>> noise = NoiseModel(gain=1.0, offset=0.0, read_noise_adu=0.0)
    >>> raw = truth + rng.normal(0, 10, truth.shape)          # variance 100 = gain · 100
    >>> prior = truth + rng.normal(0, 10, truth.shape)        # an independent estimate, as good
    >>> fus = fit_fusion(raw, prior, noise, bins=1)
    >>> round(fus["prior_var"][0] / 100, 1)                   # its error variance, measured
    1.0
    >>> bool(np.var(apply_fusion(raw, prior, fus) - truth) < 0.6 * 100)   # the average of two
    True
    """
    x = np.asarray(raw, np.float64)
    f = np.asarray(prior, np.float64)
    if x.shape != f.shape:
        raise FluoreconError(f"prior {f.shape} and raw {x.shape} differ in shape", hint="give a restoration of raw")
    vn = np.asarray(noise.variance(f), np.float64)
    edges = np.unique(np.quantile(f, np.linspace(0, 1, int(bins) + 1)))
    idx = np.clip(np.searchsorted(edges, f, side="right") - 1, 0, max(len(edges) - 2, 0))
    excess = (f - x) ** 2 - (1.0 - 2.0 * float(noise_correlation)) * vn
    pv = [float(max(excess[idx == i].mean(), 0.0)) if np.any(idx == i) else 0.0 for i in range(max(len(edges) - 1, 1))]
    return {"edges": [float(v) for v in edges], "prior_var": pv, "gain": float(noise.gain),
            "offset": float(noise.offset), "read_var": float(noise.read_noise_adu) ** 2,
            "noise_correlation": float(noise_correlation)}


def apply_fusion(raw: Any, prior: Any, fusion: dict[str, Any]) -> np.ndarray:
    """Per-pixel posterior mean of ``prior`` and ``raw`` with the variances of :func:`fit_fusion`.

    ``v_f`` is interpolated linearly between the bins' centres (held constant beyond the outer ones).

    Examples
    --------
    >>> fus = {"edges": [0.0, 10.0], "prior_var": [1.0], "gain": 1.0, "offset": 0.0, "read_var": 0.0}
    >>> apply_fusion(np.array([4.0]), np.array([1.0]), fus).tolist()     # v_n = 1 = v_f: the mean
    [2.5]
    """
    x = np.asarray(raw, np.float32)
    f = np.asarray(prior, np.float32)
    edges = np.asarray(fusion["edges"], np.float64)
    pv = np.asarray(fusion["prior_var"], np.float64)
    # piecewise linear between bin centres (constant beyond): a step would make λ jump at an edge, so
    # that a rounding-level change of the prediction could move the result visibly
    centres = 0.5 * (edges[:-1] + edges[1:]) if len(edges) > 1 else edges[:1]
    vf = np.interp(f, centres[: len(pv)], pv).astype(np.float32)
    vn = float(fusion["gain"]) * np.clip(f - float(fusion["offset"]), 0, None) + float(fusion["read_var"])
    lam = vf / np.maximum(vf + vn, 1e-12)
    return (f + lam * (x - f)).astype(np.float32)
