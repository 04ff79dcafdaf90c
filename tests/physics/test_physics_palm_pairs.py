"""Simulated pairs for learned super-resolution: PALM K-frame vs all-frame renderings, widefield image,
cross-modality pairs and their consistency forward model — checked against the simulators' truth."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from fluorecon.errors import FluoreconError
from fluorecon.physics.forward import Forward
from fluorecon.physics.palm_pairs import (
    bin_to_camera,
    consistency_forward,
    cross_modality_pair,
    modality_sigmas,
    palm_pair,
    widefield_forward,
)


def test_palm_pair_sparse_is_a_subset_of_dense_and_widefield_shows_the_structure():
    p = palm_pair((12, 12), n_frames=200, k_frames=20, seed=0)
    assert p.sparse.shape == p.dense.shape == p.structure.shape == (48, 48) and p.widefield.shape == (12, 12)
    assert np.all(p.sparse <= p.dense) and 0 < p.sparse.sum() < p.dense.sum()
    # the K-frame localisations sit on the structure: most fall within 2 render px of a fluorophore
    near = ndimage.binary_dilation(p.structure > 0, iterations=2)
    assert p.sparse[near].sum() > 0.9 * p.sparse.sum()
    # the widefield image is the structure seen through the PSF: the forward model predicts it
    model = widefield_forward(1.3).expected(bin_to_camera(p.structure, p.factor))
    assert np.corrcoef(model.ravel(), p.widefield.ravel())[0, 1] > 0.8
    assert p.info["k_frames"] == 20 and p.info["sparse_localizations"] == int(p.sparse.sum())


def test_palm_pair_bad_input():
    with pytest.raises(FluoreconError, match="movie has 10"):
        palm_pair((8, 8), n_frames=10, k_frames=11, seed=0)
    with pytest.raises(FluoreconError, match="not an integer"):
        palm_pair((8, 8), n_frames=10, k_frames=5, render_pixel=30.0, seed=0)
    with pytest.raises(FluoreconError, match="whole number"):
        bin_to_camera(np.zeros((10, 10)), 4)


def test_cross_modality_consistency_forward_maps_high_to_low():
    low, high, truth = cross_modality_pair((64, 64), pixel_size=0.05, photons=1e4, offset=100.0, seed=1,
                                           read_noise=0.0)
    s_lo, s_hi = modality_sigmas("na", pixel_size=0.05)
    assert s_lo > s_hi
    direct = Forward(psf={"kind": "gaussian", "shape": [21, 21], "sigma": s_lo}).signal(truth) * 1e4
    via_high = consistency_forward(s_lo, s_hi).expected(high)
    assert np.abs(via_high - direct).max() < 0.02 * direct.max()       # blur composition: σ² add
    assert np.abs((low - 100.0) - direct).mean() < 0.05 * direct.mean() + 3   # the recording is that + noise
    # the high-resolution image holds more high frequencies than the low one
    hp = [np.abs(np.fft.rfft2(a - a.mean()))[:, 8:16].sum() for a in (high, direct)]
    assert hp[0] > 2 * hp[1]


def test_sted_mode_and_bad_optics():
    s_lo, s_hi = modality_sigmas("sted", pixel_size=0.02, sted_factor=4.0)
    assert s_lo / s_hi == pytest.approx(4.0)
    with pytest.raises(FluoreconError, match="below the high NA"):
        modality_sigmas("na", na_low=1.4, na_high=1.2)
    with pytest.raises(FluoreconError, match="unknown modality"):
        modality_sigmas("sim")


def test_palm_pair_gaps_remove_the_structure_around_their_centres_and_defaults_are_unchanged():
    plain = palm_pair((16, 16), n_frames=100, k_frames=10, seed=3)
    again = palm_pair((16, 16), n_frames=100, k_frames=10, gaps=0, spurious_per_um2=0.0, seed=3)
    assert np.array_equal(plain.dense, again.dense) and np.array_equal(plain.widefield, again.widefield)
    p = palm_pair((16, 16), n_frames=100, k_frames=10, gaps=3, gap_nm=400.0, seed=3)
    centres = np.asarray(p.info["gap_centres_nm"])
    assert centres.shape == (3, 2)
    yy, xx = (np.mgrid[0:64, 0:64] + 0.5) * p.render_pixel            # render-pixel centres (nm)
    for x, y in centres:
        inner = np.hypot(xx - x, yy - y) < 200.0 - p.render_pixel       # strictly inside the hole
        assert p.structure[inner].sum() == 0 and p.dense[inner].sum() <= 0.01 * p.dense.sum()
    assert p.structure.sum() < plain.structure.sum() * 1.2 and p.info["spurious_localizations"] == 0
    with pytest.raises(FluoreconError, match="whole structure"):
        palm_pair((4, 4), n_frames=10, k_frames=5, gaps=5, gap_nm=1e5, seed=0)


def test_palm_pair_spurious_localisations_are_uniform_and_absent_from_the_truth():
    rate, n_frames, side = 0.5, 200, 16
    p = palm_pair((side, side), n_frames=n_frames, k_frames=20, spurious_per_um2=rate, seed=4)
    ref = palm_pair((side, side), n_frames=n_frames, k_frames=20, seed=4)
    expected = rate * (side * 0.1) ** 2 * n_frames                   # Poisson mean
    assert abs(p.info["spurious_localizations"] - expected) < 4 * np.sqrt(expected)
    assert np.array_equal(p.structure, ref.structure) and np.array_equal(p.widefield, ref.widefield)
    # far from the structure the dense rendering holds only the false localisations, at the uniform density
    far = ~ndimage.binary_dilation(p.structure > 0, iterations=8)
    assert ref.dense[far].sum() == 0
    assert abs(p.dense[far].sum() - expected * far.mean()) < 4 * np.sqrt(expected * far.mean())
    # and they are spread over the movie: the K-frame image holds about K/N of them
    assert abs(p.sparse[far].sum() - p.dense[far].sum() * 20 / n_frames) < 4 * np.sqrt(p.dense[far].sum() * 0.1) + 1
