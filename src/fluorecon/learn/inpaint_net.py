"""Learned filling of light-sheet shadows, trained on the user's own stack (self-supervised).

No clean data are needed: shadows are *simulated* (:func:`fluorecon.physics.occlusion.random_shadow_mask`)
on the recording itself and the network learns to undo them. The trick that makes the target
honest is **binomial thinning**: a pixel that recorded ``k`` photons (Poisson with mean ``λ``) is split
into ``k_in ~ Binomial(k, M)`` — exactly a Poisson recording of ``M·λ``, i.e. the pixel as the simulated
shadow would have recorded it — and the rest ``k − k_in``, an *independent* Poisson count of
``(1 − M)·λ``. The network sees ``k_in`` and the mask and is trained to predict ``(k − k_in)/(1 − M)``,
an unbiased, independent estimate of ``λ``: it learns to fill (and denoise) without ever seeing a
noise-free image, and never learns to copy the input's noise. Pixels already shadowed in the data
(``M̂ < 1``, given or estimated) are used with their own transmission folded in.

Network: :class:`fluorecon.learn.nets.UNet` on ``[x, M, fill]`` where ``fill = x + (1 − M)·NC(x, M)``
is a normalised-convolution estimate (the observed light plus a smooth guess of the missing part);
the U-Net predicts a correction to it. In unshadowed pixels the recording is kept as is.

Examples
--------
>>> from fluorecon.physics.occlusion import simulate_shadows
>>> sim = simulate_shadows((64, 64), seed=0)
>>> model = train_inpaint_net(sim["recording"], sim["mask"], offset=100.0, gain=1.0, steps=2, patch=32,
...                           batch=2, width=4, depth=2, seed=0)
>>> inpaint_learned(model, sim["recording"], sim["mask"]).shape
(64, 64)
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn

from fluorecon.errors import FluoreconError
from fluorecon.learn.bundle import write_safetensors
from fluorecon.learn.nets import UNet
from fluorecon.physics.occlusion import check_mask, random_shadow_mask

__all__ = ["InpaintModel", "InpaintNet", "deterministic", "inpaint_learned", "normalized_fill", "train_inpaint_net"]


@contextlib.contextmanager
def deterministic(enabled: bool = True) -> Iterator[None]:
    """Run torch in deterministic-algorithms mode inside the block (restored afterwards).

    Examples
    --------
    >>> with deterministic():
    ...     torch.are_deterministic_algorithms_enabled()
    True
    """
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(bool(enabled) or before, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def _gauss(x: torch.Tensor, sigma: float) -> torch.Tensor:
    r = max(int(math.ceil(3 * sigma)), 1)
    t = torch.arange(-r, r + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    x = F.pad(x, (r, r, r, r), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    return F.conv2d(x, k.view(1, 1, -1, 1))


def normalized_fill(x: torch.Tensor, m: torch.Tensor, sigma: float = 6.0) -> torch.Tensor:
    """``x + (1 − M)·NC``: the observed light plus a normalised-convolution guess of what the shadow removed.

    ``NC = G*(M·x) / G*(M²)`` is the local weighted least-squares estimate of the unshadowed image
    under ``x = M·y`` (Knutsson & Westin's normalised convolution).

    Examples
    --------
    >>> y = torch.full((1, 1, 16, 16), 5.0); m = torch.ones_like(y); m[..., 6:10, :] = 0.0
    >>> bool(torch.allclose(normalized_fill(y * m, m), y, rtol=1e-3))
    True
    """
    nc = _gauss(m * x, sigma) / (_gauss(m * m, sigma) + 1e-4)
    return x + (1 - m) * nc


class InpaintNet(nn.Module):
    """U-Net correction of :func:`normalized_fill` from ``[x, M, fill]`` (inputs in units of the data scale)."""

    def __init__(self, width: int = 16, depth: int = 3, sigma: float = 6.0):
        super().__init__()
        self.width, self.depth, self.sigma = int(width), int(depth), float(sigma)
        self.unet = UNet(dim=2, in_channels=3, out_channels=1, depth=depth, width=width, residual=False)

    def forward(self, x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
        fill = normalized_fill(x, m, self.sigma)
        return fill + self.unet(torch.cat([x, m, fill], 1))

    def config(self) -> dict[str, Any]:
        return {"width": self.width, "depth": self.depth, "sigma": self.sigma}


@dataclass
class InpaintModel:
    """A trained :class:`InpaintNet` with the units it was trained in (offset, gain, scale).

    ``save(folder)`` writes ``weights.safetensors`` and ``config.json`` (no pickles); ``load(folder)``
    reads them back.
    """

    net: InpaintNet
    offset: float
    gain: float
    scale: float
    info: dict[str, Any] = field(default_factory=dict)

    def config(self) -> dict[str, Any]:
        return {"kind": "fluorecon-inpaint", "version": 1, "net": self.net.config(), "offset": self.offset,
                "gain": self.gain, "scale": self.scale, "info": self.info}

    def save(self, folder: str | Path) -> Path:
        dest = Path(folder)
        dest.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.net.state_dict().items()}
        write_safetensors(state, dest / "weights.safetensors", {"kind": "fluorecon-inpaint"})
        (dest / "config.json").write_text(json.dumps(self.config(), indent=1, sort_keys=True, default=float))
        return dest

    @classmethod
    def load(cls, folder: str | Path) -> InpaintModel:
        src = Path(folder)
        cfg_path, w_path = src / "config.json", src / "weights.safetensors"
        if not cfg_path.is_file() or not w_path.is_file():
            raise FluoreconError(f"{src} is not a saved inpainting model (config.json + weights.safetensors)",
                                 hint="give the folder written by --save-model of fluorecon inpaint")
        cfg = json.loads(cfg_path.read_text())
        if cfg.get("kind") != "fluorecon-inpaint":
            raise FluoreconError(f"{cfg_path} is not an inpainting model config (kind {cfg.get('kind')!r})")
        net = InpaintNet(**cfg["net"])
        state = load_file(str(w_path))
        if not all(torch.isfinite(v).all() for v in state.values()):
            raise FluoreconError(f"{w_path} holds NaN/Inf weights", hint="re-train the model")
        net.load_state_dict(state)
        net.eval()
        return cls(net, float(cfg["offset"]), float(cfg["gain"]), float(cfg["scale"]), dict(cfg.get("info") or {}))


def _planes(image: Any, mask: Any) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(image, np.float32)
    if x.ndim < 2 or not np.all(np.isfinite(x)):
        raise FluoreconError(f"image must be a finite (…, Y, X) array, got shape {x.shape}")
    m = check_mask(mask, x.shape)
    return x.reshape(-1, *x.shape[-2:]), m.reshape(-1, *x.shape[-2:])


def train_inpaint_net(image: Any, mask: Any, *, offset: float, gain: float, axis: int = -1, steps: int = 400,
                      patch: int = 64, batch: int = 8, width: int = 16, depth: int = 3, lr: float = 2e-3,
                      budget_s: float | None = None, seed: int = 0, deterministic_mode: bool = True,
                      progress: Any = None) -> InpaintModel:
    """Train an :class:`InpaintNet` on the image itself with simulated shadows and binomial thinning.

    Parameters
    ----------
    image : array (..., Y, X)
        The recording (ADU); all planes are used.
    mask : array
        Its known or estimated transmission ((Y, X) or the image's shape; 1 = unshadowed).
    offset, gain : float
        Camera offset (ADU) and ADU per photo-electron: thinning needs counts.
    axis : {-1, -2}
        Illumination axis (the simulated shadows run along it).
    steps, patch, batch, width, depth, lr
        Training steps, patch side (clipped to the image, multiple of 2**depth), batch size, U-Net width
        and depth, Adam learning rate (cosine decay).
    budget_s : float, optional
        Stop after this many seconds.
    seed : int
        Seeds numpy and torch (patches, shadows, thinning, initial weights).
    deterministic_mode : bool
        Train with ``torch.use_deterministic_algorithms`` (identical weights for identical inputs and seed).
    progress : callable, optional
        ``progress(fraction, message)``.

    Returns
    -------
    InpaintModel
    """
    if gain <= 0 or not np.isfinite(gain):
        raise FluoreconError(f"gain must be a positive number of ADU per photo-electron, got {gain}")
    if axis not in (-1, -2):
        raise FluoreconError(f"illumination axis must be -1 (X) or -2 (Y), got {axis}")
    planes, masks = _planes(image, mask)
    ny, nx = planes.shape[-2:]
    mult = 2 ** depth
    p = min(int(patch), ny, nx) // mult * mult
    if p < mult * 2:
        raise FluoreconError(f"image {ny}×{nx} is too small to train on (patch {p} < {mult * 2})",
                             hint="give a larger image or a smaller depth")
    counts = np.clip(np.round((planes - offset) / gain), 0, None).astype(np.int64)
    clear = masks > 0.9
    if not clear.any():
        raise FluoreconError("no unshadowed pixels to learn from (the mask is < 0.9 everywhere)",
                             hint="check the mask: 1 = not shadowed (or use --mask-kind occluded)")
    scale = float(max(counts[clear].mean(), 1.0))
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    losses: list[float] = []
    step = 0
    with deterministic(deterministic_mode):
        torch.manual_seed(seed)
        net = InpaintNet(width, depth)
        opt = torch.optim.Adam(net.parameters(), lr=lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, max(int(steps), 1))
        for step in range(1, int(steps) + 1):
            xs, ms, ts, ws = [], [], [], []
            for _ in range(batch):
                i = int(rng.integers(len(planes)))
                oy, ox = int(rng.integers(ny - p + 1)), int(rng.integers(nx - p + 1))
                k = counts[i, oy:oy + p, ox:ox + p]
                mh = masks[i, oy:oy + p, ox:ox + p]
                ms_ = random_shadow_mask((p, p), rng, axis=axis)
                k_in = rng.binomial(k, ms_.astype(np.float64))
                keep = (1.0 - ms_) * mh
                target = (k - k_in) / np.maximum(keep, 1e-3)
                w = np.where(ms_ < 0.99, keep, 0.0)
                flips = [a for a in (0, 1) if rng.random() < 0.5]
                arrs = [np.flip(a, flips).copy() if flips else a for a in (k_in, mh * ms_, target, w)]
                xs.append(arrs[0])
                ms.append(arrs[1])
                ts.append(arrs[2])
                ws.append(arrs[3])
            x = torch.as_tensor(np.stack(xs) / scale, dtype=torch.float32)[:, None]
            m = torch.as_tensor(np.stack(ms), dtype=torch.float32)[:, None]
            t = torch.as_tensor(np.stack(ts) / scale, dtype=torch.float32)[:, None]
            w = torch.as_tensor(np.stack(ws), dtype=torch.float32)[:, None]
            loss = (w * (net(x, m) - t) ** 2).sum() / w.sum().clamp(min=1e-6)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            losses.append(float(loss.item()))
            if progress is not None:
                progress(step / steps, f"inpainting training step {step} (loss {losses[-1]:.4g})")
            if budget_s is not None and time.perf_counter() - t0 > budget_s:
                break
    net.eval()
    info = {"steps": step, "seconds": round(time.perf_counter() - t0, 2),
            "loss": float(np.mean(losses[-20:])) if losses else None, "patch": p, "batch": batch, "seed": seed,
            "lr": lr, "deterministic": bool(deterministic_mode)}
    return InpaintModel(net, float(offset), float(gain), scale, info)


def inpaint_learned(model: InpaintModel, image: Any, mask: Any, *, keep_above: float = 0.95) -> np.ndarray:
    """Fill the shadows of ``image`` with a trained model; pixels with ``M ≥ keep_above`` keep the recording.

    Between 0.9 and ``keep_above`` the network's estimate blends into the attenuation-corrected recording.

    Returns
    -------
    np.ndarray
        float32, the image's shape, recording units (ADU, offset kept).
    """
    x = np.asarray(image, np.float32)
    planes, masks = _planes(x, mask)
    off, g, s = model.offset, model.gain, model.scale
    out = np.empty_like(planes)
    with torch.no_grad():
        for i in range(len(planes)):
            xi = torch.as_tensor(np.clip((planes[i] - off) / g, 0, None) / s)[None, None]
            mi = torch.as_tensor(masks[i])[None, None]
            y = model.net(xi, mi)[0, 0].clamp(min=0).numpy() * s * g + off
            corr = off + (planes[i] - off) / np.maximum(masks[i], 1e-3)
            a = np.clip((masks[i] - 0.9) / max(keep_above - 0.9, 1e-6), 0, 1)
            out[i] = a * corr + (1 - a) * y
    return out.reshape(x.shape).astype(np.float32)
