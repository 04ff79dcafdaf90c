"""SMLM metrics with the SMLM-2016 challenge definitions (Sage et al., Nat. Methods 2019), and FRC of localizations.

- **Matching**: per frame, localizations and ground-truth emitters are paired by optimal assignment
  (Hungarian algorithm, :func:`scipy.optimize.linear_sum_assignment`) minimising the total distance,
  allowing only pairs within ``radius`` nm laterally (and ``axial_radius`` nm in z when both tables
  have z).
- **Jaccard** = TP / (TP + FP + FN); recall = TP / (TP + FN); precision = TP / (TP + FP).
- **RMSE** lateral ``sqrt(mean(dx² + dy²))`` and axial ``sqrt(mean(dz²))`` over matched pairs.
- **Efficiency** ``E = 100 − sqrt((100·(1 − JI))² + α²·RMSE²)`` with α = 1 nm⁻¹ (lateral) and
  0.5 nm⁻¹ (axial); combined 3D efficiency is their mean.

Examples
--------
>>> truth = {"frame": np.array([1, 1, 2]), "x [nm]": np.array([100.0, 900.0, 500.0]),
...          "y [nm]": np.array([100.0, 900.0, 500.0])}
>>> pred = {"frame": np.array([1, 2, 2]), "x [nm]": np.array([103.0, 504.0, 2000.0]),
...         "y [nm]": np.array([104.0, 497.0, 2000.0])}
>>> m = assess(pred, truth)
>>> m["tp"], m["fp"], m["fn"], round(m["jaccard"], 3), round(m["rmse_lateral"], 2)
(2, 1, 1, 0.5, 5.0)
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from fluorecon.classical.localize import render
from fluorecon.errors import FluoreconError
from fluorecon.evaluate.metrics import frc

__all__ = ["assess", "efficiency", "frc_localizations", "match"]


def _cols(table: Any, name: str) -> dict[str, np.ndarray]:
    if hasattr(table, "outputs") and hasattr(table, "main"):
        table = table.outputs[table.main]
    cols = table.columns if hasattr(table, "columns") else table
    cols = {k: np.asarray(v) for k, v in cols.items()}
    missing = [c for c in ("x [nm]", "y [nm]") if c not in cols]
    if missing:
        raise FluoreconError(f"{name} table lacks column(s) {', '.join(repr(m) for m in missing)}",
                             hint=f"it has {', '.join(cols) or 'no columns'}")
    return cols


def efficiency(jaccard: float, rmse: float, alpha: float = 1.0) -> float:
    """SMLM-2016 efficiency ``100 − sqrt((100(1 − JI))² + α² RMSE²)`` (JI as a fraction, RMSE in nm).

    Examples
    --------
    >>> round(efficiency(0.9, 20.0), 2)
    77.64
    """
    if not np.isfinite(rmse):
        return float("nan")
    return 100.0 - math.sqrt((100.0 * (1.0 - jaccard)) ** 2 + (alpha * rmse) ** 2)


def match(pred: Any, truth: Any, radius: float = 250.0, axial_radius: float = 500.0,
          use_z: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Optimal one-to-one matching per frame within ``radius`` nm (and ``axial_radius`` in z).

    Returns index arrays ``(i_pred, i_truth)`` of matched pairs. Without a ``frame`` column all
    rows are treated as one frame.
    """
    p, t = _cols(pred, "predicted"), _cols(truth, "ground-truth")
    if use_z is None:
        use_z = "z [nm]" in p and "z [nm]" in t
    fp = p["frame"].astype(np.int64) if "frame" in p else np.ones(len(p["x [nm]"]), np.int64)
    ft = t["frame"].astype(np.int64) if "frame" in t else np.ones(len(t["x [nm]"]), np.int64)
    ip_all, it_all = [], []
    op, ot = np.argsort(fp, kind="stable"), np.argsort(ft, kind="stable")
    frames = np.intersect1d(fp, ft)
    sp, ep = np.searchsorted(fp[op], frames), np.searchsorted(fp[op], frames, side="right")
    st, et = np.searchsorted(ft[ot], frames), np.searchsorted(ft[ot], frames, side="right")
    big = 1e12
    for a0, a1, b0, b1 in zip(sp, ep, st, et, strict=True):
        ia, ib = op[a0:a1], ot[b0:b1]
        dx = p["x [nm]"][ia, None] - t["x [nm]"][None, ib]
        dy = p["y [nm]"][ia, None] - t["y [nm]"][None, ib]
        d = np.sqrt(dx**2 + dy**2)
        ok = d <= radius
        if use_z:
            dz = np.abs(p["z [nm]"][ia, None] - t["z [nm]"][None, ib])
            ok &= dz <= axial_radius
            d = np.sqrt(d**2 + dz**2)
        if not ok.any():
            continue
        cost = np.where(ok, d, big)
        r, c = linear_sum_assignment(cost)
        good = ok[r, c]
        ip_all.append(ia[r[good]])
        it_all.append(ib[c[good]])
    if not ip_all:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return np.concatenate(ip_all), np.concatenate(it_all)


