"""Tests for fluorecon.learn.nets (U-Net)."""

from __future__ import annotations

import pytest
import torch

from fluorecon.errors import FluoreconError
from fluorecon.learn.nets import UNet, n_parameters


def test_default_size_is_the_benchmark_size():
    # CSBDeep/CAREamics' depth-2, 32-channel U-Net has ~0.33 M parameters.
    assert 0.31e6 < n_parameters(UNet(dim=2, depth=2, width=32)) < 0.35e6


@pytest.mark.parametrize("kw,shape", [
    ({"dim": 2}, (2, 1, 36, 44)),
    ({"dim": 2, "pool": "maxblur", "skip_top": False}, (1, 1, 32, 32)),
    ({"dim": 3, "width": 4}, (1, 1, 8, 16, 16)),
    ({"dim": 3, "width": 4, "anisotropic": True}, (1, 1, 3, 16, 16)),
    ({"dim": 2, "in_channels": 3, "out_channels": 2, "norm": "batch"}, (2, 3, 16, 16)),
    ({"dim": 2, "norm": "group", "depth": 1, "width": 8}, (1, 1, 16, 16)),
])
def test_shapes(kw, shape):
    net = UNet(**kw).eval()
    out = net(torch.rand(shape))
    assert out.shape == (shape[0], kw.get("out_channels", 1), *shape[2:])


def test_residual_zero_init_is_identity_when_last_layer_zero():
    net = UNet(depth=1, width=4, residual=True)
    torch.nn.init.zeros_(net.final.weight)
    torch.nn.init.zeros_(net.final.bias)
    x = torch.rand(1, 1, 16, 16)
    assert torch.equal(net(x), x)
    net2 = UNet(depth=1, width=4, residual=False)
    torch.nn.init.zeros_(net2.final.weight)
    torch.nn.init.zeros_(net2.final.bias)
    assert torch.count_nonzero(net2(x)) == 0


@pytest.mark.parametrize("head", ["laplace", "gaussian"])
def test_probabilistic_head(head):
    net = UNet(depth=1, width=4, head=head)
    x = torch.rand(2, 1, 16, 16)
    mean, scale = net.forward_dist(x)
    assert mean.shape == scale.shape == x.shape
    assert bool((scale > 0).all())
    assert torch.allclose(net(x), mean)
    nll = net.nll(x, x)
    assert torch.isfinite(nll)
    with pytest.raises(FluoreconError):
        UNet(depth=1, width=4).forward_dist(x)


def test_config_round_trip_gives_same_function():
    torch.manual_seed(0)
    net = UNet(dim=2, depth=2, width=8, pool="maxblur", skip_top=False, head="laplace").eval()
    net2 = UNet.from_config(net.config()).eval()
    net2.load_state_dict(net.state_dict())
    x = torch.rand(1, 1, 24, 24)
    assert torch.equal(net(x), net2(x))
    assert net2.config() == net.config()


def test_receptive_radius_is_conservative():
    # Gradient of one output pixel w.r.t. the input is nonzero only within the stated radius.
    net = UNet(depth=2, width=4, pool="maxblur").eval()
    x = torch.rand(1, 1, 128, 128, requires_grad=True)
    net(x)[0, 0, 64, 64].backward()
    ys, xs = torch.nonzero(x.grad[0, 0], as_tuple=True)
    assert int((ys - 64).abs().max()) <= net.receptive_radius
    assert int((xs - 64).abs().max()) <= net.receptive_radius


@pytest.mark.parametrize("kw", [{"dim": 4}, {"norm": "layer"}, {"head": "cauchy"}, {"pool": "min"}, {"width": 0}])
def test_bad_arguments(kw):
    with pytest.raises(FluoreconError):
        UNet(**kw)
    with pytest.raises(FluoreconError):
        UNet.from_config({"dim": 2, "bogus": 1})
