"""SMLM benchmark: classical MLE vs DECODE-style (and Deep-STORM-style) localizers, SMLM-2016 metrics.

Simulated movies (SMLM-2016 EMCCD camera, Gaussian PSF σ = 130 nm, 100 nm pixels, blinking emitters)
at densities 0.1–4 emitters/µm² per frame; a 3D astigmatic movie (MLE with z); the Deep-STORM
ThunderSTORM simulation (ground truth); the real deconSTORM microtubule movie (FRC only). The
learned localizer is trained once on simulations at ``--train-density`` within ``--budget`` seconds
and applied at every density (a per-density model would be better at the extremes). Peers
(smappy-smlm) are run from ``--peer-python`` when given.

Usage::

    python benchmarks/smlm.py --quick                 # reduced run (~4 min on 2 busy cores)
    python benchmarks/smlm.py --budget 600 --frames 500 --seeds 0 1 2

Writes ``benchmarks/smlm.json`` and ``benchmarks/smlm.md`` (table). Always read the load average
recorded with the numbers: timings on a shared machine are not the machine's speed.
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
import torch

from fluorecon.classical.localize import filter_localizations, localize
from fluorecon.datasets import shared_data
from fluorecon.evaluate.smlm import assess, frc_localizations, match
from fluorecon.io import read_image
from fluorecon.io_tables import read_table, write_table
from fluorecon.learn.smlm_nets import SimConfig, train_localizer
from fluorecon.physics.smlm import AstigmaticPSF, Blinking, SMLMCamera, simulate_movie

HERE = Path(__file__).parent


def _load() -> float:
    return os.getloadavg()[0]


def _metrics(m: dict) -> dict:
    keys = ("jaccard", "recall", "precision", "rmse_lateral", "rmse_axial", "efficiency_lateral", "efficiency_axial",
            "n_truth", "n_pred")
    return {k: (round(float(m[k]), 4) if isinstance(m[k], float) else m[k]) for k in keys if k in m}


def simulated(densities, frames, size, seeds, budget, train_density, peer_python):
    cam = SMLMCamera.smlm2016()
    out = []
    model = None
    if budget > 0:
        sim = SimConfig(pixel_size=100.0, psf_sigma=130.0, density=train_density, photons=2000.0, background=20.0,
                        camera=cam.model_dump(mode="json"))
        t0 = time.perf_counter()
        model = train_localizer("decode", sim, budget_s=budget, seed=0)
        print(f"DECODE-style trained: {model.training} (load {_load():.1f})", flush=True)
        train_s = time.perf_counter() - t0
    for dens in densities:
        for seed in seeds:
            n = frames if dens >= 0.5 else frames * 3
            kin = Blinking(on_time=2.0, off_time=40.0, photons=2000.0)
            mov, truth = simulate_movie(n, (size, size), 100.0, density=dens, psf=130.0, camera=cam, background=20.0,
                                        kinetics=kin, seed=1000 + seed)
            row = {"density": dens, "seed": seed, "frames": n, "size": size}
            t0 = time.perf_counter()
            locs = localize(mov, cam, 100.0, 130.0)
            dt = time.perf_counter() - t0
            m = assess(locs, truth)
            ip, _ = match(locs, truth)
            crlb = float(np.sqrt(np.mean(locs["crlb_x [nm]"][ip] ** 2 + locs["crlb_y [nm]"][ip] ** 2))) if len(ip) \
                else float("nan")
            row["mle"] = {**_metrics(m), "rms_crlb_nm": round(crlb, 3), "rmse_over_crlb": round(m["rmse_lateral"] / crlb, 3),
                          "seconds": round(dt, 3), "locs_per_s": round(len(locs["frame"]) / dt, 1), "load": _load()}
            dev = filter_localizations(locs, max_deviance=3.0)
            md = assess(dev, truth)
            ip, _ = match(dev, truth)
            c2 = float(np.sqrt(np.mean(dev["crlb_x [nm]"][ip] ** 2 + dev["crlb_y [nm]"][ip] ** 2))) if len(ip) \
                else float("nan")
            row["mle_dev3"] = {**_metrics(md), "rms_crlb_nm": round(c2, 3), "rmse_over_crlb": round(md["rmse_lateral"] / c2, 3)}
            if model is not None:
                t0 = time.perf_counter()
                l2 = model.localize(mov)
                dt = time.perf_counter() - t0
                row["decode"] = {**_metrics(assess(l2, truth)), "seconds": round(dt, 3),
                                 "frames_per_s": round(n / dt, 1), "load": _load()}
            if peer_python:
                row["smappy"] = _peer(peer_python, mov, truth, cam)
            print(json.dumps(row), flush=True)
            out.append(row)
    return out, (train_s if model is not None else None), model


def _peer(python: str, mov: np.ndarray, truth: dict, cam: SMLMCamera) -> dict:
    """Run smappy-smlm in its own venv through a small script; its table is scored with our matcher."""
    with tempfile.TemporaryDirectory() as d:
        np.save(Path(d) / "movie.npy", mov)
        script = Path(d) / "run.py"
        script.write_text(PEER_SCRIPT)
        t0 = time.perf_counter()
        r = subprocess.run([python, str(script), d, json.dumps(cam.model_dump(mode="json"))], capture_output=True,
                           text=True, timeout=600)
        dt = time.perf_counter() - t0
        if r.returncode != 0:
            return {"error": r.stderr[-500:]}
        t = read_table(Path(d) / "locs.csv")
        info = json.loads(r.stdout.strip().splitlines()[-1])
        m = assess(t, truth)
        return {**_metrics(m), "bias_x": round(m["bias_x"], 2), "bias_y": round(m["bias_y"], 2),
                "fit_seconds": round(info["fit_seconds"], 3), "locs_per_s": round(info["n"] / info["fit_seconds"], 1),
                "seconds_incl_start": round(dt, 2), "load": _load()}


PEER_SCRIPT = """
import sys, json, time, numpy as np
import smappy
d, cam = sys.argv[1], json.loads(sys.argv[2])
mov = np.load(d + '/movie.npy')
conv = 1.0 / cam['gain']  # smappy: e- per ADU
camera = {'conversion': conv, 'offset': cam['baseline'], 'pixelsize_um': 0.1, 'em_on': bool(cam['em_gain']),
          'emgain': cam['em_gain'] or 1.0, 'read_noise_e': cam['read_noise']}
