"""The SIM pattern overlay: crest lines sit on the pattern's maxima, peaks on the spectrum's bright spots."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.errors import FluoreconError
from fluorecon.napari._sim_overlay import (
    add_sim_overlay,
    crest_lines,
    frame_index,
    log_spectrum,
    spectrum_peaks,
)
from fluorecon.physics.sim import SIMPattern
from fluorecon.tasks.registry import get


def test_crest_lines_lie_on_the_pattern_maxima():
    pat = SIMPattern.regular(3, 3, k=0.21, modulation=0.7, angle0=0.3, phase0=0.4)
    lines = crest_lines(pat, (40, 50))
    assert len(lines) > 3 * 3 * 5
    for seg in lines:
        frame = int(seg[0, 0])
        a, p = divmod(frame, 3)
        for t in np.linspace(0, 1, 5):
            y, x = seg[0, 1:] + t * (seg[1, 1:] - seg[0, 1:])
            assert -1e-9 <= y <= 39 + 1e-9 and -1e-9 <= x <= 49 + 1e-9
            # The pattern's own definition (physics layer), evaluated where the line is: its maximum 1 + m.
            value = 1 + pat.modulation[a] * np.cos(2 * np.pi * (pat.k[a] @ [y, x]) + pat.phases[a, p])
            assert value == pytest.approx(1 + pat.modulation[a], abs=1e-9)


def test_spectrum_peaks_are_at_the_bright_spots_of_the_frames_spectrum():
    n = 64
    pat = SIMPattern.regular(1, 3, k=0.25, modulation=0.8)            # on the FFT grid: exact bins
    frames = pat.illumination((n, n))
    spec = log_spectrum(frames)
    pts, feats = spectrum_peaks(pat, (n, n))
    brightest = np.argsort(spec.ravel())[-2:]
    assert sorted(map(tuple, np.stack(np.unravel_index(brightest, spec.shape), 1).tolist())) == \
        sorted(map(tuple, pts.astype(int).tolist()))
    assert "4.00 px" in feats["label"][0]


def test_frame_order_follows_the_task_reader():
    # 2 planes, angle slowest then plane then phase ("azp"): angle 1 of plane 0 starts at frame 2·3 = 6.
    idx = frame_index(2, 3, 2, "azp")
    assert idx[0, 1].tolist() == [6, 7, 8] and idx[1, 0].tolist() == [3, 4, 5]


def test_overlay_layers_in_the_viewer():
    # The viewer's model (no canvas, no OpenGL): the same add_* calls a Qt viewer receives.
    components = pytest.importorskip("napari.components", reason="napari not installed (fluorecon[napari])")
    task = get("sim")
    ex = task.example()
    res = task(ex["inputs"]["image"], **ex["params"])
    viewer = components.ViewerModel()
    raw = ex["inputs"]["image"].data
    layers = add_sim_overlay(viewer, raw, res.params_used, scale=(1.0, 0.08, 0.08))
    kinds = sorted(type(lay).__name__ for lay in layers)
    assert kinds == ["Image", "Points", "Shapes"]
    points = next(lay for lay in layers if type(lay).__name__ == "Points")
    assert len(points.data) == 6 and "m=" in points.features["label"][0]
    with pytest.raises(FluoreconError, match="pattern"):
        add_sim_overlay(viewer, raw, {})
