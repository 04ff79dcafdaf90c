"""A simulated microscope that an agent operates: a gymnasium environment over fluorecon's forward models.

The specimen (hidden from the agent) is a field of regions — tiles of a slide, each holding its own cell
(a phantom of the physics layer) at its own labelling level, some of them empty. At each of
``max_steps`` steps the stage brings the next tile under the objective (``scan="raster"``, a tiled
acquisition of several passes) and the agent chooses the excitation power and exposure for it, or skips
it; with ``scan="agent"`` the agent also chooses which tile to image, or keeps the shutter closed. The acquisition goes through the forward model (PSF blur, fluorophore
brightness × dose, background, Poisson–Gaussian camera). Imaging costs: the fluorophores of the imaged
region **bleach** (``c ← c·exp(−dose / bleach_dose)``, dose = power × exposure) and the specimen
accumulates **phototoxicity** (``power^toxicity_exponent × exposure``: high irradiance hurts more than the
same dose spread over time). The photon budget (total dose) is finite.

The microscope keeps, per region, the inverse-variance-weighted estimate of the (blurred) specimen,
corrected for the bleaching it knows it caused; with ``restore="denoise"`` each estimate is restored by
:func:`fluorecon.tasks.denoise.denoise` (calibrated, classical) — the closed loop of the review, where
restoration changes what acquisition should be.

Reward — what a biologist signs: information gained about the specimen minus the harm done. The
information is the **recovered fraction** of each cell's image, ``q_r = max(0, 1 − ‖x̂_r − x_r‖² / ‖x_r‖²)``
(the restoration ``x̂`` against the hidden truth ``x`` seen through the PSF; an image worse than none counts
as none), averaged over the regions that hold a cell — every cell counts, dim or bright. Each step is
paid the change of that average (a difference of potentials, so an episode's return is the final
quality minus the costs, whatever the order), minus ``bleach_weight`` × the fraction of the specimen's
fluorophores destroyed, minus ``toxicity_weight`` × the phototoxicity added.

Observation (a flat vector of summary statistics, so that standard agents apply), per region — in
raster scans the tile under the objective first — (:data:`FEATURES`): imaged yet, fluorophores left (known from the doses), the estimate's mean, its
noise-debiased RMS signal, its RMS noise (known from the photon statistics) and the recovered fraction
these imply; then the remaining budget and the remaining steps.
Images are in :meth:`SmartMicroscopeEnv.estimate` and ``render()``.

Examples
--------
>>> env = SmartMicroscopeEnv(shape=(32, 32), regions=(2, 2), seed=0)
>>> obs, info = env.reset(seed=0)
>>> obs.shape == env.observation_space.shape
True
>>> obs, reward, terminated, truncated, info = env.step(np.array([0, 2, 1]))   # image tile 0 at p=1, e=1
>>> bool(info["photons"][0] > 0), terminated
(True, False)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from fluorecon.errors import FluoreconError
from fluorecon.physics import phantoms
from fluorecon.physics.psf import gaussian_psf
from fluorecon.physics.sampling import fft_convolve
from fluorecon.tasks.denoise import denoise

__all__ = ["FEATURES", "FEATURE_SCALE", "SmartMicroscopeEnv", "make_vec_env", "psnr_db"]

#: Per-region observation features, in order.
FEATURES = ("imaged", "fluorophores_left", "signal_mean", "signal_rms", "noise_rms", "recovered_estimate")
#: Scale of the intensity features (the blurred specimen is ≲ 0.5): keeps the observation O(1).
FEATURE_SCALE = 5.0
#: A region holds a cell when its fluorophore content is at least this fraction of the richest region's.
STRUCTURE_FLOOR = 1e-2


def psnr_db(estimate: np.ndarray, reference: np.ndarray) -> float:
    """PSNR (dB) of ``estimate`` against ``reference`` with the reference's range (no fitting)."""
    rng = float(reference.max() - reference.min()) or 1.0
    mse = float(np.mean((estimate - reference) ** 2))
    return 10 * np.log10(rng**2 / max(mse, 1e-12))


