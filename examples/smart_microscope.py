"""A simulated microscope that learns how to image (the review's "smart imaging" outlook), in a few steps.

Run: ``.venv/bin/python examples/smart_microscope.py [--timesteps 20000]``. Prints the mean return,
final image quality, fluorophores left and dose of each strategy on held-out specimens, with and
without restoration in the loop. The PPO agent here trains for only ``--timesteps`` steps (a minute or
two): see ``benchmarks/smart_microscope.py`` for the full comparison.
"""

from __future__ import annotations

import argparse

from fluorecon.env.microscope import SmartMicroscopeEnv
from fluorecon.env.policies import AdaptivePolicy, PPOPolicy, best_fixed, evaluate, train_ppo


def main(timesteps: int = 2000, episodes: int = 5, search: int = 4) -> dict:
    """Compare the strategies; returns ``{restore: {strategy: summary}}``."""
    out: dict = {}
    for restore in ("none", "denoise"):
        env = SmartMicroscopeEnv(shape=(64, 64), regions=(2, 2), restore=restore)
        fixed, _ = best_fixed(env, seeds=range(1000, 1000 + search))   # searched on training specimens
        agent = PPOPolicy(train_ppo(env, timesteps, seed=0)) if timesteps else None
        rows = {}
        for policy in (fixed, AdaptivePolicy(), agent):
            if policy is None:
                continue
            res = evaluate(env, policy, seeds=range(episodes))          # held-out specimens 0…episodes−1
            rows[str(policy)] = {k: res[k] for k in ("mean_return", "ci95", "mean_final_quality_db",
                                                     "mean_fluorophores_left", "mean_dose")}
            print(f"restore={restore:8s} {str(policy):32s} return {res['mean_return']:+.3f}  "
                  f"quality {res['mean_final_quality_db']:.1f} dB  fluorophores left "
                  f"{res['mean_fluorophores_left']:.2f}  dose {res['mean_dose']:.1f}")
        out[restore] = rows
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--timesteps", type=int, default=20000)
    ap.add_argument("--episodes", type=int, default=10)
    a = ap.parse_args()
    main(a.timesteps, a.episodes)
