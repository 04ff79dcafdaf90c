"""``fluorecon env``: run strategies in the simulated microscope, or train a PPO agent for it."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from fluorecon._atomic import atomic_path, check_output
from fluorecon.cli.common import emit_json, handle_errors
from fluorecon.cli.options import JsonOpt, OverwriteOpt, QuietOpt, SeedOpt
from fluorecon.env.microscope import SmartMicroscopeEnv
from fluorecon.env.policies import AdaptivePolicy, FixedPolicy, PPOPolicy, best_fixed, evaluate, train_ppo
from fluorecon.errors import FluoreconError
from fluorecon.report import write_report

EPILOG = """Examples:

  fluorecon env run --policy adaptive --episodes 10

  fluorecon env run --policy best-fixed --restore denoise --json

  fluorecon env train -o policy/ --timesteps 50000 --seed 0

  fluorecon env run --policy policy/ --episodes 20 --report episodes.html

Strategies: fixed (--power/--exposure indices, --passes over the tiles), best-fixed (power × exposure ×
passes searched on training specimens, seeds 1000…), adaptive (a greedy heuristic: survey, then the tile
and setting whose predicted gain beats its cost), or a PPO policy folder. Evaluation specimens use seeds SEED…SEED+N−1,
never the training ones.
"""

PolicyOpt = Annotated[str, typer.Option("--policy", help="fixed | best-fixed | adaptive | POLICY_DIR written by 'fluorecon env train'.")]
EpisodesOpt = Annotated[int, typer.Option("--episodes", help="Number of evaluation episodes (held-out specimens).", min=1, max=10000)]
RestoreOpt = Annotated[str, typer.Option("--restore", help="Restoration in the loop: none | denoise.")]
PowerOpt = Annotated[int, typer.Option("--power", help="fixed: index into the power levels (0.25, 0.5, 1, 2).", min=0)]
ExposureOpt = Annotated[int, typer.Option("--exposure", help="fixed: index into the exposure levels (0.5, 1, 2).", min=0)]
PassesOpt = Annotated[int | None, typer.Option("--passes", help="fixed: times each tile is imaged before the shutter stays closed (default: until the budget or the horizon ends).", min=1)]
BudgetOpt = Annotated[float, typer.Option("--budget", help="Photon budget: total dose (power × exposure) per episode.")]
ReportFileOpt = Annotated[Path | None, typer.Option("--report", help="Write an HTML report of the last episode and the table.")]


def _env(restore: str, budget: float) -> SmartMicroscopeEnv:
    return SmartMicroscopeEnv(shape=(64, 64), regions=(2, 2), restore=restore, budget=budget)


def _policy(spec: str, env: SmartMicroscopeEnv, power: int, exposure: int, passes: int | None = None):
    if spec == "fixed":
        if power >= len(env.powers) or exposure >= len(env.exposures):
            raise FluoreconError(f"--power {power} / --exposure {exposure} are out of range",
                                 hint=f"indices below {len(env.powers)} and {len(env.exposures)}")
        return FixedPolicy(power, exposure, passes), None
    if spec == "best-fixed":
        pol, grid = best_fixed(env, seeds=range(1000, 1008))
        return pol, grid
    if spec == "adaptive":
        return AdaptivePolicy(), None
    if Path(spec).is_dir():
        pol, _ = PPOPolicy.load(spec)
        return pol, None
    raise FluoreconError(f"unknown policy {spec!r}", hint="use fixed, best-fixed, adaptive or a PPO policy file")


def register(app: typer.Typer) -> None:
    env_app = typer.Typer(help="A simulated microscope for adaptive acquisition (gymnasium): run or train strategies.",
                          no_args_is_help=True)
    app.add_typer(env_app, name="env")

    @env_app.command("run", epilog=EPILOG)
    def run_cmd(policy: PolicyOpt = "adaptive", episodes: EpisodesOpt = 5, restore: RestoreOpt = "none",
                power: PowerOpt = 2, exposure: ExposureOpt = 1, passes: PassesOpt = None, budget: BudgetOpt = 24.0,
                seed: SeedOpt = 0,
                report: ReportFileOpt = None, overwrite: OverwriteOpt = False, json_out: JsonOpt = False,
                quiet: QuietOpt = False) -> None:
        """Run episodes of a strategy on held-out specimens; print return, quality, bleaching, dose."""
        with handle_errors():
            if report is not None:
                check_output(report, overwrite=overwrite, suffixes=(".html",), label="--report")
            env = _env(restore, budget)
            pol, grid = _policy(policy, env, power, exposure, passes)
            res = evaluate(env, pol, range(seed, seed + episodes))
            if grid is not None:
                res["fixed_grid"] = grid
            last = env.render()
            if report is not None:
                rows = {f"episode {i} (seed {seed + i})": {k: round(v, 4) if isinstance(v, float) else v
                                                           for k, v in e.items() if k != "actions"}
                        for i, e in enumerate(res["episodes"])}
                ref = env.reference.astype(np.float32)
                write_report(report, title=f"Simulated microscope: {res['policy']}", input=ref,
                             output=env.estimate().astype(np.float32), axes="YX",
                             params={k: v for k, v in res.items() if k != "episodes"},
                             command="fluorecon " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
                             extra_sections=[("Episodes", rows), ("Truth | estimate | dose", last[..., 0])])
                res["report"] = str(report)
            if json_out:
                emit_json(res)
            elif not quiet:
                typer.echo(f"{res['policy']}: mean return {res['mean_return']:.3f} (95 % CI {res['ci95'][0]:.3f} … "
                           f"{res['ci95'][1]:.3f}), recovered {res['mean_final_recovered']:.3f} ({res['mean_final_quality_db']:.2f} dB), "
                           f"bleached {res['mean_bleached']:.3f}, fluorophores left "
                           f"{res['mean_fluorophores_left']:.2f}, dose {res['mean_dose']:.1f}, over {episodes} episodes")

    @env_app.command("train", epilog=EPILOG)
    def train_cmd(output: Annotated[Path, typer.Option("-o", "--output", help="Policy folder to write.")],
                  timesteps: Annotated[int, typer.Option("--timesteps", help="Environment steps of PPO training.",
                                                         min=1, max=100_000_000)] = 50_000,
                  restore: RestoreOpt = "none", budget: BudgetOpt = 24.0, seed: SeedOpt = 0,
                  overwrite: OverwriteOpt = False, json_out: JsonOpt = False, quiet: QuietOpt = False) -> None:
        """Train a PPO agent (stable-baselines3) on random specimens; write its weights (safetensors) + JSON."""
        with handle_errors():
            out = check_output(output, overwrite=overwrite, kind="dir", label="-o")
            env_kwargs = {"shape": [64, 64], "regions": [2, 2], "restore": restore, "budget": budget}
            env = SmartMicroscopeEnv(**env_kwargs)
            model = train_ppo(env, timesteps, seed=seed)
            policy = PPOPolicy(model)
            with atomic_path(out, is_dir=True) as tmp:
                policy.save(tmp, env_kwargs)
            res = evaluate(env, policy, range(seed + 10_000, seed + 10_008))
            summary = {"output": str(out), "timesteps": timesteps, "mean_return_heldout": res["mean_return"],
                       "ci95": res["ci95"]}
            if json_out:
                emit_json(summary)
            elif not quiet:
                typer.echo(f"wrote {out}: held-out mean return {res['mean_return']:.3f}")
