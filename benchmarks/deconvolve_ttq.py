"""Time to quality at the issue's size: auto-stopped accelerated RL vs scikit-image RL at its oracle-best count.

One case per call (64×256×256 by default, 17³ Gaussian PSF, Poisson noise; truth seed 11, noise seed 1 — the
cases of ``deconvolve.py --only ttq`` at the volume of the speed benchmark). Times are **CPU time**
(``time.process_time``, one thread for both), so a busy machine does not change them. scikit-image's NRMSE
per iteration is read from our ``padding="skimage"`` iterates (identical to scikit-image's to ≤ 1e-5,
``deconvolve.py --only speed``); its time at iteration k is k × its measured per-iteration CPU time.

Usage::

    PYTHONPATH=src OMP_NUM_THREADS=1 .venv/bin/python benchmarks/deconvolve_ttq.py filaments 300 \
        --shape 64,256,256 --out benchmarks/deconvolve_ttq.json

``--seeds`` draws the Poisson noise (default ``1``: every reported case); with several seeds the run
reports each seed's case, the mean with a 95 % t-interval, and the paired difference auto − skimage
oracle (NRMSE) per seed. The output carries a ``provenance`` record (command, commit, hashes of the
simulated truth and recordings, seeds, parameters, machine, load). Time-to-quality is a timing
benchmark: no failure gallery (the failure cases of the same scenes are in ``deconvolve.py --only ttq``).
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
from _provenance import finish, provenance
from _stats import mean_ci
from deconvolve import ttq_scene  # the scene of `deconvolve.py --only ttq`


def case(kind: str, photons: float, shape: tuple[int, ...], sigma: tuple[float, ...] = (2.5, 1.6, 1.6),
         noise_seed: int = 1, data: dict | None = None) -> dict:
    """Measure one case; see the module docstring. ``data``, if given, receives the truth and recording."""
    truth, psf, raw, errs = ttq_scene(kind, photons, sigma, shape, psf_size=17, noise_seed=noise_seed)
    if data is not None:
        data[f"truth_{kind}"] = truth
        data[f"recording_{kind}_{photons:g}ph_seed{noise_seed}"] = raw
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
    return {"structure": kind, "photons": photons, "shape": list(shape), "noise_seed": noise_seed, "raw_nrmse": nrmse(raw / photons, truth),
            "skimage_oracle_iteration": k_or, "skimage_oracle_nrmse": e_or, "skimage_cpu_s_per_iteration": per_it,
            "skimage_cpu_s_to_oracle": k_or * per_it, "auto_accel_nrmse": nrmse(auto / photons, truth),
            "auto_accel_cpu_s": t_auto, "auto_iterations": info["iterations"],
            "stop_reason": info.get("stop_reason"), "time_ratio": t_auto / (k_or * per_it),
            "accel_iterations_to_skimage_best": next((k + 1 for k, e in enumerate(acc) if e <= 1.05 * e_or), None),
            "load_avg": os.getloadavg()}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("kind", help="phantom: filaments, nuclei, puncta, ...")
    ap.add_argument("photons", type=float, help="photons at the brightest truth voxel")
    ap.add_argument("--shape", default="64,256,256")
    ap.add_argument("--seeds", type=int, nargs="+", default=None,
                    help="Poisson noise seeds (default 1, the seed of every reported case)")
    ap.add_argument("--seed", type=int, default=None, help="alias of --seeds with one seed")
    ap.add_argument("--out", type=Path, default=None, help="JSON file to add the case to")
    args = ap.parse_args(argv)
    if args.seeds is not None and args.seed is not None:
        ap.error("give --seeds or --seed, not both")
    seeds = args.seeds if args.seeds is not None else [1 if args.seed is None else args.seed]
    if len(set(seeds)) != len(seeds):
        ap.error("--seeds must be distinct")
    torch.set_num_threads(1)
    t0 = time.time()
    shape = tuple(int(s) for s in args.shape.split(","))
    params = {**{k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}, "seeds": seeds,
              "truth_seed": 11, "psf_size": 17, "psf_sigma": [2.5, 1.6, 1.6], "torch_threads": 1}
    command = [__file__, *(sys.argv[1:] if argv is None else argv)]
    start = provenance(seeds=seeds, params=params, argv=command)  # date and load before the timings
    data: dict = {}
    cases = [case(args.kind, args.photons, shape, noise_seed=s, data=data) for s in seeds]
    prov = provenance(seeds=seeds, data=data, params=params, argv=command)
    prov.update(date_utc=start["date_utc"], load_average_start=start["load_average_start"])
    finish(prov, t0)
    res = {"provenance": prov, "cases": cases,
           "summary": {k: mean_ci([c[k] for c in cases]) for k in
                       ("auto_accel_nrmse", "skimage_oracle_nrmse", "time_ratio", "auto_accel_cpu_s")}}
    res["summary"]["nrmse_auto_minus_skimage_oracle_paired"] = mean_ci(
        [c["auto_accel_nrmse"] - c["skimage_oracle_nrmse"] for c in cases])
    print(json.dumps(res, default=float))
    if args.out is not None:
        old = json.loads(args.out.read_text()) if args.out.exists() else {"cases": []}
        new = {(c["structure"], c["photons"], tuple(c["shape"]), c["noise_seed"]) for c in cases}
        old["cases"] = [c for c in old["cases"] if (c.get("structure", c.get("kind")), c["photons"], tuple(c["shape"]),
                                                      c.get("noise_seed", 1)) not in new] + cases
        old["provenance"] = prov  # the latest run; earlier runs keep theirs under "runs"
        old.setdefault("runs", []).append({"provenance": prov, "summary": res["summary"]})
        args.out.write_text(json.dumps(old, indent=1, default=float) + "\n")


if __name__ == "__main__":
    main()
