"""A simulated microscope that an agent operates: a gymnasium environment over fluorecon's forward models.

The specimen (a phantom of the physics layer, hidden from the agent) is divided into regions. At each
step the agent chooses a region to image, an excitation power and an exposure, or to stop. The
acquisition goes through the forward model (PSF blur, fluorophore brightness × dose, background,
Poisson–Gaussian camera). Imaging costs: the fluorophores of the imaged region **bleach**
(``c ← c·exp(−dose / bleach_dose)``, dose = power × exposure) and the specimen accumulates
**phototoxicity** (``power^toxicity_exponent × exposure`` per step: high irradiance hurts more than the
same dose spread over time). The photon budget (total dose) is finite.

The microscope keeps, per region, the photon-weighted estimate of the (blurred) specimen, corrected for
the bleaching it knows it caused; with ``restore="denoise"`` each estimate is restored by
:func:`fluorecon.tasks.denoise.denoise` (calibrated, classical) — the closed loop of the review, where
restoration changes what acquisition should be.

Reward per step: the gain in image quality of the whole field (PSNR of the restored estimate against the
blurred truth, in dB / 10), minus ``bleach_weight`` × the fraction of the field's fluorophores destroyed
by this acquisition, minus ``toxicity_weight`` × the phototoxicity it added.

Observation (a flat vector, so that standard agents apply): per region the log photons collected, the
dose received relative to ``bleach_dose``, the estimated mean intensity and its relative noise; then
the remaining budget and the elapsed fraction of the episode. Images are in ``info`` and ``render()``.

Examples
--------
>>> env = SmartMicroscopeEnv(shape=(32, 32), regions=(2, 2), seed=0)
>>> obs, info = env.reset(seed=0)
>>> obs.shape == env.observation_space.shape
True
>>> obs, reward, terminated, truncated, info = env.step(np.array([0, 2, 1]))
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

__all__ = ["SmartMicroscopeEnv", "make_vec_env", "psnr_db"]


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
        Phantom kinds drawn for the hidden specimen (``physics.phantoms.KINDS``).
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
    bleach_dose : float
        Dose at which a region's fluorophores fall to 1/e.
    toxicity_exponent : float
        Phototoxicity per step = ``power**toxicity_exponent × exposure``.
    bleach_weight, toxicity_weight : float
        Weights of the costs in the reward.
    psf_sigma : float
        Gaussian PSF width in pixels.
    restore : {"none", "denoise"} or callable
        Restoration of each region's estimate before scoring (a callable maps an image and its known
        noise SD to the restored image).
    specimen : array, optional
        A fixed specimen in [0, 1] instead of random phantoms (held-out evaluation).
    seed : int, optional
    """

    metadata = {"render_modes": ["rgb_array"]}

    def __init__(self, shape: Sequence[int] = (64, 64), regions: Sequence[int] = (2, 2),
                 kinds: Sequence[str] = ("filaments", "puncta", "nuclei"), brightness: float = 20.0,
                 background: float = 1.0, read_noise: float = 1.5, powers: Sequence[float] = (0.25, 0.5, 1.0, 2.0),
                 exposures: Sequence[float] = (0.5, 1.0, 2.0), budget: float = 24.0, max_steps: int = 24,
                 bleach_dose: float = 12.0, toxicity_exponent: float = 1.5, bleach_weight: float = 1.0,
                 toxicity_weight: float = 0.01, psf_sigma: float = 1.5,
                 restore: str | Callable[[np.ndarray, np.ndarray], np.ndarray] = "none",
                 specimen: np.ndarray | None = None, seed: int | None = None, render_mode: str | None = None):
        super().__init__()
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
        if isinstance(restore, str) and restore not in ("none", "denoise"):
            raise FluoreconError(f"restore must be 'none', 'denoise' or a callable, got {restore!r}")
        for k in kinds:
            if k not in phantoms.KINDS:
                raise FluoreconError(f"unknown phantom kind {k!r}", hint=f"use {', '.join(phantoms.KINDS)}")
        self.shape, self.grid = shape, regions
        self.n_regions = regions[0] * regions[1]
        self.kinds = tuple(kinds)
        self.brightness, self.bg, self.read_noise = float(brightness), float(background), float(read_noise)
        self.powers, self.exposures = np.asarray(powers, float), np.asarray(exposures, float)
        self.budget, self.max_steps = float(budget), int(max_steps)
        self.bleach_dose, self.tox_exp = float(bleach_dose), float(toxicity_exponent)
        self.bleach_weight, self.toxicity_weight = float(bleach_weight), float(toxicity_weight)
        self.restore = restore
        self.render_mode = render_mode
        self._fixed = None if specimen is None else self._check_specimen(specimen)
        self.psf = gaussian_psf((int(6 * psf_sigma) | 1,) * 2, psf_sigma)
        self.action_space = spaces.MultiDiscrete([self.n_regions + 1, len(self.powers), len(self.exposures)])
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(4 * self.n_regions + 2,), dtype=np.float32)
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
        hy, hx = self.shape[0] // self.grid[0], self.shape[1] // self.grid[1]
        return slice(ry * hy, (ry + 1) * hy), slice(rx * hx, (rx + 1) * hx)

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

    def _restored(self) -> np.ndarray:
        return self._cache.copy()

    def _quality(self) -> float:
        return psnr_db(self._restored(), self._reference)

    def _observation(self) -> np.ndarray:
        feats = []
        for r in range(self.n_regions):
            sl = self._slices(r)
            ph = float(self._photons[r])
            est_mean = float(np.mean(self._sum[sl] / np.maximum(self._weight[sl], 1e-12))) if ph > 0 else 0.0
            rel_noise = 1.0 / np.sqrt(ph / max(self._sum[sl].size, 1) + 1.0)
            feats += [np.log1p(ph) / 10.0, self._dose[r] / self.bleach_dose, est_mean, rel_noise]
        feats += [max(self.budget - self._spent, 0.0) / self.budget, self._t / self.max_steps]
        return np.asarray(feats, np.float32)

    # ----------------------------------------------------------------------------------------- the API
    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        rng = self.np_random
        if options and "specimen" in options:
            truth = self._check_specimen(options["specimen"])
        elif self._fixed is not None:
            truth = self._fixed
        else:
            kind = self.kinds[int(rng.integers(len(self.kinds)))]
            truth = np.asarray(phantoms.phantom(kind, self.shape, int(rng.integers(2**31 - 1))), np.float64)
            truth = truth / max(float(truth.max()), 1e-6)
        self._truth = truth
        self._reference = np.asarray(fft_convolve(truth, self.psf), np.float64)   # what widefield can resolve
        self._c = np.ones(self.n_regions)                 # remaining fluorophore fraction per region
        self._dose = np.zeros(self.n_regions)
        self._photons = np.zeros(self.n_regions)
        self._sum = np.zeros(self.shape)
        self._weight = np.zeros(self.shape)
        self._cache = np.zeros(self.shape)
        self._spent, self._tox, self._t = 0.0, 0.0, 0
        self._last_quality = self._quality()
        return self._observation(), self._info()

    def _info(self) -> dict[str, Any]:
        return {"photons": self._photons.copy(), "dose": self._dose.copy(), "fluorophores": self._c.copy(),
                "toxicity": self._tox, "spent": self._spent, "quality_db": self._last_quality}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict]:
        a = np.asarray(action).astype(int).ravel()
        if a.shape != (3,) or not self.action_space.contains(a.astype(self.action_space.dtype)):
            raise FluoreconError(f"action {action!r} is outside the action space {self.action_space}",
                                 hint=f"give [region 0…{self.n_regions} (= stop), power index, exposure index]")
        region, pi, ei = (int(v) for v in a)
        self._t += 1
        if region == self.n_regions:                                     # stop: keep what we have
            return self._observation(), 0.0, True, False, self._info()
        power, expo = float(self.powers[pi]), float(self.exposures[ei])
        dose = power * expo
        dose = min(dose, self.budget - self._spent)
        if dose <= 0:
            return self._observation(), 0.0, True, False, self._info()
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
        quality = self._quality()
        lost = (c0 - c1) / self.n_regions
        reward = (quality - self._last_quality) / 10.0 - self.bleach_weight * lost - self.toxicity_weight * tox
        self._last_quality = quality
        terminated = self._spent >= self.budget - 1e-9
        truncated = self._t >= self.max_steps and not terminated
        return self._observation(), float(reward), bool(terminated), bool(truncated), self._info()

    def render(self) -> np.ndarray:
        """Truth | current (restored) estimate | dose map, as an RGB array in [0, 255]."""
        est = self._restored()
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

    def estimate(self) -> np.ndarray:
        """The current (restored) estimate of the blurred specimen."""
        return self._restored()


def make_vec_env(n: int, seed: int = 0, **kwargs: Any) -> gym.vector.SyncVectorEnv:
    """``n`` environments stepping together (seeds ``seed … seed + n − 1``).

    Examples
    --------
    >>> venv = make_vec_env(2, seed=0, shape=(32, 32))
    >>> venv.reset(seed=0)[0].shape
    (2, 18)
    """
    return gym.vector.SyncVectorEnv([lambda i=i: SmartMicroscopeEnv(seed=seed + i, **kwargs) for i in range(n)])