def assess(pred: Any, truth: Any, radius: float = 250.0, axial_radius: float = 500.0) -> dict[str, Any]:
    """SMLM-2016 detection and accuracy metrics of ``pred`` against ``truth`` (tables in nm).

    Returns
    -------
    dict
        ``tp``, ``fp``, ``fn``, ``jaccard``, ``recall``, ``precision``, ``rmse_lateral``,
        ``rmse_axial`` (NaN without z), ``efficiency_lateral``, ``efficiency_axial``,
        ``efficiency_3d``, ``bias_x``, ``bias_y`` (nm, mean pred − truth), ``n_pred``, ``n_truth``.
    """
    p, t = _cols(pred, "predicted"), _cols(truth, "ground-truth")
    ip, it = match(p, t, radius, axial_radius)
    tp = len(ip)
    n_pred, n_truth = len(p["x [nm]"]), len(t["x [nm]"])
    fp, fn = n_pred - tp, n_truth - tp
    ji = tp / max(tp + fp + fn, 1)
    if tp:
        dx = p["x [nm]"][ip] - t["x [nm]"][it]
        dy = p["y [nm]"][ip] - t["y [nm]"][it]
        rmse = float(np.sqrt(np.mean(dx**2 + dy**2)))
        bx, by = float(dx.mean()), float(dy.mean())
    else:
        rmse = bx = by = float("nan")
    has_z = "z [nm]" in p and "z [nm]" in t
    rmse_z = float(np.sqrt(np.mean((p["z [nm]"][ip] - t["z [nm]"][it]) ** 2))) if has_z and tp else float("nan")
    e_lat = efficiency(ji, rmse, 1.0)
    e_ax = efficiency(ji, rmse_z, 0.5)
    return {"tp": tp, "fp": fp, "fn": fn, "jaccard": ji, "recall": tp / max(n_truth, 1),
            "precision": tp / max(n_pred, 1), "rmse_lateral": rmse, "rmse_axial": rmse_z,
            "efficiency_lateral": e_lat, "efficiency_axial": e_ax,
            "efficiency_3d": (e_lat + e_ax) / 2 if has_z else float("nan"),
            "bias_x": bx, "bias_y": by, "n_pred": n_pred, "n_truth": n_truth}


def frc_localizations(table: Any, pixel_size: float = 10.0, *, blocks: int = 20, fov_nm: tuple[float, float] | None = None,
                      sigma: float | None = None) -> Any:
    """FRC resolution of a localization table: two halves from alternating time blocks, 1/7 threshold.

    Frames are cut into ``blocks`` consecutive blocks; even blocks form half A, odd blocks half B
    (time blocks rather than random halves, so that one emitter's repeated localizations in
    consecutive frames stay in one half and do not correlate the halves). Both halves are rendered as
    histograms with ``pixel_size`` nm pixels and compared with :func:`fluorecon.evaluate.metrics.frc`.

    Returns
    -------
    FRCResult: ``resolution`` in µm, ``info["resolution_nm"]`` in nm.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> pos = rng.uniform(0, 4000, (400, 2))
    >>> fr = np.arange(1, 4001)
    >>> idx = rng.integers(0, 400, len(fr))
    >>> t = {"frame": fr, "x [nm]": pos[idx, 0] + rng.normal(0, 15, 4000), "y [nm]": pos[idx, 1] + rng.normal(0, 15, 4000)}
    >>> res = frc_localizations(t, 10.0, fov_nm=(4000.0, 4000.0))
    >>> bool(20 < res.info["resolution_nm"] < 200)
    True
    """

    cols = _cols(table, "localization")
    if "frame" not in cols:
        raise FluoreconError("FRC needs a 'frame' column to split the localizations in time")
    fr = cols["frame"].astype(np.int64)
    if len(fr) == 0:
        raise FluoreconError("FRC needs localizations: the table is empty")
    t_max = int(fr.max(initial=1))
    nb = max(2, min(blocks, t_max))
    blk = np.minimum(((fr - 1) * nb) // max(t_max, 1), nb - 1)
    a = blk % 2 == 0
    if a.all() or (~a).all():
        raise FluoreconError("FRC needs localizations in at least two time blocks")
    if fov_nm is None:
        fov_nm = (float(cols["x [nm]"].max()) + pixel_size, float(cols["y [nm]"].max()) + pixel_size)
    ia = render({k: v[a] for k, v in cols.items()}, pixel_size, fov_nm, method="gaussian" if sigma else "histogram",
                sigma=sigma)
    ib = render({k: v[~a] for k, v in cols.items()}, pixel_size, fov_nm, method="gaussian" if sigma else "histogram",
                sigma=sigma)
    res = frc(ia, ib, voxel_size=(pixel_size / 1000.0, pixel_size / 1000.0))
    res.info["resolution_nm"] = float(res.resolution) * 1000.0
    return res
