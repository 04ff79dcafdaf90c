"""U-Net for 2D and 3D restoration (CARE-style), with N2V2 options and a probabilistic head.

The default network (``depth=2, width=32``) has about 0.33 M parameters, the size CSBDeep/CAREamics
use for CARE and N2V. Everything is local (convolutions, pooling, batch norm in eval mode), so a
prediction can be tiled exactly; group norm is *not* local and breaks exact tiling (documented).

N2V2 fixes (Höck et al. 2022) against checkerboard artefacts of blind-spot training:
``skip_top=False`` removes the top-level skip connection and ``pool="maxblur"`` replaces max pooling
by max-blur pooling (stride-1 max, then a [1 2 1] blur with stride 2).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from fluorecon.errors import FluoreconError

_HEADS = (None, "laplace", "gaussian")
_NORMS = (None, "batch", "group")
_POOLS = ("max", "maxblur", "avg")


def _conv(dim: int):
    return nn.Conv2d if dim == 2 else nn.Conv3d


def _norm(kind: str | None, dim: int, ch: int) -> nn.Module:
    if kind is None:
        return nn.Identity()
    if kind == "batch":
        return (nn.BatchNorm2d if dim == 2 else nn.BatchNorm3d)(ch)
    return nn.GroupNorm(min(8, ch), ch)


class _Block(nn.Module):
    """Two 3×3(×3) convolutions, each followed by optional norm and a ReLU."""

    def __init__(self, dim: int, cin: int, cout: int, norm: str | None, cmid: int | None = None):
        super().__init__()
        conv = _conv(dim)
        cmid = cout if cmid is None else cmid
        self.body = nn.Sequential(
            conv(cin, cmid, 3, padding=1), _norm(norm, dim, cmid), nn.ReLU(inplace=True),
            conv(cmid, cout, 3, padding=1), _norm(norm, dim, cout), nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class MaxBlurPool(nn.Module):
    """Max-blur pooling (Zhang 2019; used by N2V2): stride-1 max pool, then a binomial blur with stride 2."""

    def __init__(self, dim: int, channels: int):
        super().__init__()
        self.dim = dim
        self.channels = channels
        k1 = torch.tensor([1.0, 2.0, 1.0])
        k = k1[:, None] * k1[None, :] if dim == 2 else k1[:, None, None] * k1[None, :, None] * k1[None, None, :]
        k = (k / k.sum()).expand(channels, 1, *k.shape).contiguous()
        self.register_buffer("kernel", k, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pad = (0, 1) * self.dim
        if self.dim == 2:
            x = F.max_pool2d(F.pad(x, pad, mode="replicate"), 2, stride=1)
            return F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), self.kernel.to(x.dtype), stride=2,
                            groups=self.channels)
        x = F.max_pool3d(F.pad(x, pad, mode="replicate"), 2, stride=1)
        return F.conv3d(F.pad(x, (1,) * 6, mode="replicate"), self.kernel.to(x.dtype), stride=2, groups=self.channels)


class UNet(nn.Module):
    """A small U-Net for 2D or 3D images, optionally residual and probabilistic.

    Parameters
    ----------
    dim : {2, 3}
        Spatial dimensionality.
    in_channels, out_channels : int
        Network channels (image channels are network channels: ``CYX`` → ``in_channels=C``).
    depth : int
        Number of down-sampling steps; input sizes are padded to a multiple of ``2**depth``.
    width : int
        Feature channels at the top level (doubled at each level).
    residual : bool
        Predict ``x + net(x)`` (only when ``in_channels == out_channels``).
    norm : None, "batch" or "group"
        Normalisation after each convolution. ``"group"`` is not local: tiled prediction is then only
        approximately equal to untiled prediction.
    head : None, "laplace" or "gaussian"
        Probabilistic head: the network also outputs a per-pixel scale (Laplace ``b`` or Gaussian σ,
        in normalised units) used by :meth:`forward_dist` and the negative log-likelihood loss.
    pool : "max", "maxblur" or "avg"
        Down-sampling. ``"maxblur"`` is the N2V2 fix.
    skip_top : bool
        Keep the top-level skip connection. ``False`` is the N2V2 fix.
    anisotropic : bool
        For 3D: pool and upsample only in Y and X (for stacks with coarse Z sampling).

    Examples
    --------
    >>> net = UNet(dim=2)
    >>> 320_000 < sum(p.numel() for p in net.parameters()) < 340_000
    True
    >>> net(torch.zeros(1, 1, 32, 32)).shape
    torch.Size([1, 1, 32, 32])
    """

    def __init__(self, dim: int = 2, in_channels: int = 1, out_channels: int = 1, depth: int = 2, width: int = 32,
                 residual: bool = True, norm: str | None = None, head: str | None = None, pool: str = "max",
                 skip_top: bool = True, anisotropic: bool = False):
        super().__init__()
        if dim not in (2, 3):
            raise FluoreconError(f"UNet dim must be 2 or 3, got {dim!r}", hint="use dim=2 for YX, dim=3 for ZYX")
        if norm not in _NORMS:
            raise FluoreconError(f"unknown norm {norm!r}", hint=f"use one of {_NORMS}")
        if head not in _HEADS:
            raise FluoreconError(f"unknown head {head!r}", hint=f"use one of {_HEADS}")
        if pool not in _POOLS:
            raise FluoreconError(f"unknown pool {pool!r}", hint=f"use one of {_POOLS}")
        if depth < 0 or width < 1 or in_channels < 1 or out_channels < 1:
            raise FluoreconError("UNet depth must be ≥ 0 and width/channels ≥ 1",
                                 hint="e.g. depth=2, width=32")
        self._cfg = dict(dim=dim, in_channels=in_channels, out_channels=out_channels, depth=depth, width=width,
                         residual=bool(residual), norm=norm, head=head, pool=pool, skip_top=bool(skip_top),
                         anisotropic=bool(anisotropic and dim == 3))
        self.dim, self.depth, self.head = dim, depth, head
        self.residual = bool(residual) and in_channels == out_channels
        self.skip_top = bool(skip_top)
        self.out_channels = out_channels
        factor = (1, 2, 2) if self._cfg["anisotropic"] else 2
        self._scale = factor
        chs = [width * 2**i for i in range(depth + 1)]
        self.down = nn.ModuleList()
        self.pools = nn.ModuleList()
        cin = in_channels
        for i in range(depth):
            self.down.append(_Block(dim, cin, chs[i], norm))
            if pool == "maxblur" and not self._cfg["anisotropic"]:
                self.pools.append(MaxBlurPool(dim, chs[i]))
            elif pool == "avg":
                self.pools.append((nn.AvgPool2d if dim == 2 else nn.AvgPool3d)(factor))
            else:
                self.pools.append((nn.MaxPool2d if dim == 2 else nn.MaxPool3d)(factor))
            cin = chs[i]
        # Bottleneck widens then narrows back (CSBDeep layout), keeping the parameter count small.
        self.bottom = _Block(dim, cin, chs[depth - 1] if depth else chs[0], norm, cmid=chs[depth])
        self.up = nn.ModuleList()
        for i in reversed(range(depth)):
            skip = chs[i] if (i > 0 or self.skip_top) else 0
            cout = chs[i - 1] if i > 0 else chs[0]
            self.up.append(_Block(dim, chs[i] + skip, cout, norm, cmid=chs[i]))
        n_out = out_channels * (2 if head else 1)
        self.final = _conv(dim)(chs[0], n_out, 1)

    # --------------------------------------------------------------------------------------- config
    def config(self) -> dict[str, Any]:
        """JSON-able constructor arguments (``UNet.from_config(net.config())`` rebuilds the net)."""
        return dict(self._cfg)

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> UNet:
        """Rebuild from :meth:`config` (unknown keys are refused)."""
        try:
            return cls(**cfg)
        except TypeError as e:
            raise FluoreconError(f"invalid UNet config: {e}", hint="the bundle's config was written by an "
                                 "incompatible version") from None

    @property
    def divisor(self) -> tuple[int, ...]:
        """Input sizes must be multiples of this per spatial axis (padding is done by ``predict``)."""
        f = self._scale
        f = (f,) * self.dim if isinstance(f, int) else f
        return tuple(int(v ** self.depth) for v in f)

    @property
    def receptive_radius(self) -> int:
        """Half-width (pixels) of the receptive field: outputs further than this from a border are exact."""
        # Conservative count: per level (scale 2**l) two convs down, two up (1 px each per conv), the
        # pooling/blur footprint and the interpolation footprint of the upsampling; then the bottleneck.
        r = 0
        for lvl in range(self.depth):
            r += 8 * 2**lvl
        r += 3 * 2**self.depth
        return int(r)

    # -------------------------------------------------------------------------------------- forward
    def _features(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        h = x
        for blk, pool in zip(self.down, self.pools, strict=True):
            h = blk(h)
            skips.append(h)
            h = pool(h)
        h = self.bottom(h)
        self._bottleneck = h  # kept for feature statistics (distribution-shift detection)
        mode = "bilinear" if self.dim == 2 else "trilinear"
        for i, blk in enumerate(self.up):
            lvl = self.depth - 1 - i
            size = skips[lvl].shape[2:]
            h = F.interpolate(h, size=size, mode=mode, align_corners=False)
            if lvl > 0 or self.skip_top:
                h = torch.cat([h, skips[lvl]], dim=1)
            h = blk(h)
        return self.final(h)

    def _split(self, x: torch.Tensor, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        c = self.out_channels
        mean = out[:, :c]
        if self.residual:
            mean = mean + x
        if not self.head:
            return mean, None
        scale = F.softplus(out[:, c:]) + 1e-4
        return mean, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the restored image (the mean for a probabilistic head); shape ``(N, C_out, *spatial)``."""
        return self._split(x, self._features(x))[0]

    def forward_dist(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(mean, scale)``; scale > 0 is the Laplace ``b`` or Gaussian σ per pixel.

        Raises
        ------
        FluoreconError
            If the network has no probabilistic head.
        """
        if not self.head:
            raise FluoreconError("this network has no probabilistic head", hint="build it with head='laplace' or 'gaussian'")
        mean, scale = self._split(x, self._features(x))
        return mean, scale

    def nll(self, x: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Negative log-likelihood of ``target`` under the head's distribution (mean over ``mask``)."""
        mean, scale = self.forward_dist(x)
        if self.head == "laplace":
            nll = torch.abs(target - mean) / scale + torch.log(2 * scale)
        else:
            nll = 0.5 * ((target - mean) / scale) ** 2 + torch.log(scale) + 0.5 * math.log(2 * math.pi)
        if mask is not None:
            return (nll * mask).sum() / mask.sum().clamp_min(1)
        return nll.mean()


def n_parameters(net: nn.Module) -> int:
    """Number of trainable parameters.

    Examples
    --------
    >>> n_parameters(UNet(dim=2, depth=1, width=8)) > 0
    True
    """
    return int(sum(p.numel() for p in net.parameters() if p.requires_grad))
