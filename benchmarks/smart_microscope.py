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

Reproducibility: each part's entry holds a ``provenance`` record (command, code hash, the search and
evaluation specimens by hash, seeds, all parameters, machine, load). ``ppo`` reports each ``--seeds`` agent,
the mean over seeds with a 95 % t-interval and the paired difference PPO − best fixed per seed. Failure
cases: the three lowest-return held-out specimens of each strategy (``best_fixed``, ``adaptive``, each PPO
agent), re-run to show the final estimate against the widefield reference, as
``<figures>/smart_microscope_worst_<strategy>.png``, listed under ``galleries``. ``--quick`` (4 search and
4 held-out specimens, 1024 PPO steps, 2 restoration specimens) and ``--out`` are for tests.
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
sys.path.insert(0, str(HERE))
from _gallery import Case, save_gallery, worst  # noqa: E402
from _provenance import finish, provenance  # noqa: E402
from _stats import mean_ci  # noqa: E402

OUT = HERE / "smart_microscope.json"
EVAL0 = 50_000
SEARCH = range(1000, 1016)


def _search(args) -> range:
    return range(1000, 1004) if getattr(args, "quick", False) else SEARCH


def specimens(env: SmartMicroscopeEnv, seeds) -> np.ndarray:
    """The specimens (truths) of the given seeds, stacked: what the provenance hashes."""
    out = []
    for s in seeds:
        env.reset(seed=int(s))
        out.append(np.asarray(env.truth, np.float64))
    return np.stack(out)


def gallery(env: SmartMicroscopeEnv, policy, seeds, result: dict, name: str, args) -> dict:
    """The three lowest-return specimens of ``result`` re-run: final estimate against the widefield reference."""
    cases = [Case(f"specimen {s}", float(e["return"]), info={"seed": int(s)})
             for s, e in zip(seeds, result["episodes"], strict=True)]
    shown = []
    for c in worst(cases, 3):
        out = run_episode(env, policy, seed=c.info["seed"])
        shown.append(Case(c.label, c.score, {"truth": np.asarray(env.truth, np.float32),
                                             "result": np.asarray(env.estimate(), np.float32),
                                             "reference": np.asarray(env.reference, np.float32)},
                          {**c.info, "return_rerun": float(out["return"])}))
    path = Path(args.figures) / f"smart_microscope_worst_{name}.png"
    return {"path": str(path), "metric": "episode return",
            "cases": save_gallery(shown, path, f"smart_microscope: lowest returns, {name}", crop=64)}


