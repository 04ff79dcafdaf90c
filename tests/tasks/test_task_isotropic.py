"""Isotropic restoration: pair generator physics, fusion, baselines, bad input, and a tiny training run."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from fluorecon.errors import FluoreconError, FluoreconWarning
from fluorecon.tasks import isotropic as iso


def _fwhm(profile: np.ndarray) -> float:
    p = profile - profile.min()
    half = p.max() / 2
    above = np.nonzero(p >= half)[0]
    lo, hi = above[0], above[-1]
    # Linear interpolation of the half-maximum crossings on both sides.
    left = lo - 1 + (half - p[lo - 1]) / (p[lo] - p[lo - 1])
    right = hi + (p[hi] - half) / (p[hi] - p[hi + 1])
    return float(right - left)


def test_pair_degradation_matches_axial_degradation_on_a_point_source():
    f, s_lat, s_k = 4, 1.2, 2.5
    fine = np.zeros((65, 48, 48), np.float32)
    fine[32, 24, 24] = 1.0
    # The microscope: lateral blur s_lat, axial blur sqrt(s_lat² + s_k²), planes every f pixels.
    blurred = ndimage.gaussian_filter(fine, (np.hypot(s_lat, s_k), s_lat, s_lat), mode="constant")
    stack = blurred[::f]
    axial = iso.interpolate_z(stack, f)[:, 24, 24]
    kernel = iso.gaussian_kernel_1d(s_k)
    x, y = iso.make_training_pairs(stack[8:9], f, kernel, phase=0)
    lateral = x[0][:, 24]  # degraded along Y (rows) of the plane that holds the point
    fa, fl = _fwhm(axial), _fwhm(lateral)
    assert abs(fa - fl) / fa < 0.05, (fa, fl)
    a = axial[32 - 12: 32 + 13] / axial[32 - 12: 32 + 13].sum()
    b = lateral[24 - 12: 24 + 13] / lateral[24 - 12: 24 + 13].sum()
    assert np.max(np.abs(a - b)) < 0.05 * a.max()
    # The target of the pair is the undegraded plane: lateral width only.
    assert _fwhm(y[0][:, 24]) < 0.75 * fl


def test_pairs_cover_both_orientations():
    v = np.zeros((2, 32, 32), np.float32)
    v[:, :, 16] = 1.0  # a line along Y: degrading along Y leaves it, degrading along X blurs it
    k = iso.gaussian_kernel_1d(2.0)
    x, y = iso.make_training_pairs(v, 2, k, phase=0)
    assert x.shape == (4, 32, 32)
    # orientation 0 blurs rows (Y); the column line is invariant along Y → unchanged away from edges
    np.testing.assert_allclose(x[0][8:24], y[0][8:24], atol=1e-5)
    # orientation 1 is the transposed plane: the line now lies along X and gets blurred along rows
    assert x[1][:, 5].max() < 0.5 * y[1][:, 5].max()


def test_fusion_of_identical_predictions_is_identity():
    a = np.random.default_rng(0).normal(size=(5, 6, 7)).astype(np.float32)
    np.testing.assert_array_equal(iso.fuse(a, a, "mean"), a)
    np.testing.assert_allclose(iso.fuse(a, a, "geometric"), a, rtol=1e-6)


def test_geometric_fusion_damps_single_orientation_artefact():
    a = np.ones((4, 4), np.float32)
    b = a.copy()
    b[1, 1] = 9.0
    assert iso.fuse(a, b)[1, 1] == pytest.approx(3.0)
    assert iso.fuse(a, b, "mean")[1, 1] == pytest.approx(5.0)


def test_linear_interpolation_is_exact_on_a_ramp():
    z = np.arange(5, dtype=np.float32)
    v = np.broadcast_to(z[:, None, None], (5, 3, 3)).copy()
    up = iso.interpolate_z(v, 3)
    np.testing.assert_allclose(up[:, 1, 1], np.arange(13) / 3.0, atol=1e-6)
    cub = iso.interpolate_z(v, 3, order=3)
    np.testing.assert_allclose(cub[:, 1, 1], np.arange(13) / 3.0, atol=1e-4)


def test_consistency_of_the_truth_is_noise_level():
    rng = np.random.default_rng(1)
    f = 2
    truth = ndimage.gaussian_filter(rng.random((33, 40, 40)).astype(np.float32), 2.0) * 100
    k = iso.gaussian_kernel_1d(1.5)
    clean = iso.degrade_axis0(truth, f, k)
    sigma = 0.5
    observed = clean + rng.normal(0, sigma, clean.shape).astype(np.float32)
    c_truth = iso.axial_consistency(observed, truth, f, k, noise_sigma=sigma)
    assert abs(c_truth["excess"]) < 0.1
    wrong = truth.copy()
    wrong[10:20, 10:20, 10:20] += 5.0  # an invented structure
    assert iso.axial_consistency(observed, wrong, f, k, noise_sigma=sigma)["excess"] > 1.0


def test_axial_kernel_from_psf_is_the_anisotropic_part():
    vs = (0.1, 0.1, 0.1)
    s_lat, s_ax = 1.0, 3.0
    p = np.zeros((41, 21, 21), np.float32)
    p[20, 10, 10] = 1
    p = ndimage.gaussian_filter(p, (s_ax, s_lat, s_lat))
    k, info = iso.axial_kernel(4, psf=p, voxel_size=vs)
    assert info["sigma_px"] == pytest.approx(np.sqrt(s_ax**2 - s_lat**2), rel=0.05)
    assert k.sum() == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"z_factor": 0.5}, "≥ 1"),
        ({"z_factor": 4, "voxel_size": (0.2, 0.1, 0.1)}, "does not match"),
        ({"z_factor": None}, "no Z factor"),
        ({"z_factor": 2, "method": "magic"}, "unknown method"),
    ],
)
def test_bad_parameters(kwargs, match):
    v = np.zeros((6, 16, 16), np.float32)
    with pytest.raises(FluoreconError, match=match):
        iso.isotropic(v, **kwargs)


def test_2d_image_is_refused():
    with pytest.raises(FluoreconError, match="3D"):
        iso.isotropic(np.zeros((16, 16), np.float32), z_factor=2)


def test_psf_longer_than_stack_is_cropped_with_warning():
    v = np.random.default_rng(0).random((3, 16, 16)).astype(np.float32)
    with pytest.warns(FluoreconWarning, match="cropped"):
        res = iso.isotropic(v, z_factor=2, axial_psf=np.ones(31), method="linear")
    assert res.volume.shape == (5, 16, 16)


def _xz_ssim(pred: np.ndarray, truth: np.ndarray) -> float:
    from fluorecon.evaluate.metrics import ssim

    rng = float(truth.max() - truth.min())
    return float(np.mean([ssim(pred[:, y, :], truth[: pred.shape[0], y, :], data_range=rng) for y in range(4, truth.shape[1] - 4, 3)]))


def test_tiny_training_improves_xz_ssim_over_interpolation():
    from fluorecon.physics.phantoms import phantom

    f = 4
    obj = phantom("filaments", (49, 40, 40), seed=3, isotropic=True).astype(np.float32)
    truth = ndimage.gaussian_filter(obj, 1.0)
    stack = ndimage.gaussian_filter(obj, (4.0, 1.0, 1.0))[::f]
    kernel = iso.gaussian_kernel_1d(np.sqrt(4.0**2 - 1.0**2))
    bundle = iso.train_isotropic(stack, f, kernel, steps=300, patch_size=32, batch_size=8, width=16, depth=2,
                                 device="cpu", seed=0)
    res = iso.isotropic(stack, z_factor=f, axial_psf=kernel, model=bundle, device="cpu")
    lin = iso.interpolate_z(stack, f)
    assert res.volume.shape == lin.shape == (49, 40, 40)
    s_lin, s_ours = _xz_ssim(lin, truth), _xz_ssim(res.volume, truth)
    assert s_ours > s_lin + 0.01, (s_lin, s_ours)
    # The two orientations agree better than the restoration differs from the input interpolation.
    assert res.uncertainty is not None and res.uncertainty.mean() < np.abs(res.volume - lin).mean()


@pytest.mark.parametrize("ratio", [2.31, 5.7])
def test_any_z_step_gives_an_isotropic_grid(ratio):
    """Non-integer anisotropy (issue 14): resampled in the task, output on an isotropic grid."""
    from fluorecon.physics.phantoms import phantom

    truth = phantom("filaments", (int(8 * ratio) + 1, 40, 40), seed=0).astype(np.float32)
    kernel = iso.gaussian_kernel_1d(1.0)
    obs = iso.degrade_ratio(truth, ratio, int(np.ceil(ratio)), kernel)
    vs = (round(0.1 * ratio, 6), 0.1, 0.1)
    res = iso.isotropic(obs, voxel_size=vs, method="linear")
    assert res.voxel_size == pytest.approx((0.1, 0.1, 0.1))
    assert res.volume.shape == (int(np.floor((obs.shape[0] - 1) * vs[0] / 0.1 + 1e-9)) + 1, 40, 40)
    assert res.info["z_ratio"] == pytest.approx(ratio, rel=1e-3) and res.info["z_factor"] == int(np.ceil(ratio))
    n = res.volume.shape[0]
    assert np.linalg.norm(res.volume - truth[:n]) < np.linalg.norm(truth[:n])  # close to the truth
    # the forward model of the result maps back onto the recorded planes
    fwd = iso.AxialForward(np.asarray(res.info["axial_kernel"]), res.info["z_factor"], z_ratio=res.info["z_ratio"])
    assert fwd.expected(res.volume).shape[0] == obs.shape[0]
