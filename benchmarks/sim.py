"""SIM benchmark: parameter estimation and reconstruction on simulations with known truth, pyfairsim side by
side, and the real 3D-SIM data's pattern against its acquisition config.

Run: ``.venv/bin/python benchmarks/sim.py [--quick] [--seeds 0 1 2] [--learned-budget 600]``. Prints a
table, writes ``benchmarks/sim.json``. The peer runs in its own venv (``--pyfairsim PYTHON``, default
``/tmp/venv-fairsim/bin/python``; skipped with a note when absent).

Data. Simulations: 512² fine-grid phantoms (filaments, puncta, membranes; seeds given) imaged as 2D-SIM
(3 angles × 3 phases, k = 0.85 of the OTF cut-off, phase jitter 0.05 rad) at NA 1.3, λ 0.52 µm, raw
pixels 65 nm, photons per pixel at signal 1 in {20, 100, 1000}, modulation in {0.5, 0.8}. Nothing was
tuned on these scenes: the Wiener parameter (0.05) is fairSIM's usual value; the learned network is
trained on its own simulated structures (other seeds), never on the scenes reported here. Quality:
PSNR/SSIM against the truth after the *same* least-squares gain/offset for every method (units differ);
resolution: FRC (1/7) against the truth, relative to the widefield OTF cut-off.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from skimage.metrics import structural_similarity

from fluorecon.classical.sim import estimate_parameters, reconstruct_sim, wiener_widefield
from fluorecon.datasets import shared_data
from fluorecon.evaluate.metrics import frc, psnr
from fluorecon.io import read_image
from fluorecon.learn.sim_net import predict_sim, train_sim_net
from fluorecon.physics import phantoms
from fluorecon.physics.camera import Camera
from fluorecon.physics.sim import SIMPattern, simulate_sim
from fluorecon.tasks.registry import get

HERE = Path(__file__).resolve().parent
DX, NA, LAM = 0.065, 1.3, 0.52
KC = 2 * NA / LAM * DX


def _affine(a: np.ndarray, truth: np.ndarray) -> np.ndarray:
    design = np.stack([a.ravel(), np.ones(a.size)], 1)
    c = np.linalg.lstsq(design, truth.ravel(), rcond=None)[0]
    return a * c[0] + c[1]


def _scores(img: np.ndarray, truth: np.ndarray, wf_cut: float) -> dict:
    a = _affine(img, truth)
    return {"psnr": float(psnr(a, truth, 1.0)), "ssim": float(structural_similarity(a, truth, data_range=1.0)),
            "frc_cutoff_ratio": float(frc(img, truth).cutoff / wf_cut)}


def _centre_phase_error(est: SIMPattern, true: SIMPattern, n: int) -> float:
    c = np.array([n / 2, n / 2])

    def at_c(p: SIMPattern) -> np.ndarray:
        return p.phases + 2 * np.pi * (p.k @ c)[:, None]

    return float(np.abs(np.angle(np.exp(1j * (at_c(est) - at_c(true))))).max())


def _pyfairsim(python: str, raw: np.ndarray) -> dict | None:
    if not Path(python).exists():
        return None
    with tempfile.TemporaryDirectory() as d:
        inp, out = Path(d) / "in.npz", Path(d) / "out.npz"
        np.savez(inp, raw=raw, pixel_nm=DX * 1000, na=NA, wavelength_nm=LAM * 1000, angles=3, phases=3, wiener=0.05)
        r = subprocess.run([python, str(HERE / "peers" / "pyfairsim_run.py"), str(inp), str(out)],
                           capture_output=True, text=True, timeout=1800)
        if r.returncode != 0:
            return {"error": r.stderr[-500:]}
        res = np.load(out)
        return {"image": res["image"], "seconds": float(res["seconds"]), "k_px": res["k"].tolist()}


def simulations(seeds: list[int], quick: bool, peer: str, learned_budget: float) -> list[dict]:
    size = 256 if quick else 512
    photons = (100.0,) if quick else (20.0, 100.0, 1000.0)
    mods = (0.8,) if quick else (0.5, 0.8)
    kinds = ("filaments",) if quick else ("filaments", "puncta", "membranes")
    model = None
    tinfo = None
    if learned_budget > 0:
        model, tinfo = train_sim_net(n_angles=3, n_phases=3, pixel_size=DX, na=NA, wavelength=LAM,
                                     steps=None, budget_s=learned_budget, seed=1234)
    rows = []
    for seed in seeds:
        for kind in kinds:
            truth = np.asarray(phantoms.phantom(kind, (size, size), seed=seed), np.float64)
            for ph in photons:
                for m in mods:
                    rng = np.random.default_rng([seed, int(ph), int(100 * m)])
                    pat = SIMPattern.regular(3, 3, k=0.85 * KC, modulation=m, angle0=float(rng.uniform(0, np.pi)),
                                             phase0=float(rng.uniform(0, 6.28)))
                    cam = Camera(photons=ph, gain=1.0, offset=0.0, read_noise=1.0)
                    raw, info = simulate_sim(truth, pat, pixel_size=DX, na=NA, wavelength=LAM, camera=cam,
                                             seed=rng, phase_jitter=0.05)
                    true = SIMPattern.from_dict(info["pattern"])
                    n = raw.shape[-1]
                    t0 = time.perf_counter()
                    est = estimate_parameters(raw, 3, 3, pixel_size=DX, na=NA, wavelength=LAM)
                    t1 = time.perf_counter()
                    rec, _ = reconstruct_sim(raw, est, pixel_size=DX, na=NA, wavelength=LAM, wiener=0.05)
                    t2 = time.perf_counter()
                    wf = wiener_widefield(raw, pixel_size=DX, na=NA, wavelength=LAM, wiener=0.05)
                    wf_cut = frc(wf, truth).cutoff
                    row = {"seed": seed, "kind": kind, "photons": ph, "modulation": m, "size": size,
                           "k_error_px": float(np.abs(est.k - true.k).max() * n),
                           "phase_error_centre_rad": _centre_phase_error(est, true, n),
                           "modulation_est": est.modulation.tolist(),
                           "ours_estimate_s": round(t1 - t0, 3), "ours_reconstruct_s": round(t2 - t1, 3),
                           "widefield": _scores(wf, truth, wf_cut), "ours": _scores(rec, truth, wf_cut)}
                    if model is not None:
                        lr = predict_sim(model, raw)
                        row["learned"] = _scores(lr, truth, wf_cut)
                    res = _pyfairsim(peer, raw) if peer else None
                    if res is not None and "image" in res:
                        row["pyfairsim"] = {**_scores(res["image"], truth, wf_cut), "seconds": res["seconds"]}
                    elif res is not None:
                        row["pyfairsim"] = {"error": res["error"]}
                    rows.append(row)
                    print(json.dumps({k: v for k, v in row.items() if k not in ("modulation_est",)}), flush=True)
    return rows if tinfo is None else [*rows, {"learned_training": tinfo}]


def real_data() -> dict:
    folder = shared_data("cudasirecon-3dsim-raw")
    if folder is None:
        return {"skipped": "cudasirecon-3dsim-raw not found"}
    img = read_image(folder / "raw.tif")
    cfg = dict(line.split("=", 1) for line in (folder / "config-tiff").read_text().split() if "=" in line)
    t0 = time.perf_counter()
    res = get("sim")(img.data.astype(np.float32) * 1e4, axes="ZYX", voxel_size=(0.125, 0.08, 0.08), angles=3,
                     phases=5, order="azp", na=float(cfg["na"]), wavelength=0.528)
    est = res.params_used["estimate"]
    return {"seconds": round(time.perf_counter() - t0, 2), "line_spacing_um": est["line_spacing_um"],
            "config_line_spacing_um": float(cfg["ls"]), "angle_rad": est["angle_rad"],
            "config_k0angles": [float(a) for a in cfg["k0angles"].split(",")],
            "modulation": res.params_used["pattern"]["modulation"],
            "sha256_raw": hashlib.sha256((folder / "raw.tif").read_bytes()).hexdigest()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--pyfairsim", default="/tmp/venv-fairsim/bin/python")
    ap.add_argument("--learned-budget", type=float, default=0.0, help="seconds of training for the learned row (0: skip)")
    args = ap.parse_args()
    out = {"command": " ".join([Path(sys.executable).name, *sys.argv]), "machine": platform.platform(),
           "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "load_before": os.getloadavg()[0], "seeds": args.seeds}
    out["simulations"] = simulations(args.seeds, args.quick, args.pyfairsim, args.learned_budget)
    out["real"] = real_data()
    out["load_after"] = os.getloadavg()[0]
    sims = [r for r in out["simulations"] if "ours" in r]
    summary = {}
    for name in ("widefield", "ours", "learned", "pyfairsim"):
        vals = [r[name]["psnr"] for r in sims if name in r and "psnr" in r[name]]
        if vals:
            summary[name] = {"psnr_mean": float(np.mean(vals)), "n": len(vals),
                             "ssim_mean": float(np.mean([r[name]["ssim"] for r in sims if name in r and "ssim" in r[name]])),
                             "frc_ratio_mean": float(np.mean([r[name]["frc_cutoff_ratio"] for r in sims
                                                               if name in r and "frc_cutoff_ratio" in r[name]]))}
    summary["k_error_px_max"] = max(r["k_error_px"] for r in sims)
    summary["phase_error_centre_rad_median"] = float(np.median([r["phase_error_centre_rad"] for r in sims]))
    summary["ours_total_s_median"] = float(np.median([r["ours_estimate_s"] + r["ours_reconstruct_s"] for r in sims]))
    peer_t = [r["pyfairsim"]["seconds"] for r in sims if "pyfairsim" in r and "seconds" in r["pyfairsim"]]
    if peer_t:
        summary["pyfairsim_total_s_median"] = float(np.median(peer_t))
    out["summary"] = summary
    (HERE / "sim.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(summary, indent=1))
    print(json.dumps(out["real"], indent=1))


if __name__ == "__main__":
    main()
