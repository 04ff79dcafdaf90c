"""SMLM-2016 metrics: optimal matching, Jaccard, RMSE, efficiency; FRC of localization tables."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.errors import FluoreconError
from fluorecon.evaluate.smlm import assess, efficiency, frc_localizations, match


def test_optimal_assignment_beats_greedy():
    # greedy nearest-first would pair pred 0 with truth 1 (distance 10) and leave truth 0 unmatched (> radius)
    truth = {"frame": np.array([1, 1]), "x [nm]": np.array([0.0, 200.0]), "y [nm]": np.zeros(2)}
    pred = {"frame": np.array([1, 1]), "x [nm]": np.array([190.0, 400.0]), "y [nm]": np.zeros(2)}
    ip, it = match(pred, truth, radius=240.0)
    assert sorted(zip(ip.tolist(), it.tolist(), strict=True)) == [(0, 0), (1, 1)]
    m = assess(pred, truth, radius=240.0)
    assert m["jaccard"] == 1.0 and m["rmse_lateral"] == pytest.approx(np.sqrt((190**2 + 200**2) / 2))


def test_radius_frames_and_axial():
    truth = {"frame": np.array([1, 2]), "x [nm]": np.array([0.0, 0.0]), "y [nm]": np.zeros(2),
             "z [nm]": np.array([0.0, 0.0])}
    pred = {"frame": np.array([1, 1]), "x [nm]": np.array([249.0, 0.0]), "y [nm]": np.zeros(2),
            "z [nm]": np.array([0.0, 600.0])}
    m = assess(pred, truth)
    # frame 1: pred 0 within 250 nm, pred 1 is 600 nm off axially (> 500); truth of frame 2 is missed
    assert (m["tp"], m["fp"], m["fn"]) == (1, 1, 1)
    assert m["jaccard"] == pytest.approx(1 / 3)
    assert m["rmse_axial"] == 0.0 and m["efficiency_axial"] == pytest.approx(efficiency(1 / 3, 0.0, 0.5))


def test_efficiency_definition():
    # E = 100 − sqrt((100(1 − JI))² + α² RMSE²)
    assert efficiency(1.0, 0.0) == 100.0
    assert efficiency(0.8, 30.0) == pytest.approx(100 - np.sqrt(20**2 + 30**2))
    assert efficiency(0.8, 30.0, alpha=0.5) == pytest.approx(100 - np.sqrt(20**2 + 15**2))
    assert np.isnan(efficiency(0.0, float("nan")))


def test_missing_columns_named():
    with pytest.raises(FluoreconError, match="'y \\[nm\\]'"):
        assess({"x [nm]": np.zeros(1)}, {"x [nm]": np.zeros(1), "y [nm]": np.zeros(1)})


def test_frc_resolution_tracks_localization_precision():
    rng = np.random.default_rng(0)
    # a fine random structure imaged with two precisions: better precision → better FRC resolution
    pos = rng.uniform(0, 3000, (3000, 2))
    fr = np.arange(1, 20001)
    idx = rng.integers(0, 3000, len(fr))
    res = []
    for sd in (8.0, 30.0):
        t = {"frame": fr, "x [nm]": np.clip(pos[idx, 0] + rng.normal(0, sd, len(fr)), 0, 2999),
             "y [nm]": np.clip(pos[idx, 1] + rng.normal(0, sd, len(fr)), 0, 2999)}
        res.append(frc_localizations(t, 5.0, fov_nm=(3000.0, 3000.0)).info["resolution_nm"])
    assert res[0] < res[1]
    assert 15 < res[0] < 80 and 50 < res[1] < 200
    with pytest.raises(FluoreconError, match="frame"):
        frc_localizations({"x [nm]": np.zeros(3), "y [nm]": np.zeros(3)})


def test_frc_of_an_empty_table_says_so():
    empty = {"frame": np.zeros(0, np.int64), "x [nm]": np.zeros(0), "y [nm]": np.zeros(0)}
    with pytest.raises(FluoreconError, match="table is empty"):
        frc_localizations(empty, 10.0, fov_nm=(1000.0, 1000.0))
