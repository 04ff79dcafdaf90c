"""FFT convolution vs scipy references, subsampling, upsampling, axial degradation; properties."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage, signal

from fluorecon.errors import FluoreconError
from fluorecon.physics.psf import gaussian_psf
from fluorecon.physics.sampling import axial_degrade, fft_convolve, pad_index, subsample, upsample

# Small tensors: one torch thread (two threads on a loaded 2-core machine are much slower).
pytestmark = pytest.mark.usefixtures("one_torch_thread")




CASES = [((20, 23), (5, 3)), ((7, 9, 10), (3, 5, 4)), ((15,), (4,)), ((6, 6), (9, 11)), ((12, 12), (12, 12))]


@pytest.mark.parametrize(("shape", "kshape"), CASES)
def test_constant_padding_equals_scipy(shape, kshape):
    rng = np.random.default_rng(0)
    img, k = rng.random(shape), rng.random(kshape)
    out = fft_convolve(img, k, padding="constant")
    np.testing.assert_allclose(out, ndimage.convolve(img, k, mode="constant", cval=0.0), atol=1e-12)
    if all(p % 2 for p in kshape):  # scipy.signal 'same' centres odd kernels like we do
        np.testing.assert_allclose(out, signal.fftconvolve(img, k, mode="same"), atol=1e-12)


@pytest.mark.parametrize(("shape", "kshape"), CASES)
def test_reflect_padding_equals_ndimage_reflect(shape, kshape):
    # our "reflect" repeats the edge sample: numpy 'symmetric' == scipy.ndimage 'reflect'
    rng = np.random.default_rng(1)
    img, k = rng.random(shape), rng.random(kshape)
    out = fft_convolve(img, k, padding="reflect")
    np.testing.assert_allclose(out, ndimage.convolve(img, k, mode="reflect"), atol=1e-12)


def test_reflect_is_numpy_symmetric():
    assert pad_index(4, 3, 3, "reflect").tolist() == list(
        np.pad(np.arange(4), 3, mode="symmetric"))
    assert pad_index(3, 7, 2, "reflect").tolist() == list(np.pad(np.arange(3), (7, 2), mode="symmetric"))
    assert pad_index(4, 5, 5, "periodic").tolist() == list(np.pad(np.arange(4), 5, mode="wrap"))


@pytest.mark.parametrize(("shape", "kshape"), CASES[:4])
def test_periodic_padding_equals_ndimage_wrap(shape, kshape):
    rng = np.random.default_rng(2)
    img, k = rng.random(shape), rng.random(kshape)
    if any(p > n for p, n in zip(kshape, shape, strict=True)):
        with pytest.raises(FluoreconError, match="larger than the image"):
            fft_convolve(img, k, padding="periodic")
        return
    np.testing.assert_allclose(fft_convolve(img, k, padding="periodic"), ndimage.convolve(img, k, mode="wrap"), atol=1e-12)


def test_interior_is_independent_of_padding():
    rng = np.random.default_rng(3)
    img, k = rng.random((40, 40)), gaussian_psf((7, 7), 1.2)
    a = fft_convolve(img, k, padding="reflect")
    b = fft_convolve(img, k, padding="constant")
    np.testing.assert_allclose(a[3:-3, 3:-3], b[3:-3, 3:-3], atol=1e-6)


def test_batched_and_torch_and_dtype():
    rng = np.random.default_rng(4)
    img = rng.random((2, 3, 16, 16)).astype(np.float32)
    k = gaussian_psf((5, 5), 1.0)
    out = fft_convolve(img, k)
    assert out.dtype == np.float32 and out.shape == img.shape
    for i in range(2):
        for j in range(3):
            np.testing.assert_allclose(out[i, j], ndimage.convolve(img[i, j], k, mode="reflect"), atol=1e-5)
    t = fft_convolve(torch.from_numpy(img), torch.from_numpy(k))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    np.testing.assert_allclose(t.numpy(), out, atol=1e-6)
    assert fft_convolve(img.astype(np.float64), k).dtype == np.float64
    assert fft_convolve(np.ones((8, 8), np.uint16), k).dtype == np.float32


def test_fft_convolve_gradcheck():
    x = torch.rand(1, 6, 7, dtype=torch.float64, requires_grad=True)
    k = torch.rand(3, 2, dtype=torch.float64, requires_grad=True)
    for padding in ("reflect", "constant", "periodic"):
        assert torch.autograd.gradcheck(lambda a, b, p=padding: fft_convolve(a, b, padding=p), (x, k))


def test_fft_convolve_bad_input():
    with pytest.raises(FluoreconError, match="unknown padding"):
        fft_convolve(np.ones((4, 4)), np.ones((3, 3)), padding="mirror")
    with pytest.raises(FluoreconError, match="3 dimensions but the image only 2"):
        fft_convolve(np.ones((4, 4)), np.ones((3, 3, 3)))
    with pytest.raises(FluoreconError, match="mode"):
        fft_convolve(np.ones((4, 4)), np.ones((3, 3)), mode="full")
    with pytest.raises(FluoreconError, match="numeric"):
        fft_convolve(np.array([["a"]]), np.ones((1, 1)))


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.integers(1, 9), min_size=1, max_size=3),
    kfrac=st.lists(st.integers(1, 12), min_size=3, max_size=3),
    dtype=st.sampled_from([np.float32, np.float64]),
    padding=st.sampled_from(["reflect", "constant"]),
    batch=st.integers(0, 2),
)
def test_fft_convolve_preserves_shape_dtype_and_mass(shape, kfrac, dtype, padding, batch):
    kshape = tuple(kfrac[: len(shape)])
    img = np.ones(((batch,) if batch else ()) + tuple(shape), dtype=dtype)
    k = np.ones(kshape, dtype=dtype) / np.prod(kshape)
    out = fft_convolve(img, k, padding=padding)
    assert out.shape == img.shape and out.dtype == dtype
    if padding == "reflect":  # a constant image stays constant under a normalised blur
        np.testing.assert_allclose(out, 1.0, atol=1e-4)
    else:
        assert out.max() <= 1 + 1e-4 and out.min() >= -1e-4


def test_subsample_mean_and_stride():
    x = np.arange(36, dtype=np.float32).reshape(6, 6)
    m = subsample(x, 2)
    np.testing.assert_allclose(m, x.reshape(3, 2, 3, 2).mean(axis=(1, 3)))
    s = subsample(x, (3, 2), method="stride")
    np.testing.assert_array_equal(s, x[::3, ::2])
    vol = np.random.default_rng(0).random((2, 8, 9, 10))
    assert subsample(vol, (2, 3, 4)).shape == (2, 4, 3, 2)
    assert subsample(vol, (1, 2, 2)).mean() == pytest.approx(vol[:, :, :8, :10].mean())


@settings(max_examples=30, deadline=None)
@given(shape=st.lists(st.integers(4, 12), min_size=2, max_size=3), f=st.integers(1, 4),
       method=st.sampled_from(["mean", "stride"]))
def test_subsample_shapes(shape, f, method):
    x = np.zeros(shape, np.float32)
    out = subsample(x, [f] * len(shape), method=method)
    if method == "mean":
        assert out.shape == tuple(s // f for s in shape)
    else:
        assert out.shape == tuple(len(range(0, (s // f) * f, f)) for s in shape)
    assert out.dtype == np.float32


def test_upsample_nearest_is_right_inverse_of_mean():
    x = np.random.default_rng(0).random((3, 4, 5))
    np.testing.assert_allclose(subsample(upsample(x, (1, 2, 3), "nearest"), (1, 2, 3)), x)
    lin = upsample(x[0], 2, "linear")
    assert lin.shape == (8, 10)
    assert upsample(x[0], 2, "nearest", shape=(9, 11)).shape == (9, 11)


def test_subsample_bad_input():
    with pytest.raises(FluoreconError, match="positive integers"):
        subsample(np.ones((4, 4)), 1.5)
    with pytest.raises(FluoreconError, match="smaller than"):
        subsample(np.ones((4, 4)), 8)
    with pytest.raises(FluoreconError, match="unknown subsampling"):
        subsample(np.ones((4, 4)), 2, method="median")


def test_axial_degrade_matches_scipy_reference():
    vol = np.random.default_rng(5).random((24, 6, 7))
    out = axial_degrade(vol, 4, sigma_z=1.5)
    ref = ndimage.convolve1d(vol, gaussian_psf((13,), 1.5).astype(np.float64), axis=0, mode="reflect")[::4]
    assert out.shape == (6, 6, 7)
    np.testing.assert_allclose(out, ref, atol=1e-5)
    # a 3D PSF is reduced to its axial profile
    psf3 = gaussian_psf((9, 5, 5), (2.0, 1.0, 1.0))
    out3 = axial_degrade(vol, 3, axial_psf=psf3)
    ref3 = ndimage.convolve1d(vol, psf3.sum(axis=(1, 2)).astype(np.float64), axis=0, mode="reflect")[::3]
    np.testing.assert_allclose(out3, ref3, atol=1e-5)


def test_axial_degrade_bad_input():
    with pytest.raises(FluoreconError, match="Z, Y, X"):
        axial_degrade(np.ones((8, 8)), 2)
    with pytest.raises(FluoreconError, match="axial_psf"):
        axial_degrade(np.ones((8, 8, 8)), 2, axial_psf=-np.ones(3))
    with pytest.raises(FluoreconError, match="z_factor"):
        axial_degrade(np.ones((8, 8, 8)), 0)
