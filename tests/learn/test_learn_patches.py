"""Tests for fluorecon.learn.patches and the percentile normaliser."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.errors import FluoreconError
from fluorecon.learn.patches import (
    PatchSampler,
    PercentileNormalizer,
    augment,
    load_pairs,
    split_train_val,
    to_internal,
)


def test_normalizer_matches_numpy_percentiles_and_round_trips():
    x = np.random.default_rng(0).gamma(2.0, 10.0, (50, 60)).astype(np.float32)
    n = PercentileNormalizer(1, 99.8).fit(x)
    lo, hi = np.percentile(x, [1, 99.8])
    assert n.lo[0] == pytest.approx(lo, rel=1e-5) and n.hi[0] == pytest.approx(hi, rel=1e-5)
    np.testing.assert_allclose(n.denormalize(n.normalize(x)), x, rtol=1e-5, atol=1e-4)
    n2 = PercentileNormalizer.from_dict(n.to_dict())
    np.testing.assert_array_equal(n2.normalize(x), n.normalize(x))
    c = np.stack([x, 10 * x])
    pc = PercentileNormalizer(per_channel=True).fit(c, channel_axis=0)
    out = pc.normalize(c, channel_axis=0)
    np.testing.assert_allclose(out[0], out[1], atol=1e-5)
    with pytest.raises(FluoreconError):
        PercentileNormalizer(50, 10)
    with pytest.raises(FluoreconError):
        PercentileNormalizer().normalize(x)


def test_sampler_foreground_bias_and_shapes():
    img = np.zeros((1, 1, 128, 128), np.float32)
    img[..., :32, :32] = 1.0  # bright corner
    uniform = PatchSampler([img], (16, 16), foreground_bias=0.0, seed=0, augment_data=False).sample(400)
    biased = PatchSampler([img], (16, 16), foreground_bias=1.0, seed=0, augment_data=False).sample(400)
    assert biased.shape == (400, 1, 1, 16, 16)
    assert biased.mean() > 2 * uniform.mean()
    with pytest.raises(FluoreconError, match="smaller than the patch"):
        PatchSampler([img], (256, 16))


def test_augment_keeps_pairs_aligned_and_is_dihedral():
    rng = np.random.default_rng(0)
    p = rng.random((20, 2, 1, 8, 8)).astype(np.float32)
    p[:, 1] = 2 * p[:, 0]
    a = augment(p, rng, dim=2)
    np.testing.assert_allclose(a[:, 1], 2 * a[:, 0])
    for i in range(20):  # each output is one of the 8 dihedral images of its input
        cands = [np.rot90(p[i, 0, 0], k) for k in range(4)] + [np.rot90(p[i, 0, 0], k)[:, ::-1] for k in range(4)]
        assert any(np.array_equal(a[i, 0, 0], c) for c in cands)
    v = rng.random((6, 1, 1, 4, 8, 8)).astype(np.float32)
    av = augment(v, rng, dim=3, anisotropic=True)
    # anisotropic 3D: Z order never changes (in-plane transforms only)
    for i in range(6):
        assert np.isclose(np.sort(av[i, 0, 0, 0].ravel()), np.sort(v[i, 0, 0, 0].ravel())).all()


def test_to_internal_and_split():
    s = to_internal(np.zeros((2, 3, 16, 16)), "TZYX", dim=2)
    assert len(s) == 6 and s[0].shape == (1, 16, 16)
    assert to_internal(np.zeros((2, 3, 16, 16)), "CZYX", dim=3)[0].shape == (2, 3, 16, 16)
    with pytest.raises(FluoreconError):
        to_internal(np.zeros((16, 16)), "ZYX")
    with pytest.raises(FluoreconError):
        to_internal(np.zeros((16, 16)), "YX", dim=3)
    tr, val = split_train_val([np.zeros((1, 1, 32, 100))], 0.2)
    assert tr[0].shape[-1] == 80 and val[0].shape[-1] == 20
    many = [np.full((1, 1, 8, 8), i, np.float32) for i in range(10)]
    tr, val = split_train_val(many, 0.2, seed=0)
    assert len(tr) == 8 and len(val) == 2
    assert not {float(v.mean()) for v in val} & {float(t.mean()) for t in tr}


def test_load_pairs_errors(tmp_path):
    import tifffile

    a, b = tmp_path / "noisy", tmp_path / "gt"
    a.mkdir()
    b.mkdir()
    for n in ("x1.tif", "x2.tif"):
        tifffile.imwrite(a / n, np.ones((16, 16), np.float32))
        tifffile.imwrite(b / n, np.ones((16, 16), np.float32))
    xs, ys, paths, axes = load_pairs(a, b)
    assert len(xs) == 2 and axes == "YX" and len(paths) == 4
    tifffile.imwrite(a / "x3.tif", np.ones((16, 16), np.float32))
    with pytest.raises(FluoreconError, match="without a target"):
        load_pairs(a, b)
    tifffile.imwrite(b / "x3.tif", np.ones((16, 17), np.float32))
    with pytest.raises(FluoreconError, match="differ in shape"):
        load_pairs(a, b)
    with pytest.raises(FluoreconError, match="not found"):
        load_pairs(a, tmp_path / "missing")
