"""The simulated microscope: gymnasium API, determinism, photophysics against its formulas, strategies."""

from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from fluorecon.env.microscope import SmartMicroscopeEnv, make_vec_env
from fluorecon.env.policies import AdaptivePolicy, FixedPolicy, PPOPolicy, evaluate, run_episode, train_ppo
from fluorecon.errors import FluoreconError


def small(**kw):
    return SmartMicroscopeEnv(shape=(32, 32), regions=(2, 2), **kw)


def test_passes_gymnasium_checks():
    check_env(small(seed=0), skip_render_check=True)


def test_same_seed_same_episode():
    a = run_episode(small(), FixedPolicy(2, 1), seed=7, record=True)
    b = run_episode(small(), FixedPolicy(2, 1), seed=7, record=True)
    assert a["return"] == b["return"] and a["final_quality_db"] == b["final_quality_db"]
    c = run_episode(small(), FixedPolicy(2, 1), seed=8)
    assert c["return"] != a["return"]


def test_bleaching_follows_the_dose():
    env = small(bleach_dose=10.0, seed=0)
    env.reset(seed=0)
    env.step(np.array([1, 3, 2]))                   # power 2 × exposure 2 = dose 4 on region 1
    env.step(np.array([1, 1, 1]))                   # power 0.5 × exposure 1 = dose 0.5
    _, _, _, _, info = env.step(np.array([0, 0, 0]))  # dose 0.125 on region 0
    np.testing.assert_allclose(info["fluorophores"][1], np.exp(-4.5 / 10.0), rtol=1e-12)
    np.testing.assert_allclose(info["fluorophores"][0], np.exp(-0.125 / 10.0), rtol=1e-12)
    assert info["fluorophores"][2] == 1.0 and info["spent"] == pytest.approx(4.625)
    # Phototoxicity grows faster than the dose: the same dose at double power costs 2^1.5 / 2 more.
    assert info["toxicity"] == pytest.approx(2**1.5 * 2 + 0.5**1.5 * 1 + 0.25**1.5 * 0.5)


def test_the_estimate_is_unbiased_for_the_blurred_specimen():
    env = small(seed=0, brightness=200.0, budget=1e6, max_steps=1000, bleach_dose=1e9)
    env.reset(seed=3)
    for _ in range(40):
        for r in range(4):
            env.step(np.array([r, 3, 2]))
    est, ref = env.estimate(), env._reference
    assert abs(est.mean() / ref.mean() - 1) < 0.01
    assert np.corrcoef(est.ravel(), ref.ravel())[0, 1] > 0.99


def test_more_photons_give_better_images_and_restoration_helps_at_low_dose():
    lo = evaluate(small(), FixedPolicy(0, 0), seeds=range(5))
    hi = evaluate(small(), FixedPolicy(3, 2), seeds=range(5))
    assert hi["mean_final_quality_db"] > lo["mean_final_quality_db"] + 3
    res = evaluate(small(restore="denoise"), FixedPolicy(0, 0), seeds=range(5))
    assert res["mean_final_quality_db"] > lo["mean_final_quality_db"] + 1


def test_adaptive_stops_and_vector_envs_step():
    # floor 0.9: one dose of 2 leaves exp(-2/12) = 0.85 < 0.9, so each region is imaged once, then stop.
    out = run_episode(small(), AdaptivePolicy(floor=0.9), seed=0, record=True)
    assert out["steps"] == 5 and out["actions"][-1][0] == 4
    assert out["fluorophores_left"] == pytest.approx(np.exp(-2 / 12))
    venv = make_vec_env(3, seed=0, shape=(32, 32))
    obs, _ = venv.reset(seed=0)
    obs, rew, term, trunc, _ = venv.step(np.array([[0, 1, 1]] * 3))
    assert obs.shape == (3, 18) and rew.shape == (3,)


def test_ppo_trains_and_round_trips_without_pickles(tmp_path):
    env = small(seed=0)
    model = train_ppo(env, 128, seed=0, n_steps=64, batch_size=32)
    pol = PPOPolicy(model)
    pol.save(tmp_path / "p", {"shape": [32, 32], "regions": [2, 2]})
    assert sorted(p.name for p in (tmp_path / "p").iterdir()) == ["policy.json", "policy.safetensors"]
    again, kw = PPOPolicy.load(tmp_path / "p")
    obs, _ = env.reset(seed=1)
    np.testing.assert_array_equal(pol.act(obs, env), again.act(obs, env))


def test_bad_input_is_refused():
    with pytest.raises(FluoreconError, match="budget"):
        small(budget=0)
    with pytest.raises(FluoreconError, match="no structure"):
        small(specimen=np.ones((32, 32)))
    env = small(seed=0)
    with pytest.raises(FluoreconError, match="outside the action space"):
        env.step(np.array([9, 0, 0]))
    with pytest.raises(FluoreconError, match="regions"):
        SmartMicroscopeEnv(shape=(30, 30), regions=(4, 4))
