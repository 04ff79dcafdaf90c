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

from fluorecon.env.microscope import SmartMicroscopeEnv
from fluorecon.errors import FluoreconError

__all__ = ["AdaptivePolicy", "FixedPolicy", "PPOPolicy", "best_fixed", "evaluate", "run_episode", "train_ppo"]


class Policy(Protocol):
    def reset(self, env: SmartMicroscopeEnv) -> None: ...

    def act(self, obs: np.ndarray, env: SmartMicroscopeEnv) -> np.ndarray: ...


@dataclass
class FixedPolicy:
    """The same power and exposure (indices into the env's levels) everywhere, regions in turn."""

    power: int = 2
    exposure: int = 1

    def reset(self, env: SmartMicroscopeEnv) -> None:
        self._k = 0

    def act(self, obs: np.ndarray, env: SmartMicroscopeEnv) -> np.ndarray:
        r = self._k % env.n_regions
        self._k += 1
        return np.array([r, self.power, self.exposure])

    def __str__(self) -> str:
        return f"fixed(power#{self.power}, exposure#{self.exposure})"


@dataclass
class AdaptivePolicy:
    """A heuristic: image the region whose estimate is noisiest; lower the power as a region bleaches,
    stop a region once its fluorophores are below ``floor``; stop when every region is done."""

    floor: float = 0.35

    def reset(self, env: SmartMicroscopeEnv) -> None:
        return None

    def act(self, obs: np.ndarray, env: SmartMicroscopeEnv) -> np.ndarray:
        feats = obs[: 4 * env.n_regions].reshape(env.n_regions, 4)
        remaining = np.exp(-feats[:, 1])                    # known bleaching from the dose received
        noise = feats[:, 3]
        ok = remaining > self.floor
        if not ok.any():
            return np.array([env.n_regions, 0, 0])
        r = int(np.argmax(np.where(ok, noise, -np.inf)))
        # Long exposures at moderate power: the same dose, less phototoxicity than short bright pulses.
        p = int(np.clip(np.searchsorted(env.powers, 1.0), 0, len(env.powers) - 1))
        if remaining[r] < 0.6:
            p = max(p - 1, 0)
        e = len(env.exposures) - 1
        return np.array([r, p, e])

    def __str__(self) -> str:
        return f"adaptive(floor={self.floor})"


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
    """One episode; returns the return, final quality, bleaching, toxicity, dose and (optionally) the actions."""
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
    keys = ("final_quality_db", "fluorophores_left", "toxicity", "dose")
    return {"policy": str(policy), "mean_return": float(ret.mean()), "ci95": [float(ret.mean() - half),
                                                                               float(ret.mean() + half)],
            **{f"mean_{k}": float(np.mean([r[k] for r in rows])) for k in keys}, "episodes": rows}


def best_fixed(env: SmartMicroscopeEnv, seeds: Sequence[int]) -> tuple[FixedPolicy, list[dict]]:
    """Search every (power, exposure) pair on ``seeds`` (training specimens); returns the best and the grid."""
    grid = []
    for p, e in itertools.product(range(len(env.powers)), range(len(env.exposures))):
        res = evaluate(env, FixedPolicy(p, e), seeds)
        grid.append({"power": float(env.powers[p]), "exposure": float(env.exposures[e]),
                     "mean_return": res["mean_return"], "p": p, "e": e})
    top = max(grid, key=lambda g: g["mean_return"])
    return FixedPolicy(top["p"], top["e"]), grid


def train_ppo(env: SmartMicroscopeEnv, timesteps: int, seed: int = 0, **ppo_kwargs: Any) -> PPO:
    """Train a PPO agent (MLP policy on the feature observation) for ``timesteps`` environment steps."""
    if timesteps < 1:
        raise FluoreconError(f"timesteps must be ≥ 1, got {timesteps}")
    kw = {"n_steps": 256, "batch_size": 64, "learning_rate": 3e-4, "gamma": 0.99, "verbose": 0, "device": "cpu"}
    kw.update(ppo_kwargs)
    model = PPO("MlpPolicy", env, seed=seed, **kw)
    model.learn(total_timesteps=int(timesteps))
    return model
