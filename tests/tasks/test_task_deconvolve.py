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
