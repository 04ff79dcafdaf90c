"""Tiny smoke tests of the learned unmixing and dehazing networks (training quality: benchmarks)."""

from __future__ import annotations

import numpy as np
import pytest

from fluorecon.classical.unmix import unmix_nnls
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


def test_untrained_unmix_net_returns_the_smoothed_nnls_start():
    from scipy import ndimage

    from fluorecon.learn.unmix_net import UnmixNet

    S = gaussian_spectra(3, 8, width_um=0.03, seed=1)
    sim = simulate_mixture(S, (32, 32), photons=20, seed=4)
    net = UnmixNet(S, width=8, photons=20, sigma=1.0)
    ref = unmix_nnls(ndimage.gaussian_filter(sim["recording"] / 20, [0, 1, 1], mode="reflect"), S, weighting="none")
    np.testing.assert_allclose(unmix_learned(net, sim["recording"], photons=20), ref, atol=1e-5)


def test_unmix_net_beats_per_pixel_nnls_at_low_counts():
    # ground truth from the forward model; the network must use the spatial prior NNLS cannot
    S = gaussian_spectra(3, 8, width_um=0.03, seed=1)
    net, _ = train_unmix_net(S, photons=20, steps=200, patch=48, batch=8, pool=16, width=24, seed=0)
    sim = simulate_mixture(S, (64, 64), photons=20, seed=77)
    a, x = sim["abundances"], sim["recording"]
    err_net = np.sqrt(np.mean((unmix_learned(net, x, photons=20) - a) ** 2))
    err_nnls = np.sqrt(np.mean((unmix_nnls(x / 20, S, floor=1 / 20) - a) ** 2))
    assert err_net < 0.7 * err_nnls, (err_net, err_nnls)  # 200 steps: 0.50× (smoothed-NNLS start + residual)


def test_dehaze_net_shapes():
    net, info = train_dehaze_net(steps=2, patch=32, batch=2, pool=2)
    out = dehaze_learned(net, np.ones((2, 30, 34), np.float32))
    assert out.shape == (2, 30, 34) and (out >= 0).all()
