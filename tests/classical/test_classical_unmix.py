"""Tests of NNLS / Poisson ML unmixing and blind Poisson NMF against simulated spectra."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import nnls

from fluorecon.classical.unmix import (
    choose_rank,
    match_spectra,
    poisson_nmf,
    spectral_angle,
    unmix_nnls,
    unmix_poisson,
)
from fluorecon.errors import FluoreconError
from fluorecon.physics.mixing import gaussian_spectra, simulate_mixture

# Small tensors: one torch thread (two threads on a loaded 2-core machine are much slower).
pytestmark = pytest.mark.usefixtures("one_torch_thread")




def test_vectorised_nnls_equals_scipy_per_pixel():
    rng = np.random.default_rng(0)
    S = gaussian_spectra(4, 9, seed=2)
    x = rng.normal(0.3, 0.5, (9, 50))
    ours = unmix_nnls(x, S, weighting="none")
    ref = np.stack([nnls(S.astype(np.float64), x[:, i])[0] for i in range(50)], 1)
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_weighted_nnls_equals_scipy_with_known_weights():
    S = gaussian_spectra(3, 6, seed=0)
    a = np.array([2.0, 0.0, 1.0])
    x = S @ a + np.array([0.1, -0.1, 0.05, 0.0, 0.2, -0.05])
    # one re-weighting round uses w = 1/max(S a0, floor) with a0 the unweighted solution
    a0 = nnls(S.astype(np.float64), x)[0]
    w = 1 / np.maximum(S @ a0, 1.0)
    ref = nnls(S * np.sqrt(w)[:, None], x * np.sqrt(w))[0]
    ours = unmix_nnls(x[:, None], S, weighting="poisson", reweight=1)[:, 0]
    np.testing.assert_allclose(ours, ref, atol=1e-4)


def test_poisson_ml_and_nnls_recover_abundances():
    S = gaussian_spectra(3, 8, seed=0)
    sim = simulate_mixture(S, (32, 32), photons=500, seed=0)
    for est in (unmix_nnls(sim["recording"] / 500, S, floor=1 / 500), unmix_poisson(sim["recording"] / 500, S)):
        assert np.sqrt(np.mean((est - sim["abundances"]) ** 2)) < 0.08


def test_blind_nmf_recovers_spectra_and_rank():
    S = gaussian_spectra(3, 8, width_um=0.02, seed=0)
    sim = simulate_mixture(S, (48, 48), photons=200, seed=0)
    W, A, info = poisson_nmf(sim["recording"], 3)
    _, ang = match_spectra(W, S)
    assert ang.max() < 5, ang
    assert np.allclose(W.sum(0), 1, atol=1e-4) and A.shape == (3, 48, 48)
    assert choose_rank(sim["recording"], 5, iterations=100)[0] == 3


def test_angles_and_bad_input():
    assert spectral_angle([1, 0], [0, 2]) == 90.0
    S = gaussian_spectra(2, 4, seed=0)
    with pytest.raises(FluoreconError, match="larger than the number of channels"):
        poisson_nmf(np.ones((4, 8, 8)), 5)
    with pytest.raises(FluoreconError, match="bands but the image"):
        unmix_nnls(np.ones((5, 4, 4)), S)
    with pytest.raises(FluoreconError, match="negative"):
        unmix_nnls(np.ones((4, 4, 4)), -S)
