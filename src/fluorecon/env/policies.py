"""Strategies for the simulated microscope, and their evaluation on held-out specimens.

Examples
--------
>>> from fluorecon.env.microscope import SmartMicroscopeEnv
>>> env = SmartMicroscopeEnv(shape=(32, 32), regions=(2, 2))
>>> res = run_episode(env, FixedPolicy(power=2, exposure=1), seed=1)
>>> bool(res["steps"] > 0 and res["final_quality_db"] > res["initial_quality_db"])
True
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from safetensors.torch import load_file, save
from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import DummyVecEnv

from fluorecon.env.microscope import FEATURE_SCALE, FEATURES, SmartMicroscopeEnv
from fluorecon.errors import FluoreconError

__all__ = ["AdaptivePolicy", "FixedPolicy", "PPOPolicy", "best_fixed", "evaluate", "run_episode", "train_ppo"]


class Policy(Protocol):
    def reset(self, env: SmartMicroscopeEnv) -> None: ...

    def act(self, obs: np.ndarray, env: SmartMicroscopeEnv) -> np.ndarray: ...


@dataclass
class FixedPolicy:
    """The same power and exposure (indices into the env's levels) for every region, regions in turn.

    ``passes`` — how many times each region is imaged before the shutter stays closed (``None``: until
    the budget or the horizon ends the episode). A fixed setting does not look at the images.
    """

    power: int = 2
    exposure: int = 1
    passes: int | None = None

    def reset(self, env: SmartMicroscopeEnv) -> None:
        self._k = 0

    def act(self, obs: np.ndarray, env: SmartMicroscopeEnv) -> np.ndarray:
        done = self.passes is not None and self._k >= self.passes * env.n_regions
        if env.scan == "raster":
            first = 1 if done else 0
        else:
            first = env.n_regions if done else self._k % env.n_regions
        self._k += 1
        return np.array([first, self.power, self.exposure])

    def __str__(self) -> str:
        passes = "" if self.passes is None else f", {self.passes} pass{'es' * (self.passes != 1)}"
        return f"fixed(power#{self.power}, exposure#{self.exposure}{passes})"


@dataclass
class AdaptivePolicy:
    """A greedy heuristic on the observation and the instrument's known constants.

    First a survey: every region once at ``survey`` (power, exposure indices). Then at each step the
    (region — in raster scans only the tile under the objective —, power, exposure) whose predicted gain in recovered fraction exceeds its predicted bleaching
    and phototoxicity costs by the most, or the shutter closed if none pays. Regions whose signal is not
    significant after the survey are treated as empty. The prediction assumes shot + background + read
    noise at the surveyed mean intensity and the unrestored estimate's quality ``1 − noise/signal``.
    """

    survey: tuple[int, int] = (2, 0)
    significance: float = 3.0

    def reset(self, env: SmartMicroscopeEnv) -> None:
        return None

    def act(self, obs: np.ndarray, env: SmartMicroscopeEnv) -> np.ndarray:
        nf = len(FEATURES)
        f = obs[: nf * env.n_regions].reshape(env.n_regions, nf).astype(float)
        imaged, c, mean, sig, noise = f[:, 0] > 0, f[:, 1], f[:, 2] / FEATURE_SCALE, f[:, 3], f[:, 4]
        raster = env.scan == "raster"
        closed = np.array([1 if raster else env.n_regions, 0, 0])
        todo = np.flatnonzero(~imaged)
        if raster and not imaged[0]:                  # the tile under the objective comes first
            return np.array([0, *self.survey])
        if not raster and todo.size:
            return np.array([int(todo[0]), *self.survey])
        budget_left = float(obs[nf * env.n_regions]) * env.budget
        s_energy, v = (sig / FEATURE_SCALE) ** 2, (noise / FEATURE_SCALE) ** 2
        npix = env.region_shape[0] * env.region_shape[1]
        cells = s_energy > self.significance * v * np.sqrt(2.0 / npix)
        if not cells.any() or budget_left <= 0:
            return closed
        share = np.clip(mean, 0, None) * cells
        share = share / share.sum() if share.sum() > 0 else np.full(env.n_regions, 1.0 / env.n_regions)
        q_now = np.where(cells, np.clip(1 - v / np.maximum(s_energy, 1e-12), 0, None), 0.0)
        best, best_val = closed, 0.0
        for r in np.flatnonzero(cells):
            if raster and r != 0:
                continue
            for pi, p in enumerate(env.powers):
                for ei, e in enumerate(env.exposures):
                    d = min(p * e, budget_left)
                    c1 = c[r] * np.exp(-d / env.bleach_dose)
                    lam = env.brightness * (c[r] - c1) * env.bleach_dose
                    v1 = (lam * max(mean[r], 0.0) + env.bg * d / p + env.read_noise**2) / lam**2
                    q_new = max(0.0, 1 - 1 / (1 / v[r] + 1 / v1) / s_energy[r])
                    gain = (q_new - q_now[r]) / cells.sum()
                    cost = env.bleach_weight * share[r] * (c[r] - c1) + env.toxicity_weight * p**env.tox_exp * d / p
                    if gain - cost > best_val:
                        best, best_val = np.array([0 if raster else r, pi, ei]), gain - cost
        return best

    def __str__(self) -> str:
        return "adaptive(greedy)"


class PPOPolicy:
    """A trained stable-baselines3 PPO agent acting deterministically."""

    def __init__(self, model: PPO):
        self.model = model

    def reset(self, env: SmartMicroscopeEnv) -> None:
        return None

    def act(self, obs: np.ndarray, env: SmartMicroscopeEnv) -> np.ndarray:
        a, _ = self.model.predict(obs, deterministic=True)
        return np.asarray(a)

    def save(self, folder: str | Path, env_kwargs: dict[str, Any]) -> Path:
        """Write the policy as ``policy.safetensors`` (weights) + ``policy.json`` (environment settings).

        stable-baselines3's own zip format unpickles objects on load; ours never does.
        """
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().contiguous() for k, v in self.model.policy.state_dict().items()}
        # Bytes written with a plain open(): the file honours the user's umask.
        (folder / "policy.safetensors").write_bytes(save(state, metadata={"format": "fluorecon-ppo-policy"}))
        (folder / "policy.json").write_text(json.dumps({"schema_version": "1.0", "algorithm": "PPO",
                                                        "policy": "MlpPolicy", "env": env_kwargs}, indent=1,
                                                       sort_keys=True) + "\n")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> tuple[PPOPolicy, dict[str, Any]]:
        """Rebuild the agent from a folder written by :meth:`save` (no unpickling); returns it and the env settings."""
        folder = Path(folder)
        meta_p, w_p = folder / "policy.json", folder / "policy.safetensors"
        if not meta_p.is_file() or not w_p.is_file():
            raise FluoreconError(f"{folder} is not a policy folder (policy.json + policy.safetensors)",
                                 hint="train one with: fluorecon env train -o POLICY_DIR")
        try:
            meta = json.loads(meta_p.read_text())
            env_kwargs = dict(meta["env"])
        except (ValueError, KeyError, TypeError) as e:
            raise FluoreconError(f"{meta_p} is not a valid policy description ({e})") from None
        if str(meta.get("schema_version", "")).split(".")[0] != "1" or meta.get("algorithm") != "PPO":
            raise FluoreconError(f"{meta_p}: unsupported policy format {meta.get('schema_version')!r}")
        env = SmartMicroscopeEnv(**env_kwargs)
        model = PPO("MlpPolicy", env, device="cpu")
        state = load_file(str(w_p))
        try:
            model.policy.load_state_dict(state)
        except RuntimeError as e:
            raise FluoreconError(f"{w_p} does not match the policy network ({str(e).splitlines()[0]})") from None
        return cls(model), env_kwargs

    def __str__(self) -> str:
        return "ppo"


def run_episode(env: SmartMicroscopeEnv, policy: Any, seed: int | None = None, specimen: np.ndarray | None = None,
                record: bool = False) -> dict[str, Any]:
    """One episode; returns the return, final recovered fraction and PSNR, bleaching, toxicity, dose and
    (optionally) the actions."""
    obs, info = env.reset(seed=seed, options={"specimen": specimen} if specimen is not None else None)
    policy.reset(env)
    q0 = info["quality_db"]
    total, steps, actions = 0.0, 0, []
    t0 = time.perf_counter()
    while True:
        a = policy.act(obs, env)
        obs, r, term, trunc, info = env.step(a)
        total += r
        steps += 1
        if record:
            actions.append([int(v) for v in np.asarray(a).ravel()])
        if term or trunc:
            break
    out = {"return": total, "steps": steps, "initial_quality_db": q0, "final_quality_db": info["quality_db"],
           "final_recovered": info["recovered"], "bleached": info["bleached"],
           "fluorophores_left": float(np.mean(info["fluorophores"])), "toxicity": info["toxicity"],
           "dose": info["spent"], "seconds_per_step": (time.perf_counter() - t0) / max(steps, 1)}
    if record:
        out["actions"] = actions
    return out


def evaluate(env: SmartMicroscopeEnv, policy: Any, seeds: Sequence[int]) -> dict[str, Any]:
    """Episodes on the given specimen seeds: per-episode rows and mean ± 95 % CI of the return."""
    rows = [run_episode(env, policy, seed=s) for s in seeds]
    ret = np.array([r["return"] for r in rows])
    half = 1.96 * ret.std(ddof=1) / np.sqrt(len(ret)) if len(ret) > 1 else float("nan")
    keys = ("final_recovered", "final_quality_db", "bleached", "fluorophores_left", "toxicity", "dose")
    return {"policy": str(policy), "mean_return": float(ret.mean()), "ci95": [float(ret.mean() - half),
                                                                               float(ret.mean() + half)],
            **{f"mean_{k}": float(np.mean([r[k] for r in rows])) for k in keys}, "episodes": rows}


def best_fixed(env: SmartMicroscopeEnv, seeds: Sequence[int]) -> tuple[FixedPolicy, list[dict]]:
    """Search every (power, exposure, passes) on ``seeds`` (training specimens); returns the best and the grid.

    The same action space as the agents: every power × exposure, each region imaged 1, 2, … times (up to
    the horizon) before the shutter stays closed.
    """
    grid = []
    max_passes = -(-env.max_steps // env.n_regions)
    for p, e, n in itertools.product(range(len(env.powers)), range(len(env.exposures)), range(1, max_passes + 1)):
        res = evaluate(env, FixedPolicy(p, e, n), seeds)
        grid.append({"power": float(env.powers[p]), "exposure": float(env.exposures[e]), "passes": n,
                     "mean_return": res["mean_return"], "p": p, "e": e})
    top = max(grid, key=lambda g: g["mean_return"])
    return FixedPolicy(top["p"], top["e"], top["passes"]), grid


def train_ppo(env: SmartMicroscopeEnv, timesteps: int, seed: int = 0, n_envs: int = 8, **ppo_kwargs: Any) -> PPO:
    """Train a PPO agent (MLP policy on the feature observation) for ``timesteps`` environment steps.

    ``n_envs`` copies of ``env`` (same settings, specimen streams seeded ``seed·1000 + i``) step together,
    so that each update sees many specimens.
    """
    if timesteps < 1:
        raise FluoreconError(f"timesteps must be ≥ 1, got {timesteps}")
    if n_envs < 1:
        raise FluoreconError(f"n_envs must be ≥ 1, got {n_envs}")
    venv = DummyVecEnv([lambda i=i: SmartMicroscopeEnv(**env.settings, seed=seed * 1000 + i) for i in range(n_envs)])
    kw = {"n_steps": 128, "batch_size": 256, "n_epochs": 10, "learning_rate": 3e-4, "gamma": 0.99,
          "gae_lambda": 0.95, "ent_coef": 0.01, "verbose": 0, "device": "cpu"}
    kw.update(ppo_kwargs)
    model = PPO("MlpPolicy", venv, seed=seed, **kw)
    model.learn(total_timesteps=int(timesteps))
    return model