class SmartMicroscopeEnv(gym.Env):
    """Gymnasium environment of an adaptive widefield acquisition (see the module docstring).

    Parameters
    ----------
    shape : (int, int)
        Field of view in pixels.
    regions : (int, int)
        Grid of regions the agent can image separately.
    kinds : tuple of str
        Phantom kinds drawn for each region's cell (``physics.phantoms.KINDS``).
    empty_fraction : float
        Probability that a region holds no cell (at least one region always does).
    level_range : (float, float)
        Labelling level of a cell, drawn log-uniformly in this range (1 = the brightest).
    brightness : float
        Expected photons per pixel at specimen intensity 1, power 1, exposure 1, unbleached.
    background : float
        Background photons per pixel per unit exposure (autofluorescence, out-of-focus light).
    read_noise : float
        Camera read noise, electrons rms (gain 1 ADU/e-, offset 100 ADU).
    powers, exposures : sequence of float
        The discrete excitation powers (relative) and exposures (relative) the agent chooses from.
    budget : float
        Total dose (Σ power × exposure) before the episode ends.
    max_steps : int
        Steps per episode (the horizon); the episode also ends when the budget is spent.
    bleach_dose : float
        Dose at which a region's fluorophores fall to 1/e.
    toxicity_exponent : float
        Phototoxicity per step = ``power**toxicity_exponent × exposure``.
    bleach_weight, toxicity_weight : float
        Weights of the costs in the reward.
    psf_sigma : float
        Gaussian PSF width in pixels.
    scan : {"raster", "agent"}
        ``"raster"``: the stage visits the tiles in turn (a tiled acquisition, ``max_steps / n`` passes)
        and the action is ``[0 = image | 1 = skip this tile, power index, exposure index]``; the
        observation lists the tile under the objective first. ``"agent"``: the agent also chooses the
        tile, ``[tile 0…n−1 | n = shutter closed, power index, exposure index]``.
    restore : {"none", "denoise"} or callable
        Restoration of each region's estimate before scoring (a callable maps an image and its known
        noise SD to the restored image).
    specimen : array, optional
        A fixed specimen in [0, 1] instead of random ones (held-out evaluation).
    seed : int, optional
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, shape: Sequence[int] = (64, 64), regions: Sequence[int] = (2, 2),
                 kinds: Sequence[str] = ("filaments", "puncta", "nuclei"), empty_fraction: float = 0.25,
                 level_range: Sequence[float] = (0.1, 1.0), brightness: float = 200.0,
                 background: float = 1.0, read_noise: float = 1.5, powers: Sequence[float] = (0.25, 0.5, 1.0, 2.0),
                 exposures: Sequence[float] = (0.5, 1.0, 2.0), budget: float = 24.0, max_steps: int = 12,
                 bleach_dose: float = 12.0, toxicity_exponent: float = 1.5, bleach_weight: float = 1.0,
                 toxicity_weight: float = 0.01, psf_sigma: float = 1.5, scan: str = "raster",
                 restore: str | Callable[[np.ndarray, np.ndarray], np.ndarray] = "none",
                 specimen: np.ndarray | None = None, seed: int | None = None, render_mode: str | None = None):
        super().__init__()
        # The settings this env was built with, to build more of it (vectorized training) or save them.
        self.settings = {k: v for k, v in locals().items() if k not in ("self", "__class__", "seed", "render_mode")}
        shape = tuple(int(s) for s in shape)
        regions = tuple(int(r) for r in regions)
        if len(shape) != 2 or len(regions) != 2 or any(r < 1 for r in regions):
            raise FluoreconError(f"shape {shape} and regions {regions} must be 2D with ≥ 1 region per axis")
        if any(s % r for s, r in zip(shape, regions, strict=True)) or any(s // r < 8 for s, r in zip(shape, regions,
                                                                                                    strict=True)):
            raise FluoreconError(f"the field {shape} must split into {regions} regions of ≥ 8 px each",
                                 hint="choose a shape divisible by the region grid")
        for name, v in (("budget", budget), ("brightness", brightness), ("bleach_dose", bleach_dose),
                        ("max_steps", max_steps)):
            if not np.isfinite(v) or v <= 0:
                raise FluoreconError(f"{name} must be > 0, got {v}", hint=f"give a positive {name}")
        if background < 0 or read_noise < 0 or psf_sigma <= 0:
            raise FluoreconError("background and read noise must be ≥ 0 and the PSF width > 0")
        if not powers or not exposures or min(powers) <= 0 or min(exposures) <= 0:
            raise FluoreconError("powers and exposures must be non-empty lists of positive numbers")
        if not 0 <= empty_fraction < 1:
            raise FluoreconError(f"empty_fraction must be in [0, 1), got {empty_fraction}")
        lo, hi = (float(v) for v in level_range)
        if not 0 < lo <= hi <= 1:
            raise FluoreconError(f"level_range must satisfy 0 < low ≤ high ≤ 1, got {tuple(level_range)}")
        if scan not in ("raster", "agent"):
            raise FluoreconError(f"scan must be 'raster' or 'agent', got {scan!r}")
        if isinstance(restore, str) and restore not in ("none", "denoise"):
            raise FluoreconError(f"restore must be 'none', 'denoise' or a callable, got {restore!r}")
        for k in kinds:
            if k not in phantoms.KINDS:
                raise FluoreconError(f"unknown phantom kind {k!r}", hint=f"use {', '.join(phantoms.KINDS)}")
        self.shape, self.grid = shape, regions
        self.n_regions = regions[0] * regions[1]
        self.region_shape = (shape[0] // regions[0], shape[1] // regions[1])
        self.kinds = tuple(kinds)
        self.empty_fraction, self.level_range = float(empty_fraction), (lo, hi)
        self.brightness, self.bg, self.read_noise = float(brightness), float(background), float(read_noise)
        self.powers, self.exposures = np.asarray(powers, float), np.asarray(exposures, float)
        self.budget, self.max_steps = float(budget), int(max_steps)
        self.bleach_dose, self.tox_exp = float(bleach_dose), float(toxicity_exponent)
        self.bleach_weight, self.toxicity_weight = float(bleach_weight), float(toxicity_weight)
        self.restore, self.scan = restore, scan
        self.render_mode = render_mode
        self._fixed = None if specimen is None else self._check_specimen(specimen)
        self.psf = gaussian_psf((int(6 * psf_sigma) | 1,) * 2, psf_sigma)
        # Last value of the first component = shutter closed for this step (no light, no cost, no information).
        first = 2 if scan == "raster" else self.n_regions + 1
        self.action_space = spaces.MultiDiscrete([first, len(self.powers), len(self.exposures)])
        n_obs = len(FEATURES) * self.n_regions + 2
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(n_obs,), dtype=np.float32)
        self._seed = seed
        self.reset(seed=seed)

    # ----------------------------------------------------------------------------------------- helpers
    def _check_specimen(self, s: np.ndarray) -> np.ndarray:
        s = np.asarray(s, np.float64)
        if s.shape != self.shape or not np.all(np.isfinite(s)) or s.min() < 0:
            raise FluoreconError(f"the specimen must be a finite, non-negative {self.shape} image")
        if float(s.max()) <= 0 or float(s.std()) == 0:
            raise FluoreconError("the specimen has no structure (constant image)",
                                 hint="give a specimen with fluorescent structures")
        return s / s.max()

    def _slices(self, r: int) -> tuple[slice, slice]:
        ry, rx = divmod(r, self.grid[1])
        hy, hx = self.region_shape
        return slice(ry * hy, (ry + 1) * hy), slice(rx * hx, (rx + 1) * hx)

    def _random_specimen(self, rng: np.random.Generator) -> np.ndarray:
        """One cell per region (random kind and labelling level), some regions empty."""
        lo, hi = self.level_range
        occupied = rng.random(self.n_regions) >= self.empty_fraction
        if not occupied.any():
            occupied[int(rng.integers(self.n_regions))] = True
        levels = np.exp(rng.uniform(np.log(lo), np.log(hi), self.n_regions)) * occupied
        truth = np.zeros(self.shape)
        for r in range(self.n_regions):
            kind = self.kinds[int(rng.integers(len(self.kinds)))]
            cell_seed = int(rng.integers(2**31 - 1))
            if levels[r] > 0:
                truth[self._slices(r)] = levels[r] * phantoms.phantom(kind, self.region_shape, cell_seed)
        return truth

    def _restore_region(self, r: int) -> None:
        """Restore region ``r``'s estimate into the cache (only the region just imaged changes)."""
        sl = self._slices(r)
        w = self._weight[sl]
        est = np.where(w > 0, self._sum[sl] / np.maximum(w, 1e-12), 0.0)
        if self.restore == "none" or w.max() <= 0:
            self._cache[sl] = est
        elif callable(self.restore):
            self._cache[sl] = self.restore(est, 1.0 / np.sqrt(np.maximum(w, 1e-12)))
        else:
            # Calibrated classical denoising (J-invariant), in photon units so the noise is Poisson-like.
            scale = float(np.mean(w))
            den, _ = denoise((est * scale).astype(np.float32), "YX", method="tv")
            self._cache[sl] = den / scale

    def _region_recovered(self, r: int) -> float:
        sl = self._slices(r)
        err = float(np.sum((self._cache[sl] - self._reference[sl]) ** 2))
        return max(0.0, 1.0 - err / self._energy[r])

    def _quality(self) -> float:
        """Mean recovered fraction over the regions holding a cell (the potential of the reward)."""
        return float(np.mean(self._q[self._cells]))

    def _observation(self) -> np.ndarray:
        feats = []
        for r in self._order():
            sl = self._slices(r)
            if self._photons[r] > 0:
                w = self._weight[sl]
                est = self._sum[sl] / np.maximum(w, 1e-12)
                noise_var = float(np.mean(1.0 / np.maximum(w, 1e-12)))
                signal = max(float(np.mean(est**2)) - noise_var, 0.0)   # noise-debiased signal energy
                # The expected recovered fraction of the unrestored estimate: 1 − noise energy / signal energy.
                recovered = max(0.0, 1.0 - noise_var / signal) if signal > 0 else 0.0
                feats += [1.0, self._c[r], FEATURE_SCALE * float(np.mean(est)), FEATURE_SCALE * np.sqrt(signal),
                          FEATURE_SCALE * np.sqrt(noise_var), recovered]
            else:
                feats += [0.0, self._c[r], 0.0, 0.0, 0.0, 0.0]
        feats += [max(self.budget - self._spent, 0.0) / self.budget, (self.max_steps - self._t) / self.max_steps]
        return np.asarray(feats, np.float32)

    def _order(self) -> list[int]:
        """Tiles in observation order: in raster scans the tile under the objective comes first."""
        if self.scan == "agent":
            return list(range(self.n_regions))
        return [(self._t + k) % self.n_regions for k in range(self.n_regions)]

    def _action_help(self) -> str:
        first = "0 = image the current tile | 1 = skip it" if self.scan == "raster" else \
            f"tile 0…{self.n_regions - 1} | {self.n_regions} = shutter closed"
        return f"[{first}, power index 0…{len(self.powers) - 1}, exposure index 0…{len(self.exposures) - 1}]"

    @property
    def current_tile(self) -> int | None:
        """The tile the next raster step images (``None`` when the agent chooses)."""
        return self._t % self.n_regions if self.scan == "raster" else None

    # ----------------------------------------------------------------------------------------- the API
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        rng = self.np_random
        if options and "specimen" in options:
            truth = self._check_specimen(options["specimen"])
        elif self._fixed is not None:
            truth = self._fixed
        else:
            truth = self._random_specimen(rng)
        self._truth = truth
        self._reference = np.asarray(fft_convolve(truth, self.psf), np.float64)   # what widefield can resolve
        self._energy = np.array([float(np.sum(self._reference[self._slices(r)] ** 2)) for r in range(self.n_regions)])
        content = np.array([float(np.sum(truth[self._slices(r)])) for r in range(self.n_regions)])
        # A tile holds a cell by its own fluorophores, not by light blurred in from its neighbours.
        self._cells = content >= STRUCTURE_FLOOR * content.max()
        self._content = content / content.sum()
        self._c = np.ones(self.n_regions)                 # remaining fluorophore fraction per region
        self._dose = np.zeros(self.n_regions)
        self._photons = np.zeros(self.n_regions)
        self._sum = np.zeros(self.shape)
        self._weight = np.zeros(self.shape)
        self._cache = np.zeros(self.shape)
        self._q = np.zeros(self.n_regions)
        self._spent, self._tox, self._t, self._bleached = 0.0, 0.0, 0, 0.0
        self._last_quality = self._quality()
        return self._observation(), self._info()

    def _info(self) -> dict[str, Any]:
        return {"photons": self._photons.copy(), "dose": self._dose.copy(), "fluorophores": self._c.copy(),
                "toxicity": self._tox, "spent": self._spent, "recovered": self._last_quality,
                "bleached": self._bleached, "quality_db": psnr_db(self._cache, self._reference),
                "cells": self._cells.copy()}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        a = np.asarray(action)
        if a.size != 3 or not np.all(np.isfinite(a.astype(float))) or np.any(a.astype(float) % 1):
            raise FluoreconError(f"action {action!r} is outside the action space {self.action_space}",
                                 hint=f"give three integers {self._action_help()}")
        a = a.astype(int).ravel()
        if not self.action_space.contains(a.astype(self.action_space.dtype)):
            raise FluoreconError(f"action {action!r} is outside the action space {self.action_space}",
                                 hint=f"give {self._action_help()}")
        region, pi, ei = (int(v) for v in a)
        if self.scan == "raster":
            region = self._t % self.n_regions if region == 0 else self.n_regions
        self._t += 1
        out_of_time = self._t >= self.max_steps
        power, expo = float(self.powers[pi]), float(self.exposures[ei])
        dose = min(power * expo, self.budget - self._spent)
        if region == self.n_regions or dose <= 0:                        # shutter closed: nothing happens
            return self._observation(), 0.0, out_of_time, False, self._info()
        expo_used = dose / power
        sl = self._slices(region)
        c0 = self._c[region]
        # Bleaching during the exposure: the mean remaining fraction over it scales the signal.
        c1 = c0 * np.exp(-dose / self.bleach_dose)
        c_mean = (c0 - c1) * self.bleach_dose / dose
        lam = self.brightness * dose * c_mean
        expected = lam * self._reference[sl] + self.bg * expo_used
        rng = self.np_random
        counts = rng.poisson(np.clip(expected, 0, None)) + rng.normal(0, self.read_noise, expected.shape)
        # The microscope knows its dose and the bleaching it caused: an unbiased estimate of the reference.
        est = (counts - self.bg * expo_used) / lam
        w = lam**2 / np.maximum(expected + self.read_noise**2, 1e-6)       # inverse variance of est
        self._sum[sl] += w * est
        self._weight[sl] += w
        self._photons[region] += float(np.sum(np.clip(expected, 0, None)))
        self._c[region] = c1
        self._dose[region] += dose
        self._spent += dose
        tox = power**self.tox_exp * expo_used
        self._tox += tox
        self._restore_region(region)
        self._q[region] = self._region_recovered(region)
        quality = self._quality()
        lost = self._content[region] * (c0 - c1)          # fraction of the specimen's fluorophores destroyed
        self._bleached += lost
        reward = quality - self._last_quality - self.bleach_weight * lost - self.toxicity_weight * tox
        self._last_quality = quality
        # The horizon is part of the state (remaining steps are observed): its end is a true terminal.
        terminated = self._spent >= self.budget - 1e-9 or out_of_time
        return self._observation(), float(reward), bool(terminated), False, self._info()

    def render(self) -> np.ndarray:
        """Truth | current (restored) estimate | dose map, as an RGB array in [0, 255]."""
        est = self._cache
        dose = np.zeros(self.shape)
        for r in range(self.n_regions):
            dose[self._slices(r)] = self._dose[r]
        norm = [self._reference / max(self._reference.max(), 1e-9),
                np.clip(est / max(self._reference.max(), 1e-9), 0, 1), dose / max(dose.max(), 1e-9)]
        row = np.concatenate(norm, axis=1)
        return (np.stack([row] * 3, axis=-1) * 255).astype(np.uint8)

    @property
    def truth(self) -> np.ndarray:
        """The hidden specimen (for evaluation only; agents must not read it)."""
        return self._truth

    @property
    def reference(self) -> np.ndarray:
        """The hidden specimen seen through the PSF, the target of the estimate (evaluation only)."""
        return self._reference

    def estimate(self) -> np.ndarray:
        """The current (restored) estimate of the blurred specimen."""
        return self._cache.copy()


def make_vec_env(n: int, seed: int = 0, **kwargs: Any) -> gym.vector.SyncVectorEnv:
    """``n`` environments stepping together (seeds ``seed … seed + n − 1``).

    Examples
    --------
    >>> venv = make_vec_env(2, seed=0, shape=(32, 32))
    >>> venv.reset(seed=0)[0].shape
    (2, 26)
    """
    return gym.vector.SyncVectorEnv([lambda i=i: SmartMicroscopeEnv(seed=seed + i, **kwargs) for i in range(n)])
