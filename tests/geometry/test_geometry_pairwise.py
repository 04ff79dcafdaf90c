"""Pairwise registration against known shifts, with the confidence checks."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from fluorecon.errors import FluoreconError
from fluorecon.geometry.pairwise import phase_correlation, refine_affine, register_pair
from fluorecon.physics import motion


@pytest.mark.parametrize("shift", [(3.3, -1.7), (-6.0, 4.25)])
def test_subpixel_translation_2d(shift):
    big = motion.procedural_specimen((0, 0), (96, 96), seed=1)
    moving = ndimage.shift(big, shift, order=3, mode="nearest")
    rng = np.random.default_rng(0)
    noisy_f = rng.poisson(big * 200).astype(np.float32) / 200
    noisy_m = rng.poisson(np.maximum(moving, 0) * 200).astype(np.float32) / 200
    r = phase_correlation(noisy_f, noisy_m)
    # shift that moves `moving` back onto `fixed` is the negative of the applied one
    assert np.allclose(r.shift, [-s for s in shift], atol=0.15)
    assert not r.low_confidence and r.confidence > 0.5


def test_subpixel_translation_3d_against_skimage():
    from skimage.registration import phase_cross_correlation

    vol = motion.procedural_specimen((0, 0, 0), (24, 40, 40), seed=2)
    mov = ndimage.shift(vol, (1.0, -2.5, 1.5), order=3, mode="nearest")
    r = phase_correlation(vol, mov)
    ref, _, _ = phase_cross_correlation(vol, mov, upsample_factor=20)
    truth = np.array((-1.0, 2.5, -1.5))
    assert np.allclose(r.shift, truth, atol=0.1)
    # scikit-image's unwindowed estimate is the reference baseline; ours is at least as close to the truth
    assert np.abs(np.subtract(r.shift, truth)).max() <= np.abs(ref - truth).max() + 1e-6


def test_no_common_content_is_low_confidence():
    rng = np.random.default_rng(1)
    a = motion.procedural_specimen((0, 0), (64, 64), seed=1)
    b = motion.procedural_specimen((5000, 5000), (64, 64), seed=99)
    for f, m in [(a, b), (rng.random((64, 64)), rng.random((64, 64)))]:
        r = phase_correlation(f, m)
        assert r.low_confidence and r.confidence < 0.1


def test_rigid_and_affine_refinement():
    f = motion.procedural_specimen((0, 0), (80, 80), seed=4)
    th = np.deg2rad(3.0)
    m = np.eye(3)
    m[:2, :2] = [[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]]
    c = np.array([39.5, 39.5])
    m[:2, 2] = c - m[:2, :2] @ c + [1.2, -0.8]
    # moving(y) = fixed(M^-1 y) so that moving(M x) = fixed(x): the fixed → moving matrix is M
    inv = np.linalg.inv(m)
    mov = ndimage.affine_transform(f, inv[:2, :2], inv[:2, 2], order=3, mode="nearest")
    est, info = refine_affine(f, mov, model="rigid")
    assert np.abs(est - m)[:2].max() < 0.05 and info["loss_after"] < info["loss_before"]
    r = register_pair(f, mov, "affine")
    assert r.kind == "affine" and np.abs(r.matrix - m)[:2, :2].max() < 0.01 and np.abs(r.matrix - m)[:2, 2].max() < 0.3


def test_bad_input():
    with pytest.raises(FluoreconError, match="shapes"):
        phase_correlation(np.zeros((8, 8)), np.zeros((9, 8)))
    with pytest.raises(FluoreconError, match="dimension"):
        register_pair(np.zeros((8, 8)), np.zeros((4, 8, 8)))
