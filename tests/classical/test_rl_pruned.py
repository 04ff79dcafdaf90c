"""The pruned CPU FFT engine of Richardson–Lucy equals the plain one and scikit-image."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.restoration import richardson_lucy as sk_rl

from fluorecon.classical.rl import PrunedBlur, _blur_operator, richardson_lucy
from fluorecon.physics.sampling import BlurOperator

CPU = torch.device("cpu")


@pytest.mark.parametrize("padding", ["skimage", "reflect"])
@pytest.mark.parametrize(("shape", "pshape"), [((31,), (7,)), ((20, 24), (5, 6)), ((9, 20, 23), (5, 6, 7)),
                                               ((10, 16, 18), (9, 9, 9))])
def test_pruned_equals_full_transforms(padding, shape, pshape):
    rng = np.random.default_rng(0)
    psf = rng.random(pshape).astype(np.float32)  # asymmetric: H and Hᵀ differ
    psf /= psf.sum()
    fast = PrunedBlur(psf, shape, padding, CPU, torch.float32)
    ref = BlurOperator(psf, shape, padding, CPU, torch.float32)
    x = torch.rand(shape)
    r = torch.rand(shape)
    np.testing.assert_allclose(fast.forward(x).clone().numpy(), ref.forward(x).numpy(), atol=2e-6)
    np.testing.assert_allclose(fast.adjoint(r).clone().numpy(), ref.adjoint(r).numpy(), atol=2e-6)


def test_pruned_float64_and_adjoint_identity():
    rng = np.random.default_rng(1)
    psf = rng.random((5, 7, 3))  # odd sizes: skimage's "same" alignment makes Hᵀ the exact adjoint only then
    psf /= psf.sum()
    op = PrunedBlur(psf, (8, 15, 14), "skimage", CPU, torch.float64)
    x, y = torch.rand(8, 15, 14, dtype=torch.float64), torch.rand(8, 15, 14, dtype=torch.float64)
    # <Hx, y> = <x, Hᵀy>: the pruned adjoint is the true adjoint of the pruned forward
    lhs = float((op.forward(x).clone() * y).sum())
    rhs = float((x * op.adjoint(y).clone()).sum())
    assert lhs == pytest.approx(rhs, rel=1e-12)


def test_rl_uses_pruned_engine_and_matches_skimage():
    assert isinstance(_blur_operator(np.ones((3, 3, 3)) / 27, (8, 16, 16), "skimage", CPU, torch.float32), PrunedBlur)
    assert type(_blur_operator(np.ones((3, 3, 3)) / 27, (8, 16, 16), "periodic", CPU, torch.float32)) is BlurOperator
    rng = np.random.default_rng(2)
    vol = rng.random((12, 30, 34)).astype(np.float32) + 0.1
    psf = rng.random((7, 6, 5)).astype(np.float32)
    psf /= psf.sum()
    ref = sk_rl(vol, psf, num_iter=8, clip=False)
    ours = richardson_lucy(vol, psf, 8, padding="skimage")
    assert float(np.abs(ours - ref).max() / np.abs(ref).max()) <= 1e-4


def _scipy_rl(y, psf, n, background=0.0):
    """Independent reference: skimage's loop (``scipy.signal.convolve``, mode "same") with a background term."""
    from scipy.signal import convolve

    x = np.full(y.shape, 0.5)
    for _ in range(n):
        conv = convolve(x, psf, mode="same") + background + 1e-12
        x = x * convolve(y / conv, np.flip(psf), mode="same")
    return x


def test_estimate_buffer_forward_equals_base_operator():
    rng = np.random.default_rng(3)
    psf = rng.random((5, 4, 7)).astype(np.float32)
    psf /= psf.sum()
    op = PrunedBlur(psf, (9, 13, 20), "skimage", CPU, torch.float32)
    ref = BlurOperator(psf, (9, 13, 20), "skimage", CPU, torch.float32)
    x = torch.rand(9, 13, 20)
    home = op.estimate_view()
    home.copy_(x)
    assert home.data_ptr() == op.xbuf.data_ptr() and tuple(home.shape) == (9, 13, 20)
    np.testing.assert_allclose(op.forward(home).clone().numpy(), ref.forward(x).numpy(), atol=2e-6)
    assert PrunedBlur(psf, (9, 13, 20), "reflect", CPU, torch.float32).estimate_view() is None


