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
