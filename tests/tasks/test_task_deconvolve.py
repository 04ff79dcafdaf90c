"""tasks.deconvolve: PSF sources, channels, methods, blocks, learned deconvolution vs RL."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.errors import FluoreconError
from fluorecon.physics.psf import gaussian_psf
from fluorecon.physics.sampling import fft_convolve
from fluorecon.tasks.deconvolve import deconvolve, make_psf_for_image


def _nrmse(a, t):
    return float(np.linalg.norm(a - t) / np.linalg.norm(t))


@pytest.fixture(scope="module")
def scene():
    from fluorecon.physics.phantoms import phantom

    truth = phantom("puncta", (12, 40, 40), seed=3).astype(np.float32) + 0.02
    psf = gaussian_psf((7, 9, 9), (1.5, 1.3, 1.3))
    return truth, psf, fft_convolve(truth, psf)


@pytest.mark.parametrize("method", ["rl", "rl-accel", "rl-tv", "rl-wb", "wiener"])
def test_methods_improve_on_blurred(scene, method):
    truth, psf, blurred = scene
    out, info = deconvolve(blurred, "ZYX", psf=psf, method=method, iterations=10 if method != "rl-wb" else 2)
    assert out.shape == blurred.shape and out.dtype == np.float32
    assert info["method"] == method
    assert _nrmse(out, truth) < _nrmse(blurred, truth)


def test_channels_with_one_psf_per_channel(scene):
    truth, psf, blurred = scene
    wide = gaussian_psf((7, 9, 9), 2.0)
    two = np.stack([blurred, fft_convolve(truth, wide)])
    out, info = deconvolve(two, "CZYX", psf=np.stack([psf, wide]), iterations=5)
    alone, _ = deconvolve(two[1], "ZYX", psf=wide, iterations=5)
    assert np.allclose(out[1], alone, atol=1e-5 * alone.max())
    assert len(info["per_item"]) == 2


def test_blocks_and_auto(scene):
    truth, psf, blurred = scene
    whole, _ = deconvolve(blurred, "ZYX", psf=psf, iterations=4)
    blk, info = deconvolve(blurred, "ZYX", psf=psf, iterations=4, block_shape=(12, 20, 20))
    assert info["blocks"] and np.abs(whole - blk).max() <= 1e-3 * whole.max()
    _, info = deconvolve(blurred * 100, "ZYX", psf=psf, iterations="auto", max_iterations=40)
    assert 1 < info["iterations"] <= 40


def test_psf_sources():
    p, info = make_psf_for_image((16, 64, 64), psf_model="widefield", na=1.4, wavelength=0.52, voxel_size=(0.3, 0.1, 0.1))
    assert p.ndim == 3 and abs(float(p.sum()) - 1) < 1e-5 and info["source"] == "model:widefield"
    assert np.unravel_index(np.argmax(p), p.shape) == tuple(s // 2 for s in p.shape)
    fine = gaussian_psf((21, 21), 2.0)  # measured at 0.05 µm, image at 0.1 µm: resampled to σ = 1 px
    q, _ = make_psf_for_image((64, 64), psf=fine, psf_voxel_size=(0.05, 0.05), voxel_size=(0.1, 0.1))
    assert q.shape[0] < 21
    with pytest.raises(FluoreconError, match="voxel size"):
        make_psf_for_image((16, 64, 64), psf_model="widefield", na=1.4, wavelength=0.52)
    with pytest.raises(FluoreconError, match="exactly one"):
        make_psf_for_image((16, 64, 64))


def test_bad_inputs(scene):
    _, psf, blurred = scene
    with pytest.raises(FluoreconError):
        deconvolve(blurred, "ZYX", psf=psf, iterations=0)
    with pytest.raises(FluoreconError):
        deconvolve(blurred, "ZYX", psf=psf, method="magic")
    with pytest.raises(FluoreconError):
        deconvolve(np.zeros_like(blurred), "ZYX", psf=psf)
    with pytest.raises(FluoreconError):
        deconvolve(blurred, "ZYX", psf=np.full((3, 3, 3), np.nan))
    with pytest.raises(FluoreconError):
        deconvolve(blurred[0], "YX", psf=psf)  # 3D PSF, 2D image


@pytest.mark.slow
def test_learned_matches_rl_at_best_iteration():
    """Tiny setting: a U-Net trained on forward-model pairs vs RL at its best (oracle) iteration count."""
    from fluorecon.classical.deconvolve import richardson_lucy
    from fluorecon.physics.camera import Camera
    from fluorecon.physics.forward import Forward
    from fluorecon.physics.phantoms import phantom
    from fluorecon.tasks.deconvolve import learned_deconvolution

    psf = gaussian_psf((9, 9), 1.6)
    cam = Camera(photons=30, gain=1.0, offset=100, read_noise=1.0)
    fwd = Forward(psf=psf, camera=cam)
    truth = phantom("puncta", (96, 96), seed=123).astype(np.float32)  # held out: not a training seed
    x, _ = fwd.simulate(truth, seed=7)
    x = np.asarray(x, np.float32)
    out, info = learned_deconvolution(x, psf, steps=150, seed=0, n_train=8, phantom_kinds=("puncta",))

    def fitted(e):  # NRMSE after the least-squares intensity scale: fair to both units
        return _nrmse(e * float((e * truth).sum() / (e * e).sum()), truth)

    errs = []
    richardson_lucy(x, psf, 40, offset=100, callback=lambda k, e: errs.append(fitted(e)))
    rl_best = min(errs)
    learned = fitted(out)
    assert learned <= rl_best * 1.02, (learned, rl_best, int(np.argmin(errs)) + 1)


# --- issue 14: stopping rule, PSF extent, metadata -------------------------------------------------


@pytest.fixture(scope="module")
def poisson_scene():
    from fluorecon.physics.phantoms import phantom

    truth = 200 * phantom("filaments", (12, 48, 48), seed=2).astype(np.float32)
    psf = gaussian_psf((7, 9, 9), (1.5, 1.3, 1.3))
    data = np.random.default_rng(0).poisson(np.clip(fft_convolve(truth, psf), 0, None) + 20).astype(np.float32)
    return truth, psf, data


def test_auto_stop_says_why_and_blocks_replay_the_plan(poisson_scene):
    from fluorecon.tasks.deconvolve import deconvolve_block, plan_deconvolution

    truth, psf, data = poisson_scene
    out, info = deconvolve(data, "ZYX", psf=psf, iterations="auto", gain=1.0, max_iterations=60)
    assert "cross-validation" in info["stop_reason"] and isinstance(info["warnings"], list)
    assert 2 <= info["iterations"] < 60 and abs(info["background"] - 20) < 6  # background estimated
    assert _nrmse(out, truth) < _nrmse(data - info["background"], truth)
    # the plan is a pure dict: replaying it gives the same result, and blocks use the same decisions
    plan = plan_deconvolution(data, psf, iterations="auto", gain=1.0, max_iterations=60)
    assert plan["iterations"] == info["iterations"]
    assert np.allclose(deconvolve_block(data, plan), out, atol=1e-4 * out.max())
    blk, binfo = deconvolve(data, "ZYX", psf=psf, iterations="auto", gain=1.0, max_iterations=60,
                            block_shape=(12, 24, 24))
    assert binfo["iterations"] == info["iterations"] and binfo["stop_reason"] == info["stop_reason"]
    assert np.abs(blk - out).max() <= 2e-3 * out.max()


def test_fixed_iterations_report_a_stop_reason(poisson_scene):
    _, psf, data = poisson_scene
    _, info = deconvolve(data, "ZYX", psf=psf, iterations=3)
    assert info["stop_reason"] == "fixed number of iterations (3)" and info["warnings"] == []


def test_widefield_psf_spans_the_stack_and_is_reported():
    from fluorecon.tasks.deconvolve import widefield_psf_shape

    p, info = make_psf_for_image((12, 48, 48), psf_model="widefield", na=1.3, wavelength=0.52,
                                 voxel_size=(0.3, 0.1, 0.1))
    assert p.shape[0] == 2 * 12 - 1 and info["shape"] == list(p.shape) and info["voxel_size"] == [0.3, 0.1, 0.1]
    assert p.shape[1] % 2 == 1 and p.shape[1] <= 47
    assert widefield_psf_shape((12, 48, 48), (0.3, 0.1, 0.1), 1.3, 0.52)[0] == 23
    q, _ = make_psf_for_image((12, 48, 48), psf_model="widefield", na=1.3, wavelength=0.52,
                              voxel_size=(0.3, 0.1, 0.1), psf_shape=(9, 15, 15))
    assert q.shape == (9, 15, 15)
    # a stack-long PSF is used as such (not cropped to the stack) by RL
    img = np.random.default_rng(0).poisson(20, (12, 48, 48)).astype(np.float32)
    out, dinfo = deconvolve(img, "ZYX", psf_model="widefield", na=1.3, wavelength=0.52, voxel_size=(0.3, 0.1, 0.1),
                            iterations=2)
    assert dinfo["psf"]["shape"][0] == 23 and out.shape == img.shape


def test_psf_voxel_size_from_metadata_or_required():
    from fluorecon.io import ImageData

    img = ImageData(np.ones((8, 32, 32), np.float32), "ZYX", (0.2, 0.1, 0.1), {})
    bare = ImageData(gaussian_psf((5, 9, 9), 1.5), "ZYX", None, {})
    with pytest.raises(FluoreconError, match="no voxel size"):
        make_psf_for_image((8, 32, 32), psf=bare, voxel_size=img.voxel_size)
    p, info = make_psf_for_image((8, 32, 32), psf=bare, psf_voxel_size="same", voxel_size=img.voxel_size)
    assert p.shape == (5, 9, 9) and not info["resampled"]
    fine = ImageData(gaussian_psf((9, 17, 17), 3.0), "ZYX", (0.1, 0.05, 0.05), {})
    q, qinfo = make_psf_for_image((8, 32, 32), psf=fine, voxel_size=img.voxel_size)
    assert qinfo["resampled"] and q.shape[1] < 17  # resampled to the coarser image grid


def test_explicit_voxel_size_overrides_metadata_with_a_warning():
    from fluorecon.errors import FluoreconWarning
    from fluorecon.io import ImageData

    img = ImageData(np.random.default_rng(0).poisson(20, (8, 32, 32)).astype(np.float32), "ZYX", (0.3, 0.1, 0.1), {})
    with pytest.warns(FluoreconWarning, match="overrides"):
        _, info = deconvolve(img, psf_model="gaussian", na=1.3, wavelength=0.52, voxel_size=(0.4, 0.1, 0.1),
                             iterations=2)
    assert info["voxel_size"] == [0.4, 0.1, 0.1] and any("overrides" in w for w in info["warnings"])
    _, info = deconvolve(img, psf_model="gaussian", na=1.3, wavelength=0.52, iterations=2)  # metadata is enough
    assert info["voxel_size"] == [0.3, 0.1, 0.1]
