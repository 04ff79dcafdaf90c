"""Small statistics shared by the benchmark scripts (per-seed summaries)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from scipy import stats


def mean_ci(values: Iterable[float]) -> dict:
    """Mean and 95 % t-interval over independent values (seeds, scenes); ``ci95`` None with fewer than two.

    Examples
    --------
    >>> r = mean_ci([1.0, 2.0, 3.0])
    >>> r["mean"], [round(v, 3) for v in r["ci95"]]
    (2.0, [-0.484, 4.484])
    >>> mean_ci([5.0])["ci95"] is None
    True
    """
    v = np.asarray(list(values), np.float64)
    if v.size < 2:
        return {"n": int(v.size), "mean": float(v.mean()) if v.size else float("nan"), "ci95": None,
                "values": v.tolist()}
    half = float(stats.t.ppf(0.975, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return {"n": int(v.size), "mean": float(v.mean()), "ci95": [float(v.mean() - half), float(v.mean() + half)],
            "values": v.tolist()}
