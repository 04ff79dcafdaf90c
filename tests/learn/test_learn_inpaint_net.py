"""Tests of the self-supervised inpainting network: thinning target, determinism, weights, quality."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fluorecon.classical.inpaint import inpaint_biharmonic, inpaint_classical
from fluorecon.errors import FluoreconError
from fluorecon.learn.inpaint_net import InpaintModel, inpaint_learned, normalized_fill, train_inpaint_net
from fluorecon.physics.occlusion import simulate_shadows

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tiny(sim, seed=0, steps=3):
    return train_inpaint_net(sim["recording"], sim["mask"], offset=100.0, gain=1.0, steps=steps, patch=32, batch=2,
                             width=4, depth=2, seed=seed)


def test_normalized_fill_is_exact_for_a_constant_image():
    y = torch.full((1, 1, 24, 24), 7.0)
    m = torch.ones_like(y)
    m[..., 8:14, :] = 0.0
    m[..., 3:5, :] = 0.5
    np.testing.assert_allclose(normalized_fill(y * m, m).numpy(), 7.0, rtol=1e-3)  # ε = 1e-4 in the weights


def test_seeded_deterministic_training_and_safetensors_round_trip(tmp_path):
    sim = simulate_shadows((48, 48), seed=2)
    a, b, c = _tiny(sim), _tiny(sim), _tiny(sim, seed=1)
    for k, v in a.net.state_dict().items():
        assert torch.equal(v, b.net.state_dict()[k]), k
    assert any(not torch.equal(v, c.net.state_dict()[k]) for k, v in a.net.state_dict().items())
    a.save(tmp_path / "m")
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == ["config.json", "weights.safetensors"]
    back = InpaintModel.load(tmp_path / "m")
    np.testing.assert_array_equal(inpaint_learned(back, sim["recording"], sim["mask"]),
                                  inpaint_learned(a, sim["recording"], sim["mask"]))
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["gain"] == 1.0 and cfg["info"]["deterministic"] is True
    # unshadowed pixels keep the recording exactly
    out = inpaint_learned(a, sim["recording"], sim["mask"])
    clear = sim["mask"] >= 0.95
    np.testing.assert_allclose(out[clear], (100 + (sim["recording"] - 100) / sim["mask"])[clear], rtol=1e-5)


def test_bad_input(tmp_path):
    sim = simulate_shadows((48, 48), seed=2)
    with pytest.raises(FluoreconError, match="no unshadowed"):
        train_inpaint_net(sim["recording"], np.zeros((48, 48)), offset=100.0, gain=1.0, steps=1)
    with pytest.raises(FluoreconError, match="gain"):
        train_inpaint_net(sim["recording"], sim["mask"], offset=100.0, gain=0.0, steps=1)
    with pytest.raises(FluoreconError, match="too small"):
        train_inpaint_net(sim["recording"][:10, :10], sim["mask"][:10, :10], offset=100.0, gain=1.0, steps=1)
    with pytest.raises(FluoreconError, match="not a saved inpainting model"):
        InpaintModel.load(tmp_path)


def test_learned_fills_shadows_better_than_the_classical_baselines():
    """On a simulation with known truth: PSNR inside the shadows, learned vs classical vs scikit-image."""
    sim = simulate_shadows((128, 128), n_absorbers=6, seed=0)
    shadow = sim["mask"] < 0.9
    truth = sim["truth"]

    def psnr(a):
        return 10 * np.log10(float(truth.max() - truth.min()) ** 2 / np.mean((a - truth)[shadow] ** 2))

    model = train_inpaint_net(sim["recording"], sim["mask"], offset=100.0, gain=1.0, steps=100, width=16, seed=0)
    learned = psnr(inpaint_learned(model, sim["recording"], sim["mask"]))
    classical = psnr(inpaint_classical(sim["recording"], sim["mask"], offset=100.0))
    biharmonic = psnr(inpaint_biharmonic(sim["recording"], sim["mask"]))
    assert learned > classical > biharmonic
