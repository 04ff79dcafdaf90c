"""Tests of BaSiC-style flat-field estimation against simulated fields and the BaSiC reference npz."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.classical.flatfield import (
    FlatfieldProfile,
    dct_matrix,
    estimate_baseline,
    fit_flatfield,
    relative_rmse,
    resize_field,
)
from fluorecon.errors import FluoreconError
from fluorecon.physics.illumination import simulate_tiles

# Small tensors: one torch thread (two threads on a loaded 2-core machine are much slower).
pytestmark = pytest.mark.usefixtures("one_torch_thread")




def test_dct_matrix_matches_scipy():
    from scipy.fft import dct

    v = np.random.default_rng(0).standard_normal(12)
    np.testing.assert_allclose(dct_matrix(12).numpy() @ v, dct(v, norm="ortho"), atol=1e-10)


def test_recovers_known_flatfield_noiseless():
    sim = simulate_tiles(40, (48, 48), photons=None, dark_level=0, seed=0)
    prof = fit_flatfield(sim["stack"], darkfield=False, working_size=None, max_reweight=3)
    err = relative_rmse(prof.flatfield, sim["flatfield"])
    raw = relative_rmse(np.ones_like(sim["flatfield"]), sim["flatfield"])
    assert err < 0.05 and err < raw / 2, (err, raw)  # finite tiles: the scene itself varies across the field
    assert abs(prof.flatfield.mean() - 1) < 1e-4


def test_correction_flattens_the_stack_and_profile_round_trip():
    sim = simulate_tiles(40, (48, 48), photons=200, seed=1)
    prof = fit_flatfield(sim["stack"], working_size=None, max_reweight=3)
    corr = prof.apply(sim["stack"])
    # the mean over tiles of the corrected stack varies less across the field than before
    def spread(s):
        m = s.mean(0)
        return np.std(m) / np.mean(m)
    assert spread(corr) < 0.7 * spread(sim["stack"])
    again = FlatfieldProfile.from_dict(prof.to_dict())
    np.testing.assert_array_equal(again.flatfield, prof.flatfield)
    np.testing.assert_array_equal(again.darkfield, prof.darkfield)
    # fields resize to other image sizes of the session
    assert prof.apply(np.ones((24, 30), np.float32)).shape == (24, 30)


def test_baseline_follows_the_drift():
    sim = simulate_tiles(30, (32, 32), baseline_level=40, photons=None, dark_level=0, seed=2)
    prof = FlatfieldProfile(sim["flatfield"], np.zeros((32, 32)))
    b = estimate_baseline(sim["stack"], prof, working_size=None)
    # the fitted baseline (frame background level) moves with the true drift
    assert np.corrcoef(b, sim["baseline"])[0, 1] > 0.8


def test_bad_input_is_refused():
    with pytest.raises(FluoreconError, match="stack of 1"):
        fit_flatfield(np.ones((1, 16, 16)))
    with pytest.raises(FluoreconError, match="stack of tiles"):
        fit_flatfield(np.ones((16, 16)))
    with pytest.raises(FluoreconError):
        FlatfieldProfile.from_dict({"kind": "something else"})
    with pytest.raises(FluoreconError, match="positive"):
        FlatfieldProfile(np.zeros((4, 4)))
    assert resize_field(np.ones((4, 4)), (8, 8)).shape == (8, 8)


@pytest.mark.slow
def test_matches_basic_reference_wsi_brain(shared_data):
    root = shared_data("basic-flatfield")
    images = np.load(root / "wsi_brain.npz")["images"]
    ref = np.load(root / "reference_results_plain.npz")
    prof = fit_flatfield(images, darkfield=False, max_reweight=4)
    err = relative_rmse(resize_field(prof.flatfield, (128, 128)), ref["wsi_brain__flatfield_flatonly"])
    assert err < 0.02, err


def test_float32_fit_matches_float64_with_darkfield():
    # float32 is the fast default; it must give the float64 fields (the dark-field branch once gave NaN)
    sim = simulate_tiles(24, (64, 64), dark_level=10.0, baseline_level=20.0, seed=3)
    p32 = fit_flatfield(sim["stack"], darkfield=True, working_size=None)
    p64 = fit_flatfield(sim["stack"], darkfield=True, working_size=None, precision="float64")
    assert p32.info["precision"] == "float32"
    assert np.all(np.isfinite(p32.flatfield)) and np.all(np.isfinite(p32.darkfield))
    assert relative_rmse(p32.flatfield, p64.flatfield) < 1e-4
    assert np.abs(p32.darkfield - p64.darkfield).max() < 1e-3 * max(np.abs(p64.darkfield).max(), 1.0)
    with pytest.raises(FluoreconError, match="precision"):
        fit_flatfield(sim["stack"], precision="float16")
