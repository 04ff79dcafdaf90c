"""A simulated microscope that learns how to image (the review's "smart imaging" outlook), in a few steps.

Run: ``.venv/bin/python examples/smart_microscope.py [--timesteps 50000] [--episodes 20]``. The specimen is a
slide of 2×2 tiles, each a cell at its own labelling level or empty; the microscope has 12 steps and a
photon budget to learn the cells' images while bleaching and phototoxicity cost. Prints the mean return
(recovered fraction of the cells' images − bleaching − 0.01 × phototoxicity), recovered fraction, PSNR,
bleaching and dose of each strategy on held-out specimens: the best fixed setting (searched over power ×
exposure × passes on training specimens), the greedy adaptive heuristic, and a PPO agent trained for
``--timesteps`` steps (50,000 take about a CPU-minute; ``benchmarks/smart_microscope.py`` trains longer,
with three seeds and CIs). Then the same fixed settings with restoration in the loop.
"""

from __future__ import annotations

import argparse

from fluorecon.env.microscope import SmartMicroscopeEnv
from fluorecon.env.policies import AdaptivePolicy, PPOPolicy, best_fixed, evaluate, train_ppo


def main(timesteps: int = 50_000, episodes: int = 20, search: int = 8) -> dict:
    """Compare the strategies; returns ``{restore: {strategy: summary}}``."""
    out: dict = {}
    held_out = range(50_000, 50_000 + episodes)                       # never used in search or training
    for restore in ("none", "denoise"):
        env = SmartMicroscopeEnv(restore=restore)
        fixed, _ = best_fixed(env, seeds=range(1000, 1000 + search))   # searched on training specimens
        policies = [fixed, AdaptivePolicy()]
        if timesteps and restore == "none":       # the denoiser costs ~10 ms a step: train without it here
            policies.append(PPOPolicy(train_ppo(env, timesteps, seed=0)))
        rows = {}
        for policy in policies:
            res = evaluate(env, policy, seeds=held_out)
            rows[str(policy)] = {k: res[k] for k in ("mean_return", "ci95", "mean_final_recovered",
                                                     "mean_final_quality_db", "mean_bleached", "mean_dose")}
            print(f"restore={restore:8s} {str(policy):38s} return {res['mean_return']:+.3f}  recovered "
                  f"{res['mean_final_recovered']:.3f} ({res['mean_final_quality_db']:.1f} dB)  bleached "
                  f"{res['mean_bleached']:.3f}  dose {res['mean_dose']:.1f}")
        out[restore] = rows
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--timesteps", type=int, default=50_000)
    ap.add_argument("--episodes", type=int, default=20)
    a = ap.parse_args()
    main(a.timesteps, a.episodes)
