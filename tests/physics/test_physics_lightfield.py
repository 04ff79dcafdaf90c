"""Light-field physics against independent references: Airy/defocus formulas, adjoint, periodicity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import special

from fluorecon.errors import FluoreconError
from fluorecon.physics.lightfield import (
    LightFieldOperator,
    LightFieldOptics,
    check_rectified,
    debye_field,
    lightfield_kernels,
    lightfield_views,
    rectify,
    simulate_lightfield,
    views_to_lightfield,
)

OPT = LightFieldOptics(magnification=20, na=0.5, wavelength=0.52, medium_index=1.0, pitch=100.0, f_ml=2000.0,
                       nnum=5, osr=1)


@pytest.fixture(scope="module")
def op():
    torch.set_num_threads(1)
    return LightFieldOperator(OPT, [-3.0, 0.0, 3.0], (40, 40))


def test_debye_in_focus_is_the_airy_pattern_at_low_na():
    o = LightFieldOptics(10, 0.2, 0.5, 1.0, 100.0, 2000.0, 5)
    r = np.linspace(0.0, 4.0, 60)
    v = 2 * np.pi / 0.5 * 0.2 * r
    airy = np.ones_like(v)
    airy[1:] = (2 * special.j1(v[1:]) / v[1:]) ** 2
    assert np.max(np.abs(np.abs(debye_field(r, 0.0, o)) ** 2 - airy)) < 0.01


def test_debye_on_axis_defocus_is_a_sinc_squared():
    o = LightFieldOptics(10, 0.2, 0.5, 1.0, 100.0, 2000.0, 5)
    z = np.linspace(-20, 20, 41)
    got = np.array([abs(debye_field(np.zeros(1), float(d), o)[0]) ** 2 for d in z])
    u = 4 * (2 * np.pi / 0.5) * z * np.sin(np.arcsin(0.2) / 2) ** 2
    want = np.sinc(u / (4 * np.pi)) ** 2                       # np.sinc(x) = sin(πx)/(πx)
    assert np.max(np.abs(got - want)) < 0.01


def test_adjoint_passes_the_dot_product_test(op):
    rng = np.random.default_rng(0)
    x = rng.random(op.volume_shape)
    y = rng.random(op.image_shape)
    lhs = float(np.sum(op.forward(x).astype(np.float64) * y))
    rhs = float(np.sum(x * op.adjoint(y).astype(np.float64)))
    assert abs(lhs - rhs) < 1e-5 * abs(lhs)


def test_point_source_produces_its_kernel_and_shifts_by_one_lenslet(op):
    n, r = OPT.nnum, op.radius
    k = op.kernels
    for z, (a, b) in [(0, (1, 3)), (2, (4, 0))]:
        m = (3, 4)                                        # source lenslet, far enough from the border
        vol = np.zeros(op.volume_shape, np.float32)
        vol[z, m[0] * n + a, m[1] * n + b] = 1.0
        lf = op.forward(vol)
        want = np.zeros((40 + 2 * r * n, 40 + 2 * r * n))
        y0, x0 = (m[0]) * n, (m[1]) * n                      # kernel window starts R lenslets before the source lenslet
        want[y0:y0 + k.shape[3], x0:x0 + k.shape[4]] = k[z, a, b]
        want = want[r * n:r * n + 40, r * n:r * n + 40]
        assert np.allclose(lf, want, atol=1e-6)
        vol2 = np.roll(vol, n, axis=1)
        assert np.allclose(op.forward(vol2)[n:], lf[:-n], atol=1e-6)


def test_in_focus_source_lights_its_own_lenslet_and_defocus_spreads():
    h = lightfield_kernels(OPT, [0.0, -20.0], radius_lenslets=3)
    n = OPT.nnum
    own = h[:, 2, 2, 3 * n:4 * n, 3 * n:4 * n].sum(axis=(1, 2))
    assert own[0] > 0.9 and own[1] < 0.5
    assert np.allclose(h.sum(axis=(3, 4)), 1.0, atol=1e-5)


def test_views_roundtrip_and_rectify():
    lf = np.arange(12 * 10, dtype=np.float32).reshape(12, 10)
    with pytest.raises(FluoreconError, match="not a multiple of Nnum"):
        lightfield_views(lf, 5)
    lf = lf[:10]
    v = lightfield_views(lf, 5)
    assert v.shape == (5, 5, 2, 2) and v[1, 2, 1, 0] == lf[5 + 1, 2]
    assert np.array_equal(views_to_lightfield(v), lf)
    assert check_rectified((30, 45), 15) == (2, 3)
    # a grid with a half-pixel offset and a non-integer pitch resamples a smooth ramp exactly (linear)
    yy, xx = np.mgrid[0:50, 0:50].astype(np.float64)
    ramp = 2 * yy + xx
    rec = rectify(ramp, (4.5, 3.5), 7.5, 5)
    j = np.arange(rec.shape[0])
    y_want = 4.5 + (j // 5) * 7.5 + (j % 5 - 2) * 1.5
    assert np.allclose(rec[:, 0], 2 * y_want + rec[0, 0] - 2 * y_want[0], atol=1e-4)
    for centre in [(400.0, 3.5), (1.0, 3.5)]:                # past the end; first lenslet cut by the border
        with pytest.raises(FluoreconError, match="outside"):
            rectify(ramp, centre, 7.5, 5)
    with pytest.raises(FluoreconError, match="outside"):
        rectify(ramp, (4.5, 3.5), 7.5, 5, n_lenslets=(7, 7))


def test_bad_optics_and_memory_are_refused():
    with pytest.raises(FluoreconError, match="odd"):
        LightFieldOptics(20, 0.5, 0.52, 1.0, 100.0, 2000.0, 4)
    with pytest.raises(FluoreconError, match="below the medium index"):
        LightFieldOptics(20, 1.2, 0.52, 1.0, 100.0, 2000.0, 5)
    with pytest.raises(FluoreconError, match="GB"):
        LightFieldOperator(OPT, [0.0, 5.0], (40, 40), max_memory_gb=1e-6)


def test_simulation_is_reproducible(op):
    vol = np.zeros(op.volume_shape, np.float32)
    vol[1, 20, 20] = 50.0
    a, clean = simulate_lightfield(vol, op, seed=3)
    b, _ = simulate_lightfield(vol, op, seed=3)
    assert np.array_equal(a, b) and abs(clean.sum() - 50.0) < 0.5
