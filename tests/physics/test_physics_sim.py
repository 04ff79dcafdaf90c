"""SIM physics: the OTF, band-limited resampling and the forward model against analytic results."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.errors import FluoreconError
from fluorecon.physics.sim import SIMForward, SIMPattern, check_sampling, fourier_crop, fourier_pad, otf_2d


def test_otf_matches_the_circular_pupil_formula():
    n, dx, na, lam = 100, 0.05, 1.0, 0.5          # cut-off 2NA/λ = 4 cycles/µm = 0.2 cycles/px
    o = otf_2d((n, n), dx, na, lam)
    idx = 10                                         # 0.1 cycles/px: ρ = 0.5
    expected = (2 / np.pi) * (np.arccos(0.5) - 0.5 * np.sqrt(0.75))
    assert o[0, idx] == pytest.approx(expected, rel=1e-6)
    assert o[0, int(0.21 * n)] == 0.0


def test_fourier_pad_then_crop_is_identity_and_keeps_samples():
    rng = np.random.default_rng(0)
    a = rng.random((15, 21))                         # odd sizes: no Nyquist bin to split
    up = fourier_pad(a, 2)
    assert up.shape == (30, 42)
    np.testing.assert_allclose(fourier_crop(up, 2), a, atol=1e-10)
    # Sample j of the fine grid is raw coordinate j/2: even samples are the raw samples of a band-limited image.
    smooth = np.real(np.fft.ifft2(np.fft.fft2(a) * (np.hypot(*np.meshgrid(np.fft.fftfreq(15), np.fft.fftfreq(21),
                                                                          indexing="ij")) < 0.3)))
    np.testing.assert_allclose(fourier_pad(smooth, 2)[::2, ::2], smooth, atol=1e-10)


def test_forward_of_a_uniform_object_is_the_blurred_pattern():
    n, dx, na, lam = 64, 0.08, 1.2, 0.52
    kc = 2 * na / lam * dx
    k = 0.7 * kc
    pat = SIMPattern.regular(1, 3, k=k, modulation=0.6)
    otf = otf_2d((n, n), dx, na, lam, upsample=2)
    frames = SIMForward(pat, otf, 2).expected(np.full((2 * n, 2 * n), 2.0))
    x = np.arange(n)
    rho = 0.7
    h = (2 / np.pi) * (np.arccos(rho) - rho * np.sqrt(1 - rho**2))
    for p in range(3):
        want = 2.0 * (1 + 0.6 * h * np.cos(2 * np.pi * k * x + pat.phases[0, p]))
        # k is not on the FFT grid: compare away from the (periodic-wrap) border.
        np.testing.assert_allclose(frames[p, 32, 8:-8], want[8:-8], atol=0.02)


def test_undersampled_pixels_are_refused():
    with pytest.raises(FluoreconError, match="undersample"):
        check_sampling(0.2, 1.4, 0.52)
