"""Time to quality at the issue's size: auto-stopped accelerated RL vs scikit-image RL at its oracle-best count.

One case per call (64×256×256 by default, 17³ Gaussian PSF, Poisson noise; truth seed 11, noise seed 1 — the
cases of ``deconvolve.py --only ttq`` at the volume of the speed benchmark). Times are **CPU time**
(``time.process_time``, one thread for both), so a busy machine does not change them. scikit-image's NRMSE
per iteration is read from our ``padding="skimage"`` iterates (identical to scikit-image's to ≤ 1e-5,
``deconvolve.py --only speed``); its time at iteration k is k × its measured per-iteration CPU time.

Usage::

    PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/deconvolve_ttq.py filaments 300 \
        --shape 64,256,256 --out benchmarks/deconvolve_ttq.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from skimage.restoration import richardson_lucy as sk_rl

from fluorecon.classical.deconvolve import richardson_lucy
from fluorecon.evaluate.metrics import nrmse

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deconvolve import ttq_scene  # the scene of `deconvolve.py --only ttq`


def case(kind: str, photons: float, shape: tuple[int, ...], sigma: tuple[float, ...] = (2.5, 1.6, 1.6)) -> dict:
    """Measure one case; see the module docstring."""
    truth, psf, raw, errs = ttq_scene(kind, photons, sigma, shape, psf_size=17)
    k_or = int(np.argmin(errs[4:])) + 5
    t0 = time.process_time()
    sk_rl(raw, psf, num_iter=5, clip=False)
    per_it = (time.process_time() - t0) / 5
    acc: list[float] = []
    richardson_lucy(raw, psf, 40, accelerate=True, callback=lambda k, x: acc.append(nrmse(x / photons, truth)))
    t0 = time.process_time()
    auto, info = richardson_lucy(raw, psf, 80, accelerate=True, stop="auto", return_info=True)
    t_auto = time.process_time() - t0
    e_or = errs[k_or - 1]
    return {"structure": kind, "photons": photons, "shape": list(shape), "raw_nrmse": nrmse(raw / photons, truth),
            "skimage_oracle_iteration": k_or, "skimage_oracle_nrmse": e_or, "skimage_cpu_s_per_iteration": per_it,
            "skimage_cpu_s_to_oracle": k_or * per_it, "auto_accel_nrmse": nrmse(auto / photons, truth),
            "auto_accel_cpu_s": t_auto, "auto_iterations": info["iterations"],
            "stop_reason": info.get("stop_reason"), "time_ratio": t_auto / (k_or * per_it),
            "accel_iterations_to_skimage_best": next((k + 1 for k, e in enumerate(acc) if e <= 1.05 * e_or), None),
            "load_avg": os.getloadavg()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kind", help="phantom: filaments, nuclei, puncta, ...")
    ap.add_argument("photons", type=float, help="photons at the brightest truth voxel")
    ap.add_argument("--shape", default="64,256,256")
    ap.add_argument("--out", type=Path, default=None, help="JSON file to add the case to")
    args = ap.parse_args()
    torch.set_num_threads(1)
    res = case(args.kind, args.photons, tuple(int(s) for s in args.shape.split(",")))
    print(json.dumps(res))
    if args.out is not None:
        old = json.loads(args.out.read_text()) if args.out.exists() else {"cases": []}
        old["cases"] = [c for c in old["cases"] if (c["structure"], c["photons"], c["shape"]) !=
                        (res["structure"], res["photons"], res["shape"])] + [res]
        args.out.write_text(json.dumps(old, indent=1) + "\n")


if __name__ == "__main__":
    main()
