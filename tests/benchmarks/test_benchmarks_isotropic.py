"""benchmarks/isotropic.py: the RL peer really inverts the acquisition's forward model, metrics and pairing are right.

References are independent of the script: an explicit (measured planes × fine planes) matrix for the forward model
``S H`` and numpy's own linear interpolation, scikit-image's SSIM, and the EM property of Richardson–Lucy
(the Poisson likelihood of the data never decreases from one iteration to the next).
"""

from __future__ import annotations

import numpy as np
import pytest
from _bench import load_benchmark
from scipy import ndimage
from skimage.metrics import structural_similarity


def _module():
    return load_benchmark("isotropic")


def _forward_matrix(n_fine: int, f: int, kernel: np.ndarray) -> np.ndarray:
    """Row i: the fine-grid weights seen by measured plane i (blur along Z with zero padding, then keep every f-th)."""
    r = len(kernel) // 2
    a = np.zeros(((n_fine - 1) // f + 1, n_fine))
    for i, z in enumerate(range(0, n_fine, f)):
        for j in range(n_fine):
            if abs(z - j) <= r:
                a[i, j] = kernel[r + z - j]
    return a


def _linear_z(y: np.ndarray, f: int) -> np.ndarray:
    n_fine = (y.shape[0] - 1) * f + 1
    zc, zf = np.arange(y.shape[0]) * f, np.arange(n_fine)
    return np.apply_along_axis(lambda col: np.interp(zf, zc, col), 0, y)


def _asymmetric_kernel() -> np.ndarray:
    k = np.array([0.05, 0.1, 0.2, 0.4, 0.15, 0.07, 0.03])  # asymmetric: a transposed operator would show
    return k / k.sum()


def test_one_rl_iteration_equals_the_dense_matrix_update():
    mod = _module()
    rng = np.random.default_rng(3)
    f, kern = 3, _asymmetric_kernel()
    y = rng.uniform(0.5, 2.0, size=(6, 4, 5))
    a = _forward_matrix((y.shape[0] - 1) * f + 1, f, kern)
    x0 = np.maximum(_linear_z(y, f), 1e-6)
    cols = x0.reshape(x0.shape[0], -1)
    yc = y.reshape(y.shape[0], -1)
    expected = cols * (a.T @ (yc / (a @ cols))) / np.maximum(a.T @ np.ones(a.shape[0]), 1e-6)[:, None]
    got = mod.rl_subsampled(y.astype(np.float32), f, kern, (1,))[1]
    np.testing.assert_allclose(got.reshape(expected.shape), expected, rtol=2e-5, atol=1e-6)


def test_rl_never_lowers_the_poisson_likelihood_and_fits_the_measured_planes():
    mod = _module()
    rng = np.random.default_rng(7)
    f, kern = 2, _asymmetric_kernel()
    n_fine = 9 * f + 1
    truth = rng.gamma(2.0, 1.0, size=(n_fine, 3, 3)) + 0.2
    a = _forward_matrix(n_fine, f, kern)
    y = (a @ truth.reshape(n_fine, -1)).reshape(-1, 3, 3)  # noise-free, exactly in the model
    checkpoints = (1, 2, 5, 10, 40, 160)
    its = mod.rl_subsampled(y.astype(np.float32), f, kern, checkpoints)

    def loglik(x):
        m = a @ x.reshape(n_fine, -1).astype(np.float64)
        return float(np.sum(y.reshape(m.shape) * np.log(m) - m))

    ll = [loglik(its[n]) for n in checkpoints]
    assert all(b >= a_ - 1e-4 * abs(a_) for a_, b in zip(ll, ll[1:], strict=False)), ll
    misfit = [np.abs(a @ its[n].reshape(n_fine, -1) - y.reshape(len(a), -1)).mean() / y.mean() for n in checkpoints]
    assert misfit[-1] < 0.2 * misfit[0] and misfit[-1] < 0.02, misfit


def test_volume_metrics_average_scikit_image_ssim_over_the_scored_xz_slices():
    mod = _module()
    rng = np.random.default_rng(0)
    truth = rng.random((9, 16, 12)).astype(np.float32)
    pred = (truth + 0.1 * rng.standard_normal(truth.shape)).astype(np.float32)
    rng_t = float(truth.max() - truth.min())
    want = np.mean([structural_similarity(pred[:, y, :], truth[:, y, :], data_range=rng_t)
                    for y in range(4, 16 - 4, 2)])
    assert mod.volume_metrics(pred, truth)["ssim"] == pytest.approx(want, rel=1e-6)
    assert mod.volume_metrics(truth, truth)["ssim"] == pytest.approx(1.0)


def test_paired_differences_match_volumes_by_id_not_by_position():
    mod = _module()
    ours = [0.90, 0.80, 0.70, 0.60]
    ids = ["filaments/seed0", "nuclei/seed0", "filaments/seed1", "nuclei/seed1"]
    peer = [0.50, 0.75]  # scored on two of the four volumes only, in another order
    diff = mod.paired_differences(ours, ids, peer, ["nuclei/seed0", "filaments/seed0"])
    np.testing.assert_allclose(diff, [0.80 - 0.50, 0.90 - 0.75])
    assert mod.paired_differences(ours, ids, [0.1], ["nuclei/seed9"]) == []


def test_simulation_keeps_every_fth_plane_of_the_axially_blurred_object():
    mod = _module()
    f = 4
    noisy, truth, obj = mod.simulate("nuclei", (8 * f + 1, 32, 32), f, seed=5)
    assert noisy.shape == (9, 32, 32) and truth.shape == (8 * f + 1, 32, 32)
    clean = ndimage.gaussian_filter(obj.astype(np.float32), (mod.S_AX, mod.S_LAT, mod.S_LAT))[::f]
    # Poisson–Gaussian noise around the right planes: strongly correlated with them, not with shifted ones
    assert np.corrcoef(noisy.ravel(), clean.ravel())[0, 1] > 0.9
    assert np.corrcoef(noisy[1:].ravel(), clean[:-1].ravel())[0, 1] < np.corrcoef(noisy.ravel(), clean.ravel())[0, 1]


@pytest.mark.parametrize("argv", [["--converged-seeds", "5"], ["--converged-factors", "3"], ["--seeds", "0", "0"]])
def test_inconsistent_options_are_refused_with_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as e:
        _module().main(argv)
    assert e.value.code == 2
    assert "must be" in capsys.readouterr().err


def test_fsc_z_reports_frequency_and_length_in_their_own_units():
    mod = _module()
    rng = np.random.default_rng(2)
    smooth = ndimage.gaussian_filter(rng.random((40, 40, 48)), 2.0).astype(np.float32)
    same = mod.fsc_z(smooth, smooth)  # identical halves: agree up to the last ring
    assert same["cutoff_cycles_per_px"] > 0.45 and same["resolution_px"] < 2.3
    a, b = rng.random((40, 40, 48)), rng.random((40, 40, 48))  # independent noise: no common signal
    indep = mod.fsc_z(a.astype(np.float32), b.astype(np.float32))
    assert indep["cutoff_cycles_per_px"] < 0.1 and indep["resolution_px"] > 10
    assert same["n_planes"] == indep["n_planes"] > 5
