"""SIM speed: a 512² raw 2D-SIM set (3 angles × 3 phases), estimation + reconstruction, ours vs pyfairsim.

Run: ``OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sim_speed.py [--size 512] [--seeds 0 1 2]``; writes
``benchmarks/sim_speed.json`` (``--out`` elsewhere) with a ``provenance`` record (command, code hash, the
simulated truth and raw frames of every seed by hash, seeds, parameters, machine, load) and a ``summary``
(per-seed values, mean and 95 % t-interval of the CPU ratio and of the paired PSNR difference ours − peer). Each method runs in its own process on the same raw frames, with one
thread (``OMP_NUM_THREADS=1`` and our FFT workers = 1), and reports its process CPU time
(``time.process_time``, robust to other jobs) and wall time; imports and file I/O are excluded. PSNR is
against the truth after the same least-squares gain/offset for both. Scenes: filaments, k = 0.85 of the
OTF cut-off, modulation 0.8, 100 photons, phase jitter 0.05 rad (as ``benchmarks/sim.py``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from fluorecon.evaluate.metrics import psnr
from fluorecon.physics import phantoms
from fluorecon.physics.camera import Camera
from fluorecon.physics.sim import SIMPattern, simulate_sim

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _provenance import finish, provenance  # noqa: E402
from _stats import mean_ci  # noqa: E402

DX, NA, LAM = 0.065, 1.3, 0.52
KC = 2 * NA / LAM * DX
_OURS = """
import sys, time, numpy as np
from fluorecon.classical import sim as cs
cs._WORKERS = 1
d = np.load(sys.argv[1]); raw = d["raw"].astype(np.float64)
c0, t0 = time.process_time(), time.perf_counter()
est = cs.estimate_parameters(raw, 3, 3, pixel_size={dx}, na={na}, wavelength={lam})
rec, _ = cs.reconstruct_sim(raw, est, pixel_size={dx}, na={na}, wavelength={lam}, wiener=0.05)
np.savez(sys.argv[2], image=rec, seconds=time.perf_counter() - t0, cpu_seconds=time.process_time() - c0)
"""


def _affine_psnr(a: np.ndarray, truth: np.ndarray) -> float:
    design = np.stack([a.ravel(), np.ones(a.size)], 1)
    c = np.linalg.lstsq(design, truth.ravel(), rcond=None)[0]
    return float(psnr(a * c[0] + c[1], truth, 1.0))


def _run(cmd: list[str], out: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    if r.returncode != 0:
        return {"error": r.stderr[-500:]}
    res = np.load(out)
    return {"image": res["image"], "seconds": float(res["seconds"]), "cpu_seconds": float(res["cpu_seconds"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=512, help="raw frame size (px)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--pyfairsim", default="/tmp/venv-fairsim/bin/python")
    ap.add_argument("--out", type=Path, default=HERE / "sim_speed.json")
    args = ap.parse_args()
    t_wall = time.time()
    data: dict = {}
    out: dict = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": platform.platform(),
                 "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                 "load_before": list(os.getloadavg()), "size": args.size, "rows": []}
    for seed in args.seeds:
        truth = np.asarray(phantoms.phantom("filaments", (2 * args.size, 2 * args.size), seed=seed), np.float64)
        rng = np.random.default_rng([seed, 100, 80, 0])
        pat = SIMPattern.regular(3, 3, k=0.85 * KC, modulation=0.8, angle0=float(rng.uniform(0, np.pi)),
                                 phase0=float(rng.uniform(0, 6.28)))
        raw, _ = simulate_sim(truth, pat, pixel_size=DX, na=NA, wavelength=LAM, seed=rng, phase_jitter=0.05,
                              camera=Camera(photons=100.0, gain=1.0, offset=0.0, read_noise=1.0))
        data[f"truth_seed{seed}"], data[f"raw_seed{seed}"] = truth, raw
        row: dict = {"seed": seed, "load": list(os.getloadavg())}
        with tempfile.TemporaryDirectory() as d:
            inp = Path(d) / "in.npz"
            np.savez(inp, raw=raw, pixel_nm=DX * 1000, na=NA, wavelength_nm=LAM * 1000, angles=3, phases=3, wiener=0.05)
            script = Path(d) / "ours.py"
            script.write_text(_OURS.format(dx=DX, na=NA, lam=LAM))
            runs = {"ours": [sys.executable, str(script), str(inp), str(Path(d) / "ours.npz")]}
            if args.pyfairsim and Path(args.pyfairsim).exists():
                runs["pyfairsim"] = [args.pyfairsim, str(HERE / "peers" / "pyfairsim_run.py"), str(inp),
                                     str(Path(d) / "pyfairsim.npz")]
            for name, cmd in runs.items():
                res = _run(cmd, Path(cmd[-1]))
                if "image" in res:
                    res["psnr"] = _affine_psnr(res.pop("image"), truth)
                row[name] = res
        row["load_after"] = list(os.getloadavg())
        if "cpu_seconds" in row.get("pyfairsim", {}) and "cpu_seconds" in row["ours"]:
            row["cpu_ratio_pyfairsim_over_ours"] = row["pyfairsim"]["cpu_seconds"] / row["ours"]["cpu_seconds"]
        out["rows"].append(row)
        print(json.dumps(row), flush=True)
    out["load_after"] = list(os.getloadavg())
    rows = out["rows"]
    summary: dict = {"ours_cpu_seconds": mean_ci([r["ours"]["cpu_seconds"] for r in rows if "cpu_seconds" in r["ours"]])}
    if any("cpu_ratio_pyfairsim_over_ours" in r for r in rows):
        summary["cpu_ratio_pyfairsim_over_ours"] = mean_ci([r["cpu_ratio_pyfairsim_over_ours"] for r in rows
                                                            if "cpu_ratio_pyfairsim_over_ours" in r])
        summary["psnr_ours_minus_pyfairsim"] = mean_ci([r["ours"]["psnr"] - r["pyfairsim"]["psnr"] for r in rows
                                                        if "psnr" in r["ours"] and "psnr" in r.get("pyfairsim", {})])
    out["summary"] = summary
    # The timed code is deterministic given the raw frames; the frames depend only on the seeds.
    params = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    out["provenance"] = finish(provenance(seeds=args.seeds, data=data, params={
        **params, "deterministic": "timed code deterministic; data simulated from the seeds",
        "scene": "filaments", "k_over_cutoff": 0.85, "modulation": 0.8, "photons": 100.0, "phase_jitter": 0.05,
        "wiener": 0.05, "pixel_size_um": DX, "na": NA, "wavelength_um": LAM}), t_wall)
    args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
