"""Acquisitions a user or the demo asks for: a phantom imaged through a PSF and a camera.

The CLI's ``fluorecon simulate``, ``fluorecon demo`` and the napari sample data all call these
functions; no simulation lives in a front end.

Examples
--------
>>> acq = simulate_acquisition(shape=(32, 32), voxel=(0.1, 0.1), phantom="puncta", seed=1)
>>> acq["observed"].shape, acq["params"]["axes"]
((32, 32), 'YX')
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from fluorecon.errors import FluoreconError
from fluorecon.physics import phantoms
from fluorecon.physics import psf as psfmod
from fluorecon.physics.camera import Camera
from fluorecon.physics.forward import Forward
from fluorecon.validation import check_psf

__all__ = ["DEFAULT_SCENE", "default_acquisition", "json_default", "psf_support", "simulate_acquisition"]

#: The demo's default acquisition: every parameter of the simulation (µm, photons, ADU).
DEFAULT_SCENE: dict[str, Any] = {
    "shape": (256, 256),
    "quick_shape": (128, 128),
    "voxel_size": (0.065, 0.065),  # a 6.5 µm camera pixel behind a 100x objective
    "na": 1.3,
    "wavelength": 0.52,
    "refractive_index": 1.518,
    "psf_size": 33,
    "photons": 40.0,  # expected photons at the brightest structures
    "background": 4.0,  # photons per pixel (out-of-focus light, autofluorescence)
    "read_noise": 1.6,  # e- rms (sCMOS)
    "gain": 2.0,  # ADU / e-
    "offset": 100.0,  # ADU
    "bit_depth": 16,
    "weights": {"filaments": 0.6, "puncta": 1.0, "nuclei": 0.25},
}


def psf_support(shape: Sequence[int], voxel: Sequence[float], wavelength: float, na: float,
                refractive_index: float, widefield: bool) -> tuple[int, ...]:
    """PSF shape that holds the blur: the full depth in Z; laterally ±3 Airy radii and, for a 3D
    widefield PSF, the out-of-focus cone (radius |z|·tan θ, sin θ = NA/n) — cutting it would remove
    the haze that makes widefield stacks what they are. Capped at the image size (odd).

    Examples
    --------
    >>> psf_support((16, 64, 64), (0.3, 0.1, 0.1), 0.52, 1.4, 1.518, widefield=True)
    (15, 63, 63)
    """
    airy = 0.61 * wavelength / na
    reach = 3 * airy
    if len(shape) == 3 and widefield:
        theta = math.asin(min(na / refractive_index, 0.999))
        reach = max(reach, 0.5 * shape[0] * voxel[0] * math.tan(theta))
    out = []
    for i, (n, v) in enumerate(zip(shape, voxel, strict=True)):
        cap = n if n % 2 else n - 1
        if len(shape) == 3 and i == 0:
            size = cap
        else:
            half = max(7, math.ceil(reach / v))
            size = min(2 * half + 1, cap)
        out.append(max(size, 1))
    return tuple(out)


def json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def simulate_acquisition(*, shape: Sequence[int], voxel: Sequence[float], phantom: str = "filaments",
                         psf_file: str | Path | None = None, psf_model: str | None = None, na: float = 1.4,
                         wavelength: float = 0.52, refractive_index: float = 1.518, photons: float = 100.0,
                         read_noise: float = 1.5, gain: float = 1.0, offset: float = 100.0,
                         em_gain: float | None = None, bit_depth: int | None = 16, background: float = 0.0,
                         seed: int = 0) -> dict[str, Any]:
    """Simulate a recording of a phantom in memory: arrays and the full parameter record.

    Returns ``{"truth", "observed", "psf", "params"}``; ``params`` holds every parameter, the
    derived seeds and the forward model (JSON), so that the same call gives byte-identical arrays.
    Read noise in electrons, gain in ADU per electron, offset in ADU, wavelength in µm.
    """
    if na <= 0 or refractive_index <= 0 or wavelength <= 0:
        raise FluoreconError(f"optical parameters must be positive (na={na}, wavelength={wavelength}, "
                             f"refractive index={refractive_index})",
                             hint="e.g. --na 1.4 --wavelength 0.52 --refractive-index 1.518")
    if na >= refractive_index:
        raise FluoreconError(f"NA {na} must be smaller than the refractive index {refractive_index}",
                             hint="an objective's NA cannot exceed the immersion index (oil ≈1.518, water 1.33, air 1.0)")
    if photons < 0:
        raise FluoreconError(f"--photons must be ≥ 0, got {photons}",
                             hint="the expected photon count per pixel at signal 1.0, e.g. 100")
    if read_noise < 0 or gain <= 0 or background < 0 or (em_gain is not None and em_gain < 1):
        raise FluoreconError(f"camera parameters out of range (read noise {read_noise}, gain {gain}, background "
                             f"{background}, EM gain {em_gain})",
                             hint="read noise ≥ 0 e-, gain > 0 ADU/e-, background ≥ 0 photons, EM gain ≥ 1 (or omit it)")
    if bit_depth is not None and not 0 <= bit_depth <= 32:
        raise FluoreconError(f"--bit-depth {bit_depth} is out of range", hint="e.g. 12 or 16, or 0 for float output")
    shape = tuple(int(s) for s in shape)
    voxel = tuple(float(v) for v in voxel)
    ndim = len(shape)
    if psf_file is not None:
        psf = psfmod.load_psf(psf_file)
        psf = check_psf(psf, ndim, shape, name=f"PSF {psf_file}")
        psf_record: dict[str, Any] = {"kind": "file", "path": str(psf_file), "shape": list(psf.shape)}
    else:
        model = getattr(psf_model, "value", psf_model) or "widefield"
        pshape = psf_support(shape, voxel, wavelength, na, refractive_index, widefield=model != "gaussian")
        if model == "gaussian":
            psf = psfmod.gaussian_psf_from_optics(pshape, voxel, na, wavelength, refractive_index)
            psf_record = {"kind": "gaussian_optics"}
        else:
            wf = "gibson-lanni" if model == "gibson-lanni" else "born-wolf"
            psf = psfmod.widefield_psf(pshape, voxel, na, wavelength, refractive_index, model=wf)
            psf_record = {"kind": "widefield", "model": wf}
        psf_record.update(shape=list(pshape), voxel_size=list(voxel), na=na, wavelength=wavelength,
                          refractive_index=refractive_index)
        psf = check_psf(psf, ndim, shape)
    if phantom not in phantoms.KINDS:
        raise FluoreconError(f"unknown phantom {phantom!r}", hint=f"use one of {', '.join(phantoms.KINDS)}")
    ss = np.random.SeedSequence(seed)
    phantom_seed, noise_seed = (int(s.generate_state(1)[0]) for s in ss.spawn(2))
    truth = np.asarray(phantoms.phantom(phantom, shape, phantom_seed), dtype=np.float32)
    cam_kw = {"photons": photons, "gain": gain, "offset": offset, "read_noise": read_noise,
              "em_gain": em_gain, "bit_depth": bit_depth or None, "background": background}
    camera = Camera(**cam_kw)
    fwd = Forward(psf=psf, camera=camera)
    observed, truth_ref = fwd.simulate(truth, seed=noise_seed)
    observed = np.asarray(observed)
    truth_ref = np.asarray(truth_ref, dtype=np.float32)
    if bit_depth:
        dtype = np.uint8 if bit_depth <= 8 else np.uint16 if bit_depth <= 16 else np.float32
        if dtype is not np.float32:
            observed = np.clip(np.rint(observed), 0, np.iinfo(dtype).max).astype(dtype)
    else:
        observed = observed.astype(np.float32)
    params: dict[str, Any] = {
        "command": "simulate",
        "seed": seed,
        "seeds": {"phantom": phantom_seed, "noise": noise_seed, "derivation": "numpy SeedSequence(seed).spawn(2)"},
        "phantom": phantom,
        "shape": list(shape),
        "axes": "ZYX" if ndim == 3 else "YX",
        "voxel_size_um": list(voxel),
        "psf": psf_record,
        "camera": camera.model_dump() if hasattr(camera, "model_dump") else cam_kw,
        "observed_dtype": str(observed.dtype),
        "files": {"truth": "truth.tif", "observed": "observed.tif", "psf": "psf.tif"},
    }
    fd = dict(fwd.to_dict())
    if isinstance(fd.get("psf"), dict) and "values" in fd["psf"]:
        # The PSF array lives in psf.tif; Forward.from_dict needs it put back as "values".
        fd["psf"] = {k: v for k, v in fd["psf"].items() if k != "values"} | {"file": "psf.tif"}
    params["forward"] = json.loads(json.dumps(fd, default=json_default))
    return {"truth": truth_ref, "observed": observed, "psf": psf.astype(np.float32), "params": params}


def default_acquisition(*, quick: bool = False, seed: int = 0, shape: Sequence[int] | None = None) -> dict[str, Any]:
    """Simulate the demo's acquisition (filaments + puncta + nuclei, widefield, sCMOS).

    Returns a dict with ``observed`` (ADU, float32), ``truth`` (the specimen, [0, 1]), ``reference``
    (the noiseless blurred image in ADU), ``psf``, ``axes``, ``voxel_size``, ``forward`` (the
    ``Forward`` object) and ``params`` (everything needed to re-simulate).

    Examples
    --------
    >>> acq = default_acquisition(seed=0, shape=(48, 48))
    >>> acq["observed"].shape, acq["axes"]
    ((48, 48), 'YX')
    """
    sc = DEFAULT_SCENE
    shape = tuple(shape or (sc["quick_shape"] if quick else sc["shape"]))
    if len(shape) == 2:
        vs: tuple[float, ...] = tuple(sc["voxel_size"])
        psf_shape: tuple[int, ...] = (sc["psf_size"], sc["psf_size"])
    else:
        vs = (0.2, *sc["voxel_size"])
        psf_shape = (min(shape[0] * 2 - 1, 31) | 1, sc["psf_size"], sc["psf_size"])
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, 2**31 - 1, size=4)
    truth = np.zeros(shape, np.float32)
    for (kind, w), s in zip(sc["weights"].items(), seeds[:3], strict=True):
        truth += w * np.asarray(getattr(phantoms, kind)(shape, seed=int(s)), dtype=np.float32)
    truth = np.clip(truth / max(float(truth.max()), 1e-6), 0, 1).astype(np.float32)
    psf = psfmod.widefield_psf(psf_shape, vs, na=sc["na"], wavelength=sc["wavelength"],
                               refractive_index=sc["refractive_index"])
    cam = Camera(photons=sc["photons"], gain=sc["gain"], offset=sc["offset"], read_noise=sc["read_noise"],
                 background=sc["background"], bit_depth=sc["bit_depth"])
    fw = Forward(psf=psf, camera=cam)
    observed, _ = fw.simulate(truth, seed=int(seeds[3]))
    params = {"scene": "filaments + puncta + nuclei", "shape": list(shape), "seed": seed,
              **{k: v for k, v in sc.items() if k not in ("shape", "quick_shape")}}
    return {"observed": np.asarray(observed, np.float32), "truth": truth,
            "reference": np.asarray(fw.expected(truth), np.float32),
            "psf": np.asarray(psf, np.float32), "axes": "YX" if len(shape) == 2 else "ZYX", "voxel_size": vs,
            "forward": fw, "params": params}