@pytest.mark.parametrize("threads", [1, 2])
def test_rl_background_and_threads_match_reference(threads):
    rng = np.random.default_rng(4)
    vol = rng.random((10, 24, 28)).astype(np.float32) * 5 + 2
    psf = rng.random((5, 7, 5)).astype(np.float32)
    psf /= psf.sum()
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        ours = richardson_lucy(vol, psf, 6, padding="skimage", background=1.5)
        again = richardson_lucy(vol, psf, 6, padding="skimage", background=1.5)
        filt = richardson_lucy(vol, psf, 6, padding="skimage", filter_epsilon=0.4)
    finally:
        torch.set_num_threads(before)
    ref = _scipy_rl(vol.astype(np.float64), psf.astype(np.float64), 6, background=1.5)
    assert float(np.abs(ours - ref).max() / np.abs(ref).max()) <= 1e-4
    np.testing.assert_array_equal(ours, again)  # bit-stable run to run
    sk = sk_rl(vol, psf, num_iter=6, clip=False, filter_epsilon=0.4)
    assert float(np.abs(filt - sk).max() / np.abs(sk).max()) <= 1e-4


def test_rl_result_does_not_depend_on_thread_count():
    rng = np.random.default_rng(5)
    vol = rng.random((12, 30, 34)).astype(np.float32) + 0.1
    psf = rng.random((7, 6, 5)).astype(np.float32)
    psf /= psf.sum()
    before = torch.get_num_threads()
    outs = []
    try:
        for th in (1, 2, 3):
            torch.set_num_threads(th)
            outs.append(richardson_lucy(vol, psf, 5, padding="skimage"))
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(outs[0], outs[1])
    np.testing.assert_array_equal(outs[0], outs[2])


def test_rl_sparse_image_stays_finite_and_matches_skimage():
    # mostly-zero data: the ratio runs on whole zero-tailed buffers (0 / tiny beyond the image), nothing may leak
    vol = np.zeros((6, 20, 26), np.float32)
    vol[3, 10, 12] = 5.0
    vol[1, 4, 20] = 2.0
    psf = np.zeros((3, 5, 5), np.float32)
    psf[1, 1:4, 1:4] = 1.0
    psf[1, 2, 2] = 3.0
    psf /= psf.sum()
    ours = richardson_lucy(vol, psf, 5, padding="skimage")
    ref = sk_rl(vol, psf, num_iter=5, clip=False)
    assert np.isfinite(ours).all()
    assert float(np.abs(ours - ref).max() / np.abs(ref).max()) <= 1e-4


@pytest.mark.parametrize("threads", [1, 2])
def test_rl_reflect_matches_ndimage_reference(threads):
    from scipy import ndimage

    rng = np.random.default_rng(6)
    vol = (rng.random((10, 24, 28)) * 5 + 2).astype(np.float32)
    psf = rng.random((5, 7, 5))
    psf /= psf.sum()
    # independent reference: half-sample symmetric boundary = scipy.ndimage's "reflect" (odd PSF: no offset)
    x = np.full(vol.shape, float(vol.mean()))
    for _ in range(6):
        conv = ndimage.convolve(x, psf, mode="reflect") + 1e-12 * float(vol.max())
        x = x * ndimage.convolve(vol / conv, np.flip(psf), mode="reflect")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        ours = richardson_lucy(vol, psf, 6, padding="reflect")
    finally:
        torch.set_num_threads(before)
    assert float(np.abs(ours - x).max() / np.abs(x).max()) <= 1e-4


def test_rl_thread_pool_survives_fork():
    import multiprocessing as mp

    rng = np.random.default_rng(7)
    vol = rng.random((6, 16, 18)).astype(np.float32) + 0.1
    psf = np.ones((3, 3, 3), np.float32) / 27
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        parent = richardson_lucy(vol, psf, 3, padding="skimage")  # creates the pool in this process
        with mp.get_context("fork").Pool(1) as pool:
            child = pool.apply_async(richardson_lucy, (vol, psf, 3), {"padding": "skimage"}).get(timeout=60)
    finally:
        torch.set_num_threads(before)
    np.testing.assert_array_equal(parent, child)
