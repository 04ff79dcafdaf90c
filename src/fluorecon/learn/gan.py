"""Conditional adversarial training (pix2pix / ANNA-PALM style) with L1 and MS-SSIM losses.

A generator (:class:`fluorecon.learn.nets.UNet`) maps a conditioning image ``x`` (``C`` channels:
e.g. a sparse PALM rendering and a widefield image) to a target ``y`` (one channel). The generator's
loss is a weighted sum of documented terms::

    L_G = w_l1 · mean|G(x) − y|  +  w_ms_ssim · (1 − MS-SSIM(G(x), y))  +  w_adv · BCE(D(x, G(x)), 1)
          [+ w_frc · (1 − mean ring FRC(G(x), y))]

and a PatchGAN discriminator ``D`` (:class:`PatchDiscriminator`) that **sees the condition**
(``D`` receives ``concat(x, y)``) is trained with ``L_D = ½ [BCE(D(x, y), 1) + BCE(D(x, G(x)), 0)]``.
With ``w_adv = 0`` no discriminator is built and training is plain supervised L1 (+ MS-SSIM).

Defaults: ``w_l1 = 1``, ``w_ms_ssim = 0``, ``w_adv = 0`` (plain L1) — the two presets the tasks use are
:data:`PRESETS` (``"l1"``, ``"l1+ms-ssim"``, ``"gan"``: L1 + 0.5·(1 − MS-SSIM) + 0.02·adversarial;
pix2pix's λ_L1 = 100 relative to the adversarial term corresponds to 0.01 here).

Images are expected normalised to roughly [0, 1] (MS-SSIM is computed with ``data_range = 1``).
Training is seeded (:func:`fluorecon.utils.seed_everything`); a checkpoint folder (``checkpoint.json`` +
``state.safetensors``: both networks, both Adam states, the step, the NumPy and torch RNG states)
makes a run resumable. The returned :class:`fluorecon.learn.bundle.Bundle` stores the generator only.

Examples
--------
>>> rng = np.random.default_rng(0)
>>> xs = [rng.random((1, 40, 40)).astype(np.float32) for _ in range(2)]
>>> ys = [x[0] * 0.5 for x in xs]
>>> cfg = GANConfig.preset("gan", steps=2, batch_size=2, patch=32, width=4, depth=1, d_width=4)
>>> bundle, info = train_gan(cfg, array_sampler(xs, ys, 32))
>>> predict_gan(bundle.model, xs[0]).shape, sorted(info["losses"][-1])
((40, 40), ['d', 'g_adv', 'l1', 'ms_ssim', 'total'])
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn
from torch.nn import functional as F

from fluorecon._atomic import atomic_path
from fluorecon.errors import FluoreconError
from fluorecon.learn.bundle import Bundle, write_safetensors
from fluorecon.learn.nets import UNet, n_parameters
from fluorecon.learn.normalize import PercentileNormalizer
from fluorecon.utils import seed_everything

__all__ = [
    "PRESETS",
    "GANConfig",
    "PatchDiscriminator",
    "array_sampler",
    "identity_normalizer",
    "frc_loss",
    "ms_ssim",
    "predict_gan",
    "ssim_torch",
    "train_gan",
]

#: Wang et al. (2003) MS-SSIM scale weights (finest first).
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)

#: Loss presets: name → (w_l1, w_ms_ssim, w_adv).
PRESETS: dict[str, tuple[float, float, float]] = {
    "l1": (1.0, 0.0, 0.0),
    "l1+ms-ssim": (1.0, 0.5, 0.0),
    "gan": (1.0, 0.5, 0.02),
}

Sampler = Callable[[np.random.Generator, int], tuple[np.ndarray, np.ndarray]]


# ------------------------------------------------------------------------------------------------ SSIM
def _uniform_window(x: torch.Tensor, win: int) -> torch.Tensor:
    c = x.shape[1]
    k = torch.full((c, 1, win, win), 1.0 / (win * win), dtype=x.dtype, device=x.device)
    return F.conv2d(x, k, groups=c)


def ssim_torch(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, win_size: int = 7, k1: float = 0.01,
               k2: float = 0.03, return_cs: bool = False) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """SSIM of ``(N, C, Y, X)`` tensors, per image; equal to scikit-image's default ``structural_similarity``.

    Uniform ``win_size``² window, sample covariances, the mean over positions where the window fits
    (scikit-image crops the same border). Differentiable.

    Parameters
    ----------
    x, y : torch.Tensor
        ``(N, C, Y, X)`` images; Y and X at least ``win_size``.
    data_range : float
        Dynamic range of the images (sets the stabilising constants).
    win_size : int
        Odd window side.
    return_cs : bool
        Also return the contrast–structure term (used by :func:`ms_ssim`).

    Returns
    -------
    torch.Tensor
        ``(N,)`` SSIM (and ``(N,)`` contrast–structure with ``return_cs``).

    Examples
    --------
    >>> a = torch.rand(1, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    >>> round(float(ssim_torch(a, a)[0]), 6)
    1.0
    """
    if x.shape != y.shape or x.ndim != 4:
        raise FluoreconError(f"ssim needs two (N, C, Y, X) tensors of one shape, got {tuple(x.shape)}, {tuple(y.shape)}")
    if min(x.shape[-2:]) < win_size:
        raise FluoreconError(f"images of {tuple(x.shape[-2:])} are smaller than the SSIM window {win_size}",
                             hint="use larger patches or fewer MS-SSIM scales")
    npx = win_size * win_size
    cov = npx / (npx - 1.0)
    ux, uy = _uniform_window(x, win_size), _uniform_window(y, win_size)
    uxx, uyy, uxy = (_uniform_window(x * x, win_size), _uniform_window(y * y, win_size),
                     _uniform_window(x * y, win_size))
    vx, vy, vxy = cov * (uxx - ux * ux), cov * (uyy - uy * uy), cov * (uxy - ux * uy)
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    cs_map = (2 * vxy + c2) / (vx + vy + c2)
    s_map = (2 * ux * uy + c1) / (ux * ux + uy * uy + c1) * cs_map
    s = s_map.flatten(1).mean(1)
    if return_cs:
        return s, cs_map.flatten(1).mean(1)
    return s


def ms_ssim(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, scales: int = 5, win_size: int = 7,
            weights: Sequence[float] | None = None) -> torch.Tensor:
    """Multi-scale SSIM (Wang, Simoncelli & Bovik 2003) of ``(N, C, Y, X)`` tensors, per image.

    ``∏_{j<M} cs_j^{w_j} · ssim_M^{w_M}`` over ``M`` scales (2× average pooling between them). The
    number of scales is reduced so that the coarsest image still holds one window (a 32² patch gets
    3 scales with the default 7² window); the weights are the first ``M`` of Wang's, renormalised.
    Negative ``cs`` values are clipped at 0 (keeps fractional powers defined). With ``scales=1`` this is
    :func:`ssim_torch`.

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> a = torch.rand(2, 1, 64, 64, generator=g)
    >>> b = (a + 0.3 * torch.rand(2, 1, 64, 64, generator=g)).clamp(0, 1)
    >>> v = ms_ssim(a, b)
    >>> v.shape, bool((v < 1).all() and (v > 0).all()), round(float(ms_ssim(a, a)[0]), 5)
    (torch.Size([2]), True, 1.0)
    """
    m = 1
    side = min(x.shape[-2:])
    while m < scales and side // 2 ** m >= win_size:
        m += 1
    w = torch.as_tensor(list(weights or MS_SSIM_WEIGHTS)[:m], dtype=x.dtype, device=x.device)
    if len(w) < m:
        raise FluoreconError(f"{len(w)} MS-SSIM weights for {m} scales", hint="give one weight per scale")
    w = w / w.sum()
    out = torch.ones(x.shape[0], dtype=x.dtype, device=x.device)
    for j in range(m):
        s, cs = ssim_torch(x, y, data_range, win_size, return_cs=True)
        if j == m - 1:
            out = out * torch.clamp(s, min=1e-6) ** w[j]
        else:
            out = out * torch.clamp(cs, min=1e-6) ** w[j]
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
    return out


def frc_loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``1 −`` the mean Fourier ring correlation of ``(N, 1, P, P)`` patches, rings 1 … P/2; per image.

    Every ring counts alike, so the loss weighs the faint high-frequency rings, where a pixel loss sees
    almost no energy, as much as the bright low ones — it rewards an output whose fine detail is
    *correlated* with the target's whatever its amplitude (a ring-wise gain leaves it unchanged, as it
    leaves :func:`fluorecon.evaluate.metrics.frc`). Both patches are mean-subtracted and Hann-windowed
    (the patch edges would otherwise add a correlated cross to the spectrum).

    Examples
    --------
    >>> g = torch.Generator().manual_seed(0)
    >>> a = torch.rand(2, 1, 32, 32, generator=g)
    >>> round(float(frc_loss(a, 3 * a + 1)[0]), 5), bool(frc_loss(a, torch.rand(2, 1, 32, 32, generator=g)).min() > 0.5)
    (0.0, True)
    """
    if x.shape != y.shape or x.ndim != 4 or x.shape[-1] != x.shape[-2]:
        raise FluoreconError(f"frc_loss needs two (N, C, P, P) tensors of one shape, got {tuple(x.shape)}, "
                             f"{tuple(y.shape)}")
    n = x.shape[-1]
    w = torch.hann_window(n, periodic=False, dtype=x.dtype, device=x.device)
    win = w[:, None] * w[None, :]
    fx = torch.fft.rfft2((x - x.mean((-2, -1), keepdim=True)) * win)
    fy = torch.fft.rfft2((y - y.mean((-2, -1), keepdim=True)) * win)
    ky = torch.fft.fftfreq(n, device=x.device)[:, None]
    kx = torch.fft.rfftfreq(n, device=x.device)[None, :]
    ring = torch.clamp(torch.round(torch.sqrt(ky * ky + kx * kx) * n).long(), max=n // 2).flatten()
    b = x.shape[0] * x.shape[1]

    def per_ring(v: torch.Tensor) -> torch.Tensor:
        return torch.zeros(b, n // 2 + 1, dtype=v.dtype, device=v.device).index_add_(1, ring, v.reshape(b, -1))

    num = per_ring((fx * fy.conj()).real)
    den = torch.sqrt(per_ring(fx.real ** 2 + fx.imag ** 2) * per_ring(fy.real ** 2 + fy.imag ** 2) + 1e-12)
    f = (num / den)[:, 1:]
    return (1 - f.mean(1)).reshape(x.shape[0], x.shape[1]).mean(1)


# -------------------------------------------------------------------------------------- discriminator
class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator (pix2pix): a map of real/fake logits, one per overlapping patch.

    ``forward(x, y)`` concatenates the condition ``x`` (``cond_channels``) and the image ``y``
    (``channels``): the discriminator judges whether ``y`` is a plausible target **for this input**.

    Parameters
    ----------
    cond_channels, channels : int
        Channels of the condition and of the judged image.
    width : int
        Features of the first layer (doubled per layer, at most 8×).
    n_layers : int
        Stride-2 layers; the receptive field is 34 px for 2 layers, 70 px for 3.

    Examples
    --------
    >>> d = PatchDiscriminator(2, 1, width=8, n_layers=2)
    >>> d(torch.zeros(1, 2, 32, 32), torch.zeros(1, 1, 32, 32)).shape
    torch.Size([1, 1, 6, 6])
    """

    def __init__(self, cond_channels: int, channels: int = 1, width: int = 32, n_layers: int = 3):
        super().__init__()
        self.cond_channels, self.channels = int(cond_channels), int(channels)
        self._cfg = {"cond_channels": cond_channels, "channels": channels, "width": width, "n_layers": n_layers}
        layers: list[nn.Module] = [nn.Conv2d(cond_channels + channels, width, 4, 2, 1), nn.LeakyReLU(0.2)]
        ch = width
        for k in range(1, n_layers + 1):
            out = width * min(2 ** k, 8)
            stride = 2 if k < n_layers else 1
            layers += [nn.Conv2d(ch, out, 4, stride, 1), nn.GroupNorm(1, out), nn.LeakyReLU(0.2)]
            ch = out
        layers.append(nn.Conv2d(ch, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def config(self) -> dict[str, int]:
        return dict(self._cfg)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.cond_channels or y.shape[1] != self.channels:
            raise FluoreconError(f"discriminator expects {self.cond_channels}+{self.channels} channels, got "
                                 f"{x.shape[1]}+{y.shape[1]}")
        return self.net(torch.cat([x, y], 1))


# ------------------------------------------------------------------------------------------------ config
class GANConfig(BaseModel):
    """Settings of :func:`train_gan` (weights of the loss terms documented in the module docstring)."""

    model_config = ConfigDict(extra="forbid")

    steps: int = Field(500, ge=1, description="Training steps (one generator + one discriminator update each).")
    batch_size: int = Field(8, ge=1)
    patch: int = Field(64, ge=8, description="Square training patch side (pixels).")
    width: int = Field(32, ge=1, description="Generator U-Net width.")
    depth: int = Field(2, ge=0, description="Generator U-Net depth.")
    residual: bool = Field(False, description="Generator predicts x + G(x) (one input channel; same grid and scale).")
    base_channel: int | None = Field(None, ge=0, description=(
        "Physics-informed generator: predicts x[base_channel] + G(x), the last layer zero-initialised, so that "
        "untrained it returns that input channel (e.g. a classical reconstruction) exactly."))
    lr: float = Field(1e-3, gt=0, description="Generator learning rate (Adam, β = 0.5, 0.999; cosine decay).")
    lr_d: float = Field(2e-4, gt=0, description="Discriminator learning rate.")
    w_l1: float = Field(1.0, ge=0, description="Weight of mean |G(x) − y|.")
    w_ms_ssim: float = Field(0.0, ge=0, description="Weight of 1 − MS-SSIM(G(x), y).")
    w_adv: float = Field(0.0, ge=0, description="Weight of the adversarial term; 0: no discriminator.")
    w_frc: float = Field(0.0, ge=0, description="Weight of 1 − mean ring FRC(G(x), y) over the patch (frc_loss).")
    ms_ssim_scales: int = Field(3, ge=1, le=5)
    d_width: int = Field(16, ge=1)
    d_layers: int = Field(2, ge=1, le=5)
    seed: int = 0
    deterministic: bool = False
    checkpoint_every: int = Field(0, ge=0, description="Write the checkpoint every N steps (0: only at the end).")

    @classmethod
    def preset(cls, name: str, **kw: Any) -> GANConfig:
        """A config with the loss weights of :data:`PRESETS` ``[name]``.

        Examples
        --------
        >>> GANConfig.preset("gan", steps=10).w_adv
        0.02
        """
        if name not in PRESETS:
            raise FluoreconError(f"unknown loss preset {name!r}", hint=f"use one of {', '.join(PRESETS)}")
        a, b, c = PRESETS[name]
        return cls(**{"w_l1": a, "w_ms_ssim": b, "w_adv": c, **kw})


def identity_normalizer() -> PercentileNormalizer:
    """A fitted normaliser that leaves values unchanged (the tasks normalise inputs themselves)."""
    return PercentileNormalizer(0.0, 100.0, lo=[0.0], hi=[1.0])


# ------------------------------------------------------------------------------------------------- data
def array_sampler(inputs: Sequence[np.ndarray], targets: Sequence[np.ndarray], patch: int,
                  augment: bool = True) -> Sampler:
    """A sampler of random aligned patches (+ flips/rotations) from ``(C, Y, X)`` inputs and ``(Y, X)`` targets.

    Returns ``sample(rng, batch) -> (x (B, C, P, P), y (B, 1, P, P))`` float32.

    Examples
    --------
    >>> s = array_sampler([np.zeros((2, 40, 40))], [np.ones((40, 40))], 32)
    >>> [a.shape for a in s(np.random.default_rng(0), 3)]
    [(3, 2, 32, 32), (3, 1, 32, 32)]
    """
    xs = [np.asarray(a, np.float32) for a in inputs]
    ys = [np.asarray(b, np.float32) for b in targets]
    if not xs or len(xs) != len(ys):
        raise FluoreconError(f"{len(xs)} inputs and {len(ys)} targets", hint="give one target per input")
    for a, b in zip(xs, ys, strict=True):
        if a.ndim != 3 or b.ndim != 2 or a.shape[1:] != b.shape:
            raise FluoreconError(f"input {a.shape} and target {b.shape} do not pair",
                                 hint="inputs are (C, Y, X), targets (Y, X) of the same Y, X")
        if min(b.shape) < patch:
            raise FluoreconError(f"a training image of {b.shape} is smaller than the patch {patch}",
                                 hint="use a smaller patch or larger images")

    def sample(rng: np.random.Generator, batch: int) -> tuple[np.ndarray, np.ndarray]:
        bx, by = [], []
        for _ in range(batch):
            k = int(rng.integers(len(xs)))
            a, b = xs[k], ys[k]
            i = int(rng.integers(b.shape[0] - patch + 1))
            j = int(rng.integers(b.shape[1] - patch + 1))
            pa, pb = a[:, i:i + patch, j:j + patch], b[None, i:i + patch, j:j + patch]
            if augment:
                r = int(rng.integers(4))
                pa, pb = np.rot90(pa, r, (1, 2)), np.rot90(pb, r, (1, 2))
                if rng.random() < 0.5:
                    pa, pb = pa[:, :, ::-1], pb[:, :, ::-1]
            bx.append(pa)
            by.append(pb)
        return np.ascontiguousarray(np.stack(bx)), np.ascontiguousarray(np.stack(by))

    return sample


# ------------------------------------------------------------------------------------------- checkpoint
def _opt_tensors(opt: torch.optim.Optimizer, prefix: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors = {f"{prefix}.{i}.{k}": v.detach().cpu().clone().reshape(-1) if v.ndim == 0 else v.detach().cpu().clone()
               for i, st in sd["state"].items() for k, v in st.items()}
    return tensors, {"param_groups": sd["param_groups"], "scalar": [f"{prefix}.{i}.{k}" for i, st in sd["state"].items()
                                                                    for k, v in st.items() if v.ndim == 0]}


def _load_opt(opt: torch.optim.Optimizer, prefix: str, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, v in tensors.items():
        if not key.startswith(prefix + "."):
            continue
        _, i, k = key.split(".", 2)
        state.setdefault(int(i), {})[k] = v.reshape(()) if key in meta["scalar"] else v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def _save_checkpoint(path: Path, step: int, cfg: GANConfig, g: UNet, d: PatchDiscriminator | None,
                     opt_g: torch.optim.Optimizer, opt_d: torch.optim.Optimizer | None,
                     rng: np.random.Generator, history: list[dict[str, float]]) -> None:
    tensors = {f"g.{k}": v.detach().cpu().contiguous() for k, v in g.state_dict().items()}
    t, meta_g = _opt_tensors(opt_g, "optg")
    tensors.update(t)
    meta_d = None
    if d is not None and opt_d is not None:
        tensors.update({f"d.{k}": v.detach().cpu().contiguous() for k, v in d.state_dict().items()})
        t, meta_d = _opt_tensors(opt_d, "optd")
        tensors.update(t)
    tensors["torch_rng"] = torch.get_rng_state()
    doc = {"kind": "fluorecon-gan-checkpoint", "step": step, "config": cfg.model_dump(), "generator": g.config(),
           "discriminator": d.config() if d is not None else None, "opt_g": meta_g, "opt_d": meta_d,
           "numpy_rng": rng.bit_generator.state, "history": history}
    with atomic_path(path, is_dir=True) as tmp:
        write_safetensors(tensors, tmp / "state.safetensors")
        (tmp / "checkpoint.json").write_text(json.dumps(doc, default=int))


def _load_checkpoint(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    if not (path / "checkpoint.json").exists() or not (path / "state.safetensors").exists():
        raise FluoreconError(f"{path} is not a GAN checkpoint (checkpoint.json + state.safetensors)",
                             hint="give the checkpoint folder written by train_gan, or resume=False")
    return json.loads((path / "checkpoint.json").read_text()), load_file(str(path / "state.safetensors"))


# ---------------------------------------------------------------------------------------------- training
def train_gan(config: GANConfig, sampler: Sampler, *, in_channels: int | None = None,
              normalizer: PercentileNormalizer | None = None, callback: Callable[[int, dict[str, float]], Any] | None
              = None, checkpoint: str | Path | None = None, resume: bool = False, scheme: str = "gan",
              extra_config: dict[str, Any] | None = None) -> tuple[Bundle, dict[str, Any]]:
    """Train a generator (and, with ``w_adv > 0``, a conditional PatchGAN discriminator).

    Parameters
    ----------
    config : GANConfig
        Steps, patch, networks and the loss weights.
    sampler : callable
        ``sampler(rng, batch) -> (x (B, C, P, P), y (B, 1, P, P))`` normalised float32 arrays (e.g.
        :func:`array_sampler`, or a simulator).
    in_channels : int, optional
        Condition channels; default: taken from a first sample.
    normalizer : PercentileNormalizer, optional
        Stored in the bundle (default: :func:`identity_normalizer`).
    callback : callable, optional
        ``callback(step, losses)`` after each step (``losses``: ``total``, ``l1``, ``ms_ssim``, ``g_adv``,
        ``d``); it may raise (e.g. ``Cancelled``) to stop training.
    checkpoint : path, optional
        Folder for the resumable state (both networks, Adam states, RNG states, step).
    resume : bool
        Continue from ``checkpoint`` when it exists (same config required).
    scheme, extra_config : str, dict
        Written into the bundle's ``config``.

    Returns
    -------
    (Bundle, dict)
        The generator's bundle and ``info`` (``losses`` per step, ``steps``, ``seconds``,
        ``parameters``, ``resumed_from``).
    """
    was_deterministic = torch.are_deterministic_algorithms_enabled()
    try:
        return _train_gan(config, sampler, in_channels, normalizer, callback, checkpoint, resume, scheme,
                          extra_config)
    finally:   # seed_everything(deterministic=True) is global: leave torch as the caller had it
        torch.use_deterministic_algorithms(was_deterministic)


def _train_gan(config: GANConfig, sampler: Sampler, in_channels: int | None, normalizer: PercentileNormalizer | None,
               callback: Callable[[int, dict[str, float]], Any] | None, checkpoint: str | Path | None, resume: bool,
               scheme: str, extra_config: dict[str, Any] | None) -> tuple[Bundle, dict[str, Any]]:
    rng = seed_everything(config.seed, config.deterministic)
    if in_channels is None:
        in_channels = int(sampler(np.random.default_rng(config.seed), 1)[0].shape[1])
    base_ch = config.base_channel
    if base_ch is not None and base_ch >= in_channels:
        raise FluoreconError(f"base_channel {base_ch} but the input has {in_channels} channel(s)",
                             hint="give the index of the classical reconstruction among the input channels")
    g = UNet(dim=2, in_channels=in_channels, out_channels=1, depth=config.depth, width=config.width,
             residual=config.residual and in_channels == 1 and base_ch is None)
    if base_ch is not None:   # start from the classical channel: only the correction is learned
        nn.init.zeros_(g.final.weight)
        nn.init.zeros_(g.final.bias)
    if config.patch % g.divisor[0]:
        raise FluoreconError(f"patch {config.patch} is not a multiple of the U-Net's {g.divisor[0]}",
                             hint="use a patch that is a multiple of 2**depth")
    d = PatchDiscriminator(in_channels, 1, config.d_width, config.d_layers) if config.w_adv > 0 else None
    opt_g = torch.optim.Adam(g.parameters(), lr=config.lr, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(d.parameters(), lr=config.lr_d, betas=(0.5, 0.999)) if d is not None else None
    history: list[dict[str, float]] = []
    start = 0
    ck = Path(checkpoint) if checkpoint is not None else None
    if resume and ck is not None and ck.exists():
        doc, tensors = _load_checkpoint(ck)
        if doc["config"] != config.model_dump():
            raise FluoreconError("the checkpoint was written with another configuration",
                                 hint="resume with the same settings, or start afresh (resume=False)")
        g.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("g.")})
        _load_opt(opt_g, "optg", tensors, doc["opt_g"])
        if d is not None and opt_d is not None:
            d.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("d.")})
            _load_opt(opt_d, "optd", tensors, doc["opt_d"])
        torch.set_rng_state(tensors["torch_rng"])
        rng.bit_generator.state = doc["numpy_rng"]
        start, history = int(doc["step"]), list(doc["history"])
    bce = nn.BCEWithLogitsLoss()
    t0 = time.perf_counter()

    def lr_at(step: int, base: float) -> float:
        warm = max(1, config.steps // 20)
        if step < warm:
            return base * (step + 1) / warm
        return base * 0.5 * (1 + np.cos(np.pi * (step - warm) / max(1, config.steps - warm)))

    g.train()
    for step in range(start, config.steps):
        for pg in opt_g.param_groups:
            pg["lr"] = lr_at(step, config.lr)
        xb, yb = sampler(rng, config.batch_size)
        x, y = torch.from_numpy(xb), torch.from_numpy(yb)
        pred = g(x) if base_ch is None else g(x) + x[:, base_ch:base_ch + 1]
        losses: dict[str, float] = {}
        if d is not None and opt_d is not None:          # discriminator update first (on a detached fake)
            d.train()
            real, fake = d(x, y), d(x, pred.detach())
            l_d = 0.5 * (bce(real, torch.ones_like(real)) + bce(fake, torch.zeros_like(fake)))
            opt_d.zero_grad(set_to_none=True)
            l_d.backward()
            opt_d.step()
            losses["d"] = float(l_d.detach())
        l1 = (pred - y).abs().mean()
        total = config.w_l1 * l1
        losses["l1"] = float(l1.detach())
        if config.w_ms_ssim > 0:
            ms = 1 - ms_ssim(pred, y, 1.0, config.ms_ssim_scales).mean()
            total = total + config.w_ms_ssim * ms
            losses["ms_ssim"] = float(ms.detach())
        if config.w_frc > 0:
            fl = frc_loss(pred, y).mean()
            total = total + config.w_frc * fl
            losses["frc"] = float(fl.detach())
        if d is not None:
            logits = d(x, pred)
            adv = bce(logits, torch.ones_like(logits))
            total = total + config.w_adv * adv
            losses["g_adv"] = float(adv.detach())
        opt_g.zero_grad(set_to_none=True)
        total.backward()
        opt_g.step()
        losses["total"] = float(total.detach())
        if not np.isfinite(losses["total"]):
            raise FluoreconError(f"training diverged at step {step + 1} (loss {losses['total']})",
                                 hint="lower the learning rate or the adversarial weight")
        history.append(losses)
        done = step + 1
        if ck is not None and config.checkpoint_every and done % config.checkpoint_every == 0 and done < config.steps:
            _save_checkpoint(ck, done, config, g, d, opt_g, opt_d, rng, history)
        if callback is not None:
            callback(done, losses)
    if ck is not None:
        _save_checkpoint(ck, config.steps, config, g, d, opt_g, opt_d, rng, history)
    g.eval()
    seconds = time.perf_counter() - t0
    info = {"losses": history, "steps": config.steps, "seconds": seconds, "resumed_from": start,
            "parameters": n_parameters(g), "discriminator_parameters": n_parameters(d) if d is not None else 0}
    cfg = {"axes": "CYX", "scheme": scheme, "gan": config.model_dump(), **(extra_config or {})}
    prov = {"seed": config.seed, "steps": config.steps, "seconds": round(seconds, 3), "final_losses": history[-1]
            if history else {}, "resumed_from": start}
    return Bundle(g, normalizer or identity_normalizer(), config=cfg, provenance=prov), info


def predict_gan(model: UNet, x: np.ndarray, base_channel: int | None = None) -> np.ndarray:
    """Apply a generator to one normalised ``(C, Y, X)`` (or ``(Y, X)``) image; returns ``(Y, X)`` float32.

    The image is reflect-padded to a multiple of the U-Net's divisor and cropped back. ``base_channel``:
    the generator was trained physics-informed (:attr:`GANConfig.base_channel`, stored in the bundle's
    ``config["gan"]``); its output is added to that input channel.

    Examples
    --------
    >>> predict_gan(UNet(depth=2, width=4, residual=False), np.zeros((1, 30, 30), np.float32)).shape
    (30, 30)
    """
    a = np.asarray(x, np.float32)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise FluoreconError(f"predict_gan needs a (C, Y, X) image, got shape {a.shape}")
    cin = model.config()["in_channels"]
    if base_channel is not None and not 0 <= base_channel < a.shape[0]:
        raise FluoreconError(f"base_channel {base_channel} but the image has {a.shape[0]} channel(s)")
    if a.shape[0] != cin:
        raise FluoreconError(f"the model takes {cin} input channel(s), the image has {a.shape[0]}",
                             hint="give the same inputs as in training (e.g. the widefield image too)")
    div = model.divisor[0]
    py, px = -a.shape[1] % div, -a.shape[2] % div
    t = torch.from_numpy(np.pad(a, ((0, 0), (0, py), (0, px)), mode="reflect" if min(a.shape[1:]) > max(py, px)
                                else "edge").copy())[None]
    model.eval()
    with torch.no_grad():
        out = model(t)[0, 0].numpy()
    if base_channel is not None:
        out = out + t[0, base_channel].numpy()
    return np.ascontiguousarray(out[:a.shape[1], :a.shape[2]], np.float32)
