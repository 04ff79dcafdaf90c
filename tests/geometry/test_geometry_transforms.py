"""Transform JSON schema and resampling."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import ndimage

from fluorecon.errors import FluoreconError
from fluorecon.geometry.transforms import (
    apply_transform,
    check_transform,
    make_transform,
    translation_transform,
)


def test_translation_matches_scipy_shift():
    img = np.random.default_rng(0).random((20, 20)).astype(np.float32)
    t = translation_transform([1.5, -2.0], axes="YX")
    ref = ndimage.shift(img, (1.5, -2.0), order=1, mode="constant")
    assert np.allclose(apply_transform(img, t)[3:-3, 3:-3], ref[3:-3, 3:-3], atol=1e-5)


def test_json_roundtrip_and_validation():
    t = make_transform(np.eye(4), "affine", "ZYX", confidence=0.7, voxel_size=(0.3, 0.1, 0.1))
    t2 = check_transform(json.loads(json.dumps(t)), ndim=3)
    assert t2["confidence"] == 0.7 and t2["voxel_size"] == [0.3, 0.1, 0.1]
    with pytest.raises(FluoreconError, match="not a fluorecon transform"):
        check_transform({"matrix": np.eye(3).tolist()})
    with pytest.raises(FluoreconError, match="2-D"):
        check_transform(translation_transform([1, 1]), ndim=3)
    with pytest.raises(FluoreconError):
        make_transform(np.eye(3), "warp", "YX")


def test_deformable_needs_field_and_stack_is_per_frame():
    t = make_transform(np.eye(3), "deformable", "YX", field_shape=(2, 8, 8))
    with pytest.raises(FluoreconError, match="field"):
        apply_transform(np.zeros((8, 8)), t)
    u = np.zeros((2, 8, 8), np.float32)
    u[1] = 1
    out = apply_transform(np.arange(64.0).reshape(8, 8), t, u)
    assert out[0, 0] == 1.0
    stack = apply_transform(np.ones((3, 8, 8)), translation_transform([0, 0]))
    assert stack.shape == (3, 8, 8)