def _prov(args, env: SmartMicroscopeEnv, seeds, eval_seeds, t_wall: float, **extra) -> dict:
    data = {"search_specimens": specimens(env, _search(args)), "eval_specimens": specimens(env, eval_seeds)}
    params = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    return finish(provenance(seeds=list(seeds), data=data, params={
        **params, "search_seeds": [_search(args)[0], _search(args)[-1]],
        "eval_seeds": [eval_seeds[0], eval_seeds[-1]], "env": {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                                                               for k, v in env.settings.items()}, **extra}), t_wall)


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
    t_wall = time.time()
    t0 = time.process_time()
    fixed, grid = best_fixed(env, seeds=_search(args))
    ev = range(EVAL0, EVAL0 + args.episodes)
    rows = {"best_fixed": evaluate(env, fixed, ev), "adaptive": evaluate(env, AdaptivePolicy(), ev)}
    res = {"best_fixed_setting": str(fixed), "grid": grid, "cpu_seconds": time.process_time() - t0,
           "best_fixed": _summary(rows["best_fixed"]), "adaptive": _summary(rows["adaptive"]),
           "adaptive_vs_best_fixed": _paired(rows["adaptive"], rows["best_fixed"]),
           "adaptive_behaviour": behaviour(env, AdaptivePolicy(), ev),
           "best_fixed_episodes": [e["return"] for e in rows["best_fixed"]["episodes"]],
           "adaptive_episodes": [e["return"] for e in rows["adaptive"]["episodes"]]}
    res["galleries"] = {"best_fixed": gallery(env, fixed, ev, rows["best_fixed"], "best_fixed", args),
                        "adaptive": gallery(env, AdaptivePolicy(), ev, rows["adaptive"], "adaptive", args)}
    res["provenance"] = _prov(args, env, [], ev, t_wall, deterministic="fixed and adaptive policies on seeded specimens")
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
    t_wall = time.time()
    fixed, _ = best_fixed(env, seeds=_search(args))
    ref = evaluate(env, fixed, ev)
    agents = dict(out.get("ppo", {}).get("agents", {}))
    galleries = dict(out.get("ppo", {}).get("galleries", {}))
    for s in args.seeds:
        t0 = time.process_time()
        model = train_ppo(env, args.timesteps, seed=s)
        cpu = time.process_time() - t0
        pol = PPOPolicy(model)
        if args.save:
            pol.save(Path(args.save) / f"seed{s}", env.settings | {"restore": "none"})
        res = evaluate(env, pol, ev)
        agents[str(s)] = {**_summary(res), "timesteps": args.timesteps, "train_cpu_seconds": round(cpu, 1),
                          "vs_best_fixed": _paired(res, ref), "behaviour": behaviour(env, pol, ev),
                          "episodes": [e["return"] for e in res["episodes"]]}
        galleries[f"ppo_seed{s}"] = gallery(env, pol, ev, res, f"ppo_seed{s}", args)
        a = agents[str(s)]
        print(f"PPO seed {s}: {a['mean_return']:.3f} {np.round(a['ci95'], 3)} ({cpu:.0f} CPU-s); vs best fixed "
              f"{ref['mean_return']:.3f} {np.round(ref['ci95'], 3)}: Δ {a['vs_best_fixed']['mean']:+.3f} "
              f"{np.round(a['vs_best_fixed']['ci95'], 3)}", flush=True)
    # over the agents of this run (seeds are the independent units), paired with the best fixed setting
    done = [str(s) for s in args.seeds]
    over = {"seeds": list(args.seeds), "mean_return": mean_ci([agents[s]["mean_return"] for s in done]),
            "ppo_minus_best_fixed": mean_ci([agents[s]["vs_best_fixed"]["mean"] for s in done])}
    return {"best_fixed": _summary(ref), "agents": agents, "over_seeds": over, "galleries": galleries,
            "provenance": _prov(args, env, args.seeds, ev, t_wall, ppo={"n_envs": 8, "net": "MLP 64-64",
                                                                      "env_streams": "seed·1000 + i"})}


def part_restore(args, out: dict) -> dict:
    t_wall = time.time()
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
            "dose_at_equal_quality": curve,
            "provenance": _prov(args, SmartMicroscopeEnv(), [], ev, t_wall, deterministic="fixed policies")}


def part_step(args, out: dict) -> dict:
    t_wall = time.time()
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
    return {"ours": ours, "pysted": peer, "ratio": ratio,
            "provenance": finish(provenance(seeds=list(range(50)), data={"specimens": specimens(env, range(50))},
                                            params={"steps_per_specimen": 4, "action": [0, 2, 1],
                                                    "deterministic": "timed steps on specimens of seeds 0–49"}),
                                 t_wall)}


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
    ap.add_argument("--quick", action="store_true",
                    help="tests: 4 search / 4 held-out specimens, 1024 PPO steps, 2 restoration specimens")
    ap.add_argument("--out", type=Path, default=OUT, help="JSON (parts are merged into it)")
    ap.add_argument("--figures", type=Path, default=HERE / "figures", help="folder of the worst-case galleries")
    args = ap.parse_args()
    if args.quick:
        args.episodes, args.timesteps, args.restore_episodes = min(args.episodes, 4), 1024, 2
    torch.set_num_threads(1)
    out = json.loads(args.out.read_text()) if args.out.exists() else {}
    for part in args.parts:
        meta = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": platform.platform(),
                "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "load_before": os.getloadavg()}
        res = globals()[f"part_{part}"](args, out)
        out[part] = {**meta, **res, "load_after": os.getloadavg()}
        args.out.write_text(json.dumps(out, indent=1, default=float))


if __name__ == "__main__":
    main()
