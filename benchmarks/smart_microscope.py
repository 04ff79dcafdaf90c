"""Smart-microscope benchmark: strategies on held-out specimens, restoration in the loop, step time vs pySTED.

Run: ``.venv/bin/python benchmarks/smart_microscope.py [--parts strategies ppo restore step] [--timesteps 40000]
[--seeds 0 1 2] [--episodes 300]``. Prints tables and merges its parts into ``benchmarks/smart_microscope.json``
(so that the parts can run as separate jobs).

Protocol. Specimens: 64×64 fields of 2×2 tiles, each tile a cell (filaments, puncta or nuclei phantom) at a
log-uniform labelling level in [0.1, 1] or empty (p = 0.25); 12 steps, budget 24 (the environment's
defaults). Reward: mean recovered fraction of the cells' images minus bleaching minus 0.01 × phototoxicity.
Training specimens: the best-fixed search uses seeds 1000…1015, PPO the random streams of its own
environments; evaluation uses seeds 50000…50000+E−1, never seen in training or search. Best fixed: every
power × exposure × passes (1–3 passes over the tiles, then the shutter stays closed) — the agents' action
space. PPO (stable-baselines3, MLP 64-64, 8 environments): one agent per ``--seeds`` value, trained at one
thread; CPU time measured with ``time.process_time``. CIs: 95 % normal intervals over the evaluation
episodes; PPO − best fixed is paired by specimen. Restoration in the loop: ``restore="denoise"`` (calibrated
TV of :func:`fluorecon.tasks.denoise.denoise`); dose at equal quality = the smallest mean dose of a fixed
setting whose mean PSNR reaches the best PSNR without restoration. pySTED (``--pysted PYTHON``, its own
venv) times one 64×64 STED acquisition with bleaching — a point-scanning photophysics simulation, a heavier
kind of step than our widefield one: the ratio says what an RL loop costs, not that the simulations are
equivalent.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from fluorecon.env.microscope import SmartMicroscopeEnv
from fluorecon.env.policies import (
    AdaptivePolicy,
    FixedPolicy,
    PPOPolicy,
    best_fixed,
    evaluate,
    run_episode,
    train_ppo,
)

HERE = Path(__file__).resolve().parent
OUT = HERE / "smart_microscope.json"
EVAL0 = 50_000


def _ci(x: np.ndarray) -> list[float]:
    half = 1.96 * x.std(ddof=1) / np.sqrt(len(x))
    return [float(x.mean() - half), float(x.mean() + half)]


def _paired(a: dict, b: dict) -> dict:
    d = np.array([x["return"] - y["return"] for x, y in zip(a["episodes"], b["episodes"], strict=True)])
    return {"mean": float(d.mean()), "ci95": _ci(d)}


def _summary(res: dict) -> dict:
    keys = ("mean_return", "ci95", "mean_final_recovered", "mean_bleached", "mean_toxicity", "mean_dose",
            "mean_final_quality_db")
    return {k: res[k] for k in keys if k in res}


def behaviour(env: SmartMicroscopeEnv, policy, seeds) -> dict:
    """What a policy does: survey, shutter, dose per tile by its content, settings by step."""
    steps: dict[int, dict[str, int]] = {}
    on_empty = on_cells = closed = 0
    dose_by_level: list[tuple[float, float]] = []
    for s in seeds:
        out = run_episode(env, policy, seed=s, record=True)
        cells = env._info()["cells"]
        levels = [float(env.truth[env._slices(r)].max()) for r in range(env.n_regions)]
        seen: set[int] = set()
        for t, (a0, p, e) in enumerate(out["actions"]):
            r = (t % env.n_regions if a0 == 0 else env.n_regions) if env.scan == "raster" else a0
            key = "closed" if r == env.n_regions else f"p{env.powers[p]:g}×e{env.exposures[e]:g}"
            key += "" if r == env.n_regions or r in seen else " (first look)"
            steps.setdefault(t, {}).setdefault(key, 0)
            steps[t][key] += 1
            if r == env.n_regions:
                closed += 1
            elif r in seen:
                on_cells += bool(cells[r])
                on_empty += not cells[r]
            seen.add(r)
        # The env keeps the finished episode's state: its per-tile doses.
        dose_by_level += [(lv if c else 0.0, float(d)) for lv, d, c in zip(levels, env._dose, cells, strict=True)]
    lv = np.array(dose_by_level)
    bins = [(0.0, 1e-9), (0.1, 0.3), (0.3, 0.6), (0.6, 1.01)]
    by_level = {("empty" if lo == 0 else f"{lo:g}–{min(hi, 1):g}"): float(lv[(lv[:, 0] >= lo) & (lv[:, 0] < hi), 1].mean())
                for lo, hi in bins if ((lv[:, 0] >= lo) & (lv[:, 0] < hi)).any()}
    n = sum(sum(v.values()) for v in steps.values())
    return {"top_setting_by_step": {t: max(v, key=v.get) + f" ({v[max(v, key=v.get)]}/{sum(v.values())})"
                                    for t, v in sorted(steps.items())},
            "fraction_closed": closed / n, "repeat_looks_on_empty_tiles": on_empty, "repeat_looks_on_cells": on_cells,
            "mean_dose_per_tile_by_level": by_level}


def part_strategies(args, out: dict) -> dict:
    env = SmartMicroscopeEnv()
    t0 = time.process_time()
    fixed, grid = best_fixed(env, seeds=range(1000, 1016))
    ev = range(EVAL0, EVAL0 + args.episodes)
    rows = {"best_fixed": evaluate(env, fixed, ev), "adaptive": evaluate(env, AdaptivePolicy(), ev)}
    res = {"best_fixed_setting": str(fixed), "grid": grid, "cpu_seconds": time.process_time() - t0,
           "best_fixed": _summary(rows["best_fixed"]), "adaptive": _summary(rows["adaptive"]),
           "adaptive_vs_best_fixed": _paired(rows["adaptive"], rows["best_fixed"]),
           "adaptive_behaviour": behaviour(env, AdaptivePolicy(), ev),
           "best_fixed_episodes": [e["return"] for e in rows["best_fixed"]["episodes"]]}
    print(f"best fixed {fixed}: {res['best_fixed']['mean_return']:.3f} {np.round(res['best_fixed']['ci95'], 3)}; "
          f"adaptive {res['adaptive']['mean_return']:.3f} {np.round(res['adaptive']['ci95'], 3)}; Δ "
          f"{res['adaptive_vs_best_fixed']['mean']:+.3f} {np.round(res['adaptive_vs_best_fixed']['ci95'], 3)}",
          flush=True)
    return res


def part_ppo(args, out: dict) -> dict:
    env = SmartMicroscopeEnv()
    ev = range(EVAL0, EVAL0 + args.episodes)
    fixed_setting = out.get("strategies", {}).get("best_fixed_setting")
    if fixed_setting is None:
        raise SystemExit("run --parts strategies first (the best fixed setting is the reference)")
    fixed, _ = best_fixed(env, seeds=range(1000, 1016))
    ref = evaluate(env, fixed, ev)
    agents = dict(out.get("ppo", {}).get("agents", {}))
    for s in args.seeds:
        t0 = time.process_time()
        model = train_ppo(env, args.timesteps, seed=s)
        cpu = time.process_time() - t0
        pol = PPOPolicy(model)
        if args.save:
            pol.save(Path(args.save) / f"seed{s}", env.settings | {"restore": "none"})
        res = evaluate(env, pol, ev)
        agents[str(s)] = {**_summary(res), "timesteps": args.timesteps, "train_cpu_seconds": round(cpu, 1),
                          "vs_best_fixed": _paired(res, ref), "behaviour": behaviour(env, pol, ev)}
        a = agents[str(s)]
        print(f"PPO seed {s}: {a['mean_return']:.3f} {np.round(a['ci95'], 3)} ({cpu:.0f} CPU-s); vs best fixed "
              f"{ref['mean_return']:.3f} {np.round(ref['ci95'], 3)}: Δ {a['vs_best_fixed']['mean']:+.3f} "
              f"{np.round(a['vs_best_fixed']['ci95'], 3)}", flush=True)
    return {"best_fixed": _summary(ref), "agents": agents}


def part_restore(args, out: dict) -> dict:
    ev = range(EVAL0, EVAL0 + args.restore_episodes)
    table: dict[str, list] = {}
    for restore in ("none", "denoise"):
        env = SmartMicroscopeEnv(restore=restore)
        rows = []
        for p, e, n in itertools.product(range(len(env.powers)), range(len(env.exposures)), (1, 3)):
            res = evaluate(env, FixedPolicy(p, e, n), ev)
            rows.append({"setting": str(FixedPolicy(p, e, n)), "mean_dose": res["mean_dose"],
                         "quality_db": res["mean_final_quality_db"], "recovered": res["mean_final_recovered"],
                         "return": res["mean_return"]})
        table[restore] = rows
        best = max(rows, key=lambda r: r["return"])
        print(f"restore={restore}: best return {best['return']:.3f} with {best['setting']} "
              f"({best['quality_db']:.1f} dB, dose {best['mean_dose']:.1f})", flush=True)
    target = max(r["quality_db"] for r in table["none"])
    dose_at = {k: min((r for r in v if r["quality_db"] >= target), key=lambda r: r["mean_dose"], default=None)
               for k, v in table.items()}
    # The whole curve, not only its top: for each setting without restoration, the least dose with it that
    # reaches the same PSNR.
    curve = []
    for row in sorted(table["none"], key=lambda r: r["mean_dose"]):
        match = min((r for r in table["denoise"] if r["quality_db"] >= row["quality_db"]), key=lambda r: r["mean_dose"],
                    default=None)
        curve.append({"none": row["setting"], "quality_db": row["quality_db"], "dose_none": row["mean_dose"],
                      "dose_denoise": None if match is None else match["mean_dose"]})
    return {"episodes": args.restore_episodes, "grid": table, "target_quality_db": target, "dose_at": dose_at,
            "dose_at_equal_quality": curve}


def part_step(args, out: dict) -> dict:
    env = SmartMicroscopeEnv()
    n = 0
    t0, c0 = time.perf_counter(), time.process_time()
    for k in range(50):
        env.reset(seed=k)
        for _ in range(4):
            env.step(np.array([0, 2, 1]))                 # raster: the next tile at power 1 × exposure 1
            n += 1
    ours = {"seconds_per_step": (time.perf_counter() - t0) / n, "cpu_seconds_per_step": (time.process_time() - c0) / n}
    peer = None
    if Path(args.pysted).exists():
        r = subprocess.run([args.pysted, str(HERE / "peers" / "pysted_step.py"), "64", "5"], capture_output=True,
                           text=True, timeout=1200, env={**os.environ, "OMP_NUM_THREADS": "1"})
        peer = json.loads(r.stdout) if r.returncode == 0 else {"error": r.stderr[-300:]}
    ratio = peer["seconds_per_step"] / ours["seconds_per_step"] if peer and "seconds_per_step" in peer else None
    print(f"step: ours {ours['seconds_per_step'] * 1e3:.2f} ms, pySTED {peer}; ratio {ratio}", flush=True)
    return {"ours": ours, "pysted": peer, "ratio": ratio}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--parts", nargs="+", default=["strategies", "ppo", "restore", "step"],
                    choices=["strategies", "ppo", "restore", "step"])
    ap.add_argument("--timesteps", type=int, default=40_000)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--episodes", type=int, default=300)
    ap.add_argument("--restore-episodes", type=int, default=12)
    ap.add_argument("--save", default=None, help="folder to save the PPO policies in (one per seed)")
    ap.add_argument("--pysted", default="/tmp/venv-pysted/bin/python")
    args = ap.parse_args()
    torch.set_num_threads(1)
    out = json.loads(OUT.read_text()) if OUT.exists() else {}
    for part in args.parts:
        meta = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": platform.platform(),
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_before": os.getloadavg()}
        res = globals()[f"part_{part}"](args, out)
        out[part] = {**meta, **res, "load_after": os.getloadavg()}
        OUT.write_text(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
