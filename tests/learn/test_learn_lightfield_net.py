"""The VCD-style light-field network: shapes, units (linear in the light field), training runs."""

from __future__ import annotations

import numpy as np
import torch

from fluorecon.learn.lightfield_net import LightFieldNet, predict_lightfield, train_lightfield_net
from fluorecon.physics.lightfield import LightFieldOperator, LightFieldOptics


def test_net_maps_views_to_a_volume_in_rl_units():
    torch.set_num_threads(1)
    o = LightFieldOptics(20, 0.5, 0.52, 1.0, 100.0, 2000.0, 5, osr=1)
    op = LightFieldOperator(o, [-2.0, 0.0, 2.0], (30, 25))
    seen = []
    net, info = train_lightfield_net(op, steps=15, patch_lenslets=3, batch_size=2, width=4, depth=1, seed=0,
                                     callback=lambda s, loss: seen.append(loss))
    assert info["steps"] == 15 and len(seen) == 15 and np.all(np.isfinite(seen))
    out = predict_lightfield(net, np.full((30, 25), 110.0, np.float32), offset=100.0, operator=op)
    assert out.shape == (3, 30, 25) and np.all(out >= 0)
    # the output scales with the light field (RL units: A·volume ≈ light field)
    out2 = predict_lightfield(net, np.full((30, 25), 120.0, np.float32), offset=100.0, operator=op)
    assert np.allclose(out2, 2 * out, rtol=1e-4)
    assert isinstance(net, LightFieldNet) and net.config()["nnum"] == 5