t0 = time.perf_counter()
locs = smappy.fit(mov, camera=camera, sigma=1.3, roisize=9)
dt = time.perf_counter() - t0
# smappy: frames from 0, x_nm = pixel index x pixel size (origin at the first pixel's centre)
cols = {'frame': np.asarray(locs['frame']) + 1, 'x [nm]': np.asarray(locs['x_nm'], float) + 50.0,
        'y [nm]': np.asarray(locs['y_nm'], float) + 50.0}
with open(d + '/locs.csv', 'w') as fh:
    fh.write('frame,x [nm],y [nm]\\n')
    for f, x, y in zip(cols['frame'], cols['x [nm]'], cols['y [nm]']):
        fh.write(f'{int(f)},{x},{y}\\n')
print(json.dumps({'fit_seconds': dt, 'n': len(cols['frame'])}))
"""


def astigmatic(frames, size, seed):
    cam = SMLMCamera.smlm2016()
    psf = AstigmaticPSF(110.0, 250.0, 400.0)
    mov, truth = simulate_movie(frames, (size, size), 100.0, density=0.1, psf=psf, camera=cam, background=20.0,
                                kinetics=Blinking(on_time=2, off_time=40, photons=3000), z_range=(-400, 400),
                                seed=seed)
    locs = localize(mov, cam, 100.0, psf=psf)
    return {"density": 0.1, "frames": frames, **_metrics(assess(locs, truth)),
            "median_crlb_z_nm": round(float(np.median(locs["crlb_z [nm]"])), 2)}


def deepstorm_data():
    d = shared_data("deepstorm-simulated-smlm")
    if d is None:
        return {"skipped": "data absent"}
    mov = read_image(d / "ArtificialDataset_demo1.tif").data
    truth = read_table(d / "positions_demo1.csv")
    # ThunderSTORM simulation in photons (offset 50 photons per pixel given as background): camera = identity
    cam = SMLMCamera(baseline=0.0, gain=1.0, read_noise=0.0)
    locs = localize(mov, cam, 100.0, float(np.median(truth["sigma [nm]"])))
    m = assess(locs, truth)
    area = (mov.shape[1] * mov.shape[2]) * 0.01
    return {"frames": int(mov.shape[0]), "density_per_um2": round(len(truth) / mov.shape[0] / area, 2),
            "mle": {**_metrics(m), "bias_x": round(m["bias_x"], 2), "bias_y": round(m["bias_y"], 2)}}


def microtubules(pixel_size=100.0):
    d = shared_data("deconstorm-microtubules")
    if d is None:
        return {"skipped": "data absent"}
    mov = np.load(d / "deconSTORM_microtubuledata_mov_TYX.npy").astype(np.float32)
    cam = SMLMCamera(baseline=0.0, gain=1.0, read_noise=0.0)
    locs = localize(mov, cam, pixel_size, pixel_size * 1.0)  # demo: sigma = 1 pixel, values in photons
    res = frc_localizations(locs, pixel_size / 8, fov_nm=(16 * pixel_size, 16 * pixel_size), blocks=20)
    return {"frames": int(mov.shape[0]), "n_localizations": len(locs["frame"]),
            "frc_resolution_px": round(res.info["resolution_nm"] / pixel_size, 3), "frc_crossed": bool(res.crossed),
            "note": "pixel size unknown: resolution in camera pixels"}


def inference_speed(model, size=64, frames=200, threads=2):
    torch.set_num_threads(threads)
    sim = model.sim
    mov, _ = sim.simulate_movie(frames, (size, size), seed=5)
    model.localize(mov[:8])
    t0 = time.perf_counter()
    model.localize(mov, batch=64)
    dt = time.perf_counter() - t0
    torch.set_num_threads(1)
    return {"frames": frames, "size": size, "threads": threads, "seconds": round(dt, 3),
            "frames_per_s": round(frames / dt, 1), "load": _load()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="reduced run")
    ap.add_argument("--densities", type=float, nargs="*", default=[0.1, 0.5, 1.0, 2.0, 4.0])
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--seeds", type=int, nargs="*", default=[0])
    ap.add_argument("--budget", type=float, default=170.0, help="DECODE-style training budget (s), 0 to skip")
    ap.add_argument("--train-density", type=float, default=2.0)
    ap.add_argument("--peer-python", default=None, help="python of a venv with smappy-smlm")
    ap.add_argument("--out", default=str(HERE / "smlm"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    t_start = time.perf_counter()
    res = {"machine": {"python": platform.python_version(), "torch": torch.__version__, "cpus": os.cpu_count(),
                       "load_start": _load()}, "args": vars(args)}
    rows, train_s, model = simulated(args.densities, args.frames, args.size, args.seeds, args.budget,
                                     args.train_density, args.peer_python)
    res["simulated"] = rows
    res["decode_training_seconds"] = train_s
    res["astigmatic_3d"] = astigmatic(args.frames * 3, args.size, 7)
    print("astigmatic", res["astigmatic_3d"], flush=True)
    res["deepstorm_simulated"] = deepstorm_data()
    print("deepstorm data", res["deepstorm_simulated"], flush=True)
    res["deconstorm_microtubules"] = microtubules()
    print("microtubules", res["deconstorm_microtubules"], flush=True)
    if model is not None:
        res["decode_inference"] = inference_speed(model)
        print("inference", res["decode_inference"], flush=True)
    res["machine"]["load_end"] = _load()
    res["seconds"] = round(time.perf_counter() - t_start, 1)
    Path(args.out + ".json").write_text(json.dumps(res, indent=1, default=float))
    lines = ["| density µm⁻² | MLE JI | MLE RMSE nm | RMSE/CRLB | MLE E_lat | MLE dev≤3 JI | dev≤3 RMSE/CRLB | "
             "DECODE JI | DECODE RMSE nm | DECODE E_lat | smappy JI | smappy RMSE nm | smappy E_lat |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        d = r.get("decode", {})
        sm = r.get("smappy", {})
        lines.append(f"| {r['density']} | {r['mle']['jaccard']:.3f} | {r['mle']['rmse_lateral']:.1f} | "
                     f"{r['mle']['rmse_over_crlb']:.2f} | {r['mle']['efficiency_lateral']:.1f} | "
                     f"{r['mle_dev3']['jaccard']:.3f} | {r['mle_dev3']['rmse_over_crlb']:.2f} | "
                     f"{d.get('jaccard', float('nan')):.3f} | {d.get('rmse_lateral', float('nan')):.1f} | "
                     f"{d.get('efficiency_lateral', float('nan')):.1f} | "
                     f"{sm.get('jaccard', float('nan')):.3f} | {sm.get('rmse_lateral', float('nan')):.1f} | "
                     f"{sm.get('efficiency_lateral', float('nan')):.1f} |")
    Path(args.out + ".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    _ = write_table  # tables of a run can be written with fluorecon.io_tables.write_table


if __name__ == "__main__":
    sys.exit(main())
