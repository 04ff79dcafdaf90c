"""Bad-input checks of fluorecon.validation (as_image, check_psf, check_axes, check_positive)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from fluorecon.errors import FluoreconError, FluoreconWarning
from fluorecon.validation import as_image, check_axes, check_positive, check_psf


def test_as_image_returns_float32_and_guessed_axes():
    img, axes = as_image(np.arange(12, dtype=np.uint16).reshape(3, 4))
    assert img.dtype == np.float32 and axes == "YX"
    np.testing.assert_array_equal(img, np.arange(12).reshape(3, 4))
    assert as_image(np.zeros((2, 3, 4)))[1] == "ZYX"
    assert as_image(np.zeros((2, 3, 4, 5)), axes="tzyx")[1] == "TZYX"


def test_as_image_accepts_torch_and_bool():
    import torch

    img, _ = as_image(torch.ones(4, 4))
    assert isinstance(img, np.ndarray) and img.dtype == np.float32
    assert as_image(np.ones((3, 3), bool))[0].sum() == 9


@pytest.mark.parametrize(
    ("array", "axes", "words"),
    [
        (np.zeros((0, 5)), None, "empty"),
        (np.array([[1.0, np.nan], [0, 1]]), None, "1 NaN"),
        (np.array([[1.0, np.inf], [-np.inf, 1]]), None, "2 Inf"),
        (np.array([[1e300, 1.0]]), None, "too large for float32"),
        (np.array([["a", "b"]]), None, "not numeric"),
        (np.ones((3, 3), complex), None, "complex"),
        (np.float64(3.0), None, "scalar"),
        (np.ones(5), None, "axes cannot be guessed"),
        (np.ones((2, 3, 4, 5)), None, "axes cannot be guessed"),
        (np.ones((3, 4)), "ZYX", "2 dimension(s) but axes 'ZYX' name 3"),
        (np.ones((3, 4)), "YQ", "unknown letter"),
        (np.ones((3, 4, 5)), "YXZ", "must end with"),
        (np.ones((3, 4, 5)), "YYX", "repeat"),
        (np.ones((2, 3, 4, 5)), "ZCYX", "Z must come just before YX"),
        (np.ones((2, 3, 4, 5)), "CTYX", "order"),
        (None, None, "None"),
        ([[1, 2], [3]], None, "array"),
    ],
)
def test_as_image_bad_input(array, axes, words):
    with pytest.raises(FluoreconError) as e:
        as_image(array, axes)
    assert words in str(e.value)
    assert e.value.hint  # every error says how to fix it


def test_check_psf_normalises_and_clips_roundoff():
    p = np.ones((3, 3))
    p[0, 0] = -1e-6
    out = check_psf(p, 2)
    assert out.dtype == np.float32 and out.min() >= 0
    assert out.sum() == pytest.approx(1.0, abs=1e-6)


def test_check_psf_crops_larger_psf_with_warning():
    psf = np.zeros((9, 5, 5))
    psf[4, 2, 2] = 1.0
    psf[0, 2, 2] = 0.5  # an outer plane that the crop removes
    with pytest.warns(FluoreconWarning, match="cropped"):
        out = check_psf(psf, 3, image_shape=(3, 32, 32))
    assert out.shape == (3, 5, 5)
    assert out[1, 2, 2] == pytest.approx(1.0)  # centre stays at shape // 2


def test_check_psf_no_warning_when_it_fits():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_psf(np.ones((3, 3)), 3, (5, 8, 8)).shape == (3, 3)


@pytest.mark.parametrize(
    ("psf", "ndim", "words"),
    [
        (np.ones((3, 3, 3)), 2, "3 dimensions"),
        (np.zeros((3, 3)), 2, "sums to 0"),
        (-np.ones((3, 3)), 2, "sums to"),
        (np.array([[1.0, -0.5], [1.0, 1.0]]), 2, "negative"),
        (np.array([[np.nan, 1.0]]), 2, "NaN"),
        (np.zeros((0, 3)), 2, "empty"),
        (np.array([["x"]]), 2, "numeric"),
    ],
)
def test_check_psf_bad_input(psf, ndim, words):
    with pytest.raises(FluoreconError) as e:
        check_psf(psf, ndim)
    assert words in str(e.value)
    assert e.value.hint


def test_check_psf_singleton_hint():
    with pytest.raises(FluoreconError, match="squeeze"):
        check_psf(np.ones((1, 3, 3)), 2)


def test_check_axes_and_positive():
    assert check_axes("cyx", 3) == "CYX"
    assert check_positive(2, "NA") == 2.0
    assert check_positive(0, "depth", allow_zero=True) == 0.0
    for v in (-1, 0, float("nan"), "abc"):
        with pytest.raises(FluoreconError):
            check_positive(v, "wavelength")
