"""Tests of the spectral mixing forward model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fluorecon.errors import FluoreconError
from fluorecon.physics.mixing import (
    MixingForward,
    band_integrate,
    check_spectra,
    gaussian_spectra,
    simulate_mixture,
)

# Small tensors: one torch thread (two threads on a loaded 2-core machine are much slower).
pytestmark = pytest.mark.usefixtures("one_torch_thread")




def test_band_integrate_exact_for_linear_spectrum():
    wl = np.linspace(0.5, 0.6, 101)
    # ∫ λ dλ over [0.52, 0.54] = (0.54² − 0.52²)/2
    np.testing.assert_allclose(band_integrate(wl, wl, [(0.52, 0.54)]), [(0.54**2 - 0.52**2) / 2], rtol=1e-6)
    with pytest.raises(FluoreconError, match="negative"):
        band_integrate(wl, -wl, [(0.52, 0.54)])


def test_spectra_and_mixture_statistics():
    S = gaussian_spectra(3, 8, seed=0)
    assert S.shape == (8, 3) and np.allclose(S.max(0), 1) and (S >= 0).all()
    sim = simulate_mixture(S, (48, 48), photons=20, seed=1)
    np.testing.assert_allclose(sim["expected"], 20 * np.tensordot(S, sim["abundances"], 1), rtol=1e-5)
    # Poisson: mean and variance of the counts follow the expectation
    r = sim["recording"] - sim["expected"]
    assert abs(r.mean()) < 0.05 * sim["expected"].mean()
    assert abs(r.var() / sim["expected"].mean() - 1) < 0.1
    f = MixingForward(S, photons=20)
    np.testing.assert_allclose(f.expected(torch.as_tensor(sim["abundances"])).numpy(), sim["expected"], rtol=1e-5)
    assert f.to_dict()["kind"] == "mixing"


def test_bad_spectra():
    with pytest.raises(FluoreconError, match="negative"):
        check_spectra([[1.0, -0.5], [0.2, 1.0]])
    with pytest.raises(FluoreconError, match="bands but the image has"):
        check_spectra(np.ones((4, 2)), n_channels=5)
    with pytest.raises(FluoreconError, match="cannot be unmixed"):
        check_spectra(np.ones((2, 3)))
    with pytest.raises(FluoreconError, match="all-zero"):
        check_spectra([[1.0, 0.0], [1.0, 0.0]])
