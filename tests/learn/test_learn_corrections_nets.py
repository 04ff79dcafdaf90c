"""Tiny smoke tests of the learned unmixing and dehazing networks (training quality: benchmarks)."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.errors import FluoreconError
from fluorecon.learn.dehaze_net import dehaze_learned, train_dehaze_net
from fluorecon.learn.unmix_net import train_unmix_net, unmix_learned
from fluorecon.physics.mixing import gaussian_spectra, simulate_mixture

# Small tensors: one torch thread (two threads on a loaded 2-core machine are much slower).
pytestmark = pytest.mark.usefixtures("one_torch_thread")




def test_unmix_net_trains_and_reduces_loss():
    S = gaussian_spectra(2, 5, seed=0)
    net, info = train_unmix_net(S, photons=20, steps=30, patch=24, batch=4, pool=4, seed=0)
    assert info["steps"] == 30 and np.isfinite(info["loss"])
    x = simulate_mixture(S, (24, 24), photons=20, seed=9)["recording"]
    a = unmix_learned(net, x, photons=20)
    assert a.shape == (2, 24, 24) and (a >= 0).all()
    with pytest.raises(FluoreconError):
        unmix_learned(net, x[:3], photons=20)


def test_dehaze_net_shapes():
    net, info = train_dehaze_net(steps=2, patch=32, batch=2, pool=2)
    out = dehaze_learned(net, np.ones((2, 30, 34), np.float32))
    assert out.shape == (2, 30, 34) and (out >= 0).all()
