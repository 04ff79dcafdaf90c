"""The smart-microscope example runs, and restoration in the loop buys image quality at a lower dose."""

from __future__ import annotations

import importlib.util
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "smart_microscope.py"


def test_example_runs_and_restoration_helps():
    spec = importlib.util.spec_from_file_location("smart_microscope", EXAMPLE)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.main(timesteps=0, episodes=2, search=1)
    assert set(out) == {"none", "denoise"}
    best_none = max(out["none"].values(), key=lambda r: r["mean_return"])
    best_den = max(out["denoise"].values(), key=lambda r: r["mean_return"])
    # With a denoiser in the loop the best strategy reaches at least the same quality with no more dose.
    assert best_den["mean_final_quality_db"] >= best_none["mean_final_quality_db"] - 0.5
    assert best_den["mean_dose"] <= best_none["mean_dose"]
