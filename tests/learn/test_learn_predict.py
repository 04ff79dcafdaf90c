"""Tests for fluorecon.learn.predict (tiled prediction)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fluorecon.errors import FluoreconError
from fluorecon.learn.nets import UNet
from fluorecon.learn.predict import auto_tile, predict


def _randomised(net: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    # Non-trivial biases so that zero padding at tile borders would show if tiling were inexact.
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    return net.eval()


@pytest.mark.parametrize("kw", [{"width": 8}, {"pool": "maxblur", "skip_top": False, "width": 8}])
def test_tiled_equals_untiled_2d(kw):
    torch.manual_seed(0)
    net = _randomised(UNet(**kw))
    x = np.random.default_rng(0).random((150, 203)).astype(np.float32)
    full = predict(net, x, "YX", tile=None, device="cpu")
    overlap = 2 * net.receptive_radius + 4
    tiled = predict(net, x, "YX", tile=(2 * overlap, 2 * overlap), overlap=overlap, device="cpu")
    assert full.shape == x.shape
    assert np.abs(full - x).max() > 1e-2  # the network does something
    np.testing.assert_allclose(tiled, full, atol=1e-3)


def test_tiled_equals_untiled_3d_and_tta():
    torch.manual_seed(1)
    net = _randomised(UNet(dim=3, width=4, depth=1))
    x = np.random.default_rng(1).random((12, 80, 75)).astype(np.float32)
    full = predict(net, x, "ZYX", tile=None, device="cpu")
    tiled = predict(net, x, "ZYX", tile=(12, 64, 64), overlap=32, device="cpu")
    np.testing.assert_allclose(tiled, full, atol=1e-3)
    net2 = _randomised(UNet(depth=1, width=4))
    y = np.random.default_rng(2).random((100, 100)).astype(np.float32)
    t_full = predict(net2, y, "YX", tile=None, device="cpu", tta=True)
    t_tiled = predict(net2, y, "YX", tile=(64, 64), overlap=32, device="cpu", tta=True)
    np.testing.assert_allclose(t_tiled, t_full, atol=1e-3)
    # TTA of a dihedrally-equivariant function (identity) is that function
    ident = UNet(depth=1, width=4, residual=True)
    torch.nn.init.zeros_(ident.final.weight)
    torch.nn.init.zeros_(ident.final.bias)
    np.testing.assert_allclose(predict(ident, y, "YX", device="cpu", tta=True), y, atol=1e-6)


def test_axes_handling_stacks_and_channels():
    net = _randomised(UNet(depth=1, width=4))
    rng = np.random.default_rng(3)
    stack = rng.random((3, 32, 40)).astype(np.float32)
    out = predict(net, stack, "ZYX", device="cpu")
    for z in range(3):  # a 2D model on a stack = plane by plane
        np.testing.assert_allclose(out[z], predict(net, stack[z], "YX", device="cpu"), atol=1e-5)
    ch = predict(net, stack, "CYX", device="cpu")  # 1-channel model on 3 channels: per channel
    np.testing.assert_allclose(ch, out, atol=1e-5)
    net3 = _randomised(UNet(depth=1, width=4, in_channels=3, out_channels=3))
    assert predict(net3, stack, "CYX", device="cpu").shape == (3, 32, 40)
    tczyx = rng.random((2, 3, 2, 16, 16)).astype(np.float32)
    assert predict(net3, tczyx, "TCZYX", device="cpu").shape == tczyx.shape
    t = torch.from_numpy(stack[0])
    assert isinstance(predict(net, t, "YX", device="cpu"), torch.Tensor)


def test_auto_tile_respects_divisor_and_limit():
    net = UNet(depth=2)
    t = auto_tile(net, (3000, 2500), max_pixels=300 * 300)
    assert t is not None and all(v % 4 == 0 and v <= 300 for v in t)
    assert auto_tile(net, (64, 64)) is None


def test_bad_inputs():
    net = UNet(depth=1, width=4)
    with pytest.raises(FluoreconError):
        predict(net, np.zeros((4, 8, 8)), "YX", device="cpu")  # axes mismatch
    with pytest.raises(FluoreconError):
        predict(UNet(dim=3, width=4), np.zeros((8, 8)), "YX", device="cpu")
    with pytest.raises(FluoreconError):
        predict(net, np.zeros((8, 8)), "YX", tile=(8,), device="cpu")
    with pytest.raises(FluoreconError):
        predict(net, np.zeros((8, 8)), "YX", tile="big", device="cpu")
    with pytest.raises(FluoreconError):
        predict("not a model", np.zeros((8, 8)), "YX", device="cpu")
    with pytest.raises(FluoreconError):
        predict(UNet(depth=1, width=4, in_channels=2, out_channels=2), np.zeros((3, 8, 8)), "CYX", device="cpu")
    with pytest.raises(FluoreconError):
        predict(net, np.zeros((8, 8)), "YX", device="cpu", return_scale=True)


# ------------------------------------------------------------------------- J-invariant (blind-spot) inference
def _ring_median(x: np.ndarray) -> np.ndarray:
    """Lower median of the 24 neighbours in the 5×5 window (independent of holdout_replace)."""
    xp = np.pad(x, 2, mode="symmetric")
    ny, nx = x.shape
    v = np.stack([xp[2 + dy:2 + dy + ny, 2 + dx:2 + dx + nx] for dy in range(-2, 3) for dx in range(-2, 3) if dy or dx])
    return np.sort(v, axis=0)[11]


def test_exact_blind_spot_output_never_depends_on_the_pixel_itself():
    from fluorecon.learn.predict import predict_j_invariant

    torch.manual_seed(0)
    net = _randomised(UNet(depth=1, width=4))
    x = np.random.default_rng(0).random((32, 32)).astype(np.float32)
    y = predict_j_invariant(net, x, "YX", grid=4, mode="exact", tile=None)
    for p in [(5, 7), (16, 16), (30, 1)]:
        x2 = x.copy()
        x2[p] += 5.0
        y2 = predict_j_invariant(net, x2, "YX", grid=4, mode="exact", tile=None)
        assert abs(float(y2[p] - y[p])) < 1e-5
        # the plain prediction does respond to the pixel: the test would see a leak
        assert abs(float(predict(net, x2, "YX", tile=None)[p] - predict(net, x, "YX", tile=None)[p])) > 1e-3


def test_blind_spot_modes_match_the_analytic_result_for_a_linear_network():
    """For a 5×5 convolution k, blind-spot inference is exactly k⋆x − k_centre·(x − ring median)."""
    from scipy import ndimage

    from fluorecon.learn.predict import predict_j_invariant

    k = np.random.default_rng(1).random((5, 5)).astype(np.float32)
    conv = torch.nn.Conv2d(1, 1, 5, padding=2, padding_mode="reflect", bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(k)[None, None])
    x = np.random.default_rng(2).gamma(3.0, 10.0, (96, 80)).astype(np.float32)
    ref = ndimage.correlate(x.astype(np.float64), k.astype(np.float64), mode="mirror") - k[2, 2] * (x - _ring_median(x))
    inner = (slice(2, -2), slice(2, -2))  # torch's reflect and the ring's symmetric padding differ at the border
    exact = predict_j_invariant(conv.eval(), x, "YX", mode="exact", tile=None)
    lin, info = predict_j_invariant(conv.eval(), x, "YX", mode="linear", calib_size=48, tile=None, return_info=True)
    np.testing.assert_allclose(exact[inner], ref[inner], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(lin[inner], ref[inner], rtol=1e-4, atol=1e-3)
    assert info["gain"][0] == pytest.approx(float(k[2, 2]), rel=1e-3)
    assert info["passes"] < 2 < predict_j_invariant(conv.eval(), x, "YX", return_info=True)[1]["passes"]


def test_blind_spot_bad_arguments():
    from fluorecon.learn.predict import predict_j_invariant

    x = np.zeros((16, 16), np.float32)
    with pytest.raises(FluoreconError, match="mode"):
        predict_j_invariant(UNet(depth=1, width=4), x, "YX", mode="fast")
    with pytest.raises(FluoreconError, match="grid must be ≥ 3"):
        predict_j_invariant(UNet(depth=1, width=4), x, "YX", grid=2)
