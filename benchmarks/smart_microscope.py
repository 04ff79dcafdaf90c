"""Smart-microscope benchmark: strategies on held-out specimens, restoration in the loop, step time vs pySTED.

Run: ``.venv/bin/python benchmarks/smart_microscope.py [--timesteps 200000] [--seeds 0 1 2] [--episodes 20]``.
Prints a table and writes ``benchmarks/smart_microscope.json``.

Protocol. Specimens: random phantoms (filaments, puncta, nuclei) of 64×64 px in 2×2 regions; training
specimens (best-fixed search, PPO) are drawn from the environment's own random stream, evaluation uses
seeds 0…E−1 — never seen in training (the best-fixed search uses seeds 1000…1007). PPO: one agent per
``--seeds`` value, mean over agents with a 95 % CI over the evaluation episodes (paired by specimen
against the best fixed setting). Restoration in the loop: ``restore="denoise"`` (calibrated TV of
:func:`fluorecon.tasks.denoise.denoise`). Dose at equal quality: the smallest dose of a fixed setting
whose mean quality reaches the best quality without restoration. pySTED (``--pysted PYTHON``, its own
venv) times one 64×64 STED acquisition with bleaching — a point-scanning photophysics simulation, a
heavier kind of step than our widefield one: the ratio says what an RL loop costs, not that the
simulations are equivalent.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from fluorecon.env.microscope import SmartMicroscopeEnv
from fluorecon.env.policies import AdaptivePolicy, FixedPolicy, PPOPolicy, best_fixed, evaluate, train_ppo

HERE = Path(__file__).resolve().parent


def _paired(a: dict, b: dict) -> dict:
    d = np.array([x["return"] - y["return"] for x, y in zip(a["episodes"], b["episodes"], strict=True)])
    half = 1.96 * d.std(ddof=1) / np.sqrt(len(d))
    return {"mean": float(d.mean()), "ci95": [float(d.mean() - half), float(d.mean() + half)]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--timesteps", type=int, default=200_000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--episodes", type=int, default=20)
    ap.add_argument("--pysted", default="/tmp/venv-pysted/bin/python")
    args = ap.parse_args()
    out: dict = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": platform.platform(),
                 "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_before": os.getloadavg()[0],
                 "seeds": args.seeds, "episodes": args.episodes, "timesteps": args.timesteps}
    eval_seeds = range(args.episodes)
    for restore in ("none", "denoise"):
        env = SmartMicroscopeEnv(shape=(64, 64), regions=(2, 2), restore=restore)
        fixed, grid = best_fixed(env, seeds=range(1000, 1008))
        rows = {"best_fixed": evaluate(env, fixed, eval_seeds), "adaptive": evaluate(env, AdaptivePolicy(), eval_seeds)}
        rows["best_fixed"]["setting"] = str(fixed)
        agents = []
        for s in args.seeds:
            t0 = time.perf_counter()
            model = train_ppo(SmartMicroscopeEnv(shape=(64, 64), regions=(2, 2), restore=restore, seed=10_000 + s),
                              args.timesteps, seed=s)
            res = evaluate(env, PPOPolicy(model), eval_seeds)
            res["train_seconds"] = round(time.perf_counter() - t0, 1)
            res["vs_best_fixed"] = _paired(res, rows["best_fixed"])
            agents.append(res)
        rows["ppo"] = agents
        out[restore] = {"grid": grid, **{k: v for k, v in rows.items()}}
        print(f"restore={restore}: best fixed {fixed} return {rows['best_fixed']['mean_return']:.3f}; adaptive "
              f"{rows['adaptive']['mean_return']:.3f}; PPO " +
              ", ".join(f"{a['mean_return']:.3f} (Δ {a['vs_best_fixed']['mean']:+.3f} "
                        f"[{a['vs_best_fixed']['ci95'][0]:+.3f}, {a['vs_best_fixed']['ci95'][1]:+.3f}])" for a in agents),
              flush=True)
    # Dose at equal quality: fixed settings sorted by dose, with and without restoration.
    target = out["none"]["best_fixed"]["mean_final_quality_db"]
    dose_at = {}
    for restore in ("none", "denoise"):
        env = SmartMicroscopeEnv(shape=(64, 64), regions=(2, 2), restore=restore)
        best = None
        for p in range(len(env.powers)):
            for e in range(len(env.exposures)):
                res = evaluate(env, FixedPolicy(p, e), eval_seeds)
                if res["mean_final_quality_db"] >= target and (best is None or res["mean_dose"] < best["mean_dose"]):
                    best = {"setting": f"p{p} e{e}", "mean_dose": res["mean_dose"],
                            "quality_db": res["mean_final_quality_db"]}
        dose_at[restore] = best
    out["dose_at_equal_quality"] = {"target_quality_db": target, **dose_at}
    env = SmartMicroscopeEnv(shape=(64, 64), regions=(2, 2))
    env.reset(seed=0)
    t0 = time.perf_counter()
    n = 0
    for _ in range(50):
        env.reset(seed=n)
        for r in range(4):
            env.step(np.array([r, 2, 1]))
            n += 1
    ours = (time.perf_counter() - t0) / n
    peer = None
    if Path(args.pysted).exists():
        r = subprocess.run([args.pysted, str(HERE / "peers" / "pysted_step.py"), "64", "5"], capture_output=True,
                           text=True, timeout=1200)
        peer = json.loads(r.stdout) if r.returncode == 0 else {"error": r.stderr[-300:]}
    out["step_time"] = {"ours_seconds": ours, "pysted": peer,
                        "ratio": (peer["seconds_per_step"] / ours) if peer and "seconds_per_step" in peer else None}
    out["load_after"] = os.getloadavg()[0]
    (HERE / "smart_microscope.json").write_text(json.dumps(out, indent=1, default=float))
    print(json.dumps({"dose_at_equal_quality": out["dose_at_equal_quality"], "step_time": out["step_time"]}, indent=1))


if __name__ == "__main__":
    main()
