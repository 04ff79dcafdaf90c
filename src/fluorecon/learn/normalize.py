"""Percentile normalisation (CSBDeep-style), JSON-serialisable so that bundles can carry it."""

from __future__ import annotations

from typing import Any

import numpy as np

from fluorecon.errors import FluoreconError


class PercentileNormalizer:
    """Map the ``low``/``high`` percentiles of the training data to 0 and 1.

    Parameters
    ----------
    low, high : float
        Percentiles (0–100), ``low < high``.
    per_channel : bool
        Fit one pair of values per channel (``channel_axis`` in :meth:`fit`).

    Examples
    --------
    >>> x = np.arange(100, dtype=np.float32)
    >>> n = PercentileNormalizer(0, 100).fit(x)
    >>> float(n.normalize(x).max()), float(n.denormalize(n.normalize(x))[5])
    (1.0, 5.0)
    >>> PercentileNormalizer.from_dict(n.to_dict()).hi
    [99.0]
    """

    def __init__(self, low: float = 1.0, high: float = 99.8, per_channel: bool = False,
                 lo: list[float] | None = None, hi: list[float] | None = None):
        if not (0 <= low < high <= 100):
            raise FluoreconError(f"percentiles must satisfy 0 ≤ low < high ≤ 100, got {low}, {high}",
                                 hint="e.g. low=1, high=99.8")
        self.low, self.high, self.per_channel = float(low), float(high), bool(per_channel)
        self.lo = None if lo is None else [float(v) for v in lo]
        self.hi = None if hi is None else [float(v) for v in hi]

    @property
    def fitted(self) -> bool:
        return self.lo is not None

    def fit(self, images: Any, channel_axis: int | None = None) -> PercentileNormalizer:
        """Fit on one array or a list of arrays (percentiles over all of them)."""
        arrs = images if isinstance(images, (list, tuple)) else [images]
        if self.per_channel and channel_axis is not None:
            chans = [np.moveaxis(np.asarray(a, dtype=np.float32), channel_axis, 0) for a in arrs]
            nc = chans[0].shape[0]
            flat = [np.concatenate([c[i].ravel() for c in chans]) for i in range(nc)]
        else:
            flat = [np.concatenate([np.asarray(a, dtype=np.float32).ravel() for a in arrs])]
        lo, hi = [], []
        for f in flat:
            a, b = np.percentile(f, [self.low, self.high])
            if not b > a:  # flat image: fall back to min/max, then to a unit range
                a, b = float(f.min()), float(f.max())
                if not b > a:
                    b = a + 1.0
            lo.append(float(a))
            hi.append(float(b))
        self.lo, self.hi = lo, hi
        return self

    def _ab(self, x: np.ndarray, channel_axis: int | None):
        if not self.fitted:
            raise FluoreconError("normaliser used before fit", hint="call fit(images) first")
        lo = np.asarray(self.lo, np.float32)
        hi = np.asarray(self.hi, np.float32)
        if len(lo) > 1 and channel_axis is not None:
            shape = [1] * x.ndim
            shape[channel_axis] = len(lo)
            return lo.reshape(shape), hi.reshape(shape)
        return lo[:1].reshape(()), hi[:1].reshape(())

    def normalize(self, x: Any, channel_axis: int | None = None) -> np.ndarray:
        """``(x - lo) / (hi - lo)`` as float32."""
        x = np.asarray(x, dtype=np.float32)
        lo, hi = self._ab(x, channel_axis)
        return ((x - lo) / (hi - lo)).astype(np.float32)

    def denormalize(self, x: Any, channel_axis: int | None = None) -> np.ndarray:
        """Inverse of :meth:`normalize`: back to the input's intensity units."""
        x = np.asarray(x, dtype=np.float32)
        lo, hi = self._ab(x, channel_axis)
        return (x * (hi - lo) + lo).astype(np.float32)

    def denormalize_scale(self, s: Any, channel_axis: int | None = None) -> np.ndarray:
        """Convert a scale (standard deviation) from normalised to input units."""
        s = np.asarray(s, dtype=np.float32)
        lo, hi = self._ab(s, channel_axis)
        return (s * (hi - lo)).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "percentile", "low": self.low, "high": self.high, "per_channel": self.per_channel,
                "lo": self.lo, "hi": self.hi}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PercentileNormalizer:
        if not isinstance(d, dict) or d.get("kind", "percentile") != "percentile":
            raise FluoreconError(f"unknown normaliser {d!r}", hint="the bundle was written by an incompatible version")
        return cls(d.get("low", 1.0), d.get("high", 99.8), d.get("per_channel", False), d.get("lo"), d.get("hi"))
